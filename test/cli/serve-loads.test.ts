/**
 * Start-up cost that a configuration does not need is not paid (issue 16). codemode serve connects its
 * upstreams with the v2 SDK client (it negotiates the protocol era), loaded on the first upstream
 * connection: a serve with no upstreams never loads it, and serve never loads the v1 SDK's HTTP client side
 * (Streamable HTTP, legacy SSE, OAuth; about 55-60 ms of loading), which only the proxy uses now. Proven with
 * the load recorder on the built bin, with controls that show the recorder sees the v2 client load.
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

const V2_CLIENT = /\/@modelcontextprotocol\/client\/dist\/index\.mjs$/;

it('the patterns name the real module files (so "never loaded" cannot pass for a wrong path)', () => {
  expect(import.meta.resolve('@modelcontextprotocol/sdk/client/streamableHttp.js')).toMatch(HTTP_CLIENT);
  expect(import.meta.resolve('@modelcontextprotocol/sdk/client/sse.js')).toMatch(HTTP_CLIENT);
  expect(import.meta.resolve('@modelcontextprotocol/client')).toMatch(V2_CLIENT);
});

describe('codemode serve loads only what its configuration needs', () => {
  it('with no upstream, the v2 SDK client is never loaded', async () => {
    const { urls, tools } = await loadsOf({});
    expect(tools).toContain('execute');
    expect(urls.some((u) => u.endsWith('/dist/proxy/upstream.js'))).toBe(true);
    expect(urls.filter((u) => V2_CLIENT.test(u) || HTTP_CLIENT.test(u))).toEqual([]);
  }, 60_000);

  it('with a stdio upstream, the v2 client connects it (control: the recorder sees it) and the v1 HTTP client side is never loaded', async () => {
    const { urls, tools } = await loadsOf({ inventory: { command: process.execPath, args: [join(ROOT, 'examples/inventory-server.mjs')] } });
    expect(tools).toContain('execute');
    expect(urls.some((u) => V2_CLIENT.test(u))).toBe(true);
    expect(urls.filter((u) => HTTP_CLIENT.test(u))).toEqual([]);
  }, 60_000);

  it('with an HTTP upstream, still not the v1 HTTP client side (the v2 client has its own transports)', async () => {
    // Nothing listens on port 9 here: the upstream is reported failed and serve runs without it.
    const { urls } = await loadsOf({ remote: { url: 'http://127.0.0.1:9/mcp' } });
    expect(urls.some((u) => V2_CLIENT.test(u))).toBe(true);
    expect(urls.filter((u) => HTTP_CLIENT.test(u))).toEqual([]);
  }, 60_000);
});
