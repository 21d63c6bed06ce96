/**
 * Code mode's own cost per tool call (issue 16): a local tool called from `execute`, against the bare
 * sandbox host call (`sandbox.run` with a host function doing the same work), in the same run, alternating.
 *
 *   node --no-node-snapshot --experimental-strip-types bench/percall.ts [rounds]
 *
 * Two ways, because they answer different questions:
 * 1. Warm: 2,000 awaited calls timed inside the guest (`Date.now()` around the loop), so the fixed cost of
 *    an execute is out and the guest's loop is JIT-compiled. This is the per-call cost of the layer itself.
 * 2. Whole run: an execute making 50 calls minus an execute of `return 1`, divided by 50, and the same for
 *    `sandbox.run`. A fresh isolate per run, so the guest code is cold: what a model's typical block pays.
 *
 * Goal: code mode at or under the bare host call + 15 µs per call.
 */
import { availableParallelism, loadavg } from 'node:os';

// Resolves the sources' './x.js' imports to './x.ts' under type stripping (no build needed).
import '../test/fixtures/ts-loader.mjs';

const { CodeMode } = await import('../src/codemode/codemode.js');
const { localTools } = await import('../src/codemode/sources.js');
const { IsolatedVmSandbox } = await import('../src/sandbox/isolated-vm-sandbox.js');

const ROUNDS = Math.max(5, Number(process.argv[2] ?? 40));
const WARM_CALLS = 2000;
const COLD_CALLS = 50;

const sandbox = new IsolatedVmSandbox({ limits: { timeoutMs: 60_000 } });
const echo = (args: unknown[]): string => (args[0] as { text: string }).text;
const hostFunctions = { bench: { echo } };
const codeMode = await CodeMode.create({
  sources: [localTools('local', [{ name: 'echo', handler: ({ text }) => text }])],
  sandbox,
  // 2,000 calls in one block: the cap is opted out explicitly, as a benchmark may.
  maxToolCalls: null,
});

const loop = (call: string, n: number, timed: boolean): string =>
  `${timed ? 'const t0 = Date.now(); ' : ''}let last; for (let i = 0; i < ${n}; i++) last = await ${call}({ text: 'x' + i }); return ${timed ? `(Date.now() - t0) / ${n}` : 'last'};`;

const idle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function value(p: Promise<{ ok: boolean; value?: unknown }>): Promise<number> {
  const outcome = await p;
  if (!outcome.ok) throw new Error(`bench run failed: ${JSON.stringify(outcome)}`);
  return Number(outcome.value);
}

async function elapsed(p: () => Promise<{ ok: boolean }>): Promise<number> {
  const start = performance.now();
  const outcome = await p();
  if (!outcome.ok) throw new Error(`bench run failed: ${JSON.stringify(outcome)}`);
  return performance.now() - start;
}

const warm = { ours: [] as number[], bare: [] as number[] };
const cold = { ours1: [] as number[], oursN: [] as number[], bare1: [] as number[], bareN: [] as number[] };
const warmOurs = loop('tools.local.echo', WARM_CALLS, true);
const warmBare = loop('bench.echo', WARM_CALLS, true);
const coldOurs = loop('tools.local.echo', COLD_CALLS, false);
const coldBare = loop('bench.echo', COLD_CALLS, false);
for (let round = -3; round < ROUNDS; round++) {
  // Each run starts after a pause, as a model's think time gives: the next isolate is ready by then, so
  // no row pays for preparing the one after the row before it.
  const w1 = await value(idle().then(() => codeMode.execute(warmOurs)));
  const w2 = await value(idle().then(() => sandbox.run(warmBare, { hostFunctions })));
  const c1 = await idle().then(() => elapsed(() => codeMode.execute('return 1')));
  const cN = await idle().then(() => elapsed(() => codeMode.execute(coldOurs)));
  const b1 = await idle().then(() => elapsed(() => sandbox.run('return 1', { hostFunctions })));
  const bN = await idle().then(() => elapsed(() => sandbox.run(coldBare, { hostFunctions })));
  if (round < 0) continue;
  warm.ours.push(w1 * 1000);
  warm.bare.push(w2 * 1000);
  cold.ours1.push(c1);
  cold.oursN.push(cN);
  cold.bare1.push(b1);
  cold.bareN.push(bN);
}
await codeMode.close();

const us = (v: number): string => `${v.toFixed(1)} µs`;
const warmOursUs = median(warm.ours);
const warmBareUs = median(warm.bare);
const coldOursUs = ((median(cold.oursN) - median(cold.ours1)) / COLD_CALLS) * 1000;
const coldBareUs = ((median(cold.bareN) - median(cold.bare1)) / COLD_CALLS) * 1000;
process.stdout.write(
  [
    `per-call bench: node ${process.version}, ${ROUNDS} alternating rounds (after 3 warm-up), load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${availableParallelism()} CPUs`,
    `  warm, ${WARM_CALLS} calls timed in the guest:   code mode ${us(warmOursUs)}  bare host call ${us(warmBareUs)}  difference ${us(warmOursUs - warmBareUs)}`,
    `  whole run, ${COLD_CALLS} calls (cold isolate): code mode ${us(coldOursUs)}  bare host call ${us(coldBareUs)}  difference ${us(coldOursUs - coldBareUs)}`,
    `    (execute return 1 ${median(cold.ours1).toFixed(2)} ms, ${COLD_CALLS} calls ${median(cold.oursN).toFixed(2)} ms; sandbox.run return 1 ${median(cold.bare1).toFixed(2)} ms, ${COLD_CALLS} calls ${median(cold.bareN).toFixed(2)} ms)`,
    `  goal: code mode <= bare + 15 µs: warm ${warmOursUs - warmBareUs <= 15 ? 'met' : 'NOT met'}, whole run ${coldOursUs - coldBareUs <= 15 ? 'met' : 'NOT met'}`,
    '',
  ].join('\n'),
);
process.exit(0);
