import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileOAuthStorage, MemoryOAuthStorage, RedisOAuthStorage } from '../../../src/server/auth/index.js';
import type { OAuthStorage } from '../../../src/server/auth/index.js';
import { startIdp } from '../../fixtures/idp-server.js';
import { SERVICES, skipWithout } from '../../setup/services.js';
import { TestOAuthProvider, connectWithLogin, sleep, startLoadBalancer, startProtectedServer, startRedis, whoami } from './harness.js';

let redis: { url: string; close(): Promise<void> } | undefined;
const noRedis = skipWithout(SERVICES.redis);
beforeAll(async () => {
  if (!noRedis) redis = await startRedis();
});
afterAll(async () => {
  await redis?.close();
});

/** Each instance gets its own storage handle (its own Redis connection, or its own view of the directory). */
const storages: Record<string, () => Promise<{ make(): Promise<OAuthStorage>; close(): Promise<void> }>> = {
  redis: async () => {
    const prefix = `mi${Math.random().toString(36).slice(2)}:`;
    return { make: () => RedisOAuthStorage.connect({ url: redis!.url, keyPrefix: prefix }), close: async () => undefined };
  },
  file: async () => {
    const dir = mkdtempSync(join(tmpdir(), 'codemode-oauth-mi-'));
    return { make: async () => new FileOAuthStorage(dir), close: async () => rmSync(dir, { recursive: true, force: true }) };
  },
};

for (const [name, storageFactory] of Object.entries(storages)) {
  describe.skipIf(name === 'redis' && noRedis)(`OAuth proxy: two instances behind a load balancer sharing ${name} storage`, () => {
    const cleanups: Array<() => Promise<void>> = [];
    afterEach(async () => {
      for (const fn of cleanups.splice(0).reverse()) await fn();
    });

    it('login spans both instances; each accepts the other’s tokens and sees the other’s single refresh', async () => {
      const idp = await startIdp({ accessTokenTtlSeconds: 2, issueRefreshTokens: true, refreshDelayMs: 200 });
      cleanups.push(() => idp.close());
      const shared = await storageFactory();
      cleanups.push(() => shared.close());
      const lb = await startLoadBalancer();
      cleanups.push(() => lb.close());
      const instances = [];
      for (let i = 0; i < 2; i++) {
        const storage = await shared.make();
        cleanups.push(() => storage.close());
        const instance = await startProtectedServer(idp, { publicUrl: lb.url, storage });
        cleanups.push(() => instance.close());
        lb.backends.push(instance.url);
        instances.push(instance);
      }

      // Round robin: registration, authorize, the IdP callback, the token exchange and the MCP calls alternate instances.
      const provider = new TestOAuthProvider();
      const client = await connectWithLogin(`${lb.url}/mcp`, provider);
      cleanups.push(() => client.close());
      expect(provider.logins).toBe(1);
      expect(lb.hits[0]).toBeGreaterThan(2);
      expect(lb.hits[1]).toBeGreaterThan(2);

      // The same token works on each instance directly.
      const token = provider.tokens()!.access_token;
      for (const instance of instances) {
        const info = await instance.proxy.verifyAccessToken(token);
        expect(info.extra?.subject).toBe('user-42');
      }

      // Idle past the upstream lifetime, then a burst across both instances: exactly one upstream refresh.
      const base = idp.counts.refreshes; // 0 unless a loaded machine took over 2 s to log in
      await sleep(2_300);
      const burst = await Promise.all(Array.from({ length: 10 }, () => whoami(client)));
      expect(burst.every((r) => r.status === 200)).toBe(true);
      expect(idp.counts.refreshes).toBe(base + 1);
      expect(idp.counts.refusedRefreshes).toBe(0);

      // Both instances now hand out the refreshed upstream token without refreshing again.
      const [a, b] = await Promise.all(instances.map((instance) => instance.proxy.verifyAccessToken(token)));
      expect(a!.extra?.upstreamAccessToken).toBe(b!.extra?.upstreamAccessToken);
      expect(idp.isValidAccessToken(String(a!.extra?.upstreamAccessToken))).toBe(true);
      for (let i = 0; i < 4; i++) expect((await whoami(client)).status).toBe(200);
      expect(idp.counts.refreshes).toBe(base + 1);

      // A refresh done by instance A alone is picked up by instance B.
      await sleep(2_300);
      const refreshedByA = await instances[0]!.proxy.verifyAccessToken(token);
      expect(idp.counts.refreshes).toBe(base + 2);
      const seenByB = await instances[1]!.proxy.verifyAccessToken(token);
      expect(seenByB.extra?.upstreamAccessToken).toBe(refreshedByA.extra?.upstreamAccessToken);
      expect(idp.counts.refreshes).toBe(base + 2);
      expect(provider.logins).toBe(1);
    });
  });
}

describe('OAuth proxy: a refresh that loses a race re-reads storage before giving up', () => {
  it('two instances whose lock lapsed both refresh; the one the IdP refuses picks up the winner’s token instead of a 401', async () => {
    const idp = await startIdp({ accessTokenTtlSeconds: 2, issueRefreshTokens: true, refreshDelayMs: 150 });
    const base = new MemoryOAuthStorage();
    // Every tryLock succeeds: stands for a lease that expired while its holder was still refreshing.
    const lockless: OAuthStorage = {
      get: (k) => base.get(k),
      set: (k, v, ttl) => base.set(k, v, ttl),
      take: (k) => base.take(k),
      delete: (k) => base.delete(k),
      tryLock: async () => async () => undefined,
      close: () => base.close(),
    };
    const a = await startProtectedServer(idp, { storage: lockless, consent: false });
    const b = await startProtectedServer(idp, { storage: lockless, consent: false, publicUrl: a.url });
    try {
      const provider = new TestOAuthProvider();
      const client = await connectWithLogin(a.mcpUrl, provider);
      await client.close();
      const token = provider.tokens()!.access_token;
      const base = idp.counts.refreshes;
      await sleep(2_300);
      const [fromA, fromB] = await Promise.all([a.proxy.verifyAccessToken(token), b.proxy.verifyAccessToken(token)]);
      expect(idp.counts.refreshes).toBe(base + 1);
      expect(idp.counts.refusedRefreshes).toBe(1);
      expect(fromA.extra?.upstreamAccessToken).toBe(fromB.extra?.upstreamAccessToken);
      expect(idp.isValidAccessToken(String(fromA.extra?.upstreamAccessToken))).toBe(true);
    } finally {
      await a.close();
      await b.close();
      await base.close();
      await idp.close();
    }
  });
});

describe.skipIf(noRedis)('OAuth proxy on Redis when Redis goes away', () => {
  it('answers 500 promptly (not 401, not a hang), so clients retry instead of logging out', async () => {
    const own = await startRedis();
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    const storage = await RedisOAuthStorage.connect({ url: own.url });
    const server = await startProtectedServer(idp, { storage, consent: false });
    try {
      const provider = new TestOAuthProvider();
      const client = await connectWithLogin(server.mcpUrl, provider);
      await client.close();
      const token = provider.tokens()!.access_token;
      expect((await server.proxy.verifyAccessToken(token)).extra?.subject).toBe('user-42');
      await own.close();
      const started = Date.now();
      const res = await fetch(server.mcpUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
      });
      expect(res.status).toBe(500);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await server.close();
      await storage.close();
      await idp.close();
      await own.close();
    }
  });
});
