/**
 * Process-pool benchmark: warm process-isolated runs (`ProcessSandbox`) against in-process cold runs
 * (`IsolatedVmSandbox` with no warm isolate), in one run.
 *
 *   node --no-node-snapshot --experimental-strip-types bench/process-pool.ts [runs]
 *
 * 1. `return 1`, p50 and p95 of the wall time around `run()`: spaced (5 ms idle between runs, as model
 *    think time gives) and back-to-back.
 * 2. Host (tool) call round trip: runs of 200 sequential `await echo(i)`, per-call time p50 across runs.
 * 3. Throughput of `return 1` at concurrency 1, 2 and 4.
 * 4. Crash to replacement ready: SIGKILL a busy worker, time until the pool is back at full strength
 *    (with a standby worker, and without one).
 *
 * Goals (issue 8): warm process `return 1` <= in-process cold; round trip <= 200 µs p50; < 50 ms from a
 * crash to a replacement being ready.
 */
import { availableParallelism, loadavg } from 'node:os';

// Resolves the sources' './x.js' imports to './x.ts' under type stripping (no build needed).
import '../test/fixtures/ts-loader.mjs';

const { IsolatedVmSandbox } = await import('../src/sandbox/isolated-vm-sandbox.js');
const { ProcessSandbox } = await import('../src/sandbox/process/process-sandbox.js');
type Provider = { run(code: string, options?: object): Promise<{ ok: boolean }>; close(): Promise<void> };

const RUNS = Number(process.argv[2] ?? 200);
const CALLS = 200;

function quantile(samples: number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}
const ms = (x: number): string => `${x.toFixed(2)} ms`;
const us = (x: number): string => `${Math.round(x * 1000)} µs`;
const sleep = (t: number): Promise<void> => new Promise((r) => setTimeout(r, t));

/** Failed runs per provider: on this machine a glibc condvar hang can stall a worker (see RESULTS.md). */
const failures = new Map<string, string[]>();
let current = '';

async function must(p: Promise<{ ok: boolean }>): Promise<boolean> {
  const outcome = await p;
  if (outcome.ok) return true;
  const list = failures.get(current) ?? [];
  list.push(JSON.stringify((outcome as unknown as { error: unknown }).error).slice(0, 160));
  failures.set(current, list);
  return false;
}

async function latency(sb: Provider, gapMs: number): Promise<number[]> {
  for (let i = 0; i < 10; i++) await must(sb.run('return 1'));
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    if (gapMs > 0) await sleep(gapMs);
    const t = performance.now();
    await must(sb.run('return 1'));
    samples.push(performance.now() - t);
  }
  return samples;
}

async function roundTrip(sb: Provider): Promise<number[]> {
  const hostFunctions = { echo: ([x]: unknown[]) => x };
  const code = `for (let i = 0; i < ${CALLS}; i++) await echo(i); return 1`;
  await must(sb.run(code, { hostFunctions }));
  const perCall: number[] = [];
  for (let i = 0; i < 20; i++) {
    await sleep(5);
    const base = performance.now();
    await must(sb.run('return 1'));
    const fixed = performance.now() - base;
    await sleep(5);
    const t = performance.now();
    if (await must(sb.run(code, { hostFunctions }))) perCall.push((performance.now() - t - fixed) / CALLS);
  }
  return perCall;
}

async function throughput(sb: Provider, concurrency: number): Promise<number> {
  let next = 0;
  const total = RUNS;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < total) await must(sb.run('return 1'));
    }),
  );
  return total / ((performance.now() - t) / 1000);
}

async function crashRecovery(standbyWorkers: number, rounds: number): Promise<{ external: number[]; internal: number[] }> {
  const sb = new ProcessSandbox({ size: 2, standbyWorkers, limits: { timeoutMs: null } });
  await sb.ready();
  const external: number[] = [];
  const internal: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      await sb.ready();
      await sleep(50);
      const running = sb.run('while (true) {}');
      await sleep(20);
      const victim = sb.pool.stats().pids[0]!;
      const t = performance.now();
      process.kill(victim, 'SIGKILL');
      // Back at full strength: `size` ready serving workers, none of them the victim.
      for (;;) {
        const s = sb.pool.stats();
        if (s.ready === 2 && !s.pids.includes(victim)) break;
        await new Promise((r) => setImmediate(r));
      }
      external.push(performance.now() - t);
      internal.push(sb.pool.stats().lastRecoveryMs ?? NaN);
      await running;
    }
  } finally {
    await sb.close();
  }
  return { external, internal };
}

console.log(`process-pool bench: ${RUNS} runs, Node ${process.version}, ${availableParallelism()} cores, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);

// A 10 s limit: a stalled worker costs one sample (and 11 s), not the bench.
const limits = { timeoutMs: 10_000 };
const cold = new IsolatedVmSandbox({ warmIsolates: 0, maxConcurrency: 4, limits }) as unknown as Provider;
const warmIn = new IsolatedVmSandbox({ warmIsolates: 1, maxConcurrency: 4, limits }) as unknown as Provider;
const proc = new ProcessSandbox({ size: 2, concurrencyPerWorker: 2, standbyWorkers: 1, limits });
await proc.ready();
const providers: [string, Provider][] = [
  ['in-process cold', cold],
  ['in-process warm', warmIn],
  ['process pool (warm)', proc as unknown as Provider],
];

try {
  console.log('\n`return 1` wall time around run()');
  console.log('| provider | spaced p50 | spaced p95 | back-to-back p50 | back-to-back p95 |');
  console.log('|---|---|---|---|---|');
  for (const [name, sb] of providers) {
    current = name;
    const spaced = await latency(sb, 5);
    const b2b = await latency(sb, 0);
    console.log(`| ${name} | ${ms(quantile(spaced, 0.5))} | ${ms(quantile(spaced, 0.95))} | ${ms(quantile(b2b, 0.5))} | ${ms(quantile(b2b, 0.95))} |`);
  }

  console.log(`\nhost call round trip (${CALLS} sequential awaits per run, minus a return-1 run; 20 runs)`);
  console.log('| provider | per call p50 | per call p95 |');
  console.log('|---|---|---|');
  for (const [name, sb] of providers) {
    current = name;
    const samples = await roundTrip(sb);
    console.log(`| ${name} | ${us(quantile(samples, 0.5))} | ${us(quantile(samples, 0.95))} |`);
  }

  console.log('\nthroughput of `return 1` (runs/s)');
  console.log('| provider | c=1 | c=2 | c=4 |');
  console.log('|---|---|---|---|');
  for (const [name, sb] of providers) {
    current = name;
    const row: string[] = [];
    for (const c of [1, 2, 4]) {
      await sleep(50);
      row.push(String(Math.round(await throughput(sb, c))));
    }
    console.log(`| ${name} | ${row.join(' | ')} |`);
  }
} finally {
  await Promise.all(providers.map(([, sb]) => sb.close()));
}

console.log('\ncrash (SIGKILL of a busy worker) to the pool back at full strength');
console.log('| setup | kill -> ready p50 (max) | pool-measured exit -> full p50 |');
console.log('|---|---|---|');
for (const [label, standby, rounds] of [
  ['2 workers + 1 standby', 1, 10],
  ['2 workers, no standby', 0, 5],
] as const) {
  const { external, internal } = await crashRecovery(standby, rounds);
  console.log(`| ${label} | ${ms(quantile(external, 0.5))} (${ms(Math.max(...external))}) | ${ms(quantile(internal, 0.5))} |`);
}

for (const [name, list] of failures) console.log(`\nfailed runs on ${name}: ${list.length}\n  ${list.join('\n  ')}`);
