/**
 * codemode-remote vs mcp-remote@0.15.1, same run, both against server-everything over Streamable
 * HTTP on 127.0.0.1. Needs the built bridge (`npm run build`).
 *
 *   node --no-node-snapshot --experimental-strip-types bench/bridge.ts [runs=9] [calls=200]
 *   node --no-node-snapshot --experimental-strip-types bench/bridge.ts --eras [calls=2000]
 *
 * `--eras` measures only the protocol-era cells (issue 14): codemode-remote with a 2025 host and a
 * 2026-07-28 host, in front of server-everything (2025) and of test/fixtures/modern-upstream.ts (2026-07-28
 * only), in alternating rounds. Translation's cost is a cross-era cell's median minus the same-era cell's in
 * front of the same remote.
 *
 * BASELINE_DIR=<checkout of an earlier commit, built> adds that commit's codemode-remote as a third column,
 * measured in the same run (before and after a change, on the same machine state).
 *
 * Measures: spawn -> initialize result; spawn -> initialize + tools/list; median added latency per
 * tools/call against a direct SDK HTTP client; RSS after the calls; and what the host sees for a
 * wrong URL (server root) and a dead port.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ERAS = process.argv.includes('--eras');
const numbers = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const RUNS = ERAS ? 0 : Number(numbers[0] ?? 9);
const CALLS = Number((ERAS ? numbers[0] : numbers[1]) ?? (ERAS ? 2000 : 200));
const configDir = mkdtempSync(join(tmpdir(), 'bench-bridge-'));

interface Bridge {
  name: string;
  args: (url: string) => string[];
}
const BASELINE_DIR = process.env.BASELINE_DIR;
const BRIDGES: Bridge[] = [
  { name: 'codemode-remote', args: (url) => [join(root, 'dist/cli/codemode-remote.js'), url] },
  ...(BASELINE_DIR !== undefined ? [{ name: 'codemode-remote (baseline)', args: (url: string) => [join(resolve(BASELINE_DIR), 'dist/cli/codemode-remote.js'), url] }] : []),
  { name: 'mcp-remote 0.15.1', args: (url) => [join(root, 'node_modules/mcp-remote/dist/proxy.js'), url] },
];
const ENV = { ...process.env, CODEMODE_CONFIG_DIR: configDir, MCP_REMOTE_CONFIG_DIR: configDir };

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const range = (xs: number[]): string => `${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))}`;

class Host {
  readonly child: ChildProcessWithoutNullStreams;
  private buffer = '';
  private waiters = new Map<number, (m: Record<string, unknown>) => void>();
  private nextId = 1;
  readonly t0 = performance.now();
  closedAt: number | undefined;
  stderr = '';

  constructor(args: string[]) {
    this.child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'], env: ENV });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d: string) => (this.stderr += d));
    this.child.stdin.on('error', () => undefined);
    this.child.stdout.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) !== -1) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        try {
          const m = JSON.parse(line) as Record<string, unknown>;
          if (typeof m.id === 'number' && m.method === undefined) this.waiters.get(m.id)?.(m);
        } catch {
          // not JSON-RPC: ignored here (the tests assert stdout purity)
        }
      }
    });
    this.child.once('exit', () => {
      this.closedAt = performance.now();
      for (const [id, w] of this.waiters) w({ id, closed: true });
    });
  }

  request(method: string, params: Record<string, unknown>, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve_) => {
      const timer = setTimeout(() => resolve_({ id, timeout: true }), timeoutMs);
      this.waiters.set(id, (m) => {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve_(m);
      });
      if (this.child.exitCode !== null) return resolve_({ id, closed: true });
      this.child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
    });
  }

  async initialize(protocolVersion = '2025-06-18'): Promise<Record<string, unknown>> {
    const r = await this.request('initialize', { protocolVersion, capabilities: {}, clientInfo: { name: 'bench', version: '1' } });
    if (r.result !== undefined) this.child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
    return r;
  }

  /** CPU time (user + system) the process has used so far, from /proc: robust to a loaded machine. */
  cpuMs(): number {
    const fields = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  }

  rssMiB(): number {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  }

  async stop(): Promise<void> {
    this.child.stdin.end();
    await new Promise<void>((r) => {
      const t = setTimeout(() => {
        this.child.kill('SIGKILL');
        r();
      }, 3_000);
      if (this.child.exitCode !== null) {
        clearTimeout(t);
        r();
      } else
        this.child.once('exit', () => {
          clearTimeout(t);
          r();
        });
    });
  }
}

const MODERN = '2026-07-28';
const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: 'bench', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};

/** The era cells: each host kept open, the cells' calls in alternating rounds. */
async function eras(everythingUrl: string): Promise<void> {
  const modern = spawn(process.execPath, ['--experimental-strip-types', '--no-warnings', join(root, 'test/fixtures/modern-upstream.ts'), '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    const modernUrl = await new Promise<string>((r) => {
      let err = '';
      modern.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        const m = /listening on (http:\S+)/.exec(err);
        if (m?.[1] !== undefined) r(m[1]);
      });
    });
    const bridge = (url: string) => [join(root, 'dist/cli/codemode-remote.js'), url];
    const cells = [
      { name: '2025 host -> 2025 remote (forward)', url: everythingUrl, host: 'legacy', args: { message: 'hello' } },
      { name: '2026 host -> 2025 remote (translate)', url: everythingUrl, host: 'modern', args: { message: 'hello' } },
      { name: '2026 host -> 2026 remote (forward)', url: modernUrl, host: 'modern', args: { text: 'hello' } },
      { name: '2025 host -> 2026 remote (translate)', url: modernUrl, host: 'legacy', args: { text: 'hello' } },
    ] as const;
    const hosts: Host[] = [];
    for (const c of cells) {
      const h = new Host(bridge(c.url));
      // The 2025 host asks for 2025-11-25, the version the bridge's translation asks of a 2025 remote:
      // server-everything answers a 2025-11-25 session about 1.9 ms slower per call than a 2025-06-18 one,
      // which would otherwise be counted as translation's cost.
      const ok = c.host === 'legacy' ? await h.initialize('2025-11-25') : await h.request('server/discover', { _meta: ENVELOPE });
      if (ok.result === undefined) throw new Error(`${c.name}: ${JSON.stringify(ok)}\n${h.stderr}`);
      hosts.push(h);
    }
    const call = (i: number) => {
      const c = cells[i]!;
      return hosts[i]!.request('tools/call', { name: 'echo', arguments: c.args, ...(c.host === 'modern' ? { _meta: ENVELOPE } : {}) });
    };
    for (let i = 0; i < cells.length; i++) for (let k = 0; k < 200; k++) await call(i);
    const samples = cells.map(() => [] as number[]);
    const rounds = 20;
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < cells.length; i++) {
        for (let k = 0; k < Math.ceil(CALLS / rounds); k++) {
          const t = performance.now();
          const r = await call(i);
          if (r.result === undefined) throw new Error(`${cells[i]!.name}: ${JSON.stringify(r)}`);
          samples[i]!.push(performance.now() - t);
        }
      }
    }
    for (const h of hosts) await h.stop();
    const m = samples.map(median);
    const lines = [
      `codemode-remote era cells: ${CALLS} tools/call (echo) per cell in ${rounds} alternating rounds, 200 warm-up calls each`,
      '',
      '| cell | tools/call median through the bridge |',
      '|---|---|',
      ...cells.map((c, i) => `| ${c.name} | ${m[i]!.toFixed(3)} ms |`),
      '',
      `translation's cost, 2026 host in front of a 2025 remote: ${(m[1]! - m[0]!).toFixed(3)} ms per call`,
      `translation's cost, 2025 host in front of a 2026-07-28 remote: ${(m[3]! - m[2]!).toFixed(3)} ms per call`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    modern.kill();
  }
}

async function main(): Promise<void> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/mcp`;
  const everything = spawn(process.execPath, [join(root, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'streamableHttp'], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise<void>((r) => everything.stderr.on('data', (d: Buffer) => d.toString().includes('listening') && r()));

  try {
    if (ERAS) {
      await eras(url);
      return;
    }
    // Warm-up: fills each tool's compile cache, as a host's second launch would find it.
    for (const b of BRIDGES) {
      const h = new Host(b.args(url));
      await h.initialize();
      await h.stop();
    }

    const init: Record<string, number[]> = {};
    const initList: Record<string, number[]> = {};
    const cpu: Record<string, number[]> = {};
    for (let i = 0; i < RUNS; i++) {
      for (const b of BRIDGES) {
        const h = new Host(b.args(url));
        const r = await h.initialize();
        const tInit = performance.now() - h.t0;
        (cpu[b.name] ??= []).push(h.cpuMs());
        const l = await h.request('tools/list', {});
        const tList = performance.now() - h.t0;
        if (r.result === undefined || l.result === undefined) throw new Error(`${b.name} failed: ${JSON.stringify(r)}\n${h.stderr}`);
        (init[b.name] ??= []).push(tInit);
        (initList[b.name] ??= []).push(tList);
        await h.stop();
      }
    }

    // Direct baseline: the SDK's own HTTP client.
    const client = new Client({ name: 'bench-direct', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(url));
    await client.connect(transport);
    const call = { name: 'echo', arguments: { message: 'hello' } };
    for (let i = 0; i < 20; i++) await client.callTool(call);
    const direct: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const t = performance.now();
      await client.callTool(call);
      direct.push(performance.now() - t);
    }
    await transport.terminateSession().catch(() => undefined);
    await client.close();

    // Direct baseline 2: raw fetch, no SDK (the floor: one HTTP round trip per call).
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const initRes = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }) });
    await initRes.text();
    headers['mcp-session-id'] = initRes.headers.get('mcp-session-id') ?? '';
    headers['mcp-protocol-version'] = '2025-06-18';
    await (await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text();
    const raw: number[] = [];
    for (let i = 0; i < CALLS + 20; i++) {
      const t = performance.now();
      const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: i + 1, method: 'tools/call', params: call }) });
      const body = await res.text();
      if (!body.includes('hello')) throw new Error(`raw call failed: ${body}`);
      if (i >= 20) raw.push(performance.now() - t);
    }
    // Direct baseline 3: raw node:http with a keep-alive agent, no SDK (the fastest plain client here; since
    // codemode-remote posts with node:http itself, "added" is fairest against this one).
    const agent = new HttpAgent({ keepAlive: true });
    const target = new URL(url);
    const postRaw = (body: string): Promise<string> =>
      new Promise((done, fail) => {
        const payload = Buffer.from(body);
        const req = httpRequest({ hostname: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent, headers: { ...headers, 'content-length': payload.length } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.once('end', () => done(Buffer.concat(chunks).toString('utf8')));
        });
        req.once('error', fail);
        req.end(payload);
      });
    const rawHttp: number[] = [];
    for (let i = 0; i < CALLS + 20; i++) {
      const t = performance.now();
      const body = await postRaw(JSON.stringify({ jsonrpc: '2.0', id: 10_000 + i, method: 'tools/call', params: call }));
      if (!body.includes('hello')) throw new Error(`raw node:http call failed: ${body}`);
      if (i >= 20) rawHttp.push(performance.now() - t);
    }
    agent.destroy();
    await fetch(url, { method: 'DELETE', headers }).then((r) => r.text());

    const perCall: Record<string, number[]> = {};
    const rss: Record<string, number> = {};
    for (const b of BRIDGES) {
      const h = new Host(b.args(url));
      await h.initialize();
      for (let i = 0; i < 20; i++) await h.request('tools/call', call);
      const xs: number[] = [];
      for (let i = 0; i < CALLS; i++) {
        const t = performance.now();
        const r = await h.request('tools/call', call);
        if (r.result === undefined) throw new Error(`${b.name} tools/call failed: ${JSON.stringify(r)}`);
        xs.push(performance.now() - t);
      }
      perCall[b.name] = xs;
      rss[b.name] = h.rssMiB();
      await h.stop();
    }

    const failures: string[] = [];
    const deadUrl = `http://127.0.0.1:${await freePort()}/mcp`;
    for (const [label, target] of [
      ['wrong URL (server root)', `http://127.0.0.1:${port}/`],
      ['dead port', deadUrl],
    ] as const) {
      for (const b of BRIDGES) {
        const h = new Host(b.args(target));
        const r = await h.initialize();
        const ms = performance.now() - h.t0;
        await h.stop();
        const err = r.error as { code?: number; message?: string } | undefined;
        const seen = err !== undefined ? `JSON-RPC error ${err.code}: "${(err.message ?? '').slice(0, 110)}..."` : r.closed === true ? 'closed pipe, no answer' : r.timeout === true ? 'no answer within 20 s' : 'unexpected success';
        failures.push(`| ${label} | ${b.name} | ${Math.round(ms)} ms | exit ${h.child.exitCode ?? h.child.signalCode} | ${seen} |`);
      }
    }

    const d = median(direct);
    const row = (label: string, cell: (name: string) => string) => `| ${label} | ${BRIDGES.map((b) => cell(b.name)).join(' | ')} |`;
    const lines = [
      `Runs: ${RUNS} interleaved launches per bridge (after one warm-up each), ${CALLS} sequential tools/call (echo) per bridge.${BASELINE_DIR !== undefined ? ` Baseline: ${BASELINE_DIR}.` : ''}`,
      '',
      `| metric | ${BRIDGES.map((b) => b.name).join(' | ')} |`,
      `|---|${BRIDGES.map(() => '---|').join('')}`,
      row('spawn -> initialize result, median (range)', (n) => `${Math.round(median(init[n]!))} ms (${range(init[n]!)})`),
      row('CPU time (user+sys) at initialize result, median (range)', (n) => `${Math.round(median(cpu[n]!))} ms (${range(cpu[n]!)})`),
      row('spawn -> initialize + tools/list, median (range)', (n) => `${Math.round(median(initList[n]!))} ms (${range(initList[n]!)})`),
      row('tools/call median through the bridge', (n) => `${median(perCall[n]!).toFixed(2)} ms`),
      row(`added vs direct SDK HTTP client (${d.toFixed(2)} ms)`, (n) => `${(median(perCall[n]!) - d).toFixed(2)} ms`),
      row(`added vs raw fetch, no SDK (${median(raw).toFixed(2)} ms)`, (n) => `${(median(perCall[n]!) - median(raw)).toFixed(2)} ms`),
      row(`added vs raw node:http keep-alive, no SDK (${median(rawHttp).toFixed(2)} ms)`, (n) => `${(median(perCall[n]!) - median(rawHttp)).toFixed(2)} ms`),
      row(`RSS after ${CALLS + 20} calls`, (n) => `${rss[n]!.toFixed(0)} MiB`),
      '',
      '| failure | bridge | host waited | exit | what the host saw |',
      '|---|---|---|---|---|',
      ...failures,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    everything.kill();
    rmSync(configDir, { recursive: true, force: true });
  }
}

await main();
