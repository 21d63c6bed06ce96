/**
 * Upstream connections that negotiate the era (`protocol: 'auto'`, what `codemode serve` and `codemode run`
 * use): a server that speaks only 2026-07-28 (test/fixtures/modern-upstream.ts, over stdio and HTTP) is
 * reached with 2026-07-28, a 2025-only one with 2025-11-25, and calls, trace context, notifications and
 * errors work the same on both.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CallToolResultSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { CodemodeError } from '../../src/errors.js';
import { connectUpstream } from '../../src/proxy/upstream.js';
import type { UpstreamConnection } from '../../src/proxy/upstream.js';
import type { UpstreamClient } from '../../src/proxy/negotiated-client.js';
import { connectUpstreams } from '../../src/server/upstreams.js';
import { NODE } from './helpers.js';

const MODERN = fileURLToPath(new URL('../fixtures/modern-upstream.ts', import.meta.url));
const INVENTORY = fileURLToPath(new URL('../../examples/inventory-server.mjs', import.meta.url));
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.().catch(() => undefined);
});

const modernStdio = { command: NODE, args: ['--experimental-strip-types', '--no-warnings', MODERN, '--stdio'] };

/** The fixture over HTTP on 127.0.0.1, once it prints its URL. */
async function modernHttp(): Promise<string> {
  const child = spawn(NODE, ['--experimental-strip-types', '--no-warnings', MODERN, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  cleanups.push(async () => {
    child.kill('SIGKILL');
  });
  let text = '';
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the fixture did not start: ${text}`)), 20_000);
    child.stderr.on('data', (c: Buffer) => {
      text += c.toString();
      const m = /listening on (http:\/\/\S+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
}

async function negotiate(config: unknown): Promise<UpstreamConnection<UpstreamClient>> {
  const connection = await connectUpstream(config, { protocol: 'auto', onStderr: () => undefined, connectTimeoutMs: 20_000 });
  cleanups.push(() => connection.close());
  return connection;
}

async function call(client: UpstreamClient, name: string, args: Record<string, unknown>, meta?: Record<string, unknown>) {
  return client.request({ method: 'tools/call', params: { name, arguments: args, ...(meta ? { _meta: meta } : {}) } }, CallToolResultSchema, { timeout: 20_000 });
}

describe('connectUpstream with protocol auto', () => {
  for (const [transport, config] of [
    ['stdio', async () => modernStdio],
    ['Streamable HTTP', async () => ({ url: await modernHttp() })],
  ] as const) {
    it(`reaches a 2026-07-28-only server over ${transport}: tools, calls with trace context, and JSON-RPC errors`, async () => {
      const up = await negotiate(await config());
      expect(up.initializeResult.protocolVersion).toBe('2026-07-28');
      expect(up.initializeResult.serverInfo).toMatchObject({ name: 'modern-upstream' });
      expect(up.kind).toBe(transport === 'stdio' ? 'stdio' : 'http');
      const { tools } = await up.client.listTools();
      expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['echo', 'add_tool', 'whoami']));
      const echoed = await call(up.client, 'echo', { text: 'hi' }, { traceparent: TRACEPARENT });
      expect(echoed.structuredContent).toEqual({ text: 'hi', traceparent: TRACEPARENT });
      // Every request carries its version in `_meta` (the server sees it in the request envelope).
      expect(((await call(up.client, 'whoami', {})).content[0] as { text: string }).text).toContain('"2026-07-28"');
      // A JSON-RPC error answer is the v1 McpError the rest of codemode handles, code and message intact.
      await expect(call(up.client, 'nope', {})).rejects.toMatchObject({ name: 'McpError', code: -32602, message: expect.stringContaining('Unknown tool: nope') });
    });
  }

  it('reaches a 2025-only server with 2025-11-25, over the same one child process', async () => {
    const up = await negotiate({ command: NODE, args: [INVENTORY] });
    expect(up.initializeResult.protocolVersion).toBe('2025-11-25');
    const result = await call(up.client, 'get_product', { sku: 'KB-101' });
    expect(JSON.stringify(result)).toContain('KB-101');
  });

  it('calls whileBooting once while a stdio child boots (before the connection is made), and not for HTTP', async () => {
    let answered = false;
    const booting: boolean[] = [];
    const up = await connectUpstream(
      { command: NODE, args: [INVENTORY] },
      {
        protocol: 'auto',
        onStderr: () => undefined,
        connectTimeoutMs: 20_000,
        whileBooting: () => booting.push(answered),
      },
    );
    answered = true;
    cleanups.push(() => up.close());
    expect(booting).toEqual([false]);
    // Not for an HTTP upstream: there is no child to wait on.
    const http: boolean[] = [];
    const remote = await connectUpstream({ url: await modernHttp() }, { protocol: 'auto', connectTimeoutMs: 20_000, whileBooting: () => http.push(true) });
    cleanups.push(() => remote.close());
    expect(http).toEqual([]);
  });

  it('without negotiation (the v1 client), the 2026-07-28-only server is refused with a clear protocol error', async () => {
    const error = await connectUpstream(modernStdio, { onStderr: () => undefined, connectTimeoutMs: 20_000 }).then(
      (c) => c.close().then(() => undefined),
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CodemodeError);
    expect(error).toMatchObject({ code: 'UPSTREAM_PROTOCOL', message: expect.stringMatching(/refused initialize/) });
  });

  for (const [transport, config] of [
    ['stdio', async () => modernStdio],
    ['Streamable HTTP', async () => ({ url: await modernHttp() })],
  ] as const) {
    it(`hears a 2026-07-28 server's tool-list changes over ${transport} (subscriptions/listen), as codemode serve's catalog does`, async () => {
      const changes: number[] = [];
      const upstreams = await connectUpstreams({ modern: await config() }, { onToolsChanged: (_name, count) => void changes.push(count), onStderr: () => undefined, connectTimeoutMs: 20_000 });
      cleanups.push(() => upstreams.close());
      const up = upstreams.connections.get('modern')!;
      expect(up.initializeResult.protocolVersion).toBe('2026-07-28');
      await call(up.client, 'add_tool', { name: 'fresh' });
      const deadline = Date.now() + 10_000;
      while (changes.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      expect(changes.length).toBeGreaterThan(0);
      expect((await up.client.listTools()).tools.map((t) => t.name)).toContain('fresh');
    });
  }

  it('delivers notifications to handlers registered with v1 schemas', async () => {
    let seen = 0;
    const up = await connectUpstream(modernStdio, {
      protocol: 'auto',
      onStderr: () => undefined,
      connectTimeoutMs: 20_000,
      configure: (client) => client.setNotificationHandler(ToolListChangedNotificationSchema, () => void seen++),
    });
    cleanups.push(() => up.close());
    await call(up.client, 'add_tool', { name: 'other' });
    const deadline = Date.now() + 10_000;
    while (seen === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(seen).toBeGreaterThan(0);
  });
});
