/**
 * Two real `codemode serve --http --stateless` processes with an `oauth` config section, sharing one
 * Redis, behind a round-robin load balancer: the SDK client logs in across both, each accepts the
 * other's tokens, and after idling past the upstream lifetime a burst refreshes upstream exactly once.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startIdp } from '../../fixtures/idp-server.js';
import { SERVICES, skipWithout } from '../../setup/services.js';
import { SIGNING_KEY, TestOAuthProvider, connectWithLogin, sleep, spawnServe, startLoadBalancer, startRedis, stopServe } from './harness.js';
import type { ServeProcess } from './harness.js';

let redis: { url: string; close(): Promise<void> } | undefined;
const noRedis = skipWithout(SERVICES.redis);
beforeAll(async () => {
  if (!noRedis) redis = await startRedis();
});
afterAll(async () => {
  await redis?.close();
});

describe.skipIf(noRedis)('codemode serve --http: two instances with OAuth on one Redis', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('login spans both processes, each accepts the other’s tokens, and idle sessions refresh once', async () => {
    const idp = await startIdp({ accessTokenTtlSeconds: 2, issueRefreshTokens: true, refreshDelayMs: 150 });
    cleanups.push(() => idp.close());
    const lb = await startLoadBalancer();
    cleanups.push(() => lb.close());
    const dir = mkdtempSync(join(tmpdir(), 'codemode-serve-oauth-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, 'codemode.json');
    writeFileSync(
      config,
      JSON.stringify({
        mcpServers: {},
        oauth: {
          issuerUrl: lb.url,
          upstream: { type: 'oidc', issuer: idp.url, clientId: idp.clientId, clientSecret: '${IDP_CLIENT_SECRET}' },
          storage: { type: 'redis', url: redis!.url, keyPrefix: 'serve-e2e:' },
          consent: false,
        },
      }),
    );
    const env = { ...process.env, CODEMODE_OAUTH_SIGNING_KEY: SIGNING_KEY, IDP_CLIENT_SECRET: idp.clientSecret, CODEMODE_LOG_LEVEL: 'warn' };
    const instances: ServeProcess[] = [];
    for (let i = 0; i < 2; i++) {
      const p = await spawnServe(['--stateless', '--port', '0', '--config', config], env);
      cleanups.push(() => stopServe(p));
      instances.push(p);
      lb.backends.push(p.url);
    }

    const provider = new TestOAuthProvider();
    const client = await connectWithLogin(`${lb.url}/mcp`, provider);
    cleanups.push(() => client.close());
    expect(provider.logins).toBe(1);
    expect(lb.hits[0]).toBeGreaterThan(2);
    expect(lb.hits[1]).toBeGreaterThan(2);
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name)).toContain('execute');

    // The token works against each process directly; a missing or forged one does not.
    const token = provider.tokens()!.access_token;
    const list = (url: string, bearer: string): Promise<Response> =>
      fetch(`${url}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
    for (const p of instances) {
      const ok = await list(p.url, token);
      expect(ok.status).toBe(200);
      await ok.body?.cancel();
      const bad = await list(p.url, `${token.slice(0, -2)}xx`);
      expect(bad.status).toBe(401);
      expect(bad.headers.get('www-authenticate')).toContain(`resource_metadata="${lb.url}/.well-known/oauth-protected-resource/mcp"`);
    }

    // Idle past the upstream lifetime; then a burst spread over both processes refreshes upstream once.
    const base = idp.counts.refreshes; // 0 unless a loaded machine took over 2 s to log in
    await sleep(2_400);
    const burst = await Promise.all(Array.from({ length: 8 }, () => client.listTools()));
    expect(burst.every((r) => r.tools.length > 0)).toBe(true);
    expect(idp.counts.refreshes).toBe(base + 1);
    expect(idp.counts.refusedRefreshes).toBe(0);
    for (let i = 0; i < 4; i++) await client.listTools();
    expect(idp.counts.refreshes).toBe(base + 1);
    expect(provider.logins).toBe(1);
    for (const p of instances) expect(p.stderr()).not.toContain(token);
  });
});
