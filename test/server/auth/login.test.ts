import { afterEach, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { startIdp } from '../../fixtures/idp-server.js';
import type { IdpFixture } from '../../fixtures/idp-server.js';
import { TestOAuthProvider, connectWithLogin, sleep, startProtectedServer, whoami } from './harness.js';
import type { ProtectedServer } from './harness.js';

describe('OAuth proxy: login and sessions that survive idle time', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  async function setup(idpOptions: Parameters<typeof startIdp>[0], proxy: Parameters<typeof startProtectedServer>[1] = {}): Promise<{ idp: IdpFixture; server: ProtectedServer }> {
    const idp = await startIdp(idpOptions);
    cleanups.push(() => idp.close());
    const server = await startProtectedServer(idp, proxy);
    cleanups.push(() => server.close());
    return { idp, server };
  }

  async function login(server: ProtectedServer, provider = new TestOAuthProvider()): Promise<{ client: Client; provider: TestOAuthProvider }> {
    const client = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => client.close());
    return { client, provider };
  }

  it('logs in through the SDK client (DCR, PKCE, upstream delegation) and serves a protected MCP endpoint', async () => {
    const { idp, server } = await setup({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    const { client, provider } = await login(server);
    expect(provider.logins).toBe(1);
    expect(idp.counts.logins).toBe(1);
    const me = await whoami(client);
    expect(me.status).toBe(200);
    expect(me.body.sub).toBe('user-42');
    expect(me.subject).toBe('user-42');

    // The client holds a codemode JWT, never the upstream token.
    const tokens = provider.tokens()!;
    expect(tokens.access_token).not.toMatch(/^idp-/);
    expect(tokens.refresh_token).toBeDefined();
    const claims = decodeJwt(tokens.access_token);
    expect(claims.iss).toBe(`${server.url}/`);
    expect(claims.aud).toBe(server.mcpUrl);
    expect(claims.sub).toBe('user-42');
    expect(typeof claims.jti).toBe('string');
    // accessTokenExpirySeconds (default 3600) is independent of the upstream's 30 s.
    expect(tokens.expires_in).toBe(3600);
  });

  it('keeps a session idle past the upstream lifetime working without a new login', async () => {
    const { idp, server } = await setup({ accessTokenTtlSeconds: 2, issueRefreshTokens: true }, { accessTokenExpirySeconds: 60 });
    const { client, provider } = await login(server);
    expect((await whoami(client)).status).toBe(200);
    const firstToken = provider.tokens()!.access_token;
    const base = idp.counts.refreshes; // 0 unless a loaded machine took over 2 s to log in

    await sleep(2_600); // idle well past the upstream token's 2 s
    const me = await whoami(client);
    expect(me.status).toBe(200); // the tool's upstream call worked: the proxy refreshed the upstream token
    expect(idp.counts.refreshes).toBe(base + 1);
    expect(provider.logins).toBe(1);
    expect(provider.tokens()!.access_token).toBe(firstToken); // the client did not even need to refresh

    await sleep(2_600);
    expect((await whoami(client)).status).toBe(200);
    expect(idp.counts.refreshes).toBe(base + 2);
    expect(provider.logins).toBe(1);
  });

  it('caps the codemode token at the upstream lifetime when the IdP gives no refresh token', async () => {
    const { idp, server } = await setup({ accessTokenTtlSeconds: 3, issueRefreshTokens: false }, { accessTokenExpirySeconds: 3600 });
    const { client, provider } = await login(server);
    const tokens = provider.tokens()!;
    expect(tokens.expires_in).toBeLessThanOrEqual(3);
    expect(tokens.expires_in).toBeGreaterThan(0);
    expect(tokens.refresh_token).toBeUndefined();
    const claims = decodeJwt(tokens.access_token);
    expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(3);
    expect((await whoami(client)).status).toBe(200);

    await sleep(3_300);
    // The token expired with the upstream one; the SDK client is sent to a new login.
    const res = await fetch(server.mcpUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('resource_metadata=');
    await expect(whoami(client)).rejects.toThrow();
    expect(provider.logins).toBe(2);
    expect(idp.counts.refreshes).toBe(0);
  });

  it('refreshes early inside tokenExpiryThresholdSeconds, while the upstream token is still valid', async () => {
    const { idp, server } = await setup({ accessTokenTtlSeconds: 6, issueRefreshTokens: true }, { tokenExpiryThresholdSeconds: 4 });
    const { client } = await login(server);
    const refreshesAfterLogin = idp.counts.refreshes;
    await sleep(2_300); // 6 s token, > 2 s old: inside the 4 s threshold, not yet expired
    expect((await whoami(client)).status).toBe(200);
    expect(idp.counts.refreshes).toBe(refreshesAfterLogin + 1);
    // The fresh token is outside the threshold again: no further refresh right away.
    expect((await whoami(client)).status).toBe(200);
    expect(idp.counts.refreshes).toBe(refreshesAfterLogin + 1);
  });

  it('does not refresh early with the default threshold of 0', async () => {
    const { idp, server } = await setup({ accessTokenTtlSeconds: 6, issueRefreshTokens: true });
    const { client } = await login(server);
    await sleep(2_300);
    expect((await whoami(client)).status).toBe(200);
    expect(idp.counts.refreshes).toBe(0);
  });

  it('refreshes exactly once when many requests arrive with an expired upstream token', async () => {
    const { idp, server } = await setup({ accessTokenTtlSeconds: 2, issueRefreshTokens: true, refreshDelayMs: 200 });
    const { client } = await login(server);
    const base = idp.counts.refreshes;
    await sleep(2_300);
    const results = await Promise.all(Array.from({ length: 12 }, () => whoami(client)));
    expect(results.map((r) => r.status)).toEqual(Array.from({ length: 12 }, () => 200));
    expect(idp.counts.refreshes).toBe(base + 1);
    expect(idp.counts.refusedRefreshes).toBe(0);
  });

  it('with upstreamValidationIntervalSeconds, an upstream token revoked before expiry is noticed and refreshed; a revoked grant ends in 401', async () => {
    const { idp, server } = await setup({ accessTokenTtlSeconds: 60, issueRefreshTokens: true }, { upstreamValidationIntervalSeconds: 1 });
    const { client, provider } = await login(server);
    expect((await whoami(client)).status).toBe(200);
    const checksAfterFirst = idp.counts.userinfo;
    expect((await whoami(client)).status).toBe(200);
    expect(idp.counts.userinfo).toBe(checksAfterFirst + 1); // only the tool's call: the proxy's check is cached for 1 s

    idp.revokeAccessTokens(); // still 60 s before expiry: only asking the IdP reveals it
    await sleep(1_100);
    expect((await whoami(client)).status).toBe(200);
    expect(idp.counts.refreshes).toBe(1);

    idp.revokeAccessTokens();
    idp.revokeRefreshTokens();
    await sleep(1_100);
    await expect(whoami(client)).rejects.toThrow();
    expect(provider.logins).toBe(2);
  });

  it('without upstream validation, a revoked-but-unexpired upstream token is passed through as is', async () => {
    const { idp, server } = await setup({ accessTokenTtlSeconds: 60, issueRefreshTokens: true });
    const { client } = await login(server);
    idp.revokeAccessTokens();
    expect((await whoami(client)).status).toBe(401); // the tool's own upstream call is refused
    expect(idp.counts.refreshes).toBe(0);
  });

  it('answers 401 and prompts a new login when the upstream refresh token was revoked', async () => {
    const { idp, server } = await setup({ accessTokenTtlSeconds: 2, issueRefreshTokens: true });
    const { client, provider } = await login(server);
    const oldToken = provider.tokens()!.access_token;
    idp.revokeRefreshTokens();
    await sleep(2_300);

    const res = await fetch(server.mcpUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${oldToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    expect(res.status).toBe(401);
    const challenge = res.headers.get('www-authenticate') ?? '';
    expect(challenge).toContain('error="invalid_token"');
    expect(challenge).toContain(`resource_metadata="${server.url}/.well-known/oauth-protected-resource/mcp"`);
    expect(idp.counts.refusedRefreshes).toBe(1);

    // The SDK client gets 401, tries its codemode refresh token (refused: the upstream session is gone), then asks for a login.
    await expect(whoami(client)).rejects.toThrow();
    expect(provider.logins).toBe(2);

    // Completing that new login restores access.
    const again = await connectWithLogin(server.mcpUrl, provider);
    cleanups.push(() => again.close());
    expect((await whoami(again)).status).toBe(200);
  });
});
