import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileOAuthStorage, MemoryOAuthStorage, RedisOAuthStorage } from '../../../src/server/auth/index.js';
import type { OAuthStorage } from '../../../src/server/auth/index.js';
import { isCodemodeError } from '../../../src/errors.js';
import { SERVICES, skipWithout } from '../../setup/services.js';
import { sleep, startRedis } from './harness.js';

type Factory = () => Promise<{ a: OAuthStorage; b: OAuthStorage; close(): Promise<void> }>;

let redis: { url: string; close(): Promise<void> } | undefined;
const noRedis = skipWithout(SERVICES.redis);
beforeAll(async () => {
  if (!noRedis) redis = await startRedis();
});
afterAll(async () => {
  await redis?.close();
});

const factories: Record<string, Factory> = {
  memory: async () => {
    const shared = new MemoryOAuthStorage();
    return { a: shared, b: shared, close: () => shared.close() };
  },
  file: async () => {
    const dir = mkdtempSync(join(tmpdir(), 'codemode-oauth-store-'));
    // Two instances on one directory stand for two processes on one host.
    return { a: new FileOAuthStorage(dir), b: new FileOAuthStorage(dir), close: async () => rmSync(dir, { recursive: true, force: true }) };
  },
  redis: async () => {
    const prefix = `t${Math.random().toString(36).slice(2)}:`;
    const a = await RedisOAuthStorage.connect({ url: redis!.url, keyPrefix: prefix });
    const b = await RedisOAuthStorage.connect({ url: redis!.url, keyPrefix: prefix });
    return {
      a,
      b,
      close: async () => {
        await a.close();
        await b.close();
      },
    };
  },
};

for (const [name, factory] of Object.entries(factories)) {
  describe.skipIf(name === 'redis' && noRedis)(`OAuth storage contract: ${name}`, () => {
    let store: Awaited<ReturnType<Factory>>;
    afterEach(async () => {
      await store?.close();
    });

    it('sets, gets, overwrites and deletes, visible to a second handle', async () => {
      store = await factory();
      expect(await store.a.get('k')).toBeUndefined();
      await store.a.set('k', 'v1');
      expect(await store.b.get('k')).toBe('v1');
      await store.b.set('k', 'v2', 60_000);
      expect(await store.a.get('k')).toBe('v2');
      await store.a.delete('k');
      expect(await store.b.get('k')).toBeUndefined();
      await store.a.delete('never-set'); // no error
    });

    it('expires entries after their TTL', async () => {
      store = await factory();
      await store.a.set('short', 'x', 150);
      await store.a.set('long', 'y', 60_000);
      expect(await store.b.get('short')).toBe('x');
      await sleep(300);
      expect(await store.b.get('short')).toBeUndefined();
      expect(await store.b.get('long')).toBe('y');
      await expect(store.a.set('bad', 'x', 0)).rejects.toSatisfy((err: unknown) => isCodemodeError(err, 'INVALID_ARGUMENT'));
    });

    it('take is atomic: of many concurrent takers exactly one gets the value', async () => {
      store = await factory();
      await store.a.set('code', 'secret', 60_000);
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? store.a : store.b).take('code')));
      expect(results.filter((r) => r === 'secret')).toHaveLength(1);
      expect(await store.a.get('code')).toBeUndefined();
    });

    it('locks are exclusive across handles, released by their holder, and lapse after their lease', async () => {
      store = await factory();
      const release = await store.a.tryLock('refresh:s1', 60_000);
      expect(release).toBeDefined();
      expect(await store.b.tryLock('refresh:s1', 60_000)).toBeUndefined();
      expect(await store.a.tryLock('refresh:s1', 60_000)).toBeUndefined();
      expect(await store.b.tryLock('refresh:other', 60_000)).toBeDefined();
      await release!();
      const second = await store.b.tryLock('refresh:s1', 200);
      expect(second).toBeDefined();
      await release!(); // a stale release must not drop the new holder's lock
      expect(await store.a.tryLock('refresh:s1', 60_000)).toBeUndefined();
      await sleep(300); // the 200 ms lease ran out: a crashed holder does not block forever
      expect(await store.a.tryLock('refresh:s1', 60_000)).toBeDefined();
    });
  });
}

describe('FileOAuthStorage on disk', () => {
  it('writes files readable only by the owner and leaves no temp files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'codemode-oauth-store-'));
    try {
      const store = new FileOAuthStorage(join(dir, 'nested'));
      await store.set('a', 'b', 60_000);
      await store.take('a');
      await store.set('c', 'd');
      const files = readdirSync(join(dir, 'nested'));
      expect(files).toHaveLength(1);
      expect(files[0]).toMatch(/^[0-9a-f]{64}\.json$/);
      expect(statSync(join(dir, 'nested', files[0]!)).mode & 0o077).toBe(0);
      expect(statSync(join(dir, 'nested')).mode & 0o077).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('FileOAuthStorage sweep', () => {
  it('removes expired entries that are never read again, keeps live ones, and runs by itself from set()', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'codemode-oauth-sweep-'));
    try {
      const store = new FileOAuthStorage(dir, { sweepIntervalMs: 100 });
      for (let i = 0; i < 5; i++) await store.set(`at:${i}`, 'x', 50);
      await store.set('live', 'y', 60_000);
      await store.set('forever', 'z');
      expect(readdirSync(dir)).toHaveLength(7);
      await sleep(150);
      await store.set('trigger', 'w', 60_000); // past the interval: starts a background sweep
      for (let i = 0; i < 40 && readdirSync(dir).length > 3; i++) await sleep(25); // bounded wait for the background sweep
      await store.close();
      expect(readdirSync(dir)).toHaveLength(3); // live, forever, trigger
      const again = new FileOAuthStorage(dir);
      expect(await again.get('live')).toBe('y');
      expect(await again.get('forever')).toBe('z');
      expect(await again.get('trigger')).toBe('w');
      expect(await again.sweep()).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('RedisOAuthStorage connection failure', () => {
  it('fails with UPSTREAM_UNAVAILABLE and a hint when nothing listens', async () => {
    const err = await RedisOAuthStorage.connect({ url: 'redis://127.0.0.1:1', connectTimeoutMs: 1000 }).catch((e: unknown) => e);
    expect(isCodemodeError(err, 'UPSTREAM_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toMatch(/redis/i);
  });
});
