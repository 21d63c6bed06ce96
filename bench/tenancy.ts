/**
 * Multi-tenant soak: does one hostile tenant hurt the others? (issue 17)
 *
 *   npm run build && node --no-node-snapshot --experimental-strip-types bench/tenancy.ts [hostileSeconds] [quietSeconds]
 *
 * One `codemode serve --http` with default limits and two stdio upstreams: the example inventory server
 * (well behaved) and bench/fixtures/hostile-upstream.mjs (floods notifications, answers 200 MB, storms
 * list_changed with a 512 KB description). Four well-behaved sessions run ordinary executes (3 tool calls
 * each) back to back for the whole run. First a quiet phase with nobody else, then a hostile phase in which
 * one more session cycles through the attacks of issue 17 (guest, client and upstream side).
 *
 * Reported: the well-behaved sessions' p50/p99 latency in each phase, the server's largest event-loop delay
 * (perf_hooks.monitorEventLoopDelay, preloaded into the server's main thread by bench/fixtures/loop-probe.mjs;
 * the delay is how late its 10 ms timer fired) and its
 * peak RSS (main process; the process tree including sandbox workers is shown too).
 * Goals: hostile p99 <= 2x quiet p99; event-loop delay <= 50 ms; peak RSS <= quiet peak + 300 MB.
 * Exits 1 when a goal is missed, so `npm run bench` shows it.
 *
 * TENANCY_SERVE_ARGS adds flags to `codemode serve` (space separated), to compare settings in one setup,
 * for example TENANCY_SERVE_ARGS='--worker-nice 10'. The flags in use are printed. TENANCY_ATTACKS narrows
 * the hostile session to some attacks (substrings of their names, comma separated), to attribute a cost.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/codemode.js');
const INVENTORY = join(ROOT, 'examples/inventory-server.mjs');
const HOSTILE = join(ROOT, 'bench/fixtures/hostile-upstream.mjs');
const PROBE = join(ROOT, 'bench/fixtures/loop-probe.mjs');

const HOSTILE_S = Number(process.argv[2] ?? 60);
const QUIET_S = Number(process.argv[3] ?? 20);
const GOOD_SESSIONS = 4;
const SERVE_ARGS = (process.env.TENANCY_SERVE_ARGS ?? '').split(' ').filter((a) => a !== '');
const GOAL_P99_RATIO = 2;
const GOAL_LOOP_DELAY_MS = 50;
const GOAL_RSS_GROWTH_MB = 300;

const GOOD_CODE = `const a = await tools.inventory.get_product({ sku: 'KB-101' });
const b = await tools.inventory.get_product({ sku: 'MS-220' });
const c = await tools.inventory.get_product({ sku: 'MN-270' });
return a.stock + b.stock + c.stock;`;

function pct(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** RSS (MB) of a process and all its descendants, from /proc. */
function treeRssMb(rootPid: number): number {
  const children = new Map<number, number[]>();
  const rss = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      const ppid = Number(/PPid:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      rss.set(Number(entry), kb);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // The process ended while we read it.
    }
  }
  let total = 0;
  const stack = [rootPid];
  for (let guard = 0; stack.length > 0 && guard < 10_000; guard++) {
    const pid = stack.pop()!;
    total += rss.get(pid) ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return total / 1024;
}

async function startServer(dir: string): Promise<{ child: ChildProcess; url: string; probeFile: string }> {
  const config = join(dir, 'mcp.json');
  await writeFile(
    config,
    JSON.stringify({ mcpServers: { inventory: { command: process.execPath, args: [INVENTORY] }, hostile: { command: process.execPath, args: [HOSTILE] } } }),
  );
  const probeFile = join(dir, 'probe.jsonl');
  const child = spawn(process.execPath, ['--no-node-snapshot', '--import', PROBE, CLI, 'serve', '--http', '--port', '0', '--config', config, '--log-level', 'warn', ...SERVE_ARGS], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, CODEMODE_BENCH_PROBE: probeFile },
  });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 60 s:\n${stderr}`)), 60_000);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      if (stderr.length < 64 * 1024) stderr += chunk;
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${stderr}`)));
  });
  return { child, url, probeFile };
}

async function connectClient(url: string, name: string): Promise<Client> {
  const client = new Client({ name, version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

async function callTool(client: Client, name: string, args: Record<string, unknown>, timeoutMs = 120_000) {
  return client.request({ method: 'tools/call', params: { name, arguments: args } }, CallToolResultSchema, { timeout: timeoutMs });
}

interface Sample { t: number; ms: number; ok: boolean; why?: string }

async function goodSession(url: string, i: number, stopAt: () => number, out: Sample[]): Promise<void> {
  const client = await connectClient(url, `good-${i}`);
  try {
    for (let n = 0; n < 1_000_000 && Date.now() < stopAt(); n++) {
      const t0 = performance.now();
      let ok = false;
      let why: string | undefined;
      try {
        const r = await callTool(client, 'execute', { code: GOOD_CODE });
        ok = r.isError !== true;
        if (!ok) why = JSON.stringify(r.content).slice(0, 300);
      } catch (err) {
        why = String(err).slice(0, 300);
      }
      out.push({ t: Date.now(), ms: performance.now() - t0, ok, ...(why !== undefined ? { why } : {}) });
    }
  } finally {
    await client.close().catch(() => {});
  }
}

/** A socket that sends a request line and then one body byte every 2 s, to hold a connection open. */
/** One POST from a chosen loopback address; resolves when the answer was read whole. */
function postFrom(url: URL, localAddress: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', localAddress, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' } }, (res) => {
      res.resume();
      res.once('end', () => resolve());
      res.once('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('no answer in 30 s')));
    req.once('error', reject);
    req.end(body);
  });
}

function trickle(url: URL, sockets: Socket[]): void {
  const s = netConnect(Number(url.port), url.hostname);
  s.on('error', () => {});
  s.write(`POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 1000000\r\n\r\n`);
  const timer = setInterval(() => (s.destroyed ? clearInterval(timer) : s.write('{')), 2000);
  timer.unref();
  sockets.push(s);
}

const ALL_ATTACKS: Array<[string, (c: Client, url: URL, sockets: Socket[]) => Promise<unknown>]> = [
  ['deep 256 KB result, 199 levels (under the serve cap)', (c) => callTool(c, 'execute', { code: 'let v = new Array(125000).fill(0); for (let i = 0; i < 198; i++) v = [v]; return v;' })],
  ['deep 1 MB result, 199 levels', (c) => callTool(c, 'execute', { code: 'let v = new Array(500000).fill(0); for (let i = 0; i < 198; i++) v = [v]; return v;' })],
  ['several-MB flat result', (c) => callTool(c, 'execute', { code: "return Array.from({ length: 200000 }, (_, i) => ({ i, s: 'abcdefgh' }));" })],
  ['TypeScript poison (1,000 nested typed arrows)', (c) => callTool(c, 'execute', { code: `const f = ${'(a: number) => '.repeat(1000)}1; return 1;` })],
  ['1 MB tool names, 200 attempts', (c) => callTool(c, 'execute', { code: "const n = 'z'.repeat(1e6); for (let i = 0; i < 200; i++) { try { await callTool(n + i, {}); } catch {} } return 1;" })],
  ['0.9 MB search query (under the body cap)', (c) => callTool(c, 'search', { query: 'weather '.repeat(115_000) })],
  ['3.9 MB search query (over the body cap)', (c) => callTool(c, 'search', { query: 'weather '.repeat(480_000) })],
  ['wrapper escape', (c) => callTool(c, 'execute', { code: '}); tools.hostile.echo({ value: 1 }); (async () => {' })],
  ['calls after return', (c) => callTool(c, 'execute', { code: 'tools.hostile.echo({}).then(() => tools.hostile.echo({})).then(() => tools.hostile.echo({})); return 1;' })],
  ['memory bomb', (c) => callTool(c, 'execute', { code: 'const a = []; while (true) a.push(new Array(1e5).fill(1.5));' })],
  ['CPU spin 2 s', (c) => callTool(c, 'execute', { code: 'const t = Date.now(); while (Date.now() - t < 2000) {} return 1;' })],
  ['upstream notification flood 3 s', (c) => callTool(c, 'execute', { code: 'return await tools.hostile.flood({ seconds: 3 });' })],
  ['upstream 1.9 MB result (under the serve cap)', (c) => callTool(c, 'execute', { code: 'return (await tools.hostile.big({ mb: 1.9 })).length;' })],
  ['upstream 200 MB result', (c) => callTool(c, 'execute', { code: 'try { return (await tools.hostile.big({ mb: 200 })).length; } catch (e) { return String(e).slice(0, 200); }' })],
  ['upstream list_changed storm, 512 KB description', (c) => callTool(c, 'execute', { code: 'return await tools.hostile.storm({ count: 2000, descriptionKb: 512 });' })],
  [
    '300 initialize requests',
    async (_c, url) => {
      // From the hostile tenant's own address (127.0.0.2): without auth the session rate keys on the client
      // address, and the well-behaved sessions (127.0.0.1) are other clients.
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'flood', version: '1' } } });
      for (let i = 0; i < 300; i++) await postFrom(url, '127.0.0.2', body).catch(() => {});
    },
  ],
  ['20 trickling connections', async (_c, url, sockets) => { for (let i = 0; i < 20; i++) trickle(url, sockets); }],
];

/** TENANCY_ATTACKS narrows the hostile session to the attacks whose names contain one of its `,`-separated parts (to attribute a cost to one attack). */
const ATTACK_FILTER = (process.env.TENANCY_ATTACKS ?? '').split(',').map((a) => a.trim()).filter((a) => a !== '');
const ATTACKS = ATTACK_FILTER.length === 0 ? ALL_ATTACKS : ALL_ATTACKS.filter(([name]) => ATTACK_FILTER.some((f) => name.includes(f)));
if (ATTACKS.length === 0) throw new Error(`TENANCY_ATTACKS=${process.env.TENANCY_ATTACKS} matches no attack; the attacks are: ${ALL_ATTACKS.map(([n]) => n).join('; ')}`);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'codemode-tenancy-'));
  const { child, url, probeFile } = await startServer(dir);
  // The machine's own floor, measured in the same run: an idle Node process with the same probe. Whatever
  // delay it shows comes from the machine (two shared vCPUs, steal time, the other processes of this
  // bench), not from the server's work, so the server's delay is read against it.
  const controlFile = join(dir, 'control.jsonl');
  const control = spawn(process.execPath, ['--import', PROBE, '-e', 'setInterval(() => {}, 1000)'], {
    stdio: 'ignore',
    env: { ...process.env, CODEMODE_BENCH_PROBE: controlFile },
  });
  const sockets: Socket[] = [];
  const treeSamples: Array<{ t: number; mb: number }> = [];
  const treeTimer = setInterval(() => treeSamples.push({ t: Date.now(), mb: treeRssMb(child.pid!) }), 250);
  const attackLog: Array<{ name: string; ms: number; outcome: string; from: number; to: number }> = [];
  try {
    process.stdout.write(`tenancy bench: Node ${process.version}, ${(await import('node:os')).availableParallelism()} CPUs, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
    process.stdout.write(`quiet phase ${QUIET_S} s, hostile phase ${HOSTILE_S} s, ${GOOD_SESSIONS} well-behaved sessions (3 tool calls per execute)\n`);
    process.stdout.write(`codemode serve flags: ${SERVE_ARGS.length > 0 ? SERVE_ARGS.join(' ') : '(defaults)'}\n`);
    if (ATTACK_FILTER.length > 0) process.stdout.write(`attacks narrowed by TENANCY_ATTACKS to: ${ATTACKS.map(([n]) => n).join('; ')}\n`);
    // Warm-up: the pool, the upstreams and the JIT, not counted.
    const warm = await connectClient(url, 'warm');
    for (let i = 0; i < 20; i++) await callTool(warm, 'execute', { code: GOOD_CODE });
    await warm.close();

    const samples: Sample[] = [];
    const t0 = Date.now();
    const quietEnd = t0 + QUIET_S * 1000;
    const end = quietEnd + HOSTILE_S * 1000;
    const good = Array.from({ length: GOOD_SESSIONS }, (_, i) => goodSession(url, i, () => end, samples));

    await sleep(Math.max(0, quietEnd - Date.now()));
    const hostile = await connectClient(url, 'hostile');
    const target = new URL(url);
    for (let round = 0; Date.now() < end && round < 1000; round++) {
      for (const [name, attack] of ATTACKS) {
        if (Date.now() >= end) break;
        const a0 = performance.now();
        const from = Date.now();
        let outcome: string;
        try {
          const r = (await attack(hostile, target, sockets)) as { isError?: boolean; content?: Array<{ text?: string }> } | undefined;
          const text = r?.content?.[0]?.text ?? '';
          outcome = r === undefined ? 'done' : `${r.isError ? 'error' : 'ok'}, ${text.length} chars: ${text.slice(0, 90).replace(/\s+/g, ' ')}`;
        } catch (err) {
          outcome = `threw: ${String(err).slice(0, 120)}`;
        }
        attackLog.push({ name, ms: performance.now() - a0, outcome, from, to: Date.now() });
      }
    }
    await hostile.close().catch(() => {});
    await Promise.all(good);
    // Correctness for the next tenant: TypeScript still strips, and a fresh session still works.
    const after = await connectClient(url, 'after');
    const ts = await callTool(after, 'execute', { code: 'const x: number = 2; return x * 2;' }).catch((err: unknown) => ({ isError: true, content: [{ type: 'text', text: String(err) }] }));
    await after.close().catch(() => {});
    const tsText = (ts.content as Array<{ text?: string }>)[0]?.text ?? '';
    const tsOk = ts.isError !== true && tsText.trim() === '4';

    const quiet = samples.filter((s) => s.t <= quietEnd);
    const loud = samples.filter((s) => s.t > quietEnd);
    const probe = readFileSync(probeFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { t: number; maxDelayMs: number; rssMb: number });
    const phase = <T extends { t: number }>(xs: T[], from: number, to: number) => xs.filter((x) => x.t > from && x.t <= to);
    const maxOf = (xs: number[]) => xs.reduce((m, x) => Math.max(m, x), 0);
    const qp = phase(probe, t0, quietEnd);
    const hp = phase(probe, quietEnd, end + 250);
    let controlProbe: typeof probe = [];
    try {
      controlProbe = readFileSync(controlFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as (typeof probe)[number]);
    } catch {
      // The control never wrote: reported as no samples below.
    }
    const qc = phase(controlProbe, t0, quietEnd);
    const hc = phase(controlProbe, quietEnd, end + 250);
    const qTree = phase(treeSamples, t0, quietEnd).map((s) => s.mb);
    const hTree = phase(treeSamples, quietEnd, end + 250).map((s) => s.mb);

    // The largest event-loop delay seen while each kind of attack ran (over all rounds; the probe's
    // 250 ms intervals that overlap the attack).
    const delayWhile = (name: string) =>
      maxOf(attackLog.filter((a) => a.name === name).flatMap((a) => probe.filter((p) => p.t > a.from && p.t - 250 <= a.to).map((p) => p.maxDelayMs)));
    process.stdout.write('\nattacks (hostile session; time and outcome of the first round, largest event-loop delay over all rounds):\n');
    for (const a of attackLog.slice(0, ATTACKS.length)) {
      process.stdout.write(`  ${a.name.padEnd(54)} ${a.ms.toFixed(0).padStart(6)} ms  loop ${delayWhile(a.name).toFixed(0).padStart(4)} ms  ${a.outcome}\n`);
    }
    process.stdout.write(`  ${attackLog.length} attacks in ${Math.ceil(attackLog.length / ATTACKS.length)} rounds\n\n`);

    const row = (name: string, xs: Sample[], loop: number, rss: number, tree: number) => {
      const ms = xs.map((s) => s.ms);
      const failed = xs.filter((s) => !s.ok).length;
      return `| ${name} | ${xs.length} (${failed} failed) | ${pct(ms, 50).toFixed(1)} ms | ${pct(ms, 99).toFixed(1)} ms | ${loop.toFixed(1)} ms | ${rss.toFixed(0)} MB | ${tree.toFixed(0)} MB |\n`;
    };
    process.stdout.write('| phase | good executes | p50 | p99 | max event-loop delay | server peak RSS | process tree peak RSS |\n|---|---|---|---|---|---|---|\n');
    const qLoop = maxOf(qp.map((p) => p.maxDelayMs));
    const hLoop = maxOf(hp.map((p) => p.maxDelayMs));
    const qRss = maxOf(qp.map((p) => p.rssMb));
    const hRss = maxOf(hp.map((p) => p.rssMb));
    process.stdout.write(row('quiet', quiet, qLoop, qRss, maxOf(qTree)));
    process.stdout.write(row('hostile', loud, hLoop, hRss, maxOf(hTree)));
    // How often, not only how bad: the share of 250 ms probe intervals whose largest delay passed the goal.
    const over = (xs: Array<{ maxDelayMs: number }>) => `${xs.filter((p) => p.maxDelayMs > GOAL_LOOP_DELAY_MS).length} of ${xs.length}`;
    process.stdout.write(`\n250 ms intervals with an event-loop delay over ${GOAL_LOOP_DELAY_MS} ms: quiet ${over(qp)}, hostile ${over(hp)}; p99 of the intervals' largest delay: quiet ${pct(qp.map((p) => p.maxDelayMs), 99).toFixed(1)} ms, hostile ${pct(hp.map((p) => p.maxDelayMs), 99).toFixed(1)} ms\n`);
    // Where the worst intervals fall: the attack running then, and how far into it (to attribute a delay
    // to the start of an attack, its end, or the time in between).
    const worst = [...hp].sort((a, b) => b.maxDelayMs - a.maxDelayMs).slice(0, 5);
    process.stdout.write('worst hostile-phase intervals:');
    for (const w of worst) {
      const a = attackLog.find((x) => w.t > x.from && w.t - 250 <= x.to);
      const where = a === undefined ? 'between attacks' : `${a.name}, interval ends ${w.t - a.from} ms after its start (it took ${a.to - a.from} ms)`;
      process.stdout.write(`\n  ${w.maxDelayMs.toFixed(1)} ms: ${where}`);
    }
    process.stdout.write('\n');
    process.stdout.write(
      `control (an idle Node process with the same probe, same run): largest delay quiet ${maxOf(qc.map((p) => p.maxDelayMs)).toFixed(1)} ms, hostile ${maxOf(hc.map((p) => p.maxDelayMs)).toFixed(1)} ms; intervals over ${GOAL_LOOP_DELAY_MS} ms: quiet ${over(qc)}, hostile ${over(hc)}\n`,
    );

    const ratio = pct(loud.map((s) => s.ms), 99) / pct(quiet.map((s) => s.ms), 99);
    const goals = [
      [`hostile p99 / quiet p99 = ${ratio.toFixed(2)} (goal <= ${GOAL_P99_RATIO})`, ratio <= GOAL_P99_RATIO],
      [`largest event-loop delay ${hLoop.toFixed(1)} ms (goal <= ${GOAL_LOOP_DELAY_MS} ms)`, hLoop <= GOAL_LOOP_DELAY_MS],
      [`peak RSS growth ${(hRss - qRss).toFixed(0)} MB over the quiet peak (goal <= ${GOAL_RSS_GROWTH_MB} MB)`, hRss - qRss <= GOAL_RSS_GROWTH_MB],
      [`TypeScript after the attacks: ${tsOk ? 'strips and runs' : `broken (${tsText.slice(0, 120)})`}`, tsOk],
      [`well-behaved executes that failed: ${loud.filter((s) => !s.ok).length + quiet.filter((s) => !s.ok).length} (goal 0)`, loud.every((s) => s.ok) && quiet.every((s) => s.ok)],
    ] as const;
    for (const s of [...quiet, ...loud].filter((x) => !x.ok).slice(0, 5)) process.stdout.write(`\nfailed well-behaved execute at +${((s.t - t0) / 1000).toFixed(1)} s: ${s.why ?? '?'}`);
    process.stdout.write(`\n${goals.map(([text, ok]) => `${ok ? 'met' : 'NOT met'}: ${text}`).join('\n')}\nload average at the end: ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
    if (goals.some(([, ok]) => !ok)) process.exitCode = 1;
  } finally {
    clearInterval(treeTimer);
    control.kill('SIGKILL');
    for (const s of sockets) s.destroy();
    child.kill('SIGTERM');
    await new Promise((r) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        r(undefined);
      }, 15_000);
      child.once('exit', () => {
        clearTimeout(t);
        r(undefined);
      });
    });
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
