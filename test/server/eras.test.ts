/**
 * `codemode serve` speaks both protocol eras on one endpoint (issue 15): the v2 SDK client, pinned to
 * 2026-07-28, in `auto` mode and in `legacy` mode, over Streamable HTTP (an in-process server on 127.0.0.1:0)
 * and stdio (the built bin), with the example inventory server as the upstream. Plus the 2026-07-28 wire
 * rules checked with raw HTTP requests.
 */
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { CallToolResult } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, inventoryEntry, listUntil, startEngine } from './helpers.js';
import type { Engine } from './helpers.js';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MODERN = '2026-07-28';
type Mode = 'legacy' | 'auto' | { pin: string };
const MODES: Array<[string, Mode, string]> = [
  ['pinned to 2026-07-28', { pin: MODERN }, MODERN],
  ['auto', 'auto', MODERN],
  ['legacy', 'legacy', '2025-11-25'],
];

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function engine(servers: Record<string, unknown>, options: Parameters<typeof startEngine>[1] = {}): Promise<Engine> {
  const e = await startEngine(servers, options);
  cleanups.push(() => e.close());
  return e;
}

function v2Client(mode: Mode): Client {
  const client = new Client({ name: 'eras-test', version: '1.0.0' }, { versionNegotiation: { mode } });
  cleanups.push(() => client.close());
  return client;
}

const textOf = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');

/** Adds a tool to the `changing` upstream through execute; returns once the client heard the change and lists the tool. */
async function addToolAndHearIt(client: Client, changes: () => number): Promise<void> {
  const added = (await client.callTool({ name: 'execute', arguments: { code: "return await tools.changing.add_tool({ name: 'fresh' })" } })) as CallToolResult;
  expect(added.structuredContent).toMatchObject({ result: 'added fresh' });
  const deadline = Date.now() + 10_000;
  while (changes() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  expect(changes()).toBeGreaterThan(0);
  expect((await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name)).toContain('changing__fresh');
}

const STOCK = `const a = await tools.inventory.get_product({ sku: 'KB-101' });
const b = await tools.inventory.get_product({ sku: 'MS-220' });
return { skus: [a.sku, b.sku], calls: 2 };`;

/** What every era and transport must do: list, execute with upstream calls, search, get_schema, errors. */
async function exercise(client: Client, expectedVersion: string): Promise<void> {
  expect(client.getNegotiatedProtocolVersion()).toBe(expectedVersion);
  const names = (await client.listTools()).tools.map((t) => t.name);
  expect(names).toEqual(expect.arrayContaining(['execute', 'search', 'get_schema']));

  const run = (await client.callTool({ name: 'execute', arguments: { code: STOCK } })) as CallToolResult;
  expect(run.isError ?? false).toBe(false);
  expect(run.structuredContent).toMatchObject({ result: { skus: ['KB-101', 'MS-220'], calls: 2 }, toolCalls: [{ tool: 'inventory.get_product' }, { tool: 'inventory.get_product' }] });

  const found = (await client.callTool({ name: 'search', arguments: { query: 'product stock' } })) as CallToolResult;
  expect(textOf(found)).toContain('inventory.get_product');
  const schema = (await client.callTool({ name: 'get_schema', arguments: { tools: ['inventory.get_product'] } })) as CallToolResult;
  expect(textOf(schema)).toMatch(/get_product/);

  // A guest error is a tool result, a malformed call a protocol error that names the problem.
  const failed = (await client.callTool({ name: 'execute', arguments: { code: "throw new Error('boom')" } })) as CallToolResult;
  expect(failed.isError).toBe(true);
  expect(textOf(failed)).toContain('boom');
  await expect(client.callTool({ name: 'execute', arguments: { code: 42 } })).rejects.toThrow(/"code" must be a string/);
  await expect(client.callTool({ name: 'no_such_tool', arguments: {} })).rejects.toThrow(/Unknown tool "no_such_tool"/);
}

describe('codemode serve --http, both eras on one endpoint (v2 SDK client)', () => {
  for (const [label, mode, version] of MODES) {
    it(`${label}: negotiates ${version}, and list, execute with upstream calls, search, get_schema and errors work`, async () => {
      const { http } = await engine({ inventory: inventoryEntry });
      const client = v2Client(mode);
      await client.connect(new StreamableHTTPClientTransport(new URL(http.url)));
      await exercise(client, version);
      // Only the 2025 client holds a session.
      expect(http.sessionCount).toBe(version === MODERN ? 0 : 1);
    });
  }

  it('upstreams of both eras in one execute (a 2026-07-28-only server and a 2025 one), for clients of both eras', async () => {
    const modern = { command: process.execPath, args: ['--experimental-strip-types', '--no-warnings', fileURLToPath(new URL('../fixtures/modern-upstream.ts', import.meta.url)), '--stdio'] };
    const { server, http } = await engine({ inventory: inventoryEntry, modern });
    expect(server.stats().upstreams.map((u) => [u.name, u.state])).toEqual([
      ['inventory', 'connected'],
      ['modern', 'connected'],
    ]);
    for (const [, mode] of MODES) {
      const client = v2Client(mode);
      await client.connect(new StreamableHTTPClientTransport(new URL(http.url)));
      const r = (await client.callTool({
        name: 'execute',
        arguments: { code: "const e = await tools.modern.echo({ text: 'both' }); const p = await tools.inventory.get_product({ sku: 'KB-101' }); return [e.text, p.sku];" },
      })) as CallToolResult;
      expect(r.structuredContent).toMatchObject({ result: ['both', 'KB-101'] });
    }
  });

  it('2026-07-28: cancellation aborts the execute, and progress reaches the caller', async () => {
    const { http, server } = await engine({ inventory: inventoryEntry }, { progressIntervalMs: 50 });
    const client = v2Client({ pin: MODERN });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url)));
    const progress: number[] = [];
    const slow = (await client.callTool(
      { name: 'execute', arguments: { code: 'await new Promise((r) => setTimeout(r, 600)); return 1;' } },
      { onprogress: (p) => void progress.push(p.progress) },
    )) as CallToolResult;
    expect(slow.structuredContent).toMatchObject({ result: 1 });
    expect(progress.length).toBeGreaterThan(0);

    const controller = new AbortController();
    // The guest would run 25 s (under the 30 s default timeout); the check below gives up 10 s after the abort
    // and at most 20 s after the start, so only a cancellation that reached the run can pass it.
    const pending = client.callTool({ name: 'execute', arguments: { code: 'await new Promise((r) => setTimeout(r, 25000)); return 1;' } }, { signal: controller.signal });
    const started = Date.now();
    while (server.stats().activeExecutions === 0 && Date.now() < started + 10_000) await new Promise((r) => setTimeout(r, 20));
    expect(server.stats().activeExecutions).toBe(1);
    controller.abort();
    const abortedAt = Date.now();
    await expect(pending).rejects.toThrow();
    while (server.stats().activeExecutions > 0 && Date.now() < abortedAt + 10_000) await new Promise((r) => setTimeout(r, 20));
    expect(server.stats().activeExecutions).toBe(0);
  });

  it("2026-07-28: an upstream's list_changed reaches a subscriptions/listen stream, and tools/list shows the new tool", async () => {
    const changing = { command: process.execPath, args: [fileURLToPath(new URL('./fixtures/changing-server.mjs', import.meta.url))] };
    const { http } = await engine({ changing }, { exposeTools: true });
    let changed = 0;
    const client = new Client(
      { name: 'eras-test', version: '1.0.0' },
      { versionNegotiation: { mode: { pin: MODERN } }, listChanged: { tools: { autoRefresh: false, onChanged: () => void changed++ } } },
    );
    cleanups.push(() => client.close());
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url)));
    await addToolAndHearIt(client, () => changed);
  });
});

describe('codemode serve --http, the 2026-07-28 wire rules (raw requests)', () => {
  const envelope = { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {}, 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' } };
  async function post(url: string, body: Record<string, unknown>, headers: Record<string, string>): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await res.text();
    const data = text.startsWith('{') ? text : (/^data: (.*)$/m.exec(text)?.[1] ?? '{}');
    return { status: res.status, json: JSON.parse(data) as Record<string, unknown>, headers: res.headers };
  }
  const headersFor = (method: string, name?: string) => ({ 'mcp-protocol-version': MODERN, 'mcp-method': method, ...(name !== undefined ? { 'mcp-name': name } : {}) });

  it('server/discover, resultType, cache hints in a stable order, and serverInfo in result _meta; no session is created', async () => {
    const { http } = await engine({ inventory: inventoryEntry }, { exposeTools: true });
    const discover = await post(http.url, { jsonrpc: '2.0', id: 1, method: 'server/discover', params: { _meta: envelope } }, headersFor('server/discover'));
    expect(discover.status).toBe(200);
    expect(discover.json).toMatchObject({ id: 1, result: { supportedVersions: expect.arrayContaining([MODERN]), capabilities: { tools: { listChanged: true } }, resultType: 'complete' } });

    const list = await post(http.url, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: { _meta: envelope } }, headersFor('tools/list'));
    const result = list.json.result as { tools: Array<{ name: string }>; resultType: string; ttlMs: number; cacheScope: string; _meta: Record<string, unknown> };
    expect(result).toMatchObject({ resultType: 'complete', ttlMs: 60_000, cacheScope: 'private' });
    expect(result._meta['io.modelcontextprotocol/serverInfo']).toMatchObject({ name: 'codemode' });
    const names = result.tools.map((t) => t.name);
    expect(names.slice(0, 3)).toEqual(['execute', 'search', 'get_schema']);
    expect(names.slice(3)).toEqual([...names.slice(3)].sort());
    const again = await post(http.url, { jsonrpc: '2.0', id: 3, method: 'tools/list', params: { _meta: envelope } }, headersFor('tools/list'));
    expect((again.json.result as { tools: Array<{ name: string }> }).tools.map((t) => t.name)).toEqual(names);

    const call = await post(
      http.url,
      { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'execute', arguments: { code: 'return 6 * 7' }, _meta: envelope } },
      headersFor('tools/call', 'execute'),
    );
    expect(call.json).toMatchObject({ id: 4, result: { resultType: 'complete', structuredContent: { result: 42 } } });
    expect(http.sessionCount).toBe(0);
  });

  it('refuses an unsupported version, a missing envelope and a header that disagrees with the body, each with the request id', async () => {
    const { http } = await engine({});
    const badVersion = await post(
      http.url,
      { jsonrpc: '2.0', id: 'v', method: 'tools/list', params: { _meta: { ...envelope, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } } },
      { ...headersFor('tools/list'), 'mcp-protocol-version': '2099-01-01' },
    );
    expect(badVersion.status).toBe(400);
    expect(badVersion.json).toMatchObject({ id: 'v', error: { code: -32022, data: { supported: expect.arrayContaining([MODERN]) } } });

    const noCapabilities = await post(
      http.url,
      { jsonrpc: '2.0', id: 'c', method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN } } },
      headersFor('tools/list'),
    );
    expect(noCapabilities.status).toBe(400);
    expect(noCapabilities.json).toMatchObject({ id: 'c', error: { code: -32602 } });

    const mismatch = await post(
      http.url,
      { jsonrpc: '2.0', id: 'h', method: 'tools/call', params: { name: 'execute', arguments: { code: 'return 1' }, _meta: envelope } },
      headersFor('tools/call', 'search'),
    );
    expect(mismatch.status).toBe(400);
    expect(mismatch.json).toMatchObject({ id: 'h', error: { code: -32020 } });

    // Routed to the SDK's validation on the header alone (no envelope): its error, not the no-session one.
    const headerOnly = await post(http.url, { jsonrpc: '2.0', id: 'e', method: 'tools/list', params: {} }, headersFor('tools/list'));
    expect(headerOnly.status).toBe(400);
    expect(headerOnly.json).toMatchObject({ id: 'e', error: { code: -32602, message: expect.stringMatching(/envelope/) } });
    // An envelope with a 2025 header disagrees, and a modern header on an initialize is refused: no session.
    const oldHeader = await post(http.url, { jsonrpc: '2.0', id: 'o', method: 'tools/list', params: { _meta: envelope } }, { ...headersFor('tools/list'), 'mcp-protocol-version': '2025-11-25' });
    expect(oldHeader.status).toBe(400);
    expect(oldHeader.json).toMatchObject({ id: 'o', error: { code: -32020 } });
    const modernInitialize = await post(
      http.url,
      { jsonrpc: '2.0', id: 'i', method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } },
      headersFor('initialize'),
    );
    expect(modernInitialize.status).toBe(400);
    expect(modernInitialize.headers.get('mcp-session-id')).toBeNull();
    // Neither era: a 2025 request without a session gets codemode's own answer.
    const noSession = await post(http.url, { jsonrpc: '2.0', id: 'n', method: 'tools/list', params: {} }, { 'mcp-protocol-version': '2025-11-25' });
    expect(noSession.status).toBe(400);
    expect(noSession.json).toMatchObject({ error: { message: expect.stringMatching(/no Mcp-Session-Id header/) } });
  });
});

describe('codemode serve --stdio (the built bin), both eras', () => {
  const dir = mkdtempSync(join(tmpdir(), 'codemode-eras-'));
  const config = join(dir, 'mcp.json');
  writeFileSync(config, JSON.stringify({ mcpServers: { inventory: inventoryEntry } }));
  const changingConfig = join(dir, 'changing.json');
  const changing = { command: process.execPath, args: [fileURLToPath(new URL('./fixtures/changing-server.mjs', import.meta.url))] };
  writeFileSync(changingConfig, JSON.stringify({ mcpServers: { changing } }));

  it('2026-07-28: list_changed arrives on subscriptions/listen, and a cancelled execute stops before its next tool call', async () => {
    let changed = 0;
    const client = new Client(
      { name: 'eras-test', version: '1.0.0' },
      { versionNegotiation: { mode: { pin: MODERN } }, listChanged: { tools: { autoRefresh: false, onChanged: () => void changed++ } } },
    );
    cleanups.push(() => client.close());
    await client.connect(
      new StdioClientTransport({ command: process.execPath, args: ['--no-node-snapshot', CLI, 'serve', '--stdio', '--expose-tools', '--config', changingConfig], stderr: 'ignore' }),
    );
    expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);
    await addToolAndHearIt(client, () => changed);

    // Cancelled while it waits: the tool call after the wait never happens.
    const controller = new AbortController();
    const pending = client.callTool(
      { name: 'execute', arguments: { code: "await new Promise((r) => setTimeout(r, 1500)); return await tools.changing.add_tool({ name: 'late' });" } },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 300);
    await expect(pending).rejects.toThrow();
    // A control with the same wait, started after it: by the time it has made its call, an uncancelled run
    // would have made its own (no fixed sleep, so a slow machine cannot make the check pass vacuously).
    const control = (await client.callTool({
      name: 'execute',
      arguments: { code: "await new Promise((r) => setTimeout(r, 1500)); return await tools.changing.add_tool({ name: 'control' });" },
    })) as CallToolResult;
    expect(control.structuredContent).toMatchObject({ result: 'added control' });
    // The catalog refresh after list_changed is debounced: wait until it shows the control; a listing that
    // has the control has everything added before it.
    const names = await listUntil(client, 'changing__control');
    expect(names).toContain('changing__control');
    expect(names).not.toContain('changing__late');
  });

  for (const [label, mode, version] of MODES) {
    it(`${label}: negotiates ${version}, and list, execute with upstream calls, search, get_schema and errors work`, async () => {
      const client = v2Client(mode);
      await client.connect(new StdioClientTransport({ command: process.execPath, args: ['--no-node-snapshot', CLI, 'serve', '--stdio', '--config', config], stderr: 'ignore' }));
      await exercise(client, version);
    });
  }
});
