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
 */
import { fileURLToPath } from 'node:url';
import { availableParallelism, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

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

const client = new Client({ name: 'offthread-floor', version: '1.0.0' });
await client.connect(
  new StdioClientTransport({
    command: process.execPath,
    args: [fileURLToPath(new URL('../test/fixtures/codemode-server.ts', import.meta.url))],
    stderr: 'inherit',
  }),
);

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
try {
  for (let i = 0; i < WARMUP + RUNS; i++) {
    // Alternate the order so drift in machine load does not favour one side.
    const order = i % 2 === 0 ? [direct, relayed] : [relayed, direct];
    for (const fn of order) {
      await sleep(PAUSE_MS);
      const ms = await fn();
      if (i >= WARMUP) (fn === direct ? directMs : relayedMs).push(ms);
    }
  }
} finally {
  await worker.terminate();
  await client.close();
}

const ratio = median(relayedMs) / median(directMs);
process.stdout.write(
  [
    `off-thread floor: ${RUNS} runs (after ${WARMUP} warm-up), ${CALLS} sequential stdio echo calls, Node ${process.version}, ${availableParallelism()} CPUs, load ${loadavg()[0]!.toFixed(2)}`,
    `  direct client.callTool from the main thread   median ${median(directMs).toFixed(2)} ms  (${((median(directMs) / CALLS) * 1000).toFixed(0)} µs per call)`,
    `  relayed from a worker thread (no isolate)     median ${median(relayedMs).toFixed(2)} ms  (${((median(relayedMs) / CALLS) * 1000).toFixed(0)} µs per call)`,
    `  relayed / direct                              ${ratio.toFixed(3)}  (${((ratio - 1) * 100).toFixed(1)}% from thread handoffs alone; issue 3's budget is 20%)`,
  ].join('\n') + '\n',
);
