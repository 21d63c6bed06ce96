/**
 * Client ID Metadata Documents: a client uses the URL of its metadata document as client_id. A real
 * document server on 127.0.0.1 (so the tests opt in to private networks and http), the full login
 * through consent and the fake IdP, and every refusal the fetch and the document checks make.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { isCodemodeError } from '../../../src/errors.js';
import { Agent, request } from 'undici';
import { createVettedLookup, isPublicAddress } from '../../../src/server/auth/client-metadata.js';
import { createOAuthProxyFromConfig, parseOAuthConfig } from '../../../src/server/auth/index.js';
import { startIdp } from '../../fixtures/idp-server.js';
import type { IdpFixture } from '../../fixtures/idp-server.js';
import { SIGNING_KEY, parseConsentForm, sleep, startProtectedServer, whoami } from './harness.js';
import type { ProtectedServer } from './harness.js';

const REDIRECT_URI = 'http://127.0.0.1:1/callback';
/** The opt-in the local document server needs. */
const LOCAL = { allowPrivateNetworks: true, allowHttp: true } as const;

type Route = (req: IncomingMessage, res: ServerResponse, url: string) => void | Promise<void>;

interface DocumentServer {
  url: string;
  /** Requests per path. */
  hits: Map<string, number>;
  hitsOf(path: string): number;
  close(): Promise<void>;
}

/** Serves metadata documents (and broken variants) at fixed paths; the document's client_id is its own URL. */
async function startDocumentServer(): Promise<DocumentServer> {
  const hits = new Map<string, number>();
  const json = (res: ServerResponse, body: unknown, headers: Record<string, string> = {}): void => {
    const text = JSON.stringify(body);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  };
  const doc = (url: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    client_id: url,
    client_name: 'CIMD Test Client',
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    ...extra,
  });
  const routes: Record<string, Route> = {
    '/client.json': (_req, res, url) => json(res, doc(url)),
    '/cached.json': (_req, res, url) => json(res, doc(url), { 'cache-control': 'public, max-age=3600' }),
    '/no-auth-method.json': (_req, res, url) => {
      const { token_endpoint_auth_method: _m, ...rest } = doc(url);
      json(res, rest);
    },
    '/mismatch.json': (_req, res) => json(res, doc('https://someone-else.example/client.json')),
    '/no-redirects.json': (_req, res, url) => json(res, doc(url, { redirect_uris: [] })),
    '/script-redirect.json': (_req, res, url) => json(res, doc(url, { redirect_uris: ['javascript:alert(1)//'] })),
    '/secret.json': (_req, res, url) => json(res, doc(url, { token_endpoint_auth_method: 'client_secret_post' })),
    '/private-key-jwt.json': (_req, res, url) => json(res, doc(url, { token_endpoint_auth_method: 'private_key_jwt' })),
    // Chunked, no content-length: the cap must stop the read itself.
    '/huge.json': async (_req, res, url) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(JSON.stringify(doc(url)).slice(0, -1));
      for (let i = 0; i < 1000 && !res.destroyed; i++) {
        res.write(`,"pad${i}":"${'x'.repeat(1000)}"`);
        await sleep(1);
      }
      res.end('}');
    },
    // Declares its size: far over the cap (undici refuses it at the headers) and a little over it.
    '/declared-huge.json': (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '50000' });
      res.end(' '.repeat(50_000));
    },
    '/declared-big.json': (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '8000' });
      res.end(' '.repeat(8_000));
    },
    '/html': (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>not a document</html>');
    },
    '/not-json.json': (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"client_id": ');
    },
    '/moved.json': (_req, res) => {
      res.writeHead(302, { location: '/client.json' });
      res.end();
    },
    '/slow.json': async (_req, res, url) => {
      await sleep(3_000);
      if (!res.destroyed) json(res, doc(url));
    },
    '/missing.json': (_req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    },
  };
  let base = '';
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const route = routes[path] ?? (path.startsWith('/slow') ? routes['/slow.json']! : routes['/missing.json']!);
    void Promise.resolve(route(req, res, `${base}${path}`)).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    hits,
    hitsOf: (path) => hits.get(path) ?? 0,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface PkceRequest {
  url: string;
  verifier: string;
}

function authorizeRequest(server: ProtectedServer, clientId: string, extra: Record<string, string> = {}): PkceRequest {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT_URI, code_challenge: challenge, code_challenge_method: 'S256', state: 'st-1', ...extra });
  return { url: `${server.url}/authorize?${q}`, verifier };
}

/**
 * A browser: follows redirects, keeps cookies, approves (or denies) the consent page, and stops at the
 * client's redirect URI. Returns that final URL and the consent page's HTML.
 */
async function browse(start: string, action: 'approve' | 'deny' = 'approve'): Promise<{ back: URL; consentHtml?: string }> {
  const cookies = new Map<string, string>();
  let next = start;
  let init: RequestInit = {};
  let consentHtml: string | undefined;
  for (let hop = 0; hop < 10; hop++) {
    if (next.startsWith(REDIRECT_URI)) return { back: new URL(next), ...(consentHtml !== undefined && { consentHtml }) };
    const headers = new Headers(init.headers);
    if (cookies.size > 0) headers.set('cookie', [...cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(next, { ...init, headers, redirect: 'manual' });
    for (const line of res.headers.getSetCookie()) {
      const [name, ...value] = (line.split(';')[0] ?? '').split('=');
      if (name !== undefined && name !== '') cookies.set(name.trim(), value.join('='));
    }
    if (res.status === 200 && (res.headers.get('content-type') ?? '').includes('text/html')) {
      consentHtml = await res.text();
      const form = parseConsentForm(consentHtml);
      next = new URL(form.action, next).href;
      init = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ txn: form.txn, action }).toString() };
      continue;
    }
    const location = res.headers.get('location');
    const body = await res.text();
    if (res.status < 300 || res.status >= 400 || location === null) throw new Error(`browser stopped at ${next} with HTTP ${res.status}: ${body.slice(0, 300)}`);
    next = new URL(location, next).href;
    init = {};
  }
  throw new Error('too many redirects');
}

async function postForm(url: string, fields: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', body: new URLSearchParams(fields) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('OAuth proxy: Client ID Metadata Documents', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function setup(proxy: Parameters<typeof startProtectedServer>[1] = { clientIdMetadataDocuments: LOCAL }): Promise<{ idp: IdpFixture; server: ProtectedServer; docs: DocumentServer }> {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    const docs = await startDocumentServer();
    cleanups.push(() => docs.close());
    const server = await startProtectedServer(idp, proxy);
    cleanups.push(() => server.close());
    return { idp, server, docs };
  }

  /** GET /authorize for `clientId` and return the direct (pre-redirect) error. */
  async function authorizeError(server: ProtectedServer, clientId: string, extra: Record<string, string> = {}): Promise<{ status: number; error: string; description: string }> {
    const res = await fetch(authorizeRequest(server, clientId, extra).url, { redirect: 'manual' });
    const body = (await res.json()) as { error: string; error_description: string };
    return { status: res.status, error: body.error, description: body.error_description };
  }

  it('logs in with a URL client_id: consent shows the host, the code and refresh grants work, and the token calls a tool', async () => {
    const { idp, server, docs } = await setup();
    const clientId = `${docs.url}/client.json`;
    const meta = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    expect(meta.client_id_metadata_document_supported).toBe(true);

    const request = authorizeRequest(server, clientId);
    const { back, consentHtml } = await browse(request.url);
    expect(consentHtml).toContain(`<strong class="client-host">127.0.0.1:${new URL(docs.url).port}</strong>`);
    expect(consentHtml).toContain('CIMD Test Client');
    expect(back.searchParams.get('state')).toBe('st-1');
    expect(back.searchParams.get('iss')).toBe(meta.issuer);
    const code = back.searchParams.get('code')!;
    expect(code).toBeTruthy();
    expect(idp.counts.logins).toBe(1);

    const tokens = await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code, code_verifier: request.verifier, redirect_uri: REDIRECT_URI, client_id: clientId });
    expect(tokens.status).toBe(200);
    const accessToken = tokens.body.access_token as string;
    expect(typeof tokens.body.refresh_token).toBe('string');
    const info = await server.proxy.verifyAccessToken(accessToken);
    expect(info.clientId).toBe(clientId);

    const client = new Client({ name: 'cimd-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(server.mcpUrl), { requestInit: { headers: { authorization: `Bearer ${accessToken}` } } }));
    cleanups.push(() => client.close());
    expect((await whoami(client)).status).toBe(200);

    const refreshed = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token as string, client_id: clientId });
    expect(refreshed.status).toBe(200);
    expect(typeof refreshed.body.access_token).toBe('string');
    // Another client cannot redeem this client's refresh token.
    const stolen = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token as string, client_id: `${docs.url}/no-auth-method.json` });
    expect(stolen.body.error).toBe('invalid_grant');
    // Revocation authenticates the client through its document too.
    const revoke = await fetch(`${server.url}/revoke`, { method: 'POST', body: new URLSearchParams({ token: refreshed.body.refresh_token as string, client_id: clientId }) });
    expect(revoke.status).toBe(200);
    const afterRevoke = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: refreshed.body.refresh_token as string, client_id: clientId });
    expect(afterRevoke.body.error).toBe('invalid_grant');
    // One fetch for /authorize, /token, the refreshes and /revoke: the cache answered the rest.
    expect(docs.hitsOf('/client.json')).toBe(1);
  });

  it('a document without token_endpoint_auth_method is a public client ("none")', async () => {
    const { server, docs } = await setup({ clientIdMetadataDocuments: LOCAL, consent: false });
    const { back } = await browse(authorizeRequest(server, `${docs.url}/no-auth-method.json`).url);
    expect(back.searchParams.get('code')).toBeTruthy();
  });

  it('refuses a document whose client_id is not its URL, without redirect URIs, or with a shared-secret or private_key_jwt auth method', async () => {
    const { server, docs } = await setup();
    const mismatch = await authorizeError(server, `${docs.url}/mismatch.json`);
    expect(mismatch).toMatchObject({ status: 400, error: 'invalid_client' });
    expect(mismatch.description).toMatch(/must contain "client_id" equal to the URL it is served from, exactly; it is "https:\/\/someone-else\.example\/client\.json"/);
    expect((await authorizeError(server, `${docs.url}/no-redirects.json`)).description).toMatch(/redirect_uris.*non-empty array/);
    // Schemes registration refuses (the SDK's SafeUrlSchema) are refused in a document too.
    expect((await authorizeError(server, `${docs.url}/script-redirect.json`)).description).toMatch(/scheme no redirect may use \(javascript:\)/);
    const secret = await authorizeError(server, `${docs.url}/secret.json`);
    expect(secret.error).toBe('invalid_client');
    expect(secret.description).toMatch(/"client_secret_post".*no shared secret.*set it to "none"/);
    expect((await authorizeError(server, `${docs.url}/private-key-jwt.json`)).description).toMatch(/private_key_jwt.*does not support/);
  });

  it('refuses a redirect_uri the document does not list', async () => {
    const { server, docs } = await setup();
    const res = await authorizeError(server, `${docs.url}/client.json`, { redirect_uri: 'https://attacker.example/callback' });
    expect(res).toMatchObject({ status: 400, error: 'invalid_request', description: 'Unregistered redirect_uri' });
  });

  it('refuses an oversized body (read with a cap), a non-JSON body, invalid JSON, a redirect (not followed) and an HTTP error', async () => {
    const { server, docs } = await setup();
    const huge = await authorizeError(server, `${docs.url}/huge.json`);
    expect(huge).toMatchObject({ status: 400, error: 'invalid_client' });
    expect(huge.description).toMatch(/larger than 5120 bytes/);
    expect(huge.description.length).toBeLessThan(400); // never echoes the body
    for (const path of ['/declared-huge.json', '/declared-big.json']) {
      expect((await authorizeError(server, `${docs.url}${path}`)).description, path).toMatch(/larger than 5120 bytes/);
    }
    expect((await authorizeError(server, `${docs.url}/html`)).description).toMatch(/content type "text\/html"; it must be served as application\/json/);
    expect((await authorizeError(server, `${docs.url}/not-json.json`)).description).toMatch(/is not valid JSON/);
    const moved = await authorizeError(server, `${docs.url}/moved.json`);
    expect(moved.description).toMatch(/redirect \(HTTP 302\), and redirects are not followed/);
    expect(docs.hitsOf('/client.json')).toBe(0);
    expect((await authorizeError(server, `${docs.url}/missing.json`)).description).toMatch(/answered HTTP 404/);
  });

  it('gives up on a slow document server after fetchTimeoutMs', async () => {
    const { server, docs } = await setup({ clientIdMetadataDocuments: { ...LOCAL, fetchTimeoutMs: 300 } });
    const started = Date.now();
    const slow = await authorizeError(server, `${docs.url}/slow.json`);
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(slow.error).toBe('invalid_client');
    expect(slow.description).toMatch(/did not answer within 300 ms/);
  });

  it('refuses malformed client_id URLs before fetching anything', async () => {
    const { server, docs } = await setup();
    const cases: Array<[string, RegExp]> = [
      [`${docs.url}/`, /must have a path/],
      [`${docs.url}/a/../client.json`, /"\." or "\.\." segments/],
      [`${docs.url}/a/%2E%2E/client.json`, /"\." or "\.\." segments/],
      [`${docs.url}/a\\..\\client.json`, /"\." or "\.\." segments/],
      [`${docs.url}/client.json#frag`, /must not contain a fragment/],
      [docs.url.replace('http://', 'http://user:pw@') + '/client.json', /user name or password/],
      [`${docs.url}/${'a'.repeat(3000)}`, /longer than 2048/],
    ];
    for (const [clientId, message] of cases) {
      const res = await authorizeError(server, clientId);
      expect(res.error, clientId).toBe('invalid_client');
      expect(res.description, clientId).toMatch(message);
      expect(res.description.length).toBeLessThan(500);
    }
    expect([...docs.hits.values()].reduce((a, b) => a + b, 0)).toBe(0);
  });

  it('the default configuration requires https and refuses loopback and private addresses (SSRF), also behind a host name', async () => {
    const { server, docs } = await setup({});
    const port = new URL(docs.url).port;
    expect((await authorizeError(server, `${docs.url}/client.json`)).description).toMatch(/must use https/);
    for (const clientId of [`https://127.0.0.1:${port}/client.json`, `https://[::1]:${port}/client.json`, 'https://169.254.169.254/latest/meta-data.json', 'https://10.1.2.3/client.json']) {
      const res = await authorizeError(server, clientId);
      expect(res.error, clientId).toBe('invalid_client');
      expect(res.description, clientId).toMatch(/non-public address, which this server does not fetch from/);
    }
    // A host name is checked after resolution, on the address the connection will use.
    const named = await authorizeError(server, `https://localhost:${port}/client.json`);
    expect(named.description).toMatch(/resolves to a loopback, private or otherwise non-public address/);
    expect([...docs.hits.values()].reduce((a, b) => a + b, 0)).toBe(0);

    // allowHttp alone does not open private networks.
    const httpOnly = await startProtectedServer((await setupIdp()), { clientIdMetadataDocuments: { allowHttp: true } });
    cleanups.push(() => httpOnly.close());
    expect((await authorizeError(httpOnly, `${docs.url}/client.json`)).description).toMatch(/non-public address/);
    expect((await authorizeError(httpOnly, `http://localhost:${port}/client.json`)).description).toMatch(/resolves to a loopback/);
    expect(docs.hitsOf('/client.json')).toBe(0);
  });

  async function setupIdp(): Promise<IdpFixture> {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    return idp;
  }

  it('classifies addresses: public ones pass, loopback, private, link-local, unique-local, CGNAT, mapped and unspecified do not', () => {
    for (const ip of ['93.184.215.14', '8.8.8.8', '2606:4700:4700::1111']) expect(isPublicAddress(ip), ip).toBe(true);
    for (const ip of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::', '::1', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', '64:ff9b:1::a00:1', '2001:0:4136:e378:8000:63bf:3fff:fdd2', 'fec0::1', 'not-an-ip']) {
      expect(isPublicAddress(ip), ip).toBe(false);
    }
  });

  it('the vetted lookup connects to addresses it allows, and refuses a name with any address it does not', async () => {
    const docs = await startDocumentServer();
    cleanups.push(() => docs.close());
    const port = new URL(docs.url).port;
    const get = async (lookup: ReturnType<typeof createVettedLookup>): Promise<number> => {
      const agent = new Agent({ connect: { lookup } });
      try {
        const res = await request(`http://localhost:${port}/client.json`, { dispatcher: agent });
        await res.body.text();
        return res.statusCode;
      } finally {
        await agent.close();
      }
    };
    expect(await get(createVettedLookup((address) => address === '127.0.0.1' || address === '::1'))).toBe(200);
    await expect(get(createVettedLookup())).rejects.toThrow();
    await expect(get(createVettedLookup((address) => address === '::1'))).rejects.toThrow(); // localhost's 127.0.0.1 is not allowed
    expect(docs.hitsOf('/client.json')).toBe(1);
  });

  it('fetches at most 8 documents at once; the next request gets temporarily_unavailable', async () => {
    // The documents never answer in time (3 s against 2 s): the first 8 are still being fetched when the 9th arrives.
    const { server, docs } = await setup({ clientIdMetadataDocuments: { ...LOCAL, fetchTimeoutMs: 2_000 } });
    const results = await Promise.all(Array.from({ length: 9 }, (_v, i) => authorizeError(server, `${docs.url}/slow-${i}.json`)));
    expect(results.filter((r) => r.error === 'temporarily_unavailable')).toHaveLength(1);
    expect(results.filter((r) => r.error === 'invalid_client' && /did not answer within 2000 ms/.test(r.description))).toHaveLength(8);
  });

  it('turned off: a URL client_id is refused, nothing is fetched, and the metadata does not advertise it', async () => {
    const { server, docs } = await setup({ clientIdMetadataDocuments: false });
    const res = await authorizeError(server, `${docs.url}/client.json`);
    expect(res).toMatchObject({ status: 400, error: 'invalid_client' });
    expect(res.description).toMatch(/Client ID Metadata Documents are turned off\); register the client at the registration endpoint/);
    const meta = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    expect(meta.client_id_metadata_document_supported).toBeUndefined();
    expect(docs.hitsOf('/client.json')).toBe(0);
    // The token endpoint refuses it the same way.
    const token = await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code: 'x', code_verifier: 'y', client_id: `${docs.url}/client.json` });
    expect(token.body.error).toBe('invalid_client');
  });

  it('caches: two authorizations cost one fetch; a failing URL flooded 30 times (at once and in turn) costs one fetch', async () => {
    const { server, docs } = await setup();
    for (let i = 0; i < 2; i++) {
      const res = await fetch(authorizeRequest(server, `${docs.url}/cached.json`).url, { redirect: 'manual' });
      expect(res.status).toBe(200); // the consent page
      await res.body?.cancel();
    }
    expect(docs.hitsOf('/cached.json')).toBe(1);

    const flood = await Promise.all(Array.from({ length: 20 }, () => authorizeError(server, `${docs.url}/mismatch.json`)));
    for (let i = 0; i < 10; i++) flood.push(await authorizeError(server, `${docs.url}/mismatch.json`));
    expect(flood.every((r) => r.error === 'invalid_client')).toBe(true);
    expect(docs.hitsOf('/mismatch.json')).toBe(1);
    // A slow URL flooded at once is one fetch too (the requests wait on the same one).
    const slowServer = await startProtectedServer(await setupIdp(), { clientIdMetadataDocuments: { ...LOCAL, fetchTimeoutMs: 300 } });
    cleanups.push(() => slowServer.close());
    await Promise.all(Array.from({ length: 10 }, () => authorizeError(slowServer, `${docs.url}/slow.json`)));
    expect(docs.hitsOf('/slow.json')).toBe(1);
  });

  it('a registered (DCR) client is unaffected, and registration never yields a URL client_id', async () => {
    const { server } = await setup();
    const res = await fetch(`${server.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: 'https://evil.example/client.json', client_name: 'x', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' }),
    });
    expect(res.status).toBe(201);
    const registered = (await res.json()) as { client_id: string };
    expect(registered.client_id).not.toMatch(/^https?:/);
    const { back } = await browse(authorizeRequest(server, registered.client_id).url);
    expect(back.searchParams.get('code')).toBeTruthy();
  });
});

describe('OAuth config: clientIdMetadataDocuments', () => {
  const fail = (raw: unknown): string => {
    try {
      parseOAuthConfig(raw, 'oauth', {});
    } catch (err) {
      expect(isCodemodeError(err, 'INVALID_CONFIG')).toBe(true);
      return (err as Error).message;
    }
    throw new Error('expected a config error');
  };
  const upstream = { type: 'github', clientId: 'Iv1' };

  it('accepts true, false and the options object, and names what is wrong otherwise', () => {
    expect(parseOAuthConfig({ upstream, clientIdMetadataDocuments: false }, 'oauth', {}).clientIdMetadataDocuments).toBe(false);
    expect(parseOAuthConfig({ upstream, clientIdMetadataDocuments: true }, 'oauth', {}).clientIdMetadataDocuments).toBe(true);
    expect(parseOAuthConfig({ upstream, clientIdMetadataDocuments: { allowPrivateNetworks: true, allowHttp: true, fetchTimeoutMs: 2000 } }, 'oauth', {}).clientIdMetadataDocuments).toEqual({
      allowPrivateNetworks: true,
      allowHttp: true,
      fetchTimeoutMs: 2000,
    });
    expect(fail({ upstream, clientIdMetadataDocuments: 'yes' })).toContain('oauth.clientIdMetadataDocuments: must be true, false, or an object with allowPrivateNetworks, allowHttp and fetchTimeoutMs');
    expect(fail({ upstream, clientIdMetadataDocuments: { allowPrivateNetwork: true } })).toMatch(/oauth\.clientIdMetadataDocuments: Unrecognized key: "allowPrivateNetwork"/);
    expect(fail({ upstream, clientIdMetadataDocuments: { fetchTimeoutMs: 120_000 } })).toContain('oauth.clientIdMetadataDocuments.fetchTimeoutMs: must be at most 60000');
  });

  it('reaches the proxy built from the config: false takes the flag out of the metadata', async () => {
    for (const [setting, advertised] of [[undefined, true], [false, undefined], [{ allowHttp: true }, true]] as const) {
      const proxy = await createOAuthProxyFromConfig(
        parseOAuthConfig({ upstream, signingKey: SIGNING_KEY, ...(setting !== undefined && { clientIdMetadataDocuments: setting }) }, 'oauth', {}),
        { serverUrl: 'http://127.0.0.1:4000', mcpPath: '/mcp' },
      );
      try {
        const app = express();
        app.use(proxy.router);
        const server = app.listen(0, '127.0.0.1');
        await new Promise<void>((resolve) => server.once('listening', () => resolve()));
        try {
          const port = (server.address() as AddressInfo).port;
          const meta = (await (await fetch(`http://127.0.0.1:${port}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
          expect(meta.client_id_metadata_document_supported, JSON.stringify(setting)).toBe(advertised);
          expect(meta.authorization_response_iss_parameter_supported).toBe(true);
        } finally {
          server.closeAllConnections();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        }
      } finally {
        await proxy.close();
      }
    }
  });
});
