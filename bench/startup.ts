/**
 * Start-up as an MCP host feels it: spawn to `tools/list` answered, over stdio (issue 16).
 *
 *   npm run build && node --no-node-snapshot --experimental-strip-types bench/startup.ts [runs=15]
 *   BASELINE_DIR=/path/to/earlier/checkout node --no-node-snapshot --experimental-strip-types bench/startup.ts
 *
 * Contenders, launched in interleaved rounds after one warm-up each (so the OS file cache is warm for all):
 * - a minimal SDK stdio server (bench/fixtures/minimal-stdio-server.mjs: McpServer, one tool): the floor;
 * - @modelcontextprotocol/server-everything over stdio;
 * - `codemode serve --stdio` with no upstreams;
 * - the example inventory server alone (an upstream's own start-up);
 * - `codemode serve --stdio` with that server as its one stdio upstream.
 * - `codemode proxy --stdio` in front of the minimal server, with each proxy's RSS;
 * - with BASELINE_DIR=<checkout of an earlier commit, built>: both serve rows and the proxy row again from
 *   that checkout, for a before/after in one run.
 * Each time is from spawn to the answer of `tools/list` (after `initialize` and `notifications/initialized`),
 * measured by a bare line-JSON client (no SDK on the measuring side). Medians and ranges are printed with
 * the goals: serve alone at or under 1.1x the minimal server; serve with one upstream at or under the slower
 * of the two alone + 50 ms.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.argv[2] ?? 15);
const NODE = process.execPath;
const CLI = join(ROOT, 'dist/cli/codemode.js');
const INVENTORY = join(ROOT, 'examples/inventory-server.mjs');
const dir = mkdtempSync(join(tmpdir(), 'bench-startup-'));
const config = join(dir, 'mcp.json');
writeFileSync(config, JSON.stringify({ mcpServers: { inventory: { command: NODE, args: [INVENTORY] } } }));

const MINIMAL = join(ROOT, 'bench/fixtures/minimal-stdio-server.mjs');
const BASELINE_DIR = process.env.BASELINE_DIR;
const proxyArgs = (cli: string) => [cli, 'proxy', '--stdio', '--', NODE, MINIMAL];
const CONTENDERS: Array<{ name: string; args: string[] }> = [
  { name: 'minimal SDK stdio server', args: [join(ROOT, 'bench/fixtures/minimal-stdio-server.mjs')] },
  { name: 'server-everything (stdio)', args: [join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'stdio'] },
  { name: 'codemode serve --stdio, no upstreams', args: ['--no-node-snapshot', CLI, 'serve', '--stdio', '--log-level', 'warn'] },
  { name: 'inventory server alone', args: [INVENTORY] },
  { name: 'codemode serve --stdio, one stdio upstream', args: ['--no-node-snapshot', CLI, 'serve', '--stdio', '--config', config, '--log-level', 'warn'] },
  { name: 'codemode proxy --stdio -> minimal server', args: proxyArgs(CLI) },
  ...(BASELINE_DIR !== undefined
    ? [
        { name: 'codemode serve --stdio, no upstreams, baseline', args: ['--no-node-snapshot', join(BASELINE_DIR, 'dist/cli/codemode.js'), 'serve', '--stdio', '--log-level', 'warn'] },
        { name: 'codemode serve --stdio, one stdio upstream, baseline', args: ['--no-node-snapshot', join(BASELINE_DIR, 'dist/cli/codemode.js'), 'serve', '--stdio', '--config', config, '--log-level', 'warn'] },
        { name: 'codemode proxy --stdio -> minimal server, baseline', args: proxyArgs(join(BASELINE_DIR, 'dist/cli/codemode.js')) },
      ]
    : []),
];
const rssKb = new Map<string, number[]>();

/** Spawn to tools/list answered, in ms. Bounded: a contender that does not answer in 30 s fails the bench. */
function launch(args: string[], name?: string): Promise<number> {
  const t0 = performance.now();
  const child = spawn(NODE, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, CODEMODE_LOG_LEVEL: 'warn' } });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    if (stderr.length < 8192) stderr += d;
  });
  const send = (m: object) => child.stdin.write(`${JSON.stringify(m)}\n`);
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no tools/list answer within 30 s from ${args.join(' ')}:\n${stderr}`));
    }, 30_000);
    let buffer = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let m: { id?: unknown; result?: unknown; error?: unknown };
        try {
          m = JSON.parse(line) as typeof m;
        } catch {
          continue;
        }
        if (m.id === 1) {
          send({ jsonrpc: '2.0', method: 'notifications/initialized' });
          send({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} });
        } else if (m.id === 2) {
          const ms = performance.now() - t0;
          clearTimeout(timer);
          if (name !== undefined) {
            try {
              const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]);
              if (kb > 0) rssKb.set(name, [...(rssKb.get(name) ?? []), kb]);
            } catch {
              // not Linux, or already gone: no RSS column
            }
          }
          child.stdin.end();
          child.kill('SIGTERM');
          if (m.result === undefined) reject(new Error(`tools/list failed: ${line.slice(0, 300)}`));
          // The next launch starts only after this one has exited, so its teardown (a server closing its
          // upstreams, disposing isolates) does not land on the next contender's start-up.
          else child.once('exit', () => setTimeout(() => resolve(ms), 100));
        }
      }
    });
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1' } } });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

try {
  process.stdout.write(`start-up bench: Node ${process.version}, ${availableParallelism()} CPUs, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, ${RUNS} interleaved launches each\n\n`);
  for (const c of CONTENDERS) await launch(c.args);
  const times = new Map<string, number[]>(CONTENDERS.map((c) => [c.name, []]));
  for (let i = 0; i < RUNS; i++) for (const c of CONTENDERS) times.get(c.name)!.push(await launch(c.args, c.name));
  const med = (name: string) => median(times.get(name)!);
  process.stdout.write('| contender | spawn -> tools/list, median | range | RSS at tools/list, median |\n|---|---|---|---|\n');
  for (const c of CONTENDERS) {
    const xs = times.get(c.name)!;
    const rss = rssKb.get(c.name);
    process.stdout.write(`| ${c.name} | ${med(c.name).toFixed(0)} ms | ${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)} ms | ${rss ? `${(median(rss) / 1024).toFixed(0)} MiB` : '-'} |\n`);
  }
  const alone = med('codemode serve --stdio, no upstreams');
  const floor = med('minimal SDK stdio server');
  const withOne = med('codemode serve --stdio, one stdio upstream');
  const bound = Math.max(alone, med('inventory server alone')) + 50;
  process.stdout.write(
    `\n${alone / floor <= 1.1 ? 'met' : 'NOT met'}: serve alone / minimal SDK server = ${(alone / floor).toFixed(2)} (goal <= 1.1)\n` +
      `${withOne <= bound ? 'met' : 'NOT met'}: serve with one upstream ${withOne.toFixed(0)} ms (goal <= the slower alone + 50 ms = ${bound.toFixed(0)} ms)\n` +
      `server-everything / minimal SDK server = ${(med('server-everything (stdio)') / floor).toFixed(2)}\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
