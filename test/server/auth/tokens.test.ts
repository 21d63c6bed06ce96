import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { SignJWT, UnsecuredJWT, decodeJwt } from 'jose';
import { setLogLevel, setLogSink } from '../../../src/log.js';
import { isCodemodeError } from '../../../src/errors.js';
import { MemoryOAuthStorage, createOAuthProxy } from '../../../src/server/auth/index.js';
import { startIdp } from '../../fixtures/idp-server.js';
import type { IdpFixture } from '../../fixtures/idp-server.js';
import { SIGNING_KEY, TestOAuthProvider, connectWithLogin, sleep, startProtectedServer, whoami } from './harness.js';
import type { ProtectedServer } from './harness.js';

const secret = new TextEncoder().encode(SIGNING_KEY);

async function ping(server: ProtectedServer, token: string): Promise<{ status: number; challenge: string; body: string }> {
  const res = await fetch(server.mcpUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '', body: await res.text() };
}

describe('OAuth proxy: codemode JWT verification', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function loggedIn(overrides: Parameters<typeof startProtectedServer>[1] = {}): Promise<{ idp: IdpFixture; server: ProtectedServer; provider: TestOAuthProvider; token: string }> {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    const server = await startProtectedServer(idp, overrides);
    cleanups.push(() => server.close());
    const provider = new TestOAuthProvider();
    const client = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => client.close());
    return { idp, server, provider, token: provider.tokens()!.access_token };
  }

  /** Re-signs the real token's claims with changes, using the real key: only the changed claim is wrong. */
  async function forge(token: string, change: Record<string, unknown>, key: Uint8Array = secret, alg = 'HS256'): Promise<string> {
    const claims = { ...decodeJwt(token), ...change };
    return new SignJWT(claims).setProtectedHeader({ alg, typ: 'at+jwt' }).sign(key);
  }

  it('accepts the genuine token and rejects tampered, foreign-key, unsigned, expired, wrong-audience, wrong-issuer and unknown-jti tokens', async () => {
    const { server, token } = await loggedIn();
    expect((await ping(server, token)).status).toBe(200);
    // Sanity: re-signing unchanged claims with the right key is accepted, so each rejection below is due to its one change.
    expect((await ping(server, await forge(token, {}))).status).toBe(200);

    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const tamperedPayload = Buffer.from(JSON.stringify({ ...claims, sub: 'admin' })).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const cases: Record<string, string> = {
      tampered: `${header}.${tamperedPayload}.${signature}`,
      'flipped signature': `${header}.${payload}.${signature.slice(0, -4)}${signature.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`,
      'foreign key': await forge(token, {}, new TextEncoder().encode('another-key-0123456789abcdef0123456789abcdef')),
      'alg none': new UnsecuredJWT(claims).encode(),
      expired: await forge(token, { iat: now - 120, exp: now - 60 }),
      'wrong audience': await forge(token, { aud: 'http://127.0.0.1:1/mcp' }),
      'wrong issuer': await forge(token, { iss: 'http://evil.example/' }),
      'unknown jti': await forge(token, { jti: 'not-a-real-session' }),
      garbage: 'not-a-jwt',
    };
    for (const [name, forged] of Object.entries(cases)) {
      const res = await ping(server, forged);
      expect(res.status, name).toBe(401);
      expect(res.challenge, name).toContain('error="invalid_token"');
      expect(res.challenge, name).toContain('resource_metadata=');
      expect(res.body, name).not.toContain(forged);
    }
    const expired = await ping(server, cases.expired!);
    expect(expired.challenge).toMatch(/expired/i);
    const audience = await ping(server, cases['wrong audience']!);
    expect(audience.challenge).toMatch(/aud/);
  });

  it('pins the algorithm: with an ES256 key, an HS256 token keyed with the public key is refused', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const { server, token } = await loggedIn({ signingKey: pem });
    expect(decodeJwt(token).iss).toBeDefined();
    expect(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).alg).toBe('ES256');
    expect((await ping(server, token)).status).toBe(200);
    const publicPem = new TextEncoder().encode(publicKey.export({ format: 'pem', type: 'spki' }).toString());
    expect((await ping(server, await forge(token, {}, publicPem, 'HS256'))).status).toBe(401);
  });

  it('the client refreshes an expired codemode token with its refresh token, without a new login', async () => {
    const { server, provider } = await loggedIn({ accessTokenExpirySeconds: 1 });
    const client = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => client.close());
    const first = provider.tokens()!;
    await sleep(2_100);
    expect((await ping(server, first.access_token)).status).toBe(401);
    expect((await whoami(client)).status).toBe(200);
    const second = provider.tokens()!;
    expect(second.access_token).not.toBe(first.access_token);
    expect(second.refresh_token).not.toBe(first.refresh_token); // rotated
    expect(provider.logins).toBe(1);
  });

  it('revocation: a revoked access token is refused; revoking the refresh token ends the session', async () => {
    const { server, provider, token } = await loggedIn();
    const info = provider.clientInformation()!;
    const revoke = (t: string): Promise<Response> =>
      fetch(`${server.url}/revoke`, { method: 'POST', body: new URLSearchParams({ token: t, client_id: info.client_id }) });
    expect((await revoke(token)).status).toBe(200);
    expect((await ping(server, token)).status).toBe(401);

    const fresh = await fetch(`${server.url}/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: provider.tokens()!.refresh_token!, client_id: info.client_id }),
    });
    expect(fresh.status).toBe(200);
    const tokens = (await fresh.json()) as { access_token: string; refresh_token: string };
    expect((await ping(server, tokens.access_token)).status).toBe(200);
    expect((await revoke(tokens.refresh_token)).status).toBe(200);
    expect((await ping(server, tokens.access_token)).status).toBe(401);
  });

  it('never logs tokens (login, refresh, rejection, revoked upstream)', async () => {
    const lines: string[] = [];
    const restore = setLogSink((line) => lines.push(line));
    setLogLevel('debug');
    cleanups.push(async () => {
      restore();
      setLogLevel('info');
    });
    const idp = await startIdp({ accessTokenTtlSeconds: 1, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    const server = await startProtectedServer(idp);
    cleanups.push(() => server.close());
    const provider = new TestOAuthProvider();
    const client = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => client.close());
    const seen: string[] = [provider.tokens()!.access_token, provider.tokens()!.refresh_token!];
    await sleep(1_200);
    expect((await whoami(client)).status).toBe(200); // refresh, logged at debug
    idp.revokeRefreshTokens();
    await sleep(1_200);
    await ping(server, seen[0]!); // refused refresh, logged at warn
    const text = lines.join('');
    expect(text).toContain('refresh');
    for (const secretValue of [...seen, 'idp-at-', 'idp-rt-', SIGNING_KEY]) expect(text).not.toContain(secretValue);
  });

  it('key rotation: with the old key in previousSigningKeys, old tokens and stored records stay valid; new tokens use the new key', async () => {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    const storage = new MemoryOAuthStorage();
    cleanups.push(() => storage.close());
    const oldServer = await startProtectedServer(idp, { storage, consent: false });
    cleanups.push(() => oldServer.close());
    const provider = new TestOAuthProvider();
    const client = await connectWithLogin(oldServer.mcpUrl, provider);
    cleanups.push(() => client.close());
    const oldToken = provider.tokens()!.access_token;
    const newKey = 'rotated-signing-key-abcdefghijklmnopqrstuvwxyz012345';
    const rotated = await startProtectedServer(idp, { storage, consent: false, publicUrl: oldServer.url, signingKey: newKey, previousSigningKeys: [SIGNING_KEY] });
    cleanups.push(() => rotated.close());
    const newOnly = await startProtectedServer(idp, { storage, consent: false, publicUrl: oldServer.url, signingKey: newKey });
    cleanups.push(() => newOnly.close());

    expect((await rotated.proxy.verifyAccessToken(oldToken)).extra?.subject).toBe('user-42');
    await expect(newOnly.proxy.verifyAccessToken(oldToken)).rejects.toThrow(/signature/);
    // The rotated instance reads the client and refresh records sealed under the old key, and signs with the new one.
    const res = await fetch(`${rotated.url}/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: provider.tokens()!.refresh_token!, client_id: provider.clientInformation()!.client_id }),
    });
    expect(res.status).toBe(200);
    const fresh = ((await res.json()) as { access_token: string }).access_token;
    expect((await newOnly.proxy.verifyAccessToken(fresh)).extra?.subject).toBe('user-42');
    await expect(oldServer.proxy.verifyAccessToken(fresh)).rejects.toThrow(/signature/);
  });

  it('refuses to start without a signing key, and with a short one; there is no default', () => {
    const saved = process.env.CODEMODE_OAUTH_SIGNING_KEY;
    delete process.env.CODEMODE_OAUTH_SIGNING_KEY;
    try {
      const base = { issuerUrl: 'http://127.0.0.1:1', resourceUrl: 'http://127.0.0.1:1/mcp', upstream: { type: 'oidc' as const, issuer: 'http://127.0.0.1:2', clientId: 'x' } };
      expect(() => createOAuthProxy(base)).toThrow(/signing key/);
      try {
        createOAuthProxy({ ...base, signingKey: 'short' });
        expect.unreachable();
      } catch (err) {
        expect(isCodemodeError(err, 'INVALID_CONFIG')).toBe(true);
      }
      expect(() => createOAuthProxy({ ...base, signingKey: SIGNING_KEY, issuerUrl: 'http://0.0.0.0:8080' })).toThrow(/oauth\.issuerUrl to the public https/);
      process.env.CODEMODE_OAUTH_SIGNING_KEY = SIGNING_KEY;
      const proxy = createOAuthProxy(base);
      void proxy.close();
    } finally {
      if (saved === undefined) delete process.env.CODEMODE_OAUTH_SIGNING_KEY;
      else process.env.CODEMODE_OAUTH_SIGNING_KEY = saved;
    }
  });
});
