import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli } from './helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'codemode-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function script(name: string, text: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, text);
  return file;
}

describe('codemode (dispatcher)', () => {
  it('prints help with exit 0, and exits 2 for no or an unknown command', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Commands:[\s\S]*run[\s\S]*serve[\s\S]*proxy/);
    expect((await runCli([])).code).toBe(2);
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect((await runCli(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    // `proxy` is dispatched to the proxy command, with its own help and usage errors.
    const proxyHelp = await runCli(['proxy', '--help']);
    expect(proxyHelp.code).toBe(0);
    expect(proxyHelp.stdout).toContain('codemode proxy <url>');
    expect((await runCli(['proxy', '--frob'])).code).toBe(2);
  });
});

describe('codemode run', () => {
  it('documents every flag in --help', async () => {
    const { code, stdout } = await runCli(['run', '--help']);
    expect(code).toBe(0);
    for (const flag of ['--config', '--timeout', '--memory', '--max-tool-calls', '--json', '--strict', '--connect-timeout', '--log-level', '--help']) expect(stdout).toContain(flag);
  });

  it('exits 2 with a clear message for bad flags, a missing script or a bad config', async () => {
    const bad = await runCli(['run', '--bogus', 'x.js']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Unknown option '--bogus'/);
    const badNumber = await runCli(['run', '--timeout', 'soon', 'x.js']);
    expect(badNumber.code).toBe(2);
    expect(badNumber.stderr).toContain('--timeout must be a number');
    const none = await runCli(['run']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('missing the script');
    const missing = await runCli(['run', join(dir, 'nope.js')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read the script ".*nope\.js": no such file/);
    const config = await script('bad.json', '{"mcpServers": {"x": {"comand": "npx"}}}');
    const badConfig = await runCli(['run', '-', '--config', config], { input: 'return 1' });
    expect(badConfig.code).toBe(2);
    expect(badConfig.stderr).toContain('bad.json');
    expect(badConfig.stderr).toContain('mcpServers.x');
  });

  it('reads the script from stdin and prints the result as pretty JSON on stdout', async () => {
    const { code, stdout, stderr } = await runCli(['run', '-'], { input: 'console.log("hi from the sandbox"); return { answer: 6 * 7 }' });
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ answer: 42 });
    expect(stdout).toContain('\n  "answer": 42\n');
    expect(stderr).toContain('hi from the sandbox');
  });

  it('exits 1 for a syntax error, with the line on stderr, and --json prints one object', async () => {
    const file = await script('syntax.js', 'const a = 1;\nconst b = ;\nreturn a;\n');
    const { code, stdout, stderr } = await runCli(['run', file]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/syntax error at line 2/);
    const json = await runCli(['run', '--json', '-'], { input: 'throw new TypeError("nope")' });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, error: { kind: 'runtime', name: 'TypeError', message: expect.stringContaining('nope') }, logs: [], toolCalls: [] });
  });

  it('enforces --timeout and --max-tool-calls, and runs the quick start against the example server', async () => {
    const timeout = await runCli(['run', '--timeout', '0.5', '-'], { input: 'while (true) {}' });
    expect(timeout.code).toBe(1);
    expect(timeout.stderr).toMatch(/timeout error/);
    const memory = await runCli(['run', '--memory', '16', '-'], { input: 'const keep = []; while (true) keep.push(new Array(100000).fill(keep.length));' });
    expect(memory.code).toBe(1);
    expect(memory.stderr).toMatch(/memory error/);
    const quick = await runCli(['run', 'examples/scripts/quickstart.js', '--config', 'examples/mcp.json', '--json']);
    expect(quick.code).toBe(0);
    const out = JSON.parse(quick.stdout) as { ok: boolean; result: { revenueByCategory: Record<string, number>; orderAttempt: { details: unknown } }; toolCalls: unknown[] };
    expect(out.ok).toBe(true);
    expect(out.result.revenueByCategory).toEqual({ peripherals: 89, cables: 55, displays: 817, docks: 249 });
    expect(out.result.orderAttempt.details).toMatchObject({ error: 'insufficient_stock' });
    const capped = await runCli(['run', '--config', 'examples/mcp.json', '--max-tool-calls', '2', '-'], {
      input: 'for (let i = 0; i < 3; i++) await tools.inventory.get_product({ sku: "KB-101" }); return "unreachable"',
    });
    expect(capped.code).toBe(1);
    expect(capped.stderr).toMatch(/tool_call_limit error.*at most 2/);
  });

  it('a memory or timeout stop inside a long built-in exits 1, never by a signal (it crashed with SIGSEGV, exit 139)', async () => {
    // Both leave the isolate's thread running after its run was stopped; exiting under it crashed the CLI.
    const cases: [string[], string, RegExp][] = [
      [['--memory', '64'], 'return Array.from({ length: 1e8 }).length;', /memory error/],
      [['--timeout', '1'], 'Promise.resolve().then(() => Array.prototype.lastIndexOf.call({ length: 2 ** 53 }, 1)); return 1;', /timeout error/],
    ];
    for (let i = 0; i < 3; i++) {
      for (const [flags, input, message] of cases) {
        const result = await runCli(['run', ...flags, '-'], { input, timeoutMs: 60_000 });
        expect({ i, input, code: result.code, signal: result.signal }).toEqual({ i, input, code: 1, signal: null });
        expect(result.stderr).toMatch(message);
      }
    }
  }, 300_000);

  it('reports a server that fails to start and runs with the others (exit 2 with --strict)', async () => {
    const { INVENTORY } = await import('../e2e/helpers.js');
    const config = await script(
      'partial.json',
      JSON.stringify({ mcpServers: { inventory: { command: process.execPath, args: [INVENTORY] }, broken: { command: process.execPath, args: ['-e', 'process.exit(7)'] } } }),
    );
    const partial = await runCli(['run', '--config', config, '-'], { input: 'return (await tools.inventory.get_product({ sku: "CB-USB" })).stock' });
    expect(partial.code).toBe(0);
    expect(partial.stdout.trim()).toBe('48');
    expect(partial.stderr).toMatch(/warning: server "broken" is unavailable \(.+\); its tools are missing/);
    const strict = await runCli(['run', '--strict', '--config', config, '-'], { input: 'return 1' });
    expect(strict.code).toBe(2);
    expect(strict.stderr).toContain('"broken"');
  });

  it('SIGTERM during an execute aborts it and exits 1 promptly', async () => {
    const { child, finished } = startCli(['run', '--timeout', 'none', '--log-level', 'debug', '-']);
    child.stdin.end('while (true) {}');
    // Give it time to load the sandbox and start spinning before interrupting.
    await new Promise((r) => setTimeout(r, 1_500));
    const t0 = performance.now();
    child.kill('SIGTERM');
    const result = await finished;
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('interrupted by SIGTERM');
  });

  it('exports spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set', async () => {
    const { createServer } = await import('node:http');
    const posts: string[] = [];
    const collector = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        posts.push(`${req.method ?? ''} ${req.url ?? ''}`);
        res.end('{}');
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    try {
      const port = (collector.address() as { port: number }).port;
      const result = await runCli(['run', '-'], { input: 'return 1', env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` } });
      expect(result.code).toBe(0);
      expect(posts).toContain('POST /v1/traces');
    } finally {
      await new Promise((r) => collector.close(r));
    }
  });
});
