/**
 * The HTTP -> HTTP forward path of `serveProxyHttp` (src/proxy/forward.ts), where its mechanics differ from
 * the SDK path: session id translation, SSE piped through as it arrives, headers never leaked, the
 * upstream session replaced (initialize replayed) when the upstream forgets it, `ignoreTools` on JSON and
 * SSE answers, DELETE, and the `auto` fallback to the SDK path for a legacy SSE upstream. Real sockets on
 * 127.0.0.1: the conformance fixture, server-everything, and scripted HTTP upstreams.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { createProxy } from '../../src/proxy/proxy.js';
import type { Proxy, ProxyOptions } from '../../src/proxy/proxy.js';
import { serveProxyHttp } from '../../src/proxy/http.js';
import type { ProxyHttpServer } from '../../src/proxy/http.js';
import { EVERYTHING, freePort, readBody, spawnServer, startFixtureHttp, startHttp } from './helpers.js';
import type { ChildServer } from './helpers.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.().catch(() => undefined);
});

async function host(target: unknown, options: ProxyOptions = {}): Promise<{ http: ProxyHttpServer; proxy: Proxy }> {
  const proxy = createProxy(target, { onStderr: () => undefined, ...options });
  const http = await serveProxyHttp(proxy);
  cleanups.push(() => http.close());
  return { http, proxy };
}

async function downstream(url: string, headers: Record<string, string> = {}): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'forward-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(transport);
  cleanups.push(() => client.close());
  return { client, transport };
}

const textOf = (r: unknown): string => ((r as CallToolResult).content[0] as { text: string }).text;
const ACCEPT = 'application/json, text/event-stream';

/** Initializes a session through `url` with raw HTTP; returns the downstream session id. */
async function rawInit(url: string): Promise<string> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: ACCEPT },
    body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
  });
  await res.text();
  const sid = res.headers.get('mcp-session-id');
  expect(sid).toBeTruthy();
  await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-session-id': sid!, 'mcp-protocol-version': '2025-06-18' }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  return sid!;
}

describe('forward path against the conformance fixture', () => {
  let fixture: ChildServer;
  beforeAll(async () => {
    fixture = await startFixtureHttp();
  });
  afterAll(async () => {
    await fixture.stop();
  });

  it('translates the session id: the client sees its own, the upstream its own', async () => {
    const { http, proxy } = await host({ url: fixture.url });
    const { client, transport } = await downstream(http.url);
    const upstreamId = JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} }))).sessionId as string;
    expect(transport.sessionId).toBeTruthy();
    expect(upstreamId).toBeTruthy();
    expect(transport.sessionId).not.toBe(upstreamId);
    expect(proxy.sessionCount).toBe(1);
    // An id the proxy never issued (such as the upstream's own) is unknown here.
    const stray = await fetch(http.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-session-id': upstreamId },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(stray.status).toBe(404);
  });

  it('pipes SSE answers through event by event, with the upstream event ids, as they arrive', async () => {
    const { http } = await host({ url: fixture.url });
    const sid = await rawInit(http.url);
    const started = performance.now();
    const res = await fetch(http.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'slow_progress', arguments: { durationMs: 900, intervalMs: 300 }, _meta: { progressToken: 'p1' } } }),
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const arrivals: Array<{ at: number; text: string }> = [];
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) arrivals.push({ at: performance.now() - started, text: decoder.decode(chunk) });
    const all = arrivals.map((a) => a.text).join('');
    expect(all).toMatch(/"method":"notifications\/progress".*"progressToken":"p1"/);
    expect(all).toMatch(/"id":7/);
    // The fixture's event store ids come through untouched (the SDK path would have none).
    expect(all).toMatch(/^id: \S+/m);
    const firstProgress = arrivals.find((a) => a.text.includes('notifications/progress'));
    const last = arrivals.at(-1);
    expect(firstProgress).toBeDefined();
    // Streamed, not buffered: the first progress event arrived well before the answer.
    expect(last!.at - firstProgress!.at).toBeGreaterThan(400);
  });

  it('forward: false (or requestTimeoutMs) keeps the SDK path, which terminates SSE itself (no upstream event ids)', async () => {
    for (const [proxyOptions, serveOptions] of [
      [{}, { forward: false }],
      [{ requestTimeoutMs: 60_000 }, {}],
    ] as const) {
      const proxy = createProxy({ url: fixture.url }, proxyOptions);
      const http = await serveProxyHttp(proxy, serveOptions);
      cleanups.push(() => http.close());
      const sid = await rawInit(http.url);
      const res = await fetch(http.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { text: 'sdk' } } }),
      });
      const text = await res.text();
      expect(text).toMatch(/"text":"sdk"/);
      expect(text).not.toMatch(/^id: /m);
    }
  });

  it('hides ignoreTools from an SSE tools/list answer and refuses calls to them', async () => {
    const { http } = await host({ url: fixture.url }, { ignoreTools: ['test_*', 'who?mi'] });
    const { client } = await downstream(http.url);
    const names = (await client.listTools()).tools.map((t) => t.name);
    expect(names).toContain('echo');
    expect(names.filter((n) => n.startsWith('test_') || n === 'whoami')).toEqual([]);
    const err = await client.callTool({ name: 'whoami', arguments: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32602);
    expect((err as McpError).message).toMatch(/Tool "whoami" is not available through this proxy \(hidden by ignoreTools pattern "who\?mi"\)/);
    expect(textOf(await client.callTool({ name: 'echo', arguments: { text: 'ok' } }))).toBe('ok');
  });

  it('DELETE ends the upstream session too', async () => {
    const { http, proxy } = await host({ url: fixture.url });
    const { client, transport } = await downstream(http.url);
    const upstreamId = JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} }))).sessionId as string;
    await transport.terminateSession();
    expect(proxy.sessionCount).toBe(0);
    const gone = await fetch(fixture.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-session-id': upstreamId, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(gone.status).toBe(404);
  });
});

/** A scripted Streamable HTTP upstream answering JSON, recording every request it gets. */
async function scripted(): Promise<{ url: string; seen: Array<{ method: string; headers: IncomingMessage['headers']; body: Record<string, unknown> | undefined }>; forget(): void; initializes(): number }> {
  const seen: Array<{ method: string; headers: IncomingMessage['headers']; body: Record<string, unknown> | undefined }> = [];
  const sessions = new Set<string>();
  let n = 0;
  const json = (res: ServerResponse, body: unknown, headers: Record<string, string> = {}): void => {
    res.writeHead(200, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  };
  const s = await startHttp(async (req, res) => {
    const text = req.method === 'POST' ? await readBody(req) : '';
    const body = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
    seen.push({ method: req.method ?? '', headers: req.headers, body });
    const sid = req.headers['mcp-session-id'];
    if (req.method === 'GET') return void res.writeHead(405).end();
    if (req.method === 'DELETE') {
      sessions.delete(String(sid));
      return void res.writeHead(200).end();
    }
    if (body?.method === 'initialize') {
      const id = `up-${++n}`;
      sessions.add(id);
      return json(res, { jsonrpc: '2.0', id: body.id, result: { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'scripted', version: '1' } } }, { 'mcp-session-id': id });
    }
    if (typeof sid !== 'string' || !sessions.has(sid)) {
      return void res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
    }
    if (body?.id === undefined) return void res.writeHead(202).end();
    if (body.method === 'tools/list') {
      return json(res, { jsonrpc: '2.0', id: body.id, result: { tools: ['keep', 'drop_me', 'also_keep'].map((name) => ({ name, inputSchema: { type: 'object' } })) } });
    }
    return json(res, { jsonrpc: '2.0', id: body.id, result: { content: [{ type: 'text', text: `${String(sid)}:${String((body.params as { name?: string }).name)}` }] } });
  });
  // Closes idle keep-alive sockets quickly, so a pooled upstream socket goes stale between calls.
  s.server.keepAliveTimeout = 100;
  cleanups.push(() => s.close());
  return { url: `${s.url}/mcp`, seen, forget: () => sessions.clear(), initializes: () => n };
}

describe('forward path against a scripted upstream', () => {
  it('never sends downstream headers upstream (on any request) unless allowlisted; config headers always', async () => {
    const up = await scripted();
    const { http } = await host({ url: up.url, headers: { 'X-Api-Key': 'from-config' } }, { forwardHeaders: ['X-Tenant'] });
    const { client, transport } = await downstream(http.url, { Authorization: 'Bearer downstream-secret', Cookie: 'sid=1', 'X-Tenant': 't1', 'X-Other': 'o' });
    await client.callTool({ name: 'keep', arguments: {} });
    await transport.terminateSession();
    const kinds = up.seen.map((r) => (r.method === 'POST' ? String(r.body?.method) : r.method));
    expect(kinds).toEqual(expect.arrayContaining(['initialize', 'notifications/initialized', 'tools/call', 'DELETE']));
    for (const r of up.seen) {
      expect(r.headers.authorization).toBeUndefined();
      expect(r.headers.cookie).toBeUndefined();
      expect(r.headers['x-other']).toBeUndefined();
      expect(r.headers['x-api-key']).toBe('from-config');
      expect(r.headers['x-tenant']).toBe('t1');
    }
  });

  it('closes an idle session after idleTimeoutMs, ending the upstream session (DELETE)', async () => {
    const up = await scripted();
    const { http, proxy } = await host({ url: up.url }, { idleTimeoutMs: 300 });
    const { client } = await downstream(http.url);
    await client.callTool({ name: 'a', arguments: {} });
    expect(proxy.sessionCount).toBe(1);
    const deadline = Date.now() + 3000;
    while (proxy.sessionCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(proxy.sessionCount).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(up.seen.some((r) => r.method === 'DELETE' && r.headers['mcp-session-id'] === 'up-1')).toBe(true);
  });

  it('filters a JSON tools/list answer', async () => {
    const up = await scripted();
    const { http } = await host({ url: up.url }, { ignoreTools: ['drop_*'] });
    const { client } = await downstream(http.url);
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['keep', 'also_keep']);
  });

  it('replays initialize and notifications/initialized when the upstream forgets the session, once for concurrent requests', async () => {
    const up = await scripted();
    const { http } = await host({ url: up.url });
    const { client } = await downstream(http.url);
    expect(textOf(await client.callTool({ name: 'a', arguments: {} }))).toBe('up-1:a');
    up.forget();
    const results = await Promise.all(['b', 'c', 'd'].map((name) => client.callTool({ name, arguments: {} })));
    expect(results.map(textOf)).toEqual(['up-2:b', 'up-2:c', 'up-2:d']);
    expect(up.initializes()).toBe(2);
    const inits = up.seen.filter((r) => r.body?.method === 'initialize');
    // The replay carries the downstream client's own params.
    expect((inits[1]?.body?.params as { clientInfo: { name: string } }).clientInfo.name).toBe('forward-test');
    const afterReplay = up.seen.slice(up.seen.indexOf(inits[1]!));
    expect(afterReplay.some((r) => r.body?.method === 'notifications/initialized' && r.headers['mcp-session-id'] === 'up-2')).toBe(true);
  });

  it('an upstream that disappears mid-session: the request fails with a JSON-RPC error naming the cause', async () => {
    const port = await freePort();
    let up = await startFixtureHttp(port);
    cleanups.push(() => up.stop());
    const { http } = await host({ url: up.url });
    const { client } = await downstream(http.url);
    await client.callTool({ name: 'echo', arguments: { text: 'x' } });
    await up.stop();
    const err = await client.callTool({ name: 'echo', arguments: { text: 'y' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).message).toMatch(/became unreachable during tools\/call: nothing is listening there/);
    expect((err as McpError).data).toEqual({ reason: 'UPSTREAM_UNAVAILABLE' });
    up = await startFixtureHttp(port);
    cleanups.push(() => up.stop());
    expect(textOf(await client.callTool({ name: 'echo', arguments: { text: 'back' } }))).toBe('back');
  });
});

describe('transport auto: a legacy SSE upstream is handed to the SDK path', () => {
  it('serves it', async () => {
    const port = await freePort();
    const ev = await spawnServer([EVERYTHING, 'sse'], /running on port (\d+)/, { PORT: String(port) });
    cleanups.push(() => ev.stop());
    const { http } = await host({ url: `http://127.0.0.1:${port}/sse` });
    const { client } = await downstream(http.url);
    expect(textOf(await client.callTool({ name: 'echo', arguments: { message: 'via sse' } }))).toBe('Echo: via sse');
  });
});

describe('raw upstream client (plain http: POSTs)', () => {
  it('does not reuse a socket the upstream closed while it sat idle in the pool', async () => {
    const up = await scripted();
    const { http } = await host({ url: up.url });
    const { client } = await downstream(http.url);
    expect(textOf(await client.callTool({ name: 'a', arguments: {} }))).toBe('up-1:a');
    // The scripted server closes idle keep-alive sockets after 100 ms (below): the pooled socket is dead.
    await new Promise((r) => setTimeout(r, 400));
    expect(textOf(await client.callTool({ name: 'b', arguments: {} }))).toBe('up-1:b');
    expect(up.initializes()).toBe(1);
  });

  it('streams a large answer (8 MB) through with backpressure, byte-exact', async () => {
    const fixture = await startFixtureHttp();
    cleanups.push(() => fixture.stop());
    const { http } = await host({ url: fixture.url });
    const { client } = await downstream(http.url);
    const text = textOf(await client.callTool({ name: 'big_result', arguments: { bytes: 8_000_000 } }));
    expect(text.length).toBe(8_000_000);
  });

  it('handles an upstream that answers with Connection: close and no length', async () => {
    const s = await startHttp(async (req, res) => {
      if (req.method !== 'POST') return void res.writeHead(405).end();
      const body = JSON.parse(await readBody(req)) as { id?: number; method: string };
      if (body.method === 'initialize') {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'c1' }).end(
          JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'closer', version: '1' } } }),
        );
        return;
      }
      if (body.id === undefined) return void res.writeHead(202).end();
      // HTTP/1.0-style framing: the body ends when the connection does.
      res.socket?.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { content: [{ type: 'text', text: 'closed' }] } })}`);
      res.socket?.end();
    });
    cleanups.push(() => s.close());
    const { http } = await host({ url: `${s.url}/mcp`, transport: 'http' });
    const { client } = await downstream(http.url);
    for (let i = 0; i < 3; i++) expect(textOf(await client.callTool({ name: 'x', arguments: {} }))).toBe('closed');
  });
});
