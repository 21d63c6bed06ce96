/**
 * The whole product, end to end, through the bundled pieces only:
 * SDK stdio client -> codemode-remote -> codemode serve --http -> upstreams (the example server over
 * stdio, server-everything over Streamable HTTP). And the same through createProxy.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProxy } from '../../src/proxy/proxy.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { INVENTORY, REMOTE_CLI, startEverythingHttp, startServe } from './helpers.js';
import type { Spawned } from './helpers.js';

let dir: string;
let everything: Spawned & { url: string };
let serve: Spawned & { url: string };
let bridged: Client;
let proxied: Client;
let proxy: Proxy;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'codemode-e2e-'));
  everything = await startEverythingHttp();
  const config = join(dir, 'mcp.json');
  await writeFile(
    config,
    JSON.stringify({
      mcpServers: {
        inventory: { command: process.execPath, args: [INVENTORY] },
        everything: { url: everything.url },
      },
      codemode: { timeoutSeconds: 3, memoryMb: 64, maxToolCalls: 5 },
    }),
  );
  serve = await startServe(['--config', config]);

  bridged = new Client({ name: 'e2e-host', version: '1.0.0' });
  await bridged.connect(new StdioClientTransport({ command: process.execPath, args: [REMOTE_CLI, serve.url], stderr: 'pipe' }));

  proxy = createProxy({ url: serve.url });
  const [downstream, upstream] = InMemoryTransport.createLinkedPair();
  await proxy.connect(upstream);
  proxied = new Client({ name: 'e2e-proxied', version: '1.0.0' });
  await proxied.connect(downstream);
}, 90_000);

afterAll(async () => {
  await bridged?.close().catch(() => undefined);
  await proxied?.close().catch(() => undefined);
  await proxy?.close().catch(() => undefined);
  await serve?.stop();
  await everything?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function execute(client: Client, code: string): Promise<CallToolResult> {
  return (await client.request({ method: 'tools/call', params: { name: 'execute', arguments: { code } } }, CallToolResultSchema, { timeout: 60_000 })) as CallToolResult;
}

const COMBINED = `
  const [keyboard, sum] = await Promise.all([
    tools.inventory.get_product({ sku: 'KB-101' }),
    tools.everything.get_sum({ a: 8900, b: 100 }),
  ]);
  const echoed = await callTool('everything.echo', { message: keyboard.name });
  return { name: keyboard.name, stock: keyboard.stock, sum, echoed };
`;

for (const via of ['codemode-remote', 'createProxy'] as const) {
  describe(`through ${via}`, () => {
    const client = () => (via === 'codemode-remote' ? bridged : proxied);

    it('lists the code-mode tools over the catalog of both upstreams', async () => {
      const { tools } = await client().listTools();
      expect(tools.map((t) => t.name)).toEqual(['execute', 'search', 'get_schema']);
      const search = await client().callTool({ name: 'search', arguments: { query: 'sum two numbers' } });
      expect(JSON.stringify(search.structuredContent)).toContain('everything.get-sum');
    });

    it('an execute combining tools from both servers returns the right structured result', async () => {
      const result = await execute(client(), COMBINED);
      expect(result.isError).toBeUndefined();
      expect(result.structuredContent).toMatchObject({
        result: { name: 'Mechanical keyboard', stock: 14, sum: expect.stringContaining('9000'), echoed: expect.stringContaining('Mechanical keyboard') },
        toolCalls: [
          { tool: expect.stringMatching(/^(inventory\.get_product|everything\.get-sum)$/), ok: true },
          { tool: expect.stringMatching(/^(inventory\.get_product|everything\.get-sum)$/), ok: true },
          { tool: 'everything.echo', ok: true },
        ],
      });
    });

    it('timeout, memory, tool-call cap and upstream errors come back as isError with structured content', async () => {
      const timeout = await execute(client(), 'while (true) {}');
      expect(timeout.isError).toBe(true);
      expect(timeout.structuredContent).toMatchObject({ error: { kind: 'timeout' } });

      const memory = await execute(client(), 'const keep = []; while (true) keep.push(new Array(100000).fill(keep.length));');
      expect(memory.isError).toBe(true);
      expect(memory.structuredContent).toMatchObject({ error: { kind: 'memory' } });

      const capped = await execute(client(), 'for (let i = 0; i < 6; i++) await tools.everything.echo({ message: String(i) }); return "unreachable";');
      expect(capped.isError).toBe(true);
      expect(capped.structuredContent).toMatchObject({ error: { kind: 'tool_call_limit', message: expect.stringContaining('5') } });
      expect((capped.structuredContent as { toolCalls: unknown[] }).toolCalls).toHaveLength(6);

      const upstream = await execute(client(), `return await tools.inventory.get_product({ sku: 'NOPE-1' })`);
      expect(upstream.isError).toBe(true);
      expect(upstream.structuredContent).toMatchObject({
        error: { kind: 'runtime', name: 'ToolError', tool: 'inventory.get_product', message: expect.stringContaining('No product with SKU NOPE-1') },
        toolCalls: [{ tool: 'inventory.get_product', ok: false }],
      });
      expect((upstream.content as Array<{ text: string }>)[0]!.text).toContain('not_found');

      // The server is still healthy afterwards.
      expect((await execute(client(), 'return 1 + 1')).structuredContent).toMatchObject({ result: 2 });
    });
  });
}
