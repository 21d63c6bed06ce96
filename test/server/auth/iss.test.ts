/**
 * RFC 9207: every authorization response the OAuth proxy sends to a client's redirect URI (a code or an
 * error) carries `iss`, exactly the `issuer` of its metadata, and the metadata says so.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startIdp } from '../../fixtures/idp-server.js';
import type { IdpFixture } from '../../fixtures/idp-server.js';
import { parseConsentForm, startProtectedServer } from './harness.js';
import type { ProtectedServer } from './harness.js';

const REDIRECT_URI = 'http://127.0.0.1:1/callback';

describe('OAuth proxy: iss in authorization responses (RFC 9207)', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function setup(proxy: Parameters<typeof startProtectedServer>[1] = {}): Promise<{ idp: IdpFixture; server: ProtectedServer; issuer: string }> {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    const server = await startProtectedServer(idp, proxy);
    cleanups.push(() => server.close());
    const meta = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server${proxy.issuerPath ?? ''}`)).json()) as { issuer: string };
    return { idp, server, issuer: meta.issuer };
  }

  async function register(server: ProtectedServer): Promise<string> {
    const res = await fetch(`${server.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'iss-test', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' }),
    });
    return ((await res.json()) as { client_id: string }).client_id;
  }

  function authorizeUrl(server: ProtectedServer, clientId: string, extra: Record<string, string> = {}): string {
    const challenge = createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url');
    const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT_URI, code_challenge: challenge, code_challenge_method: 'S256', state: 's1', ...extra });
    return `${server.url}/authorize?${q}`;
  }

  /** Follows redirects (approving or denying consent) until the client's redirect URI. */
  async function finalRedirect(start: string, action: 'approve' | 'deny' = 'approve'): Promise<URL> {
    const cookies: string[] = [];
    let next = start;
    let init: RequestInit = {};
    for (let hop = 0; hop < 10; hop++) {
      if (next.startsWith(REDIRECT_URI)) return new URL(next);
      const res = await fetch(next, { ...init, headers: { ...(init.headers as Record<string, string>), cookie: cookies.join('; ') }, redirect: 'manual' });
      for (const line of res.headers.getSetCookie()) cookies.push(line.split(';')[0]!);
      if (res.status === 200) {
        const form = parseConsentForm(await res.text());
        next = new URL(form.action, next).href;
        init = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ txn: form.txn, action }).toString() };
        continue;
      }
      await res.body?.cancel();
      next = new URL(res.headers.get('location')!, next).href;
      init = {};
    }
    throw new Error('too many redirects');
  }

  it('the metadata advertises authorization_response_iss_parameter_supported at every metadata path', async () => {
    const { server, issuer } = await setup({ issuerPath: '/tenant-a' });
    expect(issuer).toBe(`${server.url}/tenant-a`);
    for (const path of [
      '/.well-known/oauth-authorization-server',
      '/.well-known/oauth-authorization-server/tenant-a',
      '/.well-known/openid-configuration',
      '/.well-known/openid-configuration/tenant-a',
      '/tenant-a/.well-known/openid-configuration',
      '/tenant-a/.well-known/oauth-authorization-server',
    ]) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('access-control-allow-origin'), path).toBe('*');
      const meta = (await res.json()) as Record<string, unknown>;
      expect(meta.issuer, path).toBe(issuer);
      expect(meta.authorization_response_iss_parameter_supported, path).toBe(true);
      expect(meta.client_id_metadata_document_supported, path).toBe(true);
    }
    // CORS preflight still answered (by the SDK's metadata handler).
    const preflight = await fetch(`${server.url}/.well-known/oauth-authorization-server`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } });
    expect(preflight.status).toBe(204);
  });

  it('a successful authorization carries iss exactly as the metadata issuer (also with an issuer path)', async () => {
    for (const issuerPath of [undefined, '/tenant-a']) {
      const { server, issuer } = await setup(issuerPath === undefined ? {} : { issuerPath });
      const back = await finalRedirect(authorizeUrl(server, await register(server)));
      expect(back.searchParams.get('code')).toBeTruthy();
      expect(back.searchParams.get('state')).toBe('s1');
      expect(back.searchParams.get('iss')).toBe(issuer);
    }
  });

  it('error responses carry iss: consent denied, a refused resource, a bad PKCE method, an IdP that is down', async () => {
    const { server, issuer } = await setup();
    const clientId = await register(server);
    const denied = await finalRedirect(authorizeUrl(server, clientId), 'deny');
    expect(denied.searchParams.get('error')).toBe('access_denied');
    expect(denied.searchParams.get('iss')).toBe(issuer);

    // These two are redirected by the SDK's /authorize handler.
    for (const extra of [{ resource: 'http://127.0.0.1:1/other' }, { code_challenge_method: 'plain' }] as Array<Record<string, string>>) {
      const res = await fetch(authorizeUrl(server, clientId, extra), { redirect: 'manual' });
      expect(res.status).toBe(302);
      const back = new URL(res.headers.get('location')!);
      expect(back.href.startsWith(REDIRECT_URI)).toBe(true);
      expect(back.searchParams.get('error')).toMatch(/invalid_target|invalid_request/);
      expect(back.searchParams.get('iss')).toBe(issuer);
      expect(back.searchParams.get('state')).toBe('s1');
    }

    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    const down = await startProtectedServer(idp, { consent: false, upstream: { type: 'oidc', issuer: 'http://127.0.0.1:1', clientId: 'x' } });
    cleanups.push(() => down.close());
    const res = await fetch(authorizeUrl(down, await register(down)), { redirect: 'manual' });
    const back = new URL(res.headers.get('location')!);
    expect(back.searchParams.get('error')).toBe('temporarily_unavailable');
    expect(back.searchParams.get('iss')).toBe(`${down.url}/`);
  });

  it('the redirect that forwards the browser to the upstream IdP does not get the client-facing iss', async () => {
    const { idp, server, issuer } = await setup({ consent: false });
    const res = await fetch(authorizeUrl(server, await register(server)), { redirect: 'manual' });
    expect(res.status).toBe(302);
    const upstream = new URL(res.headers.get('location')!);
    expect(upstream.origin).toBe(idp.url);
    expect(upstream.searchParams.has('iss')).toBe(false);
    const back = await finalRedirect(upstream.href);
    expect(back.searchParams.get('iss')).toBe(issuer);
  });
});
