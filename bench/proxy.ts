/**
 * Added latency of the proxy per `tools/call`, proxy against direct, median of many sequential calls.
 *
 *   node --experimental-strip-types --import ./test/fixtures/ts-loader.mjs bench/proxy.ts [--calls 2000] [--rounds 10]
 *
 * Two setups, each measured from the same SDK client process against the conformance fixture's `echo` tool:
 * - Streamable HTTP -> Streamable HTTP: client -> `codemode proxy URL --http` process -> fixture over HTTP,
 *   against client -> fixture over HTTP.
 * - stdio: client -> `codemode proxy --stdio -- fixture --stdio` process -> fixture over stdio, against
 *   client -> fixture over stdio.
 * The proxy runs in its own process (as a user runs it), through the test-only CLI entry, so no build is
 * needed. A third row hosts `createProxy` in the client's own process, which removes one process wake-up
 * per call (on 2 busy cores that wake-up, not the proxy's work, dominates the separate-process numbers).
 * Direct and proxied calls alternate in rounds so machine load drifts affect both alike.
 *
 * Two reference rows put the HTTP figure in context: CPU time per call of the proxy and fixture processes
 * (from /proc, over the proxied rounds), and the same comparison through a minimal keep-alive `node:http`
 * pipe with no MCP logic at all (what any Node HTTP hop costs on this machine: the floor for a forwarder).
 *
 * `--eras` measures only the protocol-era cells (issue 14): the v2 SDK client, in 2025 (`legacy`) or 2026-07-28
 * mode, through a `codemode proxy --http` process to a 2025 upstream (the conformance fixture) and to a
 * 2026-07-28-only upstream (test/fixtures/modern-upstream.ts), each proxied row against the same client
 * calling that upstream directly in the upstream's own era. Translation's cost is a cross-era row's added
 * latency minus the same-era row's in front of the same upstream.
 *
 * BASELINE_DIR=<checkout of an earlier commit> adds that commit's proxy process to the two separate-process
 * rows, measured in the same run against the same fixture (before and after a change).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const { values } = parseArgs({ options: { calls: { type: 'string' }, rounds: { type: 'string' }, eras: { type: 'boolean' } } });
const CALLS = Number(values.calls ?? '2000');
const ROUNDS = Number(values.rounds ?? '20');
const WARMUP = 200;

const NODE = process.execPath;
const FIXTURE = fileURLToPath(new URL('../test/fixtures/conformance-server.ts', import.meta.url));
const ENTRY = fileURLToPath(new URL('../test/fixtures/proxy-cli-entry.ts', import.meta.url));
const LOADER = fileURLToPath(new URL('../test/fixtures/ts-loader.mjs', import.meta.url));
const BASELINE_DIR = process.env.BASELINE_DIR;
const BASE_ENTRY = BASELINE_DIR === undefined ? undefined : join(BASELINE_DIR, 'test/fixtures/proxy-cli-entry.ts');
const BASE_LOADER = BASELINE_DIR === undefined ? undefined : join(BASELINE_DIR, 'test/fixtures/ts-loader.mjs');
const TS = ['--experimental-strip-types', '--no-warnings'];
const ENV = { ...process.env, NODE_COMPILE_CACHE: join(tmpdir(), 'codemode-compile-cache'), CODEMODE_LOG_LEVEL: 'info' };
const children: ChildProcess[] = [];

/** A minimal keep-alive HTTP pipe (all headers through, no MCP logic): the floor for any Node forwarder. */
const PIPE = `import { createServer, request, Agent } from 'node:http';
const up = new URL(process.argv[1]);
const agent = new Agent({ keepAlive: true });
const s = createServer((req, res) => {
  const headers = { ...req.headers }; delete headers.host;
  const r = request({ hostname: up.hostname, port: up.port, path: up.pathname, method: req.method, headers, agent }, (u) => { res.writeHead(u.statusCode, u.headers); u.pipe(res); });
  req.pipe(r);
});
s.listen(0, '127.0.0.1', () => console.error('listening on http://127.0.0.1:' + s.address().port + '/mcp'));`;

/** CPU time of a process so far, in ms, from /proc (Linux): [user + system, system]. */
function cpuMs(pid: number | undefined): [number, number] {
  if (pid === undefined) return [Number.NaN, Number.NaN];
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return [(Number(fields[11]) + Number(fields[12])) * 10, Number(fields[12]) * 10];
  } catch {
    return [Number.NaN, Number.NaN];
  }
}

const pids = new Map<string, number | undefined>();

function startHttp(args: string[]): Promise<string> {
  const child = spawn(NODE, args, { stdio: ['ignore', 'ignore', 'pipe'], env: ENV });
  children.push(child);
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`did not start: ${err}`)), 20_000);
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /listening on (http:\S+)/.exec(err);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        pids.set(m[1], child.pid);
        resolve(m[1]);
      }
    });
  });
}

async function client(transport: StdioClientTransport | StreamableHTTPClientTransport): Promise<Client> {
  const c = new Client({ name: 'bench', version: '1' });
  await c.connect(transport);
  return c;
}

async function timeCalls(c: Client, n: number, out: number[]): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await c.callTool({ name: 'echo', arguments: { text: 'ping' } });
    out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const p90 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)] as number;

/**
 * Direct against proxied calls, alternating in rounds so machine load drifts affect all alike. Several proxied
 * clients (before/after in one run) share the rounds and the direct samples. `cpu`: processes whose CPU time
 * per call is reported, measured over that client's proxied rounds only.
 */
async function compare(direct: Client, rows: Array<{ name: string; client: Client; cpu: Record<string, number | undefined> }>): Promise<void> {
  await timeCalls(direct, WARMUP, []);
  for (const r of rows) await timeCalls(r.client, WARMUP, []);
  const d: number[] = [];
  const samples = rows.map(() => [] as number[]);
  const used = rows.map(() => ({}) as Record<string, [number, number]>);
  const perRound = Math.ceil(CALLS / ROUNDS);
  for (let round = 0; round < ROUNDS; round++) {
    await timeCalls(direct, perRound, d);
    for (const [i, r] of rows.entries()) {
      const before = Object.fromEntries(Object.entries(r.cpu).map(([k, pid]) => [k, cpuMs(pid)]));
      await timeCalls(r.client, perRound, samples[i]!);
      for (const [k, pid] of Object.entries(r.cpu)) {
        const [total, sys] = cpuMs(pid);
        const [total0, sys0] = before[k] ?? [0, 0];
        const [t, sy] = used[i]![k] ?? [0, 0];
        used[i]![k] = [t + total - total0, sy + sys - sys0];
      }
    }
  }
  for (const [i, r] of rows.entries()) {
    const p = samples[i]!;
    const cpuText = Object.entries(used[i]!).map(([k, [ms, sys]]) => `${k} ${(ms / p.length).toFixed(3)} ms (kernel ${(sys / p.length).toFixed(3)})`).join(', ');
    process.stdout.write(
      `${r.name.padEnd(34)} direct median ${median(d).toFixed(3)} ms (p90 ${p90(d).toFixed(3)})  proxy median ${median(p).toFixed(3)} ms (p90 ${p90(p).toFixed(3)})  added ${(median(p) - median(d)).toFixed(3)} ms  [${p.length} calls each]${cpuText === '' ? '' : `  CPU per proxied call: ${cpuText}`}\n`,
    );
  }
}

/** The v2 SDK client in one era, over Streamable HTTP. */
async function v2Client(url: string, era: 'legacy' | 'modern'): Promise<{ callTool: Client['callTool']; close(): Promise<void> }> {
  const sdk = await import('@modelcontextprotocol/client');
  const c = new sdk.Client({ name: 'bench', version: '1' }, { versionNegotiation: { mode: era === 'legacy' ? 'legacy' : { pin: '2026-07-28' } } });
  await c.connect(new sdk.StreamableHTTPClientTransport(new URL(url)));
  return c as unknown as { callTool: Client['callTool']; close(): Promise<void> };
}

/** The era cells: each proxied row against the same client calling the upstream directly, in its era. */
async function eras(): Promise<void> {
  const MODERN_UPSTREAM = fileURLToPath(new URL('../test/fixtures/modern-upstream.ts', import.meta.url));
  const legacyUrl = await startHttp([...TS, FIXTURE, '--port', '0']);
  const modernUrl = await startHttp([...TS, MODERN_UPSTREAM, '--port', '0']);
  const toLegacy = await startHttp([...TS, '--import', LOADER, ENTRY, legacyUrl, '--http', '--port', '0']);
  const toModern = await startHttp([...TS, '--import', LOADER, ENTRY, modernUrl, '--http', '--port', '0']);
  const directLegacy = await v2Client(legacyUrl, 'legacy');
  const directModern = await v2Client(modernUrl, 'modern');
  await timeCalls(directLegacy as Client, 2000, []);
  await timeCalls(directModern as Client, 2000, []);
  const row = async (name: string, url: string, era: 'legacy' | 'modern', proxy: string, upstream: string) => ({
    name,
    client: (await v2Client(url, era)) as Client,
    cpu: { proxy: pids.get(proxy), upstream: pids.get(upstream) },
  });
  process.stdout.write('in front of a 2025 upstream (direct: the client in 2025 mode):\n');
  const legacyRows = [
    await row('2025 client -> 2025 upstream (forward)', toLegacy, 'legacy', toLegacy, legacyUrl),
    await row('2026 client -> 2025 upstream (translate)', toLegacy, 'modern', toLegacy, legacyUrl),
  ];
  await compare(directLegacy as Client, legacyRows);
  process.stdout.write('in front of a 2026-07-28 upstream (direct: the client in 2026-07-28 mode):\n');
  const modernRows = [
    await row('2026 client -> 2026 upstream (forward)', toModern, 'modern', toModern, modernUrl),
    await row('2025 client -> 2026 upstream (translate)', toModern, 'legacy', toModern, modernUrl),
  ];
  await compare(directModern as Client, modernRows);
  for (const r of [...legacyRows, ...modernRows]) await r.client.close();
  await directLegacy.close();
  await directModern.close();

  // stdio -> stdio: the proxy process started by each client, as a host starts it.
  const legacyCmd = [NODE, ...TS, FIXTURE, '--stdio'];
  const modernCmd = [NODE, ...TS, MODERN_UPSTREAM, '--stdio'];
  const stdioClient = async (command: string[], era: 'legacy' | 'modern'): Promise<Client> => {
    const sdk = await import('@modelcontextprotocol/client');
    const stdio = await import('@modelcontextprotocol/client/stdio');
    const c = new sdk.Client({ name: 'bench', version: '1' }, { versionNegotiation: { mode: era === 'legacy' ? 'legacy' : { pin: '2026-07-28' } } });
    await c.connect(new stdio.StdioClientTransport({ command: command[0]!, args: command.slice(1), env: ENV as Record<string, string>, stderr: 'ignore' }));
    return c as unknown as Client;
  };
  const viaProxy = (upstream: string[]): string[] => [NODE, ...TS, '--import', LOADER, ENTRY, '--stdio', '--', ...upstream];
  const stdioLegacy = await stdioClient(legacyCmd, 'legacy');
  const stdioModern = await stdioClient(modernCmd, 'modern');
  process.stdout.write('stdio, in front of a 2025 upstream:\n');
  const sl = [
    { name: 'stdio 2025 -> 2025 (forward)', client: await stdioClient(viaProxy(legacyCmd), 'legacy'), cpu: {} },
    { name: 'stdio 2026 -> 2025 (translate)', client: await stdioClient(viaProxy(legacyCmd), 'modern'), cpu: {} },
  ];
  await compare(stdioLegacy, sl);
  process.stdout.write('stdio, in front of a 2026-07-28 upstream:\n');
  const sm = [
    { name: 'stdio 2026 -> 2026 (forward)', client: await stdioClient(viaProxy(modernCmd), 'modern'), cpu: {} },
    { name: 'stdio 2025 -> 2026 (translate)', client: await stdioClient(viaProxy(modernCmd), 'legacy'), cpu: {} },
  ];
  await compare(stdioModern, sm);
  for (const r of [...sl, ...sm]) await r.client.close();
  await stdioLegacy.close();
  await stdioModern.close();
}

try {
  if (values.eras === true) {
    process.stdout.write(`proxy era bench: node ${process.version}, ${CALLS} calls per side in ${ROUNDS} alternating rounds, ${WARMUP} warm-up calls; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${availableParallelism()} CPUs\n`);
    await eras();
    for (const c of children) c.kill('SIGTERM');
    process.exit(0);
  }
  process.stdout.write(`proxy bench: node ${process.version}, ${CALLS} calls per side in ${ROUNDS} alternating rounds, ${WARMUP} warm-up calls; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${availableParallelism()} CPUs\n`);
  // Streamable HTTP -> Streamable HTTP
  const fixtureUrl = await startHttp([...TS, FIXTURE, '--port', '0']);
  const proxyUrl = await startHttp([...TS, '--import', LOADER, ENTRY, fixtureUrl, '--http', '--port', '0']);
  const httpDirect = await client(new StreamableHTTPClientTransport(new URL(fixtureUrl)));
  const httpProxy = await client(new StreamableHTTPClientTransport(new URL(proxyUrl)));
  // Warm the fixture up first (JIT, caches), or whichever row runs first pays for it.
  await timeCalls(httpDirect, 2000, []);
  // Reference floor: the same hop through a bare keep-alive pipe.
  const pipeUrl = await startHttp(['--input-type=module', '-e', PIPE, fixtureUrl]);
  const httpPipe = await client(new StreamableHTTPClientTransport(new URL(pipeUrl)));
  await compare(httpDirect, [{ name: 'reference: bare node:http pipe', client: httpPipe, cpu: { pipe: pids.get(pipeUrl), fixture: pids.get(fixtureUrl) } }]);
  await httpPipe.close();
  const httpRows = [{ name: 'Streamable HTTP -> Streamable HTTP', client: httpProxy, cpu: { proxy: pids.get(proxyUrl), fixture: pids.get(fixtureUrl) } }];
  if (BASE_ENTRY !== undefined && BASE_LOADER !== undefined) {
    const baseUrl = await startHttp([...TS, '--import', BASE_LOADER, BASE_ENTRY, fixtureUrl, '--http', '--port', '0']);
    const httpBase = await client(new StreamableHTTPClientTransport(new URL(baseUrl)));
    httpRows.push({ name: 'HTTP -> HTTP, baseline', client: httpBase, cpu: { proxy: pids.get(baseUrl), fixture: pids.get(fixtureUrl) } });
  }
  await compare(httpDirect, httpRows);
  for (const row of httpRows.slice(1)) await row.client.close();
  await httpProxy.close();

  // The same, with the proxy in this process (the loader resolves src/*.js to the TypeScript sources).
  const { createProxy } = await import('../src/proxy/proxy.js');
  const { serveProxyHttp } = await import('../src/proxy/http.js');
  const local = await serveProxyHttp(createProxy({ url: fixtureUrl }));
  const httpLocal = await client(new StreamableHTTPClientTransport(new URL(local.url)));
  await compare(httpDirect, [{ name: 'HTTP -> HTTP, proxy in-process', client: httpLocal, cpu: {} }]);
  await httpLocal.close();
  await local.close();
  await httpDirect.close();

  // stdio -> stdio
  const stdioDirect = await client(new StdioClientTransport({ command: NODE, args: [...TS, FIXTURE, '--stdio'], env: ENV as Record<string, string>, stderr: 'ignore' }));
  const stdioProxy = await client(
    new StdioClientTransport({ command: NODE, args: [...TS, '--import', LOADER, ENTRY, '--stdio', '--', NODE, ...TS, FIXTURE, '--stdio'], env: ENV as Record<string, string>, stderr: 'ignore' }),
  );
  const stdioRows = [{ name: 'stdio -> stdio', client: stdioProxy, cpu: {} }];
  if (BASE_ENTRY !== undefined && BASE_LOADER !== undefined) {
    const stdioBase = await client(
      new StdioClientTransport({ command: NODE, args: [...TS, '--import', BASE_LOADER, BASE_ENTRY, '--stdio', '--', NODE, ...TS, FIXTURE, '--stdio'], env: ENV as Record<string, string>, stderr: 'ignore' }),
    );
    stdioRows.push({ name: 'stdio -> stdio, baseline', client: stdioBase, cpu: {} });
  }
  await compare(stdioDirect, stdioRows);
  for (const row of stdioRows.slice(1)) await row.client.close();
  await stdioProxy.close();
  await stdioDirect.close();
} finally {
  for (const c of children) c.kill('SIGTERM');
}
