/**
 * createProxy end to end: a real downstream SDK client over Streamable HTTP, the proxy hosted on
 * 127.0.0.1, and real upstreams (the conformance fixture over stdio and over Streamable HTTP, and
 * server-everything), plus throw-away HTTP servers for the failure classes.
 */
import { afterEach, beforeAll, afterAll, describe, expect, it, vi } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import {
  CallToolResultSchema,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
  PromptListChangedNotificationSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { createProxy } from '../../src/proxy/proxy.js';
import type { ProxyOptions } from '../../src/proxy/proxy.js';
import { serveProxyHttp } from '../../src/proxy/http.js';
import type { ProxyHttpServer } from '../../src/proxy/http.js';
import { EVERYTHING, NODE, fixtureStdioConfig, freePort, readBody, spawnServer, startFixtureHttp, startHttp, timeRejection } from './helpers.js';
import type { ChildServer } from './helpers.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.().catch(() => undefined);
});

async function host(target: unknown, options: ProxyOptions = {}): Promise<ProxyHttpServer> {
  const h = await serveProxyHttp(createProxy(target, { onStderr: () => undefined, ...options }));
  cleanups.push(() => h.close());
  return h;
}

async function downstream(url: string, headers: Record<string, string> = {}): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'downstream-test', version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(transport);
  cleanups.push(() => client.close());
  return { client, transport };
}

const textOf = (r: unknown): string => ((r as CallToolResult).content[0] as { text: string }).text;

describe('initialize is forwarded: upstream failures are the answer to initialize', () => {
  const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
    ['nothing listening', async () => ({ url: `http://127.0.0.1:${await freePort()}/mcp` }), /Cannot reach upstream .*nothing is listening there \(connection refused\)/],
    [
      'the server root (404)',
      async () => {
        const s = await startHttp((_q, r) => r.writeHead(404).end('not found'));
        cleanups.push(() => s.close());
        return { url: `${s.url}/` };
      },
      /HTTP 404 Not Found: there is no MCP endpoint at this URL.*server root/,
    ],
    [
      'auth denied (401)',
      async () => {
        const s = await startHttp((_q, r) => r.writeHead(401).end());
        cleanups.push(() => s.close());
        return { url: `${s.url}/mcp` };
      },
      /HTTP 401 Unauthorized: authorization was required and not accepted/,
    ],
    [
      'an HTML page',
      async () => {
        const s = await startHttp((_q, r) => r.writeHead(200, { 'content-type': 'text/html' }).end('<html></html>'));
        cleanups.push(() => s.close());
        return { url: `${s.url}/mcp` };
      },
      /is not an MCP server: it answered initialize with content type text\/html/,
    ],
    [
      'JSON that is not JSON-RPC',
      async () => {
        const s = await startHttp((_q, r) => r.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
        cleanups.push(() => s.close());
        return { url: `${s.url}/mcp` };
      },
      /is not an MCP server: its answer to initialize is not a JSON-RPC message/,
    ],
    ['a stdio command that does not exist', async () => ({ command: 'codemode-missing-binary-xyz' }), /Could not start upstream `codemode-missing-binary-xyz`: the command was not found/],
    ['a stdio command that exits at once', async () => ({ command: NODE, args: ['-e', 'console.error("no token"); process.exit(2)'] }), /exited with code 2 before answering initialize\. Its stderr ended with: "no token"/],
  ];
  for (const [name, target, message] of cases) {
    it(`${name}: JSON-RPC error within 1 s, message names the cause, prefix not doubled`, async () => {
      const h = await host(await target());
      const { error, ms } = await timeRejection(() => downstream(h.url));
      expect(error).toBeInstanceOf(McpError);
      const e = error as McpError;
      expect(e.code).toBe(-32603);
      expect(e.message).toMatch(message);
      expect(e.message.match(/MCP error/g)).toHaveLength(1);
      expect(ms).toBeLessThan(1000);
    });
  }

  it('an upstream that never answers: timeout error after connectTimeoutMs', async () => {
    const s = await startHttp(() => undefined);
    cleanups.push(() => s.close());
    const h = await host({ url: `${s.url}/mcp` }, { connectTimeoutMs: 1000 });
    const { error, ms } = await timeRejection(() => downstream(h.url));
    expect((error as McpError).message).toMatch(/accepted the connection but did not answer initialize within 1000 ms/);
    expect(ms).toBeGreaterThanOrEqual(950);
    expect(ms).toBeLessThan(3000);
  });

  it('an upstream that rejects the credentials mid-session (401): the request fails with UPSTREAM_AUTH', async () => {
    let calls = 0;
    const s = await startHttp(async (req, res) => {
      if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
      }
      const body = JSON.parse(await readBody(req)) as { id?: number; method: string };
      calls++;
      if (body.method === 'initialize') {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's1' }).end(
          JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'flaky-auth', version: '1' } } }),
        );
      } else if (body.id === undefined) {
        res.writeHead(202).end();
      } else {
        res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' }).end('{"error":"invalid_token"}');
      }
    });
    cleanups.push(() => s.close());
    const h = await host({ url: `${s.url}/mcp`, transport: 'http' });
    const { client } = await downstream(h.url);
    const err = await client.listTools().catch((e: unknown) => e);
    expect((err as McpError).code).toBe(-32603);
    expect((err as McpError).message).toMatch(/^MCP error -32603: Upstream http:\/\/127\.0\.0\.1:\d+\/mcp rejected the credentials \(HTTP 401\) for tools\/list\. The token may have expired/);
    expect((err as McpError).data).toEqual({ reason: 'UPSTREAM_AUTH' });
    expect(calls).toBeGreaterThanOrEqual(3);
  });

  it('a failed initialize can be retried on the same connection once the upstream is up', async () => {
    const port = await freePort();
    const proxy = createProxy({ url: `http://127.0.0.1:${port}/mcp` }, { onStderr: () => undefined });
    cleanups.push(() => proxy.close());
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await proxy.connect(serverSide);
    await clientSide.start();
    const answers: Array<Record<string, unknown>> = [];
    clientSide.onmessage = (m) => void answers.push(m as Record<string, unknown>);
    const init = (id: number) =>
      clientSide.send({ jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
    await init(1);
    await vi.waitFor(() => expect(answers).toHaveLength(1));
    expect(answers[0]).toMatchObject({ id: 1, error: { code: -32603, message: expect.stringMatching(/ECONNREFUSED/) } });
    const up = await startFixtureHttp(port);
    cleanups.push(() => up.stop());
    await init(2);
    await vi.waitFor(() => expect(answers).toHaveLength(2), { timeout: 5000 });
    expect(answers[1]).toMatchObject({ id: 2, result: { serverInfo: { name: 'codemode-conformance-fixture' } } });
  });

  it('is lazy: creating and hosting the proxy contacts nothing', async () => {
    let hits = 0;
    const s = await startHttp((_q, r) => {
      hits++;
      r.writeHead(500).end();
    });
    cleanups.push(() => s.close());
    await host({ url: `${s.url}/mcp` });
    await new Promise((r) => setTimeout(r, 100));
    expect(hits).toBe(0);
  });
});

describe('forwarding through the proxy (stdio upstream)', () => {
  it('mirrors serverInfo, capabilities and instructions', async () => {
    const h = await host(fixtureStdioConfig());
    const { client } = await downstream(h.url);
    expect(client.getServerVersion()).toEqual({ name: 'codemode-conformance-fixture', title: 'Conformance fixture', version: '1.0.0' });
    expect(client.getInstructions()).toBe('Conformance fixture for codemode tests.');
    expect(client.getServerCapabilities()).toEqual({
      tools: { listChanged: true },
      resources: { subscribe: true, listChanged: true },
      prompts: { listChanged: true },
      logging: {},
      completions: {},
    });
  });

  it('forwards every request kind and keeps results exact', async () => {
    const h = await host(fixtureStdioConfig());
    const { client } = await downstream(h.url);
    expect(await client.ping()).toEqual({});
    const tools = (await client.listTools()).tools.map((t) => t.name);
    expect(tools).toContain('structured');

    // Tool results keep content, structuredContent, _meta and isError exactly.
    const ok = await client.request({ method: 'tools/call', params: { name: 'structured', arguments: {} } }, CallToolResultSchema);
    expect(ok).toEqual({ content: [{ type: 'text', text: '{"count":3}' }], structuredContent: { count: 3 }, _meta: { 'fixture/trace': 'abc', nested: { a: [1, 2] } } });
    const failed = await client.request({ method: 'tools/call', params: { name: 'structured', arguments: { isError: true } } }, CallToolResultSchema);
    expect(failed).toEqual({ ...ok, isError: true });

    // Upstream JSON-RPC errors keep code and message, no doubled prefix.
    const err = await client.callTool({ name: 'protocol_error', arguments: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32602);
    expect((err as McpError).message).toBe('MCP error -32602: fixture says: bad params');
    expect((err as McpError).data).toEqual({ field: 'x' });

    // Resources, templates with query params (no double percent-encoding), prompts, completion.
    expect((await client.listResources()).resources.map((r) => r.uri)).toEqual(['test://static-text', 'test://static-binary', 'test://watched-resource']);
    expect((await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate)).toContain('data://{id}{?format}');
    const uri = 'data://a%20b?format=json%2Bld';
    expect(await client.readResource({ uri })).toEqual({ contents: [{ uri, mimeType: 'text/plain', text: 'id=a%20b format=json%2Bld' }] });
    expect((await client.readResource({ uri: 'test://static-binary' })).contents[0]).toMatchObject({ blob: expect.stringMatching(/^iVBOR/) });
    const missing = await client.readResource({ uri: 'test://nope' }).catch((e: unknown) => e);
    expect((missing as McpError).code).toBe(-32002);
    expect((await client.listPrompts()).prompts).toHaveLength(4);
    expect(await client.getPrompt({ name: 'test_prompt_with_arguments', arguments: { arg1: 'a', arg2: 'b' } })).toEqual({
      messages: [{ role: 'user', content: { type: 'text', text: "Prompt with arguments: arg1='a', arg2='b'" } }],
    });
    expect(await client.complete({ ref: { type: 'ref/prompt', name: 'test_prompt_with_arguments' }, argument: { name: 'arg1', value: 'par' } })).toEqual({
      completion: { values: ['paris', 'park', 'party'], total: 3, hasMore: false },
    });
    expect(await client.setLoggingLevel('debug')).toEqual({});
  });

  it('forwards notifications both ways: list-changed, resource-updated, logging, progress', async () => {
    const h = await host(fixtureStdioConfig());
    const { client } = await downstream(h.url);
    const seen: string[] = [];
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void seen.push('tools'));
    client.setNotificationHandler(ResourceListChangedNotificationSchema, () => void seen.push('resources'));
    client.setNotificationHandler(PromptListChangedNotificationSchema, () => void seen.push('prompts'));
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void seen.push(`updated ${n.params.uri}`));
    const logs: unknown[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push(n.params.data));
    await client.subscribeResource({ uri: 'test://watched-resource' });
    await client.callTool({ name: 'notify', arguments: {} });
    await client.callTool({ name: 'test_tool_with_logging', arguments: {} });
    const progress: number[] = [];
    await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, { onprogress: (p) => void progress.push(p.progress) });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.sort()).toEqual(['prompts', 'resources', 'tools', 'updated test://watched-resource']);
    expect(logs).toEqual(['Tool execution started', 'Tool processing data', 'Tool execution completed']);
    expect(progress).toEqual([0, 50, 100]);
    await client.unsubscribeResource({ uri: 'test://watched-resource' });
    seen.length = 0;
    await client.callTool({ name: 'notify', arguments: {} });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).not.toContain('updated test://watched-resource');
  });

  it('forwards server-to-client requests: sampling, elicitation, roots', async () => {
    const h = await host(fixtureStdioConfig());
    const { client } = await downstream(h.url);
    client.setRequestHandler(CreateMessageRequestSchema, (req) => ({
      role: 'assistant',
      content: { type: 'text', text: `sampled: ${(req.params.messages[0]?.content as { text: string }).text}` },
      model: 'm',
    }));
    client.setRequestHandler(ElicitRequestSchema, (req) => ({ action: 'accept', content: { username: 'u', email: req.params.message } }));
    client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: 'file:///work', name: 'work' }] }));
    expect(textOf(await client.callTool({ name: 'test_sampling', arguments: { prompt: 'hi' } }))).toBe('LLM response: sampled: hi');
    expect(textOf(await client.callTool({ name: 'test_elicitation', arguments: { message: 'm@x' } }))).toBe('User response: action=accept, content={"username":"u","email":"m@x"}');
    expect(JSON.parse(textOf(await client.callTool({ name: 'list_roots', arguments: {} })))).toEqual([{ uri: 'file:///work', name: 'work' }]);
  });

  it('delivers what the upstream sends right after initialized, before any request or stream exists', async () => {
    const cfg = fixtureStdioConfig();
    const h = await host({ ...cfg, args: [...cfg.args, '--roots-on-init'] });
    const client = new Client({ name: 'early', version: '1' }, { capabilities: { roots: {} } });
    const changed: string[] = [];
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed.push('tools'));
    client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: 'file:///early' }] }));
    await client.connect(new StreamableHTTPClientTransport(new URL(h.url)));
    cleanups.push(() => client.close());
    expect(textOf(await client.callTool({ name: 'initial_roots', arguments: {} }))).toBe('[{"uri":"file:///early"}]');
    expect(changed).toEqual(['tools']);
  });

  it('forwards cancellation: the upstream sees the call aborted', async () => {
    const h = await host(fixtureStdioConfig());
    const { client } = await downstream(h.url);
    const ac = new AbortController();
    const call = client.callTool({ name: 'slow_progress', arguments: { durationMs: 10_000, intervalMs: 50 } }, undefined, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 300));
    ac.abort('user gave up');
    await expect(call).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 200));
    expect(JSON.parse(textOf(await client.callTool({ name: 'cancelled_calls', arguments: {} })))).toHaveLength(1);
  });

  it('restarts a stdio upstream that exited, on the next request', async () => {
    const h = await host(fixtureStdioConfig());
    const { client } = await downstream(h.url);
    expect(textOf(await client.callTool({ name: 'crash', arguments: {} }))).toBe('crashing');
    await new Promise((r) => setTimeout(r, 300)); // the child is gone now
    expect(textOf(await client.callTool({ name: 'echo', arguments: { text: 'back' } }))).toBe('back');
  });

  it('forwards cancellation upstream-to-downstream: a server-to-client request the upstream gave up on', async () => {
    const h = await host(fixtureStdioConfig());
    const { client } = await downstream(h.url);
    let aborted: unknown;
    client.setRequestHandler(ElicitRequestSchema, (req, extra) => {
      if (req.params.message === 'warm-up') return { action: 'decline' };
      // Never answers by itself; resolves once the cancellation arrives.
      return new Promise((resolve) => {
        extra.signal.addEventListener('abort', () => {
          aborted = extra.signal.reason;
          resolve({ action: 'cancel' });
        });
      });
    });
    // One elicitation first, so no hop uses request id 0 (which SDK receivers ignore in cancellations).
    expect(textOf(await client.callTool({ name: 'elicit_then_give_up', arguments: { warmup: true } }))).toBe('warmed up');
    expect(textOf(await client.callTool({ name: 'elicit_then_give_up', arguments: {} }))).toMatch(/^gave up: McpError: MCP error -32001: Request timed out/);
    await new Promise((r) => setTimeout(r, 200));
    expect(String(aborted)).toMatch(/timed out/i);
  });

  it('requestTimeoutMs caps a silent forwarded request; progress resets it', async () => {
    const h = await host(fixtureStdioConfig(), { requestTimeoutMs: 700 });
    const { client } = await downstream(h.url);
    // 2 s with progress every 200 ms: each progress notification resets the 700 ms timer.
    const progress: number[] = [];
    const ok = await client.callTool({ name: 'slow_progress', arguments: { durationMs: 2000, intervalMs: 200 } }, undefined, { onprogress: (p) => void progress.push(p.progress) });
    expect(textOf(ok)).toMatch(/^done after/);
    expect(progress.length).toBeGreaterThanOrEqual(9);
    // Without a progress token the upstream reports nothing, so the proxy gives up after 700 ms.
    const started = performance.now();
    const err = await client.callTool({ name: 'slow_progress', arguments: { durationMs: 5000, intervalMs: 200 } }).catch((e: unknown) => e);
    expect((err as McpError).code).toBe(-32001);
    expect((err as McpError).message).toBe('MCP error -32001: The upstream did not answer tools/call in time (requestTimeoutMs).');
    expect(performance.now() - started).toBeLessThan(2500);
    await new Promise((r) => setTimeout(r, 300));
    // ...and told the upstream, which stopped the call.
    expect(JSON.parse(textOf(await client.callTool({ name: 'cancelled_calls', arguments: {} })))).toHaveLength(1);
  });

  it('passes large results (20 MB) from a stdio upstream', async () => {
    const h = await host(fixtureStdioConfig());
    const { client } = await downstream(h.url);
    const bytes = 20 * 1024 * 1024;
    const result = await client.callTool({ name: 'big_result', arguments: { bytes } });
    expect(textOf(result)).toHaveLength(bytes);
  });

  it('ignoreTools hides tools and refuses calls to them', async () => {
    const h = await host(fixtureStdioConfig(), { ignoreTools: ['delete_*', 'test_?udio_content'] });
    const { client } = await downstream(h.url);
    const names = (await client.listTools()).tools.map((t) => t.name);
    expect(names).not.toContain('delete_everything');
    expect(names).not.toContain('test_audio_content');
    expect(names).toContain('test_image_content');
    const err = await client.callTool({ name: 'delete_everything', arguments: {} }).catch((e: unknown) => e);
    expect((err as McpError).code).toBe(-32602);
    expect((err as McpError).message).toBe('MCP error -32602: Tool "delete_everything" is not available through this proxy (hidden by ignoreTools pattern "delete_*").');
  });

  it('closes the upstream when the downstream session ends, and after the idle timeout', async () => {
    const proxy = createProxy(fixtureStdioConfig(), { onStderr: () => undefined, idleTimeoutMs: 3000 });
    const h = await serveProxyHttp(proxy);
    cleanups.push(() => h.close());
    const a = await downstream(h.url);
    const b = await downstream(h.url);
    expect(proxy.sessionCount).toBe(2);
    await a.transport.terminateSession(); // DELETE: the session ends now
    await new Promise((r) => setTimeout(r, 100));
    expect(proxy.sessionCount).toBe(1);
    await b.client.ping();
    // b never closes: the idle timeout reaps it.
    await new Promise((r) => setTimeout(r, 4500));
    expect(proxy.sessionCount).toBe(0);
    const err = await b.client.ping().catch((e: unknown) => e);
    expect(String(err)).toMatch(/404|Session not found/);
  });
});

describe('idle timeout applies to HTTP sessions only', () => {
  it('a session connected directly (as over stdio) is not reaped while idle', async () => {
    const proxy = createProxy(fixtureStdioConfig(), { onStderr: () => undefined, idleTimeoutMs: 300 });
    cleanups.push(() => proxy.close());
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await proxy.connect(serverSide);
    const client = new Client({ name: 'stdio-like', version: '1' });
    await client.connect(clientSide);
    cleanups.push(() => client.close());
    await new Promise((r) => setTimeout(r, 900));
    expect(proxy.sessionCount).toBe(1);
    expect(textOf(await client.callTool({ name: 'echo', arguments: { text: 'awake' } }))).toBe('awake');
  });
});

describe('sessions', () => {
  let fixture: ChildServer;
  beforeAll(async () => {
    fixture = await startFixtureHttp();
  });
  afterAll(async () => {
    await fixture.stop();
  });

  it('isolates two concurrent sessions: own upstream session, own notifications, own elicitations', async () => {
    const h = await host({ url: fixture.url });
    const a = await downstream(h.url);
    const b = await downstream(h.url);
    const idA = JSON.parse(textOf(await a.client.callTool({ name: 'whoami', arguments: {} }))).sessionId as string;
    const idB = JSON.parse(textOf(await b.client.callTool({ name: 'whoami', arguments: {} }))).sessionId as string;
    expect(idA).not.toBe(idB);
    const seenA: string[] = [];
    const seenB: string[] = [];
    a.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void seenA.push('tools'));
    b.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void seenB.push('tools'));
    let elicitedB = 0;
    a.client.setRequestHandler(ElicitRequestSchema, () => ({ action: 'decline' }));
    b.client.setRequestHandler(ElicitRequestSchema, () => {
      elicitedB++;
      return { action: 'accept', content: {} };
    });
    // Run both at once: A's elicitation and notifications must reach A only.
    const [ra] = await Promise.all([
      a.client.callTool({ name: 'test_elicitation', arguments: { message: 'for A' } }),
      a.client.callTool({ name: 'notify', arguments: {} }),
      b.client.callTool({ name: 'slow_progress', arguments: { durationMs: 300, intervalMs: 100 } }),
    ]);
    await new Promise((r) => setTimeout(r, 100));
    expect(textOf(ra)).toBe('User response: action=decline, content={}');
    expect(seenA).toEqual(['tools']);
    expect(seenB).toEqual([]);
    expect(elicitedB).toBe(0);
  });

  it('never sends downstream headers upstream unless allowlisted', async () => {
    const secret = { Authorization: 'Bearer downstream-secret', 'X-Tenant': 't1', Cookie: 'sid=1' };
    const plain = await host({ url: fixture.url });
    const a = await downstream(plain.url, secret);
    const seen = JSON.parse(textOf(await a.client.callTool({ name: 'whoami', arguments: {} }))).headers as Record<string, string>;
    expect(seen.authorization).toBeUndefined();
    expect(seen.cookie).toBeUndefined();
    expect(seen['x-tenant']).toBeUndefined();

    const allow = await host({ url: fixture.url, headers: { 'X-Api-Key': 'from-config' } }, { forwardHeaders: ['x-tenant'] });
    const b = await downstream(allow.url, secret);
    const seenB = JSON.parse(textOf(await b.client.callTool({ name: 'whoami', arguments: {} }))).headers as Record<string, string>;
    expect(seenB['x-tenant']).toBe('t1');
    expect(seenB['x-api-key']).toBe('from-config');
    expect(seenB.authorization).toBeUndefined();
    expect(seenB.cookie).toBeUndefined();
  });

  it('re-initializes transparently when the upstream forgets the session (404) and retries once', async () => {
    const port = await freePort();
    let up = await startFixtureHttp(port);
    cleanups.push(() => up.stop());
    const h = await host({ url: up.url });
    const { client } = await downstream(h.url);
    const before = JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} }))).sessionId as string;
    await up.stop();
    up = await startFixtureHttp(port);
    cleanups.push(() => up.stop());
    const after = JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} }))).sessionId as string;
    expect(after).not.toBe(before);
    expect(textOf(await client.callTool({ name: 'echo', arguments: { text: 'still here' } }))).toBe('still here');
  });
});

describe('upstream restart mid-session (server-everything answers 400 for a session it lost)', () => {
  it('recovers: re-initializes and retries the call', async () => {
    const port = await freePort();
    const start = (): Promise<ChildServer> => spawnServer([EVERYTHING, 'streamableHttp'], /listening on port (\d+)/, { PORT: String(port) });
    let ev = await start();
    cleanups.push(() => ev.stop());
    const h = await host({ url: `http://127.0.0.1:${port}/mcp` });
    const { client } = await downstream(h.url);
    expect(textOf(await client.callTool({ name: 'echo', arguments: { message: 'one' } }))).toBe('Echo: one');
    await ev.stop();
    ev = await start();
    cleanups.push(() => ev.stop());
    // What it answers for the old session id, measured: 400 "Bad Request: No valid session ID provided".
    const raw = await fetch(`http://127.0.0.1:${port}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': 'gone' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(raw.status).toBe(400);
    expect(await raw.text()).toMatch(/No valid session ID/);
    expect(textOf(await client.callTool({ name: 'echo', arguments: { message: 'two' } }))).toBe('Echo: two');
  });
});
