/**
 * Start-up cost that a configuration does not need is not paid (issue 16): the SDK's HTTP client side
 * (Streamable HTTP, legacy SSE, OAuth; about 55-60 ms of loading) is loaded only when an HTTP upstream is
 * configured. Proven with the load recorder on the built bin, with a control that configures one.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadRecorder } from '../fixtures/load-recorder.js';
import { ROOT, startCli } from './helpers.js';

const HTTP_CLIENT = /\/@modelcontextprotocol\/sdk\/dist\/esm\/client\/(?:streamableHttp|sse|auth)\.js$/;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Runs `serve --stdio` with `servers`, answers initialize and tools/list, closes stdin; returns what it loaded. */
async function loadsOf(servers: Record<string, unknown>): Promise<{ urls: string[]; tools: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-serve-loads-'));
  dirs.push(dir);
  const config = join(dir, 'mcp.json');
  writeFileSync(config, JSON.stringify({ mcpServers: servers }));
  const { env, loaded } = loadRecorder(dir);
  const cli = startCli(['serve', '--stdio', '--config', config, '--connect-timeout', '5'], { env });
  let buffer = '';
  const replies = new Map<number, (m: { result?: { tools?: Array<{ name: string }> } }) => void>();
  cli.child.stdout.on('data', (c: Buffer) => {
    buffer += c.toString();
    for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
      const m = JSON.parse(buffer.slice(0, nl)) as { id?: number; result?: { tools?: Array<{ name: string }> } };
      buffer = buffer.slice(nl + 1);
      if (typeof m.id === 'number') replies.get(m.id)?.(m);
    }
  });
  const ask = (id: number, method: string, params: object) =>
    new Promise<{ result?: { tools?: Array<{ name: string }> } }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${method} in 30 s:\n${cli.stderrText()}`)), 30_000);
      replies.set(id, (m) => (clearTimeout(timer), resolve(m)));
      cli.child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
    });
  await ask(1, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } });
  cli.child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
  const list = await ask(2, 'tools/list', {});
  cli.child.stdin.end();
  const done = await cli.finished;
  expect(done.code, done.stderr).toBe(0);
  return { urls: loaded(), tools: (list.result?.tools ?? []).map((t) => t.name) };
}

describe('codemode serve loads only what its configuration needs', () => {
  it('with only a stdio upstream, the SDK HTTP client side is never loaded', async () => {
    const { urls, tools } = await loadsOf({ inventory: { command: process.execPath, args: [join(ROOT, 'examples/inventory-server.mjs')] } });
    expect(tools).toContain('execute');
    // It did connect an upstream through the SDK client (so the list below is not empty for a wrong reason).
    expect(urls.some((u) => u.endsWith('/@modelcontextprotocol/sdk/dist/esm/client/index.js'))).toBe(true);
    expect(urls.some((u) => u.endsWith('/dist/proxy/upstream.js'))).toBe(true);
    expect(urls.filter((u) => HTTP_CLIENT.test(u))).toEqual([]);
  }, 60_000);

  it('with an HTTP upstream configured, it is (control: the recorder sees it)', async () => {
    // Nothing listens on port 9 here: the upstream is reported failed and serve runs without it.
    const { urls } = await loadsOf({ remote: { url: 'http://127.0.0.1:9/mcp' } });
    expect(urls.some((u) => HTTP_CLIENT.test(u))).toBe(true);
  }, 60_000);
});
