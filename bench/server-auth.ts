/**
 * OAuth proxy per-request cost.
 *
 *   node --no-node-snapshot --experimental-strip-types bench/server-auth.ts [runs]
 *
 * 1. verifyAccessToken on the fast path (JWT verify + 2 storage reads + unseal), memory vs Redis storage.
 * 2. The same when every call refreshes upstream (threshold above the upstream lifetime): the refresh path
 *    against a loopback IdP, under the per-session lock.
 * Needs redis-server on PATH for the Redis rows (skipped otherwise).
 */

// Resolves the sources' './x.js' imports to './x.ts' under type stripping (no build needed).
import '../test/fixtures/ts-loader.mjs';

const { startIdp } = await import('../test/fixtures/idp-server.js');
const { startProtectedServer, startRedis, hasRedisServer, TestOAuthProvider, connectWithLogin } = await import('../test/server/auth/harness.js');
const { RedisOAuthStorage, MemoryOAuthStorage } = await import('../src/server/auth/index.js');
const { setLogLevel } = await import('../src/log.js');
setLogLevel('error');

const RUNS = Math.max(50, Number(process.argv[2] ?? 2000));

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

type Storage = Awaited<ReturnType<typeof RedisOAuthStorage.connect>> | InstanceType<typeof MemoryOAuthStorage>;

async function measure(name: string, makeStorage: () => Promise<Storage>, refreshEveryCall: boolean, runs: number): Promise<void> {
  const idp = await startIdp({ accessTokenTtlSeconds: 300, issueRefreshTokens: true });
  const storage = await makeStorage();
  const server = await startProtectedServer(idp, { storage, consent: false, ...(refreshEveryCall && { tokenExpiryThresholdSeconds: 3600 }) });
  const provider = new TestOAuthProvider();
  const client = await connectWithLogin(server.mcpUrl, provider);
  const token = provider.tokens()!.access_token;
  const times: number[] = [];
  try {
    for (let i = 0; i < runs + 20; i++) {
      const t0 = process.hrtime.bigint();
      await server.proxy.verifyAccessToken(token);
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      if (i >= 20) times.push(us);
    }
    console.log(`${name.padEnd(44)} median ${median(times).toFixed(1).padStart(8)} µs   p90 ${[...times].sort((a, b) => a - b)[Math.floor(times.length * 0.9)]!.toFixed(1).padStart(8)} µs   (n=${runs}, upstream refreshes=${idp.counts.refreshes})`);
  } finally {
    await client.close();
    await server.close();
    await storage.close();
    await idp.close();
  }
}

console.log(`node ${process.version}, ${RUNS} runs`);
await measure('verify, memory storage', async () => new MemoryOAuthStorage(), false, RUNS);
await measure('verify + upstream refresh, memory storage', async () => new MemoryOAuthStorage(), true, Math.min(RUNS, 300));
if (hasRedisServer()) {
  const redis = await startRedis();
  try {
    await measure('verify, redis storage', () => RedisOAuthStorage.connect({ url: redis.url }), false, RUNS);
    await measure('verify + upstream refresh, redis storage', () => RedisOAuthStorage.connect({ url: redis.url }), true, Math.min(RUNS, 300));
  } finally {
    await redis.close();
  }
} else {
  console.log('redis-server not found: Redis rows skipped');
}
