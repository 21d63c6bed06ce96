/**
 * Code-mode overhead benchmark.
 *
 *   node --no-node-snapshot --experimental-strip-types bench/codemode.ts [runs]
 *
 * 1. An execute making 50 sequential calls to a local tool (and `return 1` for the fixed cost).
 * 2. 50 sequential calls to a stdio MCP server (the codemode fixture's `echo`): one execute doing them,
 *    against 50 direct `client.callTool` calls, measured alternately in the same run.
 *
 * 3. The same with a tool that does 1 ms of (timer) work per call, closer to real tools.
 * 4. For the breakdown: the same 50 echo calls from a bare `sandbox.run` whose host function calls
 *    `client.callTool` itself (no code-mode layer), so what is left over direct is the sandbox's share.
 *
 * Goal: code mode adds at most 20% over the direct calls against the stdio server.
 */
import { fileURLToPath } from 'node:url';

// Resolves the sources' './x.js' imports to './x.ts' under type stripping (no build needed).
import '../test/fixtures/ts-loader.mjs';

const { CodeMode } = await import('../src/codemode/codemode.js');
const { localTools, mcpClientSource } = await import('../src/codemode/sources.js');
const { IsolatedVmSandbox } = await import('../src/sandbox/isolated-vm-sandbox.js');
const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');

const RUNS = Math.max(5, Number(process.argv[2] ?? 30));
const WARMUP = 3;
const CALLS = 50;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function p90(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9))]!;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

const sandbox = new IsolatedVmSandbox({ limits: { timeoutMs: 30_000 } });
const transport = new StdioClientTransport({
  command: process.execPath,
  args: [fileURLToPath(new URL('../test/fixtures/codemode-server.ts', import.meta.url))],
  stderr: 'inherit',
});
const client = new Client({ name: 'bench', version: '1.0.0' });
await client.connect(transport);

const local = await CodeMode.create({
  sources: [localTools('local', [{ name: 'echo', handler: ({ text }) => text }])],
  sandbox,
});
const remote = await CodeMode.create({ sources: [mcpClientSource('fx', client, { transport: 'pipe' })], sandbox });

const localCode = `let last; for (let i = 0; i < ${CALLS}; i++) last = await tools.local.echo({ text: 'x' + i }); return last;`;
/** A tool that does some work (waits 1 ms on the server), as real tools do. */
const SLOW_TOOL_MS = 1;
const remoteSlowCode = `for (let i = 0; i < ${CALLS}; i++) await tools.fx.slow({ ms: ${SLOW_TOOL_MS} }); return 1;`;
const remoteCode = `let last; for (let i = 0; i < ${CALLS}; i++) last = await tools.fx.echo({ text: 'x' + i }); return last;`;
const rawCode = `let last; for (let i = 0; i < ${CALLS}; i++) last = await echo({ text: 'x' + i }); return last;`;
const rawHostFunctions = { echo: (args: unknown[]) => client.callTool({ name: 'echo', arguments: args[0] as Record<string, unknown> }) };

async function mustOk(p: Promise<{ ok: boolean }>): Promise<void> {
  const r = await p;
  if (!r.ok) throw new Error(`bench execute failed: ${JSON.stringify(r)}`);
}

type Samples = { empty: number[]; local: number[]; direct: number[]; remote: number[]; raw: number[]; directSlow: number[]; remoteSlow: number[] };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One series. `pauseMs` idles before each measured block: executes from a model are seconds apart, which
 * lets the sandbox prepare its warm isolate off the measured path; 0 measures back-to-back runs, where that
 * preparation competes with the next measurement.
 */
async function series(pauseMs: number): Promise<Samples> {
  const samples: Samples = { empty: [], local: [], direct: [], remote: [], raw: [], directSlow: [], remoteSlow: [] };
  const directRun = () =>
    time(async () => {
      for (let c = 0; c < CALLS; c++) await client.callTool({ name: 'echo', arguments: { text: `x${c}` } });
    });
  const directSlowRun = () =>
    time(async () => {
      for (let c = 0; c < CALLS; c++) await client.callTool({ name: 'slow', arguments: { ms: SLOW_TOOL_MS } });
    });
  const measure = async (fn: () => Promise<number>) => {
    if (pauseMs > 0) await sleep(pauseMs);
    return fn();
  };
  for (let i = 0; i < WARMUP + RUNS; i++) {
    const empty = await measure(() => time(() => mustOk(local.execute('return 1'))));
    const loc = await measure(() => time(() => mustOk(local.execute(localCode))));
    const raw = await measure(() => time(() => mustOk(sandbox.run(rawCode, { hostFunctions: rawHostFunctions }))));
    // Alternate the order so drift in machine load does not favour one side.
    let direct: number;
    let viaCodeMode: number;
    let directSlow: number;
    let viaCodeModeSlow: number;
    if (i % 2 === 0) {
      direct = await measure(directRun);
      viaCodeMode = await measure(() => time(() => mustOk(remote.execute(remoteCode))));
      directSlow = await measure(directSlowRun);
      viaCodeModeSlow = await measure(() => time(() => mustOk(remote.execute(remoteSlowCode))));
    } else {
      viaCodeMode = await measure(() => time(() => mustOk(remote.execute(remoteCode))));
      direct = await measure(directRun);
      viaCodeModeSlow = await measure(() => time(() => mustOk(remote.execute(remoteSlowCode))));
      directSlow = await measure(directSlowRun);
    }
    if (i < WARMUP) continue;
    samples.empty.push(empty);
    samples.local.push(loc);
    samples.direct.push(direct);
    samples.remote.push(viaCodeMode);
    samples.raw.push(raw);
    samples.directSlow.push(directSlow);
    samples.remoteSlow.push(viaCodeModeSlow);
  }
  return samples;
}

const PAUSE_MS = 25;
let spaced: Samples;
let backToBack: Samples;
try {
  spaced = await series(PAUSE_MS);
  backToBack = await series(0);
} finally {
  await local.close();
  await remote.close();
  await client.close();
  await sandbox.close();
}

function report(title: string, samples: Samples): string[] {
  const ratio = median(samples.remote) / median(samples.direct);
  const slowRatio = median(samples.remoteSlow) / median(samples.directSlow);
  return [
    title,
    `  execute "return 1"                     median ${fmt(median(samples.empty))}  p90 ${fmt(p90(samples.empty))}`,
    `  execute, ${CALLS} local tool calls           median ${fmt(median(samples.local))}  p90 ${fmt(p90(samples.local))}  (${fmt(median(samples.local) / CALLS)} per call)`,
    `  ${CALLS} direct client.callTool (stdio)     median ${fmt(median(samples.direct))}  p90 ${fmt(p90(samples.direct))}  (${fmt(median(samples.direct) / CALLS)} per call)`,
    `  execute, ${CALLS} stdio MCP calls            median ${fmt(median(samples.remote))}  p90 ${fmt(p90(samples.remote))}  (${fmt(median(samples.remote) / CALLS)} per call)`,
    `  bare sandbox.run, ${CALLS} stdio calls      median ${fmt(median(samples.raw))}  p90 ${fmt(p90(samples.raw))}  (${fmt(median(samples.raw) / CALLS)} per call; no code-mode layer)`,
    `  code mode / direct (stdio)             ${ratio.toFixed(3)}  (${((ratio - 1) * 100).toFixed(1)}% overhead; goal <= 20%: ${ratio <= 1.2 ? 'met' : 'NOT met'})`,
    `  ${CALLS} direct calls, ${SLOW_TOOL_MS} ms tool             median ${fmt(median(samples.directSlow))}  p90 ${fmt(p90(samples.directSlow))}`,
    `  execute, ${CALLS} calls, ${SLOW_TOOL_MS} ms tool          median ${fmt(median(samples.remoteSlow))}  p90 ${fmt(p90(samples.remoteSlow))}`,
    `  code mode / direct (${SLOW_TOOL_MS} ms tool)         ${slowRatio.toFixed(3)}  (${((slowRatio - 1) * 100).toFixed(1)}% overhead)`,
  ];
}

const lines = [
  `codemode benchmark: ${RUNS} runs (after ${WARMUP} warm-up), ${CALLS} sequential calls per run, Node ${process.version}, ${(await import('node:os')).availableParallelism()} CPUs, load average ${(await import('node:os')).loadavg()[0]!.toFixed(2)}`,
  ...report(`spaced (${PAUSE_MS} ms idle before each measured block, like model think time between executes):`, spaced),
  ...report('back-to-back:', backToBack),
];
process.stdout.write(`${lines.join('\n')}\n`);
