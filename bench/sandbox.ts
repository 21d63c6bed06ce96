/**
 * Sandbox benchmark: IsolatedVmSandbox against @utcp/code-mode's `callToolChain` on the same workloads.
 *
 *   node --no-node-snapshot --experimental-strip-types bench/sandbox.ts [rounds]
 *
 * 1. `return 1` end to end (sequential runs).
 * 2. Host-call round trip: 2,000 awaited calls to an echo tool, timed inside the guest, per call.
 * 3. Throughput at concurrency 1, 2 and 4: runs of a small script (3 awaited tool calls) per second.
 *
 * The peer gets its tool without a network: its client is created with no manuals and `getTools` /
 * `callTool` are replaced on the instance, so only its sandbox and bridge are measured.
 * Goals (issue 2): `return 1` <= 3 ms median, host call <= 100 µs median, and better than the peer on both.
 */
import { availableParallelism, cpus } from 'node:os';

// Resolves the sources' './x.js' imports to './x.ts' under type stripping (no build needed).
import '../test/fixtures/ts-loader.mjs';

const { IsolatedVmSandbox } = await import('../src/sandbox/isolated-vm-sandbox.js');
const { CodeModeUtcpClient } = await import('@utcp/code-mode');

const ROUNDS = Number(process.argv[2] ?? 300);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function fmtMs(ms: number): string {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- subjects ----

type Runner = (code: string) => Promise<unknown>;

const echo = ([arg]: unknown[]): unknown => (arg as { x?: unknown } | undefined)?.x;

function ours(warmIsolates: number, maxConcurrency = 4): { run: Runner; close: () => Promise<void> } {
  const sandbox = new IsolatedVmSandbox({ warmIsolates, maxConcurrency });
  return {
    run: async (code) => {
      const outcome = await sandbox.run(code, { hostFunctions: { bench: { echo } } });
      if (!outcome.ok) throw new Error(`${outcome.error.kind}: ${outcome.error.message}`);
      return outcome.value;
    },
    close: () => sandbox.close(),
  };
}

async function peer(): Promise<{ run: Runner }> {
  const client = await CodeModeUtcpClient.create(process.cwd(), null);
  const tool = {
    name: 'bench.echo',
    description: 'echo',
    inputs: { type: 'object', properties: { x: {} } },
    outputs: { type: 'object' },
    tags: [],
    tool_call_template: { call_template_type: 'text', name: 'bench' },
  };
  const patched = client as unknown as { getTools: () => Promise<unknown[]>; callTool: (name: string, args: { x?: unknown }) => Promise<unknown> };
  patched.getTools = async () => [tool];
  patched.callTool = async (_name, args) => args.x;
  return {
    run: async (code) => {
      const { result, logs } = await client.callToolChain(code, 30_000, 128);
      const failed = logs.find((l) => l.startsWith('[ERROR]'));
      if (failed !== undefined) throw new Error(failed);
      return result;
    },
  };
}

// The same scripts for both: our tools are async functions, the peer's synchronous ones (await on a value).
const CALLS_OURS = 'const t = Date.now(); for (let i = 0; i < 2000; i++) await bench.echo({ x: i }); return Date.now() - t';
const CALLS_PEER = 'const t = Date.now(); for (let i = 0; i < 2000; i++) await bench.echo({ x: i }); return Date.now() - t';
const SMALL_OURS = 'const a = await bench.echo({ x: 1 }); const b = await bench.echo({ x: 2 }); const c = await bench.echo({ x: 3 }); return a + b + c';
const SMALL_PEER = 'const a = await bench.echo({ x: 1 }); const b = await bench.echo({ x: 2 }); const c = await bench.echo({ x: 3 }); return a + b + c';

/** Samples `a` and `b` alternately, so load from other processes hits both alike; returns both medians. */
async function interleaved(a: () => Promise<unknown>, b: () => Promise<unknown>, rounds: number, gapMs: number): Promise<[number, number]> {
  for (let i = 0; i < 5; i++) {
    await a();
    await b();
  }
  const sa: number[] = [];
  const sb: number[] = [];
  for (let i = 0; i < rounds; i++) {
    if (gapMs > 0) await sleep(gapMs);
    sa.push(await time(a));
    if (gapMs > 0) await sleep(gapMs);
    sb.push(await time(b));
  }
  return [median(sa), median(sb)];
}

async function throughput(run: Runner, code: string, concurrency: number, total: number): Promise<number> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      next++;
      await run(code);
    }
  };
  const ms = await time(() => Promise.all(Array.from({ length: concurrency }, worker)));
  return (total / ms) * 1000;
}

// ---- run ----

const loadavg = (await import('node:os')).loadavg();
console.log(
  `sandbox bench: ${cpus().length} vCPU (availableParallelism ${availableParallelism()}), Node ${process.version}, load ${loadavg.map((l) => l.toFixed(1)).join(' ')}, ${ROUNDS} rounds`,
);

const peerSubject = await peer();
const warm = ours(1);
const cold = ours(0);

const rows: [string, string, string, string][] = [];
const ratio = (peerValue: number, ourValue: number): string => `${(peerValue / ourValue).toFixed(1)}x`;

const returnOne = (run: Runner) => () => run('return 1');
const [r1Warm, r1PeerA] = await interleaved(returnOne(warm.run), returnOne(peerSubject.run), ROUNDS, 3);
const [r1Cold, r1PeerC] = await interleaved(returnOne(cold.run), returnOne(peerSubject.run), ROUNDS, 3);
rows.push(['`return 1`, warm isolate (3 ms idle between runs)', fmtMs(r1Warm), fmtMs(r1PeerA), ratio(r1PeerA, r1Warm)]);
rows.push(['`return 1`, warmIsolates: 0 (isolate created in the run, as back-to-back runs get)', fmtMs(r1Cold), fmtMs(r1PeerC), ratio(r1PeerC, r1Cold)]);

// Per call, timed inside the guest (Date.now around 2,000 awaited calls), so run setup and the host's
// scheduling of the run itself stay out of it; runs alternate between ours and the peer's.
const perCallOurs: number[] = [];
const perCallPeer: number[] = [];
await cold.run(CALLS_OURS);
await peerSubject.run(CALLS_PEER);
for (let i = 0; i < 21; i++) {
  perCallOurs.push(((await cold.run(CALLS_OURS)) as number) / 2000);
  perCallPeer.push(((await peerSubject.run(CALLS_PEER)) as number) / 2000);
}
const callOurs = median(perCallOurs);
const callPeer = median(perCallPeer);
rows.push(['host call round trip (2,000 awaited calls timed in the guest, per call)', fmtMs(callOurs), fmtMs(callPeer), ratio(callPeer, callOurs)]);

for (const c of [1, 2, 4]) {
  const subject = ours(1, c);
  await throughput(subject.run, SMALL_OURS, c, 20);
  await throughput(peerSubject.run, SMALL_PEER, c, 20);
  const oursRates: number[] = [];
  const peerRates: number[] = [];
  for (let trial = 0; trial < 7; trial++) {
    oursRates.push(await throughput(subject.run, SMALL_OURS, c, 40));
    peerRates.push(await throughput(peerSubject.run, SMALL_PEER, c, 40));
  }
  await subject.close();
  const oursRate = median(oursRates);
  const peerRate = median(peerRates);
  rows.push([`throughput, concurrency ${c} (runs/s, 3 tool calls each)`, oursRate.toFixed(0), peerRate.toFixed(0), `${(oursRate / peerRate).toFixed(1)}x`]);
}

await warm.close();
await cold.close();

console.log('\n| workload | codemode | @utcp/code-mode | ratio (peer/ours for times, ours/peer for rates) |');
console.log('|---|---|---|---|');
for (const row of rows) console.log(`| ${row.join(' | ')} |`);
console.log(`load average at the end: ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`);
const goals = [
  `return 1 (warm) <= 3 ms: ${r1Warm <= 3 ? 'met' : 'MISSED'} (${fmtMs(r1Warm)}); cold: ${r1Cold <= 3 ? 'met' : 'MISSED'} (${fmtMs(r1Cold)})`,
  `host call <= 100 µs: ${callOurs <= 0.1 ? 'met' : 'MISSED'} (${fmtMs(callOurs)})`,
];
console.log(`\n${goals.join('\n')}`);
