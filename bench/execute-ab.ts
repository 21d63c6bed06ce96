/**
 * This build's `codemode serve --http` against an earlier build's, on the execute path, in one run (issue
 * 15: "the move to v2 must not slow the start-up or execute path").
 *
 *   npm run build && BASELINE_DIR=/path/to/earlier/checkout node --no-node-snapshot --experimental-strip-types bench/execute-ab.ts [rounds=400]
 *
 * Both servers run at once with the example inventory server as their upstream. One v1 SDK client per
 * server alternates executes between them (10 ms of think time before each), in two passes:
 * - pass 1 starts this build first (it gets the first port and its upstream spawns first);
 * - pass 2 starts the baseline first.
 * On this 2-vCPU machine the position alone is worth about 2% (the same build on both sides measured
 * 1.022), so each pass's ratio is biased. The geometric mean of pass 1's ratio and the inverse of pass 2's
 * (baseline / this build) cancels the bias: that is the number to read.
 *
 * Rows: execute `return 1`, and an execute making 10 sequential calls to the upstream.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BASELINE_DIR = process.env.BASELINE_DIR;
const ROUNDS = Number(process.argv[2] ?? 400);
const EXAMPLES = join(ROOT, 'examples');
const TEN_CALLS = `let stock = 0;
for (const sku of ['KB-101', 'MS-220', 'MN-270', 'MN-240', 'CB-USB', 'CB-HDM', 'DK-400', 'KB-101', 'MS-220', 'MN-270']) {
  stock += (await tools.inventory.get_product({ sku })).stock;
}
return stock;`;

if (BASELINE_DIR === undefined) {
  process.stderr.write('bench/execute-ab.ts needs BASELINE_DIR=<a built checkout of the earlier commit>\n');
  process.exit(2);
}
if (!(Number.isInteger(ROUNDS) && ROUNDS > 0 && ROUNDS <= 10_000)) {
  process.stderr.write(`rounds must be a whole number from 1 to 10000, got ${process.argv[2]}\n`);
  process.exit(2);
}

interface Served {
  child: ChildProcess;
  client: Client;
}

/** Starts `serve --http` from `dir`'s build on a free port, waits for its URL line, and connects a client. */
async function serve(dir: string): Promise<Served> {
  const child = spawn(process.execPath, ['--no-node-snapshot', join(dir, 'dist/cli/codemode.js'), 'serve', '--http', '--port', '0', '--config', 'mcp.json', '--log-level', 'warn'], {
    cwd: EXAMPLES,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let text = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${dir}: serve did not start within 30 s: ${text}`)), 30_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const m = /listening on (http:\/\/\S+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`${dir}: serve exited with ${code}: ${text}`)));
  });
  const client = new Client({ name: 'bench-ab', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return { child, client };
}

async function execute(client: Client, code: string): Promise<number> {
  const started = performance.now();
  const result = await client.request({ method: 'tools/call', params: { name: 'execute', arguments: { code } } }, CallToolResultSchema, { timeout: 60_000 });
  if (result.isError) throw new Error(`execute failed: ${JSON.stringify(result.content)}`);
  return performance.now() - started;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One pass: `first` is started first; returns the median of each side per code, this build's first. */
async function pass(first: string, second: string, code: string): Promise<{ current: number; baseline: number }> {
  const a = await serve(first);
  const b = await serve(second);
  try {
    for (let i = 0; i < 20; i++) {
      await execute(a.client, code);
      await execute(b.client, code);
    }
    const times = new Map<Served, number[]>([
      [a, []],
      [b, []],
    ]);
    for (let i = 0; i < ROUNDS; i++) {
      for (const s of i % 2 === 0 ? [a, b] : [b, a]) {
        await pause(10);
        times.get(s)!.push(await execute(s.client, code));
      }
    }
    const byDir = new Map([
      [first, median(times.get(a)!)],
      [second, median(times.get(b)!)],
    ]);
    return { current: byDir.get(ROOT)!, baseline: byDir.get(BASELINE_DIR!)! };
  } finally {
    for (const s of [a, b]) {
      await s.client.close().catch(() => undefined);
      s.child.kill();
    }
  }
}

const rows: string[] = [];
for (const [label, code] of [
  ['execute `return 1`', 'return 1'],
  ['execute with 10 upstream calls', TEN_CALLS],
] as const) {
  const p1 = await pass(ROOT, BASELINE_DIR, code);
  const p2 = await pass(BASELINE_DIR, ROOT, code);
  const r1 = p1.current / p1.baseline;
  const r2 = p2.current / p2.baseline;
  const mean = Math.sqrt(r1 * r2);
  rows.push(
    `| ${label} | ${p1.current.toFixed(2)} / ${p1.baseline.toFixed(2)} ms (${r1.toFixed(3)}) | ${p2.current.toFixed(2)} / ${p2.baseline.toFixed(2)} ms (${r2.toFixed(3)}) | ${mean.toFixed(3)} |`,
  );
}
process.stdout.write(
  [
    `execute A/B: this build against ${BASELINE_DIR}, Node ${process.versions.node}, ${ROUNDS} alternating rounds per pass`,
    '',
    '| call | pass 1, this build started first: this / baseline p50 (ratio) | pass 2, baseline started first | this / baseline, geometric mean |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n'),
);
