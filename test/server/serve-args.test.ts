/** The `codemode serve` flags for sessions, /healthz and slow clients: parsed, validated, in --help, and honoured by the built bin. */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { CliUsageError } from '../../src/cli/args.js';
import { parseServeArgs, SERVE_DEFAULT_MAX_RESULT_BYTES, SERVE_DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES, SERVE_HELP } from '../../src/cli/serve-command.js';
import { CLI, ROOT, startCli, waitFor } from '../cli/helpers.js';

describe('codemode serve: session, health and socket flags', () => {
  it('are documented in --help', () => {
    for (const flag of ['--max-sessions', '--max-sessions-per-principal', '--session-rate', '--health-details', '--headers-timeout', '--receive-timeout', '--max-connections']) {
      expect(SERVE_HELP).toContain(`  ${flag} `);
    }
  });

  it('parse into serveHttp options', () => {
    const args = parseServeArgs([
      '--http',
      '--max-sessions',
      '50',
      '--max-sessions-per-principal',
      'none',
      '--health-details',
      '--headers-timeout',
      '5',
      '--receive-timeout',
      '20',
      '--max-connections',
      '300',
    ]);
    expect(args).toMatchObject({ maxSessions: 50, maxSessionsPerPrincipal: null, healthDetails: true, headersTimeoutMs: 5_000, requestTimeoutMs: 20_000, maxConnections: 300 });
    expect(parseServeArgs(['--http'])).not.toHaveProperty('healthDetails');
    expect(parseServeArgs(['--http'])).not.toHaveProperty('sessionRate');
    expect(parseServeArgs(['--http', '--session-rate', '2/5'])).toMatchObject({ sessionRate: { perSecond: 2, burst: 5 } });
    expect(parseServeArgs(['--http', '--session-rate', '0.5'])).toMatchObject({ sessionRate: { perSecond: 0.5, burst: 3 } });
    expect(parseServeArgs(['--http', '--session-rate', 'none'])).toMatchObject({ sessionRate: null });
  });

  it('refuse bad values and stdio mode with a usage error', () => {
    for (const [argv, message] of [
      [['--http', '--max-sessions', '1.5'], /--max-sessions must be a whole number >= 1/],
      [['--http', '--max-connections', 'many'], /--max-connections must be a whole number/],
      [['--http', '--headers-timeout', '40', '--receive-timeout', '20'], /must not exceed --receive-timeout/],
      [['--http', '--headers-timeout', '40'], /raise --receive-timeout too/],
      [['--max-sessions', '5'], /only applies with --http/],
      [['--health-details'], /only applies with --http/],
      [['--session-rate', '5'], /only applies with --http/],
      [['--http', '--session-rate', 'fast'], /--session-rate must be <per second> or <per second>\/<burst>/],
      [['--http', '--session-rate', '0/10'], /--session-rate must be/],
      [['--http', '--session-rate', '5/0'], /--session-rate must be/],
      [['--http', '--session-rate', '5/2.5'], /--session-rate must be/],
    ] as const) {
      expect(() => parseServeArgs([...argv]), argv.join(' ')).toThrow(CliUsageError);
      expect(() => parseServeArgs([...argv]), argv.join(' ')).toThrow(message);
    }
  });
});

describe('codemode serve --http (the built bin): the flags reach the server', () => {
  const children: Array<{ kill(signal: NodeJS.Signals): boolean }> = [];
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
  });

  it('--max-sessions 1 refuses a second initialize with 503; /healthz without --health-details says only up or down', async () => {
    const cli = startCli(['serve', '--http', '--port', '0', '--max-sessions', '1', '--receive-timeout', '5', '--headers-timeout', '2']);
    children.push(cli.child);
    const text = await waitFor(cli.stderrText, (t) => /listening on http:\/\/\S+/.test(t) || cli.child.exitCode !== null);
    const url = /listening on (http:\/\/\S+)/.exec(text)?.[1];
    expect(url, text).toBeDefined();
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
    const post = () =>
      fetch(url!, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(init) });
    const first = await post();
    await first.text();
    expect(first.status).toBe(200);
    const second = await post();
    expect(second.status).toBe(503);
    expect(((await second.json()) as { error: { message: string } }).error.message).toMatch(/limit of 1 open sessions/);
    const health = await fetch(new URL('/healthz', url));
    expect(await health.json()).toEqual({ status: 'ok' });
  });

  it('--session-rate 0.1/2 refuses a third initialize from the same client with 429 and Retry-After', async () => {
    const cli = startCli(['serve', '--http', '--port', '0', '--session-rate', '0.1/2']);
    children.push(cli.child);
    const text = await waitFor(cli.stderrText, (t) => /listening on http:\/\/\S+/.test(t) || cli.child.exitCode !== null);
    const url = /listening on (http:\/\/\S+)/.exec(text)?.[1];
    expect(url, text).toBeDefined();
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 3; i++) {
      last = await fetch(url!, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(init) });
      statuses.push(last.status);
      if (i < 2) await last.text();
    }
    expect(statuses).toEqual([200, 200, 429]);
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThanOrEqual(9);
    expect(((await last!.json()) as { error: { message: string } }).error.message).toMatch(/0\.1 per second after a burst of 2/);
  });
});

describe('codemode serve --max-upstream-message', () => {
  it('is documented, parses MB into bytes, and refuses nonsense', () => {
    expect(SERVE_HELP).toContain('  --max-upstream-message ');
    expect(parseServeArgs(['--max-upstream-message', '8'])).toMatchObject({ maxUpstreamMessageBytes: 8 * 1024 * 1024 });
    expect(parseServeArgs([])).not.toHaveProperty('maxUpstreamMessageBytes');
    expect(SERVE_DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES).toBe(2 * 1024 * 1024);
    expect(SERVE_HELP).toMatch(/--max-upstream-message[^\n]*\n[^\n]*\n\s+\(default 2:/);
    for (const bad of ['0', '-2.5', 'lots']) expect(() => parseServeArgs(['--max-upstream-message', bad]), bad).toThrow(/--max-upstream-message/);
  });

  it('reaches the upstream connections of the built bin: a 3 MB answer under a 1 MB cap is a ToolError naming the limit; by default 3 MB is over the 2 MiB cap and 1 MB passes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'codemode-maxmsg-'));
    const config = join(dir, 'mcp.json');
    writeFileSync(config, JSON.stringify({ mcpServers: { h: { command: process.execPath, args: [join(ROOT, 'test/fixtures/hostile-stdio-upstream.mjs')] } } }));
    const client = new Client({ name: 't', version: '1' });
    try {
      await client.connect(
        new StdioClientTransport({ command: process.execPath, args: ['--no-node-snapshot', CLI, 'serve', '--stdio', '--config', config, '--max-upstream-message', '1'], stderr: 'ignore' }),
      );
      const r = (await client.callTool({ name: 'execute', arguments: { code: "try { await tools.h.big({ mb: 3 }); return 'no error'; } catch (e) { return e.name + ': ' + e.message; } " } })) as CallToolResult;
      const text = (r.content[0] as { text: string }).text;
      expect(text).toMatch(/ToolError: .*exceeded the 1\.0 MiB limit/);
      // The connection survives the refused answer.
      const again = (await client.callTool({ name: 'execute', arguments: { code: "return await tools.h.echo({ text: 'still here' });" } })) as CallToolResult;
      expect((again.content[0] as { text: string }).text).toContain('still here');
      await client.close();
      const byDefault = new Client({ name: 't', version: '1' });
      await byDefault.connect(new StdioClientTransport({ command: process.execPath, args: ['--no-node-snapshot', CLI, 'serve', '--stdio', '--config', config], stderr: 'ignore' }));
      try {
        const over = (await byDefault.callTool({ name: 'execute', arguments: { code: "try { await tools.h.big({ mb: 3 }); return 'no error'; } catch (e) { return e.name + ': ' + e.message; } " } })) as CallToolResult;
        expect((over.content[0] as { text: string }).text).toMatch(/ToolError: .*exceeded the 2\.0 MiB limit.*--max-upstream-message/);
        const under = (await byDefault.callTool({ name: 'execute', arguments: { code: 'return (await tools.h.big({ mb: 1 })).length;' } })) as CallToolResult;
        expect(under.isError).toBeFalsy();
        expect(Number((under.content[0] as { text: string }).text)).toBe(1024 * 1024);
      } finally {
        await byDefault.close();
      }
    } finally {
      await client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('codemode serve --max-result', () => {
  it('is documented, parses KB into bytes ("none" = no cap), and refuses nonsense', () => {
    expect(SERVE_HELP).toContain('  --max-result ');
    expect(parseServeArgs(['--max-result', '512'])).toMatchObject({ maxResultBytes: 512 * 1024 });
    expect(parseServeArgs(['--max-result', 'none'])).toMatchObject({ maxResultBytes: null });
    expect(parseServeArgs([])).not.toHaveProperty('maxResultBytes');
    expect(SERVE_DEFAULT_MAX_RESULT_BYTES).toBe(256 * 1024);
    for (const bad of ['-1', 'big', '', '0.5']) expect(() => parseServeArgs([`--max-result=${bad}`]), bad).toThrow(/--max-result must be a number/);
  });

  it('the built bin refuses a 300 KB result by default, and returns it under --max-result 1024 or the config\'s maxResultKb', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'codemode-maxresult-'));
    const code = "return 'x'.repeat(300 * 1024);";
    const run = async (args: string[]) => {
      const client = new Client({ name: 't', version: '1' });
      await client.connect(new StdioClientTransport({ command: process.execPath, args: ['--no-node-snapshot', CLI, 'serve', '--stdio', ...args], stderr: 'ignore' }));
      try {
        return (await client.callTool({ name: 'execute', arguments: { code } })) as CallToolResult;
      } finally {
        await client.close();
      }
    };
    try {
      const refused = await run([]);
      expect(refused.isError).toBe(true);
      expect(refused.structuredContent).toMatchObject({ error: { kind: 'output_limit' } });
      expect((refused.content[0] as { text: string }).text).toContain('262144-byte limit');
      const allowed = await run(['--max-result', '1024']);
      expect(allowed.isError).toBeFalsy();
      expect((allowed.structuredContent as { result: string }).result).toHaveLength(300 * 1024);
      const config = join(dir, 'mcp.json');
      writeFileSync(config, JSON.stringify({ mcpServers: {}, codemode: { maxResultKb: 400 } }));
      const fromConfig = await run(['--config', config]);
      expect(fromConfig.isError).toBeFalsy();
      // The flag wins over the config.
      const flagWins = await run(['--config', config, '--max-result', '100']);
      expect(flagWins.structuredContent).toMatchObject({ error: { kind: 'output_limit' } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('codemode serve --worker-nice', () => {
  it('is documented, parses, refuses nonsense and in-process isolation', () => {
    expect(SERVE_HELP).toContain('  --worker-nice ');
    expect(parseServeArgs(['--http', '--worker-nice', '10'])).toMatchObject({ workerNice: 10 });
    expect(parseServeArgs(['--stdio', '--isolation', 'process', '--worker-nice', '0'])).toMatchObject({ workerNice: 0 });
    expect(parseServeArgs(['--http'])).not.toHaveProperty('workerNice');
    for (const [argv, message] of [
      [['--http', '--worker-nice', '20'], /from 0 to 19/],
      [['--http', '--worker-nice', '1.5'], /whole number/],
      [['--http', '--worker-nice=-1'], /--worker-nice must be/],
      [['--stdio', '--worker-nice', '10'], /only applies with process isolation/],
      [['--http', '--isolation', 'in-process', '--worker-nice', '10'], /only applies with process isolation/],
    ] as const) {
      expect(() => parseServeArgs([...argv]), argv.join(' ')).toThrow(CliUsageError);
      expect(() => parseServeArgs([...argv]), argv.join(' ')).toThrow(message);
    }
  });
});

describe.runIf(process.platform === 'linux')('codemode serve --worker-nice (the built bin)', () => {
  /**
   * Nice value (field 19 of /proc/<pid>/stat) of each sandbox worker process below `root` (its workers are
   * the children of its launcher, which is its child).
   */
  function workerNices(root: number): number[] {
    const procs: Array<{ pid: number; ppid: number; nice: number; worker: boolean }> = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ');
        const worker = readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('worker.js');
        procs.push({ pid: Number(entry), ppid: Number(fields[1]), nice: Number(fields[16]), worker });
      } catch {
        // The process ended while we read it.
      }
    }
    const below = new Set([root]);
    for (let grew = true, guard = 0; grew && guard < 10; guard++) {
      grew = false;
      for (const p of procs) {
        if (below.has(p.ppid) && !below.has(p.pid)) {
          below.add(p.pid);
          grew = true;
        }
      }
    }
    return procs.filter((p) => p.worker && below.has(p.pid) && p.pid !== root).map((p) => p.nice);
  }

  it('runs the sandbox workers of serve --http at the given nice value, and at the server\'s own without the flag', async () => {
    for (const [args, expected] of [
      [['--worker-nice', '7'], 7],
      [[], 0],
    ] as const) {
      const cli = startCli(['serve', '--http', '--port', '0', ...args]);
      try {
        const text = await waitFor(cli.stderrText, (t) => /listening on http:\/\/\S+/.test(t) || cli.child.exitCode !== null);
        expect(text).toMatch(/listening on/);
        const own = Number(readFileSync(`/proc/${cli.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
        const want = expected === 0 ? own : expected;
        // A worker lowers its priority once it has started (after loading isolated-vm): wait for that.
        let nices: number[] = [];
        const deadline = Date.now() + 20_000;
        do {
          nices = workerNices(cli.child.pid!);
          if (nices.length > 0 && nices.every((n) => n === want)) break;
          await new Promise((r) => setTimeout(r, 100));
        } while (Date.now() < deadline);
        expect(nices.length, 'sandbox workers found').toBeGreaterThan(0);
        for (const n of nices) expect(n).toBe(want);
      } finally {
        cli.child.kill('SIGKILL');
      }
    }
  }, 60_000);
});
