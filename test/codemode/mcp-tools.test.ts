import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
import { CodeMode } from '../../src/codemode/codemode.js';
import { createCodeModeTools, executeDescription } from '../../src/codemode/mcp-tools.js';
import type { CodeModeTool, CodeModeToolsOptions } from '../../src/codemode/mcp-tools.js';
import { localTools } from '../../src/codemode/sources.js';
import type { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import { testSandbox } from './helpers.js';

let slowAborted = 0;
const source = localTools('shop', [
  { name: 'list-items', description: 'List the items in the shop catalogue.', handler: () => [{ id: 1, name: 'pen' }, { id: 2, name: 'ink' }] },
  { name: 'price', description: 'Price of one item.', input: { id: z.number() }, handler: ({ id }) => ({ id, cents: 100 * (id as number) }) },
  {
    name: 'wait',
    handler: (_args, { signal }) =>
      new Promise((_, reject) =>
        signal.addEventListener('abort', () => {
          slowAborted++;
          reject(new Error('aborted'));
        }),
      ),
  },
]);

/** Mounts the tools on a real SDK Server and connects a Client to it in memory. */
async function mount(tools: CodeModeTool[]) {
  const server = new Server({ name: 'cm', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: tools.map(({ name, title, description, inputSchema, annotations }) => ({ name, title, description, inputSchema, annotations })),
  }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const tool = tools.find((t) => t.name === request.params.name);
    if (!tool) throw new McpError(ErrorCode.InvalidParams, `Unknown tool ${request.params.name}`);
    return tool.handler(request.params.arguments, extra);
  });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: 't', version: '1.0.0' });
  await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
  return {
    client,
    async close() {
      await client.close();
      await server.close();
    },
  };
}

describe('MCP-facing tools', () => {
  let sandbox: IsolatedVmSandbox;
  let mode: CodeMode;
  let mounted: Awaited<ReturnType<typeof mount>> | undefined;

  beforeAll(async () => {
    sandbox = testSandbox({ limits: { timeoutMs: 10_000 } });
    mode = await CodeMode.create({ sources: [source], sandbox });
  });

  afterEach(async () => {
    await mounted?.close();
    mounted = undefined;
  });

  afterAll(async () => {
    await mode?.close();
    await sandbox?.close();
  });

  async function connect(options?: CodeModeToolsOptions) {
    mounted = await mount(createCodeModeTools(mode, options));
    return mounted.client;
  }

  async function call(client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
    return (await client.callTool({ name, arguments: args })) as CallToolResult;
  }

  it('lists execute, search and get_schema with descriptions; a small catalog is inlined into execute', async () => {
    const client = await connect();
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(['execute', 'search', 'get_schema']);
    for (const tool of tools) expect(tool.description?.length).toBeGreaterThan(40);
    const execute = tools[0]!.description!;
    expect(execute).toContain('tools.<namespace>.<tool>(args)');
    expect(execute).toContain('at most 50 tool calls');
    expect(execute).toContain('Each execution runs for at most 10 s, uses at most 100 MB of memory, returns at most 1 MiB of JSON.');
    expect(execute).toContain('list_items(args?: Record<string, unknown>): Promise<unknown>;');
    // Only the tools are declared: the bullets already describe ToolError and callTool, in fewer tokens.
    expect(execute).toContain('declare const tools');
    expect(execute).not.toContain('declare class ToolError');
    expect(execute).toContain('A failed call throws `ToolError`');
  });

  it('describes a large catalog by namespace and points to search', () => {
    const text = executeDescription(mode, { inlineDeclarationsMaxChars: 100 });
    expect(text).not.toContain('declare const tools');
    expect(text).toContain('3 tools are available in the namespaces shop (3)');
    expect(text).toContain('`search`');
  });

  it('returns the value as JSON text plus logs, and structuredContent with result, logs, toolCalls and stats', async () => {
    const client = await connect();
    const result = await call(client, 'execute', {
      code: 'const items = await tools.shop.list_items(); console.log("n", items.length); const p = await tools.shop.price({ id: items[1].id }); return { first: items[0].name, p }',
    });
    expect(result.isError).toBeFalsy();
    expect(JSON.parse((result.content[0] as { text: string }).text)).toEqual({ first: 'pen', p: { id: 2, cents: 200 } });
    expect((result.content[1] as { text: string }).text).toBe('Logs:\n[log] n 2');
    const sc = result.structuredContent as Record<string, unknown>;
    expect(Object.keys(sc).sort()).toEqual(['logs', 'result', 'stats', 'toolCalls']);
    expect(sc.result).toEqual({ first: 'pen', p: { id: 2, cents: 200 } });
    expect(sc.logs).toEqual([{ level: 'log', message: 'n 2' }]);
    expect(sc.toolCalls).toEqual([
      { tool: 'shop.list-items', ok: true, ms: expect.any(Number) },
      { tool: 'shop.price', ok: true, ms: expect.any(Number) },
    ]);
    expect(sc.stats).toMatchObject({ toolCalls: 2, durationMs: expect.any(Number) });
  });

  it('caps the result text and marks the truncation, keeping the whole value in structuredContent', async () => {
    const client = await connect({ maxResultTextChars: 1_000 });
    const result = await call(client, 'execute', { code: 'return "x".repeat(5000)' });
    const text = (result.content[0] as { text: string }).text;
    expect(text.length).toBeLessThan(1_300);
    expect(text).toMatch(/\[result truncated: showing the first 1000 characters/);
    expect((result.structuredContent as { result: string }).result).toHaveLength(5000);
    // Emoji are surrogate pairs: the cut never leaves half of one (the JSON text's quote puts a high half at index 999).
    const emoji = await call(client, 'execute', { code: 'return "😀".repeat(2000)' });
    const cut = (emoji.content[0] as { text: string }).text;
    expect(cut).toMatch(/\[result truncated: showing the first 999 characters/);
    expect(cut).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/); // no lone surrogate half
  });

  it('notes a missing return value', async () => {
    const client = await connect();
    const result = await call(client, 'execute', { code: 'const x = 1;' });
    expect((result.content[1] as { text: string }).text).toMatch(/returned no value/);
  });

  it('reports failures as isError with error kind, message, line and column, logs and toolCalls', async () => {
    const client = await connect();
    const result = await call(client, 'execute', { code: 'console.warn("before");\nawait tools.shop.price({ id: 1 });\nnull.x' });
    expect(result.isError).toBe(true);
    expect((result.content[0] as { text: string }).text).toMatch(/^Error \(runtime\) at line 3, column \d+: TypeError: /);
    const sc = result.structuredContent as { error: Record<string, unknown>; logs: unknown[]; toolCalls: unknown[] };
    expect(Object.keys(sc).sort()).toEqual(['error', 'logs', 'toolCalls']);
    expect(sc.error).toMatchObject({ kind: 'runtime', message: expect.stringMatching(/null/), line: 3, column: expect.any(Number), name: 'TypeError' });
    expect(sc.logs).toEqual([{ level: 'warn', message: 'before' }]);
    expect(sc.toolCalls).toEqual([{ tool: 'shop.price', ok: true, ms: expect.any(Number) }]);
  });

  it('reports the tool-call limit as kind tool_call_limit', async () => {
    const client = await connect();
    const result = await call(client, 'execute', { code: 'for (let i = 0; i < 60; i++) await tools.shop.price({ id: 1 });' });
    expect(result.isError).toBe(true);
    expect((result.structuredContent as { error: { kind: string } }).error.kind).toBe('tool_call_limit');
    expect((result.structuredContent as { toolCalls: unknown[] }).toolCalls).toHaveLength(51);
  });

  it('aborts the execution when the MCP request is cancelled', async () => {
    const client = await connect();
    slowAborted = 0;
    const controller = new AbortController();
    const pending = client.callTool({ name: 'execute', arguments: { code: 'await tools.shop.wait()' } }, undefined, { signal: controller.signal });
    setTimeout(() => controller.abort('stop'), 200);
    await expect(pending).rejects.toThrow();
    await expect.poll(() => slowAborted).toBe(1);
  });

  it('sends a progress notification per finished tool call when the request has a progress token', async () => {
    const client = await connect();
    const progress: Array<{ progress: number; message?: string }> = [];
    const result = await client.callTool(
      { name: 'execute', arguments: { code: 'await tools.shop.price({ id: 1 }); await tools.shop.list_items(); return 1' } },
      undefined,
      { onprogress: (p) => progress.push({ progress: p.progress, message: p.message }) },
    );
    expect(result.isError).toBeFalsy();
    expect(progress).toEqual([
      { progress: 1, message: 'shop.price done (1 tool call)' },
      { progress: 2, message: 'shop.list-items done (2 tool calls)' },
    ]);
  });

  it('searches with detail levels and returns schemas with a not-found list', async () => {
    const client = await connect();
    const brief = await call(client, 'search', { query: 'price of an item' });
    const results = (brief.structuredContent as { results: Array<Record<string, unknown>> }).results;
    expect(results[0]).toMatchObject({ name: 'shop.price', call: 'tools.shop.price' });
    expect(results[0]!.parameters).toBeUndefined();
    expect((brief.content[0] as { text: string }).text.split('\n')[0]).toBe('tools.shop.price  (shop.price): Price of one item.');
    const full = await call(client, 'search', { query: 'price', detail: 'full', limit: 1 });
    const [hit] = (full.structuredContent as { results: Array<Record<string, unknown>> }).results;
    expect(hit!.declaration).toContain('price(args: {');
    const none = await call(client, 'search', { query: 'zebra' });
    expect((none.content[0] as { text: string }).text).toMatch(/No tools match/);

    const schema = await call(client, 'get_schema', { tools: ['shop.price', 'shop.nope'] });
    expect(schema.isError).toBeFalsy();
    expect((schema.content[0] as { text: string }).text).toContain('price(args: {');
    expect((schema.content[0] as { text: string }).text).toContain('Not found: "shop.nope"');
    expect((schema.structuredContent as { notFound: string[] }).notFound).toEqual(['shop.nope']);
    const missing = await call(client, 'get_schema', { tools: ['nope'] });
    expect(missing.isError).toBe(true);
  });

  it('rejects malformed arguments with InvalidParams', async () => {
    const client = await connect();
    await expect(call(client, 'execute', { code: 42 })).rejects.toMatchObject({ code: ErrorCode.InvalidParams });
    await expect(call(client, 'search', {})).rejects.toMatchObject({ code: ErrorCode.InvalidParams });
    await expect(call(client, 'search', { query: 'x', detail: 'everything' })).rejects.toMatchObject({ code: ErrorCode.InvalidParams });
    await expect(call(client, 'get_schema', { tools: [] })).rejects.toMatchObject({ code: ErrorCode.InvalidParams });
  });
});
