/**
 * codemode-remote's SEP-990 cross_app_access grant against a small enterprise IdP and MCP
 * authorization server of our own on 127.0.0.1 (guarding the real MCP upstream fixture): RFC 8693
 * token exchange at the IdP (ID token -> ID-JAG, both signed and verified with jose), RFC 7523 JWT
 * bearer grant at the AS with form-urlencoded client_secret_basic, re-running the exchange before
 * the access token expires (there is no refresh token), an @file ID token re-read at each exchange,
 * and errors naming the failed step. Needs the built bridge (`npm run build`).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CryptoKey } from 'jose';
import { SignJWT, decodeJwt, decodeProtectedHeader, generateKeyPair, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import type { BridgeHost } from '../fixtures/bridge-host.js';
import { spawnBridge } from '../fixtures/bridge-host.js';
import type { UpstreamFixture } from '../fixtures/bridge-upstream.js';
import { startUpstream } from '../fixtures/bridge-upstream.js';

const CLIENT_ID = 'mcp client/1';
const CLIENT_SECRET = 's3:cr%t é+';
const IDP_AUDIENCE = 'idp-app';

interface XaaFixture {
  url: string;
  idpTokenUrl: string;
  issuer: string;
  /** Signs an ID token for `sub` as the IdP would hand it to the user's app. */
  idToken(sub: string): Promise<string>;
  stats: { exchanges: number; grants: number; unauthorized: number; subjects: string[]; grantScopes: string[]; exchangeResources: string[] };
  accessTtlS: number;
  /** When set, the IdP refuses every exchange with this error. */
  idpRefuses: { error: string; error_description: string } | undefined;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<URLSearchParams> {
  let text = '';
  req.setEncoding('utf8');
  for await (const chunk of req) text += chunk as string;
  return new URLSearchParams(text);
}

function send(res: ServerResponse, status: number, payload: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(payload));
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Promise<{ server: Server; base: string }> {
  const server = createServer((req, res) => {
    handler(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { error: 'server_error', error_description: String(err) });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function startXaa(): Promise<XaaFixture> {
  const upstream: UpstreamFixture = await startUpstream();
  const idpKeys = await generateKeyPair('ES256');
  const jagKeys = await generateKeyPair('ES256');
  const access = new Map<string, number>();
  const fixture: XaaFixture = {
    url: upstream.url,
    idpTokenUrl: '',
    issuer: '',
    idToken: (sub) => new SignJWT({ sub }).setProtectedHeader({ alg: 'ES256' }).setIssuer(idp.base).setAudience(IDP_AUDIENCE).setIssuedAt().setExpirationTime('1h').sign(idpKeys.privateKey as CryptoKey),
    stats: { exchanges: 0, grants: 0, unauthorized: 0, subjects: [], grantScopes: [], exchangeResources: [] },
    accessTtlS: 3600,
    idpRefuses: undefined,
    async close() {
      for (const s of [idp.server, as.server]) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
      await upstream.close();
    },
  };

  const idp = await listen(async (req, res) => {
    if (req.method !== 'POST' || req.url !== '/token') return send(res, 404, { error: 'not_found' });
    const p = await body(req);
    if (fixture.idpRefuses !== undefined) return send(res, 400, fixture.idpRefuses);
    if (p.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange') return send(res, 400, { error: 'unsupported_grant_type' });
    if (p.get('subject_token_type') !== 'urn:ietf:params:oauth:token-type:id_token' || p.get('requested_token_type') !== 'urn:ietf:params:oauth:token-type:id-jag') {
      return send(res, 400, { error: 'invalid_request', error_description: 'wrong token types' });
    }
    if (p.get('audience') !== as.base || p.get('resource') === null) return send(res, 400, { error: 'invalid_target', error_description: `audience ${p.get('audience')}` });
    let sub: string;
    try {
      sub = String((await jwtVerify(p.get('subject_token') ?? '', idpKeys.publicKey, { issuer: idp.base, audience: IDP_AUDIENCE })).payload.sub);
    } catch {
      return send(res, 400, { error: 'invalid_grant', error_description: 'ID token invalid' });
    }
    fixture.stats.exchanges++;
    fixture.stats.subjects.push(sub);
    fixture.stats.exchangeResources.push(p.get('resource') ?? '');
    const jag = await new SignJWT({ sub, client_id: CLIENT_ID, resource: p.get('resource') })
      .setProtectedHeader({ alg: 'ES256', typ: 'oauth-id-jag+jwt' })
      .setIssuer(idp.base)
      .setAudience(p.get('audience') ?? '')
      .setIssuedAt()
      .setExpirationTime('5m')
      .setJti(randomBytes(8).toString('hex'))
      .sign(jagKeys.privateKey as CryptoKey);
    send(res, 200, { access_token: jag, issued_token_type: 'urn:ietf:params:oauth:token-type:id-jag', token_type: 'N_A' });
  });

  const as = await listen(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'GET' && path.startsWith('/.well-known/oauth-protected-resource')) {
      return send(res, 200, { resource: upstream.url, authorization_servers: [as.base] });
    }
    if (req.method === 'GET' && path === '/.well-known/oauth-authorization-server') {
      return send(res, 200, {
        issuer: as.base,
        // The SDK's metadata schema requires one, though this grant never uses it.
        authorization_endpoint: `${as.base}/authorize`,
        token_endpoint: `${as.base}/token`,
        response_types_supported: ['code'],
        grant_types_supported: ['urn:ietf:params:oauth:grant-type:jwt-bearer'],
        token_endpoint_auth_methods_supported: ['client_secret_basic'],
      });
    }
    if (req.method === 'POST' && path === '/token') {
      const p = await body(req);
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const decoded = basic === undefined ? '' : Buffer.from(basic, 'base64').toString('utf8');
      const [id, secret] = decoded.split(':').map((s) => decodeURIComponent(s.replace(/\+/g, ' ')));
      if (id !== CLIENT_ID || secret !== CLIENT_SECRET) return send(res, 401, { error: 'invalid_client', error_description: 'bad client credentials' });
      if (p.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return send(res, 400, { error: 'unsupported_grant_type' });
      const assertion = p.get('assertion') ?? '';
      try {
        if (decodeProtectedHeader(assertion).typ !== 'oauth-id-jag+jwt') throw new Error('typ');
        await jwtVerify(assertion, jagKeys.publicKey, { audience: as.base, issuer: idp.base });
        const claims = decodeJwt(assertion);
        if (claims.client_id !== CLIENT_ID || claims.resource !== upstream.url) throw new Error('claims');
      } catch {
        return send(res, 400, { error: 'invalid_grant', error_description: 'bad ID-JAG' });
      }
      fixture.stats.grants++;
      fixture.stats.grantScopes.push(p.get('scope') ?? '');
      const token = randomBytes(16).toString('base64url');
      access.set(token, Date.now() + fixture.accessTtlS * 1000);
      return send(res, 200, { access_token: token, token_type: 'Bearer', expires_in: fixture.accessTtlS });
    }
    send(res, 404, { error: 'not_found' });
  });

  upstream.gate = (req, res) => {
    const token = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const exp = token === undefined ? undefined : access.get(token);
    if (exp !== undefined && exp > Date.now()) return true;
    fixture.stats.unauthorized++;
    res
      .writeHead(401, { 'www-authenticate': `Bearer error="invalid_token", resource_metadata="${as.base}/.well-known/oauth-protected-resource/mcp"`, 'content-type': 'application/json' })
      .end(JSON.stringify({ error: 'invalid_token' }));
    return false;
  };
  fixture.idpTokenUrl = `${idp.base}/token`;
  fixture.issuer = as.base;
  return fixture;
}

const hosts: BridgeHost[] = [];
const fixtures: XaaFixture[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const h of hosts.splice(0)) h.kill();
  await Promise.all(fixtures.splice(0).map((f) => f.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function setup(): Promise<{ f: XaaFixture; dir: string }> {
  const f = await startXaa();
  fixtures.push(f);
  const dir = mkdtempSync(join(tmpdir(), 'cm-remote-xaa-'));
  dirs.push(dir);
  return { f, dir };
}

function bridge(f: XaaFixture, dir: string, idToken: string, extra: string[] = []): BridgeHost {
  const h = spawnBridge(
    [
      f.url,
      '--oauth-grant',
      'cross_app_access',
      '--idp-token-url',
      f.idpTokenUrl,
      '--id-token',
      idToken,
      '--static-oauth-client-info',
      JSON.stringify({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET }),
      ...extra,
    ],
    { CODEMODE_CONFIG_DIR: dir },
  );
  hosts.push(h);
  return h;
}

async function echo(h: BridgeHost, message: string): Promise<string> {
  const m = await h.request('tools/call', { name: 'echo', arguments: { message } });
  if (m.error !== undefined) throw new Error(`${m.error.message}\n${h.stderr()}`);
  return (m.result?.content as Array<{ text: string }>)[0]!.text;
}

describe('cross_app_access (SEP-990)', () => {
  it('exchanges the ID token at the IdP, then the ID-JAG at the AS, with no browser; the token is stored and reused', async () => {
    const { f, dir } = await setup();
    const h = bridge(f, dir, await f.idToken('alice'), ['--scope', 'mcp:read']);
    const init = await h.initialize();
    expect(init.error, h.stderr()).toBeUndefined();
    expect(await echo(h, 'hi')).toBe('echo: hi');
    expect(f.stats).toMatchObject({ exchanges: 1, grants: 1, subjects: ['alice'], grantScopes: ['mcp:read'], exchangeResources: [f.url] });
    expect(h.stderr()).not.toContain('/authorize');
    await h.endInput();

    const again = bridge(f, dir, await f.idToken('alice'));
    expect((await again.initialize()).error).toBeUndefined();
    expect(await echo(again, 'again')).toBe('echo: again');
    expect(f.stats.exchanges).toBe(1);
  });

  it('re-runs the exchange before the access token expires, re-reading an @file ID token', async () => {
    const { f, dir } = await setup();
    f.accessTtlS = 4;
    const file = join(dir, 'id_token');
    writeFileSync(file, await f.idToken('first'));
    const h = bridge(f, dir, `@${file}`, ['--refresh-threshold', '2']);
    expect((await h.initialize()).error, h.stderr()).toBeUndefined();
    expect(f.stats.exchanges).toBe(1);
    const unauthorizedAfterLogin = f.stats.unauthorized;
    writeFileSync(file, await f.idToken('second'));
    await new Promise((r) => setTimeout(r, 2_500)); // now within the 2 s threshold of the 4 s token
    expect(await echo(h, 'later')).toBe('echo: later');
    expect(f.stats.exchanges, h.stderr()).toBe(2);
    expect(f.stats.grants).toBe(2);
    expect(f.stats.subjects).toEqual(['first', 'second']);
    // Proactive: the old token was never sent and refused.
    expect(f.stats.unauthorized).toBe(unauthorizedAfterLogin);
  });

  it('an IdP refusal fails initialize with the step and the IdP error named', async () => {
    const { f, dir } = await setup();
    f.idpRefuses = { error: 'invalid_grant', error_description: 'ID token expired' };
    const h = bridge(f, dir, await f.idToken('bob'));
    const init = await h.initialize();
    expect(init.error?.message).toMatch(/token exchange at the IdP/);
    expect(init.error?.message).toContain('invalid_grant (ID token expired)');
    expect(f.stats.grants).toBe(0);
  });

  it('a refusal by the MCP authorization server names the JWT bearer step and its error', async () => {
    const { f, dir } = await setup();
    const h = spawnBridge(
      [f.url, '--oauth-grant', 'cross_app_access', '--idp-token-url', f.idpTokenUrl, '--id-token', await f.idToken('carol'), '--static-oauth-client-info', JSON.stringify({ client_id: CLIENT_ID, client_secret: 'wrong' })],
      { CODEMODE_CONFIG_DIR: dir },
    );
    hosts.push(h);
    const init = await h.initialize();
    expect(init.error?.message).toMatch(/JWT bearer grant at the MCP server's authorization server/);
    expect(init.error?.message).toContain('invalid_client');
    expect(f.stats).toMatchObject({ exchanges: 1, grants: 0 });
  });
});
