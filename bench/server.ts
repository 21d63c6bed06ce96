/**
 * `codemode serve --http` on loopback, measured from SDK clients over Streamable HTTP.
 *
 *   npm run build && node --no-node-snapshot --experimental-strip-types bench/server.ts
 *
 * - latency of execute `return 1`, and of an execute making 10 calls to a stdio upstream (the example
 *   inventory server), p50 / p95, with 10 direct `tools/call`s to the same server as a reference;
 * - throughput with 8 concurrent clients;
 * - server RSS per concurrent execution (executes parked on a 4 s upstream call);
 * - the two protocol eras side by side (issue 15): execute `return 1` and `tools/list` for a 2025-11-25
 *   client and a 2026-07-28 client (the v2 SDK client in `legacy` mode and pinned), over HTTP (the same
 *   server) and over stdio (a `serve --stdio` process each), alternating one call of each era so both see
 *   the same machine, with the ratio 2026 / 2025 of the medians. Goal: 2026 no slower than 2025.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { Client as V2Client, StreamableHTTPClientTransport as V2HttpTransport } from '@modelcontextprotocol/client';
import type { CallToolResult as V2CallToolResult } from '@modelcontextprotocol/client';
import { StdioClientTransport as V2StdioTransport } from '@modelcontextprotocol/client/stdio';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/codemode.js');
const INVENTORY = join(ROOT, 'examples/inventory-server.mjs');
const EVERYTHING = join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');

const RETURN_1 = 'return 1';
const TEN_CALLS = `let stock = 0;
for (const sku of ['KB-101', 'MS-220', 'MN-270', 'MN-240', 'CB-USB', 'CB-HDM', 'DK-400', 'KB-101', 'MS-220', 'MN-270']) {
  stock += (await tools.inventory.get_product({ sku })).stock;
}
return stock;`;

function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ms = (v: number) => `${v.toFixed(2)} ms`;

async function connect(url: string): Promise<Client> {
  const client = new Client({ name: 'bench', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

async function execute(client: Client, code: string): Promise<void> {
  const result = await client.request({ method: 'tools/call', params: { name: 'execute', arguments: { code } } }, CallToolResultSchema, { timeout: 120_000 });
  if (result.isError) throw new Error(`execute failed: ${JSON.stringify(result.structuredContent)}`);
}

/** Times `fn` n times; `pauseMs` of think time before each call is not counted. */
async function timed(n: number, fn: () => Promise<void>, pauseMs = 0): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

type Era = 'legacy' | { pin: string };
const ERAS: Array<[string, Era]> = [
  ['2025-11-25', 'legacy'],
  ['2026-07-28', { pin: '2026-07-28' }],
];

/** Alternates one call per era, `n` rounds, and returns each era's timings. */
async function alternate(clients: V2Client[], n: number, fn: (c: V2Client) => Promise<void>): Promise<number[][]> {
  const out = clients.map(() => [] as number[]);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < clients.length; k++) {
      // Start with a different era each round, so neither always runs first.
      const j = (k + i) % clients.length;
      const t0 = performance.now();
      await fn(clients[j]!);
      out[j]!.push(performance.now() - t0);
    }
  }
  return out;
}

async function v2Execute(c: V2Client, code: string): Promise<void> {
  const r = (await c.callTool({ name: 'execute', arguments: { code } }, { timeout: 120_000 })) as V2CallToolResult;
  if (r.isError) throw new Error(`execute failed: ${JSON.stringify(r.structuredContent)}`);
}

/** Both eras over one transport: rows of p50 / p95 per era, and the ratio of the medians. */
async function erasRows(label: string, clients: V2Client[]): Promise<string[]> {
  for (let i = 0; i < 20; i++) for (const c of clients) await v2Execute(c, RETURN_1);
  const exec = await alternate(clients, 200, (c) => v2Execute(c, RETURN_1));
  // bypass: the 2026 client would otherwise answer from its cache (tools/list carries ttlMs).
  const list = await alternate(clients, 200, async (c) => void (await c.listTools(undefined, { cacheMode: 'bypass' })));
  const row = (what: string, t: number[][]) => {
    const [legacy, modern] = [pct(t[0]!, 50), pct(t[1]!, 50)];
    return `| ${label} | ${what} | ${ms(legacy)} / ${ms(pct(t[0]!, 95))} | ${ms(modern)} / ${ms(pct(t[1]!, 95))} | ${(modern / legacy).toFixed(2)} |`;
  };
  return [row('execute `return 1`', exec), row('`tools/list`', list)];
}

async function erasOverStdio(config: string): Promise<string[]> {
  const clients: V2Client[] = [];
  try {
    for (const [, mode] of ERAS) {
      const c = new V2Client({ name: 'bench-eras', version: '1.0.0' }, { versionNegotiation: { mode } });
      await c.connect(new V2StdioTransport({ command: process.execPath, args: ['--no-node-snapshot', CLI, 'serve', '--stdio', '--config', config, '--log-level', 'warn'], stderr: 'ignore' }));
      clients.push(c);
    }
    return await erasRows('stdio', clients);
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
  }
}

async function erasOverHttp(url: string): Promise<string[]> {
  const clients: V2Client[] = [];
  try {
    for (const [, mode] of ERAS) {
      const c = new V2Client({ name: 'bench-eras', version: '1.0.0' }, { versionNegotiation: { mode } });
      await c.connect(new V2HttpTransport(new URL(url)));
      clients.push(c);
    }
    return await erasRows('HTTP', clients);
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'codemode-bench-server-'));
  const config = join(dir, 'mcp.json');
  await writeFile(
    config,
    JSON.stringify({
      mcpServers: { inventory: { command: process.execPath, args: [INVENTORY] }, everything: { command: process.execPath, args: [EVERYTHING] } },
    }),
  );
  const child = spawn(process.execPath, ['--no-node-snapshot', CLI, 'serve', '--http', '--port', '0', '--config', config, '--max-concurrent', '32', '--max-queue', '64', '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${stderr}`)), 30_000);
    child.stderr.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
  const clients: Client[] = [];
  try {
    const one = await connect(url);
    clients.push(one);
    // Warm-up: JIT, isolate pool, upstream sessions.
    for (let i = 0; i < 20; i++) await execute(one, i % 2 ? RETURN_1 : TEN_CALLS);

    // 10 ms of think time between executes (not timed), as a model has; it lets the sandbox prepare its
    // warm isolate off the measured path.
    const r1 = await timed(200, () => execute(one, RETURN_1), 10);
    const r10 = await timed(100, () => execute(one, TEN_CALLS), 10);
    // Reference: a tools/call that never enters the sandbox (get_schema), i.e. the HTTP + MCP round trip.
    const rs = await timed(200, async () => {
      await one.callTool({ name: 'get_schema', arguments: { tools: ['inventory.get_product'] } });
    }, 10);

    // Reference: the same 10 calls made directly over stdio by an SDK client.
    const direct = new Client({ name: 'bench-direct', version: '1.0.0' });
    await direct.connect(new StdioClientTransport({ command: process.execPath, args: [INVENTORY] }));
    const skus = ['KB-101', 'MS-220', 'MN-270', 'MN-240', 'CB-USB', 'CB-HDM', 'DK-400', 'KB-101', 'MS-220', 'MN-270'];
    for (let i = 0; i < 10; i++) for (const sku of skus) await direct.callTool({ name: 'get_product', arguments: { sku } });
    const d10 = await timed(100, async () => {
      for (const sku of skus) await direct.callTool({ name: 'get_product', arguments: { sku } });
    });
    await direct.close();

    // Throughput: 8 clients, each with its own session, back to back.
    for (let i = 0; i < 7; i++) clients.push(await connect(url));
    const throughput = async (code: string, perClient: number) => {
      const t0 = performance.now();
      await Promise.all(clients.map(async (c) => {
        for (let i = 0; i < perClient; i++) await execute(c, code);
      }));
      return (clients.length * perClient) / ((performance.now() - t0) / 1000);
    };
    const tp1 = await throughput(RETURN_1, 50);
    const tp10 = await throughput(TEN_CALLS, 20);

    // RSS per concurrent execution: executes parked on a 4 s upstream call.
    await new Promise((r) => setTimeout(r, 500));
    const idle = rssMiB(child.pid!);
    const rss: Array<{ n: number; peak: number }> = [];
    for (const n of [8, 16, 32]) {
      const extra: Client[] = [];
      while (clients.length + extra.length < n) extra.push(await connect(url));
      const all = [...clients, ...extra].slice(0, n);
      let peak = 0;
      const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(child.pid!))), 50);
      await Promise.all(all.map((c) => execute(c, 'const big = new Array(1000).fill("x".repeat(100)); await tools.everything.trigger_long_running_operation({ duration: 4, steps: 1 }); return big.length')));
      clearInterval(sampler);
      rss.push({ n, peak });
      clients.push(...extra);
    }

    const erasHttp = await erasOverHttp(url);
    const erasStdio = await erasOverStdio(config);

    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const lines = [
      `machine: 2 vCPU, Node ${process.versions.node}, load average ${load} (shared with parallel work)`,
      '',
      '| measurement (HTTP on loopback, 1 client unless noted) | p50 | p95 |',
      '|---|---|---|',
      `| execute \`return 1\` (200 runs) | ${ms(pct(r1, 50))} | ${ms(pct(r1, 95))} |`,
      `| execute making 10 sequential calls to a stdio upstream (100 runs) | ${ms(pct(r10, 50))} | ${ms(pct(r10, 95))} |`,
      `| reference: \`get_schema\` (same HTTP + MCP round trip, no sandbox) | ${ms(pct(rs, 50))} | ${ms(pct(rs, 95))} |`,
      `| reference: the same 10 calls made directly by an SDK stdio client | ${ms(pct(d10, 50))} | ${ms(pct(d10, 95))} |`,
      '',
      '| throughput, 8 concurrent clients (own sessions) | executes/s |',
      '|---|---|',
      `| execute \`return 1\` | ${tp1.toFixed(0)} |`,
      `| execute with 10 upstream calls | ${tp10.toFixed(0)} |`,
      '',
      `| concurrent executes (each parked on a 4 s upstream call) | peak server RSS | per execution over idle (${idle.toFixed(0)} MiB) |`,
      '|---|---|---|',
      ...rss.map((r) => `| ${r.n} | ${r.peak.toFixed(0)} MiB | ${((r.peak - idle) / r.n).toFixed(2)} MiB |`),
      '',
      '| protocol eras, v2 SDK client (200 alternating rounds) | call | 2025-11-25 p50 / p95 | 2026-07-28 p50 / p95 | 2026 / 2025 (p50) |',
      '|---|---|---|---|---|',
      ...erasHttp,
      ...erasStdio,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
