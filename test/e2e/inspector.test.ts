/**
 * A real, independent client: `@modelcontextprotocol/inspector-cli` lists and calls `execute` against
 * `codemode serve`, over stdio and over Streamable HTTP.
 *
 * inspector-cli 1.0.3 finds its own package.json through a path relative to the *working directory*
 * (`fs.existsSync('../package.json')`), so it is run from a subdirectory of this repository (examples/).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, startServe } from './helpers.js';
import type { Spawned } from './helpers.js';

const INSPECTOR = join(ROOT, 'node_modules/.bin/mcp-inspector-cli');
const CONFIG = join(ROOT, 'examples/mcp.json');
const CODE = 'code=const p = await tools.inventory.get_product({ sku: "MS-220" }); return { sku: p.sku, double: p.stock * 2 }';

async function inspector(args: string[]): Promise<{ code: number | null; json: unknown; stderr: string }> {
  const child = spawn(INSPECTOR, ['--cli', ...args], { cwd: join(ROOT, 'examples'), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearTimeout(timer);
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = stdout;
  }
  return { code, json, stderr };
}

// The target command goes after `--` (inspector-cli's own --config would otherwise take ours), and the
// variadic --tool-arg goes before the other options.
const stdioTarget = ['--', process.execPath, '--no-node-snapshot', CLI, 'serve', '--config', CONFIG];

describe('inspector-cli against codemode serve', () => {
  let serve: Spawned & { url: string };
  beforeAll(async () => {
    serve = await startServe(['--config', CONFIG]);
  });
  afterAll(async () => {
    await serve?.stop();
  });

  it('over stdio: lists the tools and calls execute', async () => {
    const list = await inspector(['--method', 'tools/list', ...stdioTarget]);
    expect(list.code, list.stderr).toBe(0);
    expect((list.json as { tools: Array<{ name: string }> }).tools.map((t) => t.name)).toEqual(['execute', 'search', 'get_schema']);
    const call = await inspector(['--tool-arg', CODE, '--method', 'tools/call', '--tool-name', 'execute', ...stdioTarget]);
    expect(call.code, call.stderr).toBe(0);
    expect(call.json).toMatchObject({ structuredContent: { result: { sku: 'MS-220', double: 6 }, toolCalls: [{ tool: 'inventory.get_product', ok: true }] } });
  });

  it('over Streamable HTTP: lists the tools and calls execute', async () => {
    const list = await inspector([serve.url, '--transport', 'http', '--method', 'tools/list']);
    expect(list.code, list.stderr).toBe(0);
    expect((list.json as { tools: Array<{ name: string }> }).tools.map((t) => t.name)).toEqual(['execute', 'search', 'get_schema']);
    const call = await inspector([serve.url, '--tool-arg', CODE, '--transport', 'http', '--method', 'tools/call', '--tool-name', 'execute']);
    expect(call.code, call.stderr).toBe(0);
    expect(call.json).toMatchObject({ structuredContent: { result: { sku: 'MS-220', double: 6 } } });
  });
});
