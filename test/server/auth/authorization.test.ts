import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startIdp } from '../../fixtures/idp-server.js';
import type { IdpFixture, IdpOptions } from '../../fixtures/idp-server.js';
import { TestOAuthProvider, connectWithLogin, parseConsentForm, sleep, startProtectedServer, whoami } from './harness.js';
import type { ProtectedServer } from './harness.js';

describe('OAuth proxy: authorization server surface', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function setup(proxy: Parameters<typeof startProtectedServer>[1] = {}, idpOptions: Partial<IdpOptions> = {}): Promise<{ idp: IdpFixture; server: ProtectedServer }> {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true, ...idpOptions });
    cleanups.push(() => idp.close());
    const server = await startProtectedServer(idp, proxy);
    cleanups.push(() => server.close());
    return { idp, server };
  }

  async function register(server: ProtectedServer, name = 'test'): Promise<string> {
    const res = await fetch(`${server.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: name, redirect_uris: ['http://127.0.0.1:1/callback'], token_endpoint_auth_method: 'none' }),
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { client_id: string }).client_id;
  }

  function authorizeUrl(server: ProtectedServer, clientId: string, extra: Record<string, string> = {}): string {
    const challenge = createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url');
    const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: challenge, code_challenge_method: 'S256', state: 's1', ...extra });
    return `${server.url}/authorize?${q}`;
  }

  it('serves RFC 8414 metadata, the openid-configuration alias and RFC 9728 protected-resource metadata', async () => {
    const { server } = await setup({ scopesSupported: ['mcp'] });
    const as = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    expect(as.issuer).toBe(`${server.url}/`);
    expect(as.authorization_endpoint).toBe(`${server.url}/authorize`);
    expect(as.token_endpoint).toBe(`${server.url}/token`);
    expect(as.registration_endpoint).toBe(`${server.url}/register`);
    expect(as.code_challenge_methods_supported).toEqual(['S256']);
    expect(as.grant_types_supported).toEqual(['authorization_code', 'refresh_token']);
    expect(as.scopes_supported).toEqual(['mcp']);
    const oidc = await (await fetch(`${server.url}/.well-known/openid-configuration`)).json();
    expect(oidc).toEqual(as);
    const prm = (await (await fetch(`${server.url}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    expect(prm.resource).toBe(server.mcpUrl);
    expect(prm.authorization_servers).toEqual([`${server.url}/`]);
  });

  it('is path-aware when the issuer has a path, and the SDK client logs in through it', async () => {
    const { server } = await setup({ issuerPath: '/tenant-a' });
    const issuer = `${server.url}/tenant-a`;
    for (const path of ['/.well-known/oauth-authorization-server/tenant-a', '/.well-known/openid-configuration/tenant-a', '/tenant-a/.well-known/openid-configuration']) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(((await res.json()) as { issuer: string }).issuer, path).toBe(issuer);
    }
    const prm = (await (await fetch(`${server.url}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    expect(prm.authorization_servers).toEqual([issuer]);
    const provider = new TestOAuthProvider();
    const client = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => client.close());
    expect((await whoami(client)).status).toBe(200);
  });

  it('shows a consent page that escapes the client name; deny returns access_denied to the client', async () => {
    const { idp, server } = await setup();
    const clientId = await register(server, '<script>alert(1)</script>');
    const res = await fetch(authorizeUrl(server, clientId), { redirect: 'manual' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const html = await res.text();
    expect(html).not.toContain('<script>');
    expect(html).toContain('&#60;script&#62;');
    expect(html).toContain('http://127.0.0.1:1/callback');

    const provider = new TestOAuthProvider();
    provider.consentAction = 'deny';
    await expect(connectWithLogin(server.mcpUrl, provider)).rejects.toThrow(/access_denied/);
    expect(provider.consentPages).toBe(1);
    expect(idp.counts.logins).toBe(0);
  });

  it('refuses a consent approval or callback replayed from a browser other than the one that started the login', async () => {
    const { idp, server } = await setup();
    const clientId = await register(server, 'attacker');
    // The attacker opens /authorize himself and gets a consent form and its binding cookie...
    const res = await fetch(authorizeUrl(server, clientId), { redirect: 'manual' });
    const form = parseConsentForm(await res.text());
    expect(res.headers.getSetCookie()).toHaveLength(1);
    // ...then makes the victim's browser (which lacks that cookie) submit it.
    const approve = await fetch(new URL(form.action, server.url), {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ txn: form.txn, action: 'approve' }),
    });
    expect(approve.status).toBe(403);
    // Skipping consent and going straight to the callback fails too.
    const callback = await fetch(`${server.url}/oauth/callback?state=${form.txn}&code=whatever`, { redirect: 'manual' });
    expect(callback.status).toBe(403);
    expect(idp.counts.logins).toBe(0);
  });

  it('an IdP whose discovery fails: approving consent shows a 503 page, and /authorize without consent redirects temporarily_unavailable', async () => {
    const { idp, server } = await setup({ upstream: { type: 'oidc', issuer: 'http://127.0.0.1:1', clientId: 'x', clientSecret: 'y' } });
    const clientId = await register(server);
    const page = await fetch(authorizeUrl(server, clientId), { redirect: 'manual' });
    const cookie = page.headers.getSetCookie()[0]!.split(';')[0]!;
    const form = parseConsentForm(await page.text());
    const approve = await fetch(new URL(form.action, server.url), {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
      body: new URLSearchParams({ txn: form.txn, action: 'approve' }),
    });
    expect(approve.status).toBe(503);
    expect(await approve.text()).toContain('identity provider is unavailable');
    expect(idp.counts.logins).toBe(0);

    const direct = await startProtectedServer(idp, { consent: false, upstream: { type: 'oidc', issuer: 'http://127.0.0.1:1', clientId: 'x' } });
    cleanups.push(() => direct.close());
    const res = await fetch(authorizeUrl(direct, await register(direct)), { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(new URL(res.headers.get('location')!).searchParams.get('error')).toBe('temporarily_unavailable');
  });

  it('with consent off, /authorize goes straight to the IdP', async () => {
    const { server } = await setup({ consent: false });
    const provider = new TestOAuthProvider();
    const client = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => client.close());
    expect(provider.consentPages).toBe(0);
    expect((await whoami(client)).status).toBe(200);
  });

  it('authorization codes: PKCE is checked, the code is bound to its client and redirect URI, and it is single-use', async () => {
    const { server } = await setup({ consent: false });
    const clientId = await register(server);
    const otherClient = await register(server, 'other');
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1:1/callback', code_challenge: challenge, code_challenge_method: 'S256', state: 'xyz' });
    let next = `${server.url}/authorize?${q}`;
    for (let hop = 0; hop < 5 && !next.startsWith('http://127.0.0.1:1/'); hop++) {
      const res = await fetch(next, { redirect: 'manual' });
      await res.body?.cancel();
      next = new URL(res.headers.get('location')!, next).href;
    }
    const back = new URL(next);
    expect(back.searchParams.get('state')).toBe('xyz');
    const code = back.searchParams.get('code')!;
    const redeem = async (fields: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> => {
      const res = await fetch(`${server.url}/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: 'http://127.0.0.1:1/callback', client_id: clientId, ...fields }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect((await redeem({ code_verifier: randomBytes(32).toString('base64url') })).body.error).toBe('invalid_grant');
    expect((await redeem({ client_id: otherClient })).body.error).toBe('invalid_grant');
    const ok = await redeem({});
    expect(ok.status).toBe(200);
    expect(typeof ok.body.access_token).toBe('string');
    const replay = await redeem({});
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
  });

  it('refuses a resource other than its own MCP endpoint (RFC 8707)', async () => {
    const { server } = await setup({ consent: false });
    const clientId = await register(server);
    const res = await fetch(authorizeUrl(server, clientId, { resource: 'http://127.0.0.1:1/other' }), { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(new URL(res.headers.get('location')!).searchParams.get('error')).toBe('invalid_target');
  });

  it('GitHub preset: logs in against GitHub-shaped endpoints and takes the numeric user id as subject', async () => {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: false });
    cleanups.push(() => idp.close());
    const server = await startProtectedServer(idp, {
      upstream: { type: 'github', clientId: idp.clientId, clientSecret: idp.clientSecret, scopes: ['read:user'], baseUrl: idp.url, apiBaseUrl: idp.url },
    });
    cleanups.push(() => server.close());
    const provider = new TestOAuthProvider();
    const client = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => client.close());
    expect((await whoami(client)).subject).toBe('4242');
  });

  it('a non-expiring upstream token without refresh token (classic GitHub OAuth App) gets full lifetimes and a codemode refresh token', async () => {
    const idp = await startIdp({ accessTokenTtlSeconds: 0, issueRefreshTokens: false });
    cleanups.push(() => idp.close());
    const server = await startProtectedServer(idp, {
      upstream: { type: 'github', clientId: idp.clientId, clientSecret: idp.clientSecret, baseUrl: idp.url, apiBaseUrl: idp.url },
      accessTokenExpirySeconds: 600,
    });
    cleanups.push(() => server.close());
    const provider = new TestOAuthProvider();
    const client = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => client.close());
    expect(provider.tokens()!.expires_in).toBe(600);
    expect(provider.tokens()!.refresh_token).toBeDefined();
    expect((await whoami(client)).status).toBe(200);
  });

  it('explicit upstream endpoints with client_secret_basic and without upstream PKCE', async () => {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    const server = await startProtectedServer(idp, {
      upstream: {
        type: 'oidc',
        authorizationEndpoint: `${idp.url}/authorize`,
        tokenEndpoint: `${idp.url}/token`,
        userinfoEndpoint: `${idp.url}/userinfo`,
        clientId: idp.clientId,
        clientSecret: idp.clientSecret,
        tokenEndpointAuthMethod: 'client_secret_basic',
        pkce: false,
      },
    });
    cleanups.push(() => server.close());
    const client = await connectWithLogin(server.mcpUrl, new TestOAuthProvider());
    cleanups.push(() => client.close());
    expect((await whoami(client)).status).toBe(200);
  });

  it('without a userinfo endpoint, the subject comes from the back-channel ID token', async () => {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true, subject: 'oidc-sub-7' });
    cleanups.push(() => idp.close());
    const server = await startProtectedServer(idp, {
      upstream: { type: 'oidc', authorizationEndpoint: `${idp.url}/authorize`, tokenEndpoint: `${idp.url}/token`, clientId: idp.clientId, clientSecret: idp.clientSecret },
    });
    cleanups.push(() => server.close());
    const client = await connectWithLogin(server.mcpUrl, new TestOAuthProvider());
    cleanups.push(() => client.close());
    expect((await whoami(client)).subject).toBe('oidc-sub-7');
    expect(idp.counts.userinfo).toBe(1); // only the tool's own call, none at login
  });

  it('an unreachable IdP: an early refresh that fails keeps the still-valid token; an expired one yields 500, not a logout', async () => {
    const { idp, server } = await setup({ tokenExpiryThresholdSeconds: 3 }, { accessTokenTtlSeconds: 4 });
    const provider = new TestOAuthProvider();
    const client = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => client.close());
    const token = provider.tokens()!.access_token;
    await idp.close();
    await sleep(1_300); // inside the threshold, not expired
    const info = await server.proxy.verifyAccessToken(token);
    expect(info.extra?.subject).toBe('user-42');
    await sleep(3_000); // now expired, and the IdP is down
    const res = await fetch(server.mcpUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    expect(res.status).toBe(500);
  });
});

