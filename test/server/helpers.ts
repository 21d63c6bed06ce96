/**
 * Helpers for the server tests: the example inventory server as an upstream, an in-process codemode
 * server on 127.0.0.1:0, and SDK clients for it.
 */
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { parseServersConfig } from '../../src/server/config.js';
import { serveHttp } from '../../src/server/http.js';
import type { CodemodeHttpServer, ServeHttpOptions } from '../../src/server/http.js';
import { createCodemodeServerFromConfig } from '../../src/server/server.js';
import type { CodemodeServer, CodemodeServerFromConfigOptions } from '../../src/server/server.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const INVENTORY = fileURLToPath(new URL('../../examples/inventory-server.mjs', import.meta.url));
export const EVERYTHING = fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url));
export const CLI = fileURLToPath(new URL('../../dist/cli/codemode.js', import.meta.url));
export const REMOTE_CLI = fileURLToPath(new URL('../../dist/cli/codemode-remote.js', import.meta.url));

export const inventoryEntry = { command: process.execPath, args: [INVENTORY] };

export interface Engine {
  server: CodemodeServer;
  http: CodemodeHttpServer;
  close(): Promise<void>;
}

/** Builds a codemode server from `mcpServers` entries and serves it over HTTP on 127.0.0.1:0. */
export async function startEngine(
  servers: Record<string, unknown>,
  options: CodemodeServerFromConfigOptions = {},
  http: ServeHttpOptions = {},
): Promise<Engine> {
  const config = parseServersConfig(JSON.stringify({ mcpServers: servers }), { file: `${ROOT}/test-config.json` });
  const server = await createCodemodeServerFromConfig(config, { connectTimeoutMs: 15_000, ...options });
  let served: CodemodeHttpServer;
  try {
    served = await serveHttp(server, { port: 0, ...http });
  } catch (err) {
    await server.close({ graceMs: 0 });
    throw err;
  }
  return { server, http: served, close: () => served.close({ graceMs: 0 }) };
}

/** An SDK client connected over Streamable HTTP. */
export async function connectClient(url: string, headers: Record<string, string> = {}): Promise<Client> {
  const client = new Client({ name: 'server-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return client;
}

/** Calls `execute` and returns the raw result (structuredContent unvalidated). */
export async function execute(client: Client, code: string, meta?: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.request(
    { method: 'tools/call', params: { name: 'execute', arguments: { code }, ...(meta ? { _meta: meta } : {}) } },
    CallToolResultSchema,
    { timeout: 60_000 },
  )) as CallToolResult;
}

/**
 * Lists `client`'s tools (bypassing any cache) until `name` shows up or `ms` pass, and returns the last
 * listing's names. A server's catalog refresh after `list_changed` is debounced, so a listing that has
 * `name` has every tool added before it.
 */
export async function listUntil(client: { listTools(params?: undefined, options?: { cacheMode: 'bypass' }): Promise<{ tools: Array<{ name: string }> }> }, name: string, ms = 10_000): Promise<string[]> {
  let names: string[] = [];
  for (const until = Date.now() + ms; !names.includes(name) && Date.now() < until; ) {
    names = (await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name);
    if (!names.includes(name)) await new Promise((r) => setTimeout(r, 100));
  }
  return names;
}

