/**
 * The floor under any sandbox that runs guest code off the host's main thread (issue 3's stdio goal).
 *
 *   node --no-node-snapshot --experimental-strip-types bench/offthread-floor.ts [runs]
 *
 * Both sides make 50 sequential `echo` calls to the same stdio MCP server (the codemode fixture):
 * - direct: the main thread awaits `client.callTool` 50 times;
 * - relayed: a worker thread, standing in for the guest's isolate thread with no isolate and no guest code at
 *   all, asks the main thread for each call over a MessagePort and waits for the answer, as the guest does over
 *   isolated-vm's bridge. The main thread makes the same `client.callTool`.
 * What the relay adds is the cost of the two extra thread handoffs per call, and nothing else. If it already
 * exceeds 20%, no design that keeps guest code off the main thread can meet that goal on this machine.
 *
 * Two more sides in the same alternating rounds (issue 16's row: code mode at or under 1.15x the floor, and
 * faster than @utcp/code-mode making the same calls through its MCP support):
 * - codemode: one `execute` making the 50 calls through `mcpClientSource` on the same client;
 * - @utcp/code-mode: one `callToolChain` making the 50 calls through `@utcp/mcp`, which starts its own copy of
 *   the same fixture server. Its per-call console logging is silenced while it runs (less work for the peer).
 */
import { fileURLToPath } from 'node:url';
import { availableParallelism, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

// Resolves the sources' './x.js' imports to './x.ts' under type stripping (no build needed).
import '../test/fixtures/ts-loader.mjs';

const { CodeMode } = await import('../src/codemode/codemode.js');
const { mcpClientSource } = await import('../src/codemode/sources.js');
await import('@utcp/mcp');
const { CodeModeUtcpClient } = await import('@utcp/code-mode');

const RUNS = Math.max(5, Number(process.argv[2] ?? 30));
const WARMUP = 3;
const CALLS = 50;
const PAUSE_MS = 25;

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const FIXTURE = fileURLToPath(new URL('../test/fixtures/codemode-server.ts', import.meta.url));
const client = new Client({ name: 'offthread-floor', version: '1.0.0' });
await client.connect(new StdioClientTransport({ command: process.execPath, args: [FIXTURE], stderr: 'inherit' }));
const codeMode = await CodeMode.create({ sources: [mcpClientSource('fx', client, { transport: 'pipe' })] });
const codeModeCode = `let last; for (let i = 0; i < ${CALLS}; i++) last = await tools.fx.echo({ text: 'x' + i }); return last;`;
const utcp = await CodeModeUtcpClient.create(process.cwd(), null);
const quiet = async <T>(fn: () => Promise<T>): Promise<T> => {
  const saved = { log: console.log, info: console.info, debug: console.debug, warn: console.warn, error: console.error };
  const noop = (): void => undefined;
  Object.assign(console, { log: noop, info: noop, debug: noop, warn: noop, error: noop });
  try {
    return await fn();
  } finally {
    Object.assign(console, saved);
  }
};
await quiet(() =>
  (utcp as unknown as { registerManual(t: unknown): Promise<unknown> }).registerManual({
    name: 'fx',
    call_template_type: 'mcp',
    config: { mcpServers: { fx: { transport: 'stdio', command: process.execPath, args: [FIXTURE] } } },
  }),
);
const utcpCode = `let last; for (let i = 0; i < ${CALLS}; i++) last = fx.fx_echo({ text: 'x' + i }); return last;`;

// The "guest": on 'go', makes CALLS sequential requests and reports 'done'. Each request waits for its answer.
const worker = new Worker(
  `const { parentPort } = require('node:worker_threads');
   let answer;
   parentPort.on('message', (m) => {
     if (m.t === 'answer') { const a = answer; answer = undefined; a(m.value); return; }
     (async () => {
       let last;
       for (let i = 0; i < ${CALLS}; i++) {
         last = await new Promise((resolve) => { answer = resolve; parentPort.postMessage({ t: 'call', text: 'x' + i }); });
       }
       parentPort.postMessage({ t: 'done', last });
     })();
   });`,
  { eval: true },
);
let finish: (() => void) | undefined;
worker.on('message', (m: { t: string; text?: string }) => {
  if (m.t === 'done') {
    finish?.();
    return;
  }
  void client.callTool({ name: 'echo', arguments: { text: m.text } }).then((result) => worker.postMessage({ t: 'answer', value: result }));
});

async function direct(): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < CALLS; i++) await client.callTool({ name: 'echo', arguments: { text: `x${i}` } });
  return performance.now() - start;
}

async function viaCodeMode(): Promise<number> {
  const start = performance.now();
  const outcome = await codeMode.execute(codeModeCode);
  if (!outcome.ok) throw new Error(`codemode execute failed: ${JSON.stringify(outcome)}`);
  return performance.now() - start;
}

async function viaUtcp(): Promise<number> {
  const start = performance.now();
  const result = await quiet(() => utcp.callToolChain(utcpCode));
  if ((result as { result?: unknown }).result !== `x${CALLS - 1}`) throw new Error(`@utcp/code-mode failed: ${JSON.stringify(result).slice(0, 300)}`);
  return performance.now() - start;
}

async function relayed(): Promise<number> {
  const start = performance.now();
  await new Promise<void>((resolve) => {
    finish = resolve;
    worker.postMessage({ t: 'go' });
  });
  return performance.now() - start;
}

const directMs: number[] = [];
const relayedMs: number[] = [];
const codeModeMs: number[] = [];
const utcpMs: number[] = [];
const sides: Array<[() => Promise<number>, number[]]> = [
  [direct, directMs],
  [relayed, relayedMs],
  [viaCodeMode, codeModeMs],
  [viaUtcp, utcpMs],
];
try {
  for (let i = 0; i < WARMUP + RUNS; i++) {
    // Rotate the order so drift in machine load does not favour one side.
    for (let k = 0; k < sides.length; k++) {
      const [fn, samples] = sides[(i + k) % sides.length]!;
      await sleep(PAUSE_MS);
      const ms = await fn();
      if (i >= WARMUP) samples.push(ms);
    }
  }
} finally {
  await worker.terminate();
  await codeMode.close();
  await quiet(() => (utcp as unknown as { close(): Promise<void> }).close?.() ?? Promise.resolve());
  await client.close();
}

const ratio = median(relayedMs) / median(directMs);
process.stdout.write(
  [
    `off-thread floor: ${RUNS} runs (after ${WARMUP} warm-up), ${CALLS} sequential stdio echo calls, Node ${process.version}, ${availableParallelism()} CPUs, load ${loadavg()[0]!.toFixed(2)}`,
    `  direct client.callTool from the main thread   median ${median(directMs).toFixed(2)} ms  (${((median(directMs) / CALLS) * 1000).toFixed(0)} µs per call)`,
    `  relayed from a worker thread (no isolate)     median ${median(relayedMs).toFixed(2)} ms  (${((median(relayedMs) / CALLS) * 1000).toFixed(0)} µs per call)`,
    `  relayed / direct                              ${ratio.toFixed(3)}  (${((ratio - 1) * 100).toFixed(1)}% from thread handoffs alone; issue 3's budget is 20%)`,
    `  codemode execute (isolate, same client)      median ${median(codeModeMs).toFixed(2)} ms  (${((median(codeModeMs) / CALLS) * 1000).toFixed(0)} µs per call)`,
    `  @utcp/code-mode callToolChain (@utcp/mcp)    median ${median(utcpMs).toFixed(2)} ms  (${((median(utcpMs) / CALLS) * 1000).toFixed(0)} µs per call)`,
    `  codemode / floor                              ${(median(codeModeMs) / median(relayedMs)).toFixed(3)}  (goal <= 1.15: ${median(codeModeMs) / median(relayedMs) <= 1.15 ? 'met' : 'NOT met'})`,
    `  codemode / @utcp/code-mode                    ${(median(codeModeMs) / median(utcpMs)).toFixed(3)}  (goal < 1: ${median(codeModeMs) < median(utcpMs) ? 'met' : 'NOT met'})`,
    `  codemode / direct                             ${(median(codeModeMs) / median(directMs)).toFixed(3)}`,
  ].join('\n') + '\n',
);
process.exit(0);
