/**
 * `codemode proxy --http` serves 2026-07-28 clients (issue 14): in front of a 2025 upstream it translates
 * (server/discover from initialize, resultType and cache hints, progress, list changes on
 * subscriptions/listen, an upstream elicitation as input_required with a sealed requestState); in front of a
 * 2026-07-28 upstream it forwards. Real processes upstream (server-everything over stdio, the changing
 * fixture, the v2 2026-only fixture over HTTP); the proxy in this process; the v2 SDK client pinned to
 * 2026-07-28, and raw HTTP for the wire rules and the requestState faults.
 */
import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { CallToolResult } from '@modelcontextprotocol/client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createProxy } from '../../src/proxy/proxy.js';
import { serveProxyHttp } from '../../src/proxy/http.js';
import type { ProxyHttpServer, ServeProxyHttpOptions } from '../../src/proxy/http.js';
import { CONFORMANCE_SERVER, EVERYTHING, NODE, freePort, spawnServer, startFixtureHttp, startHttp } from './helpers.js';
import type { ChildServer } from './helpers.js';
import { startMrtrUpstream } from '../fixtures/mrtr-upstream.js';
import { expectCancelWhileAsked, expectSep2322, expectStreamFidelity } from '../fixtures/mrtr-checks.js';

const MODERN = '2026-07-28';
const CHANGING = fileURLToPath(new URL('../server/fixtures/changing-server.mjs', import.meta.url));
const MODERN_ONLY = fileURLToPath(new URL('../fixtures/modern-upstream.ts', import.meta.url));

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
});

let modernUpstream: ChildServer;
beforeAll(async () => {
  modernUpstream = await spawnServer(['--experimental-strip-types', '--no-warnings', MODERN_ONLY, '--port', '0'], /listening on (http:\/\/\S+?\/mcp)/, {}, 30_000);
}, 40_000);
afterAll(async () => {
  await modernUpstream?.stop();
});

async function proxyTo(target: unknown, options: Parameters<typeof createProxy>[1] = {}, http: ServeProxyHttpOptions = {}): Promise<ProxyHttpServer> {
  const server = await serveProxyHttp(createProxy(target, options), http);
  cleanups.push(() => server.close());
  return server;
}

function modernClient(capabilities: Record<string, unknown> = {}): Client {
  const client = new Client({ name: 'proxy-eras', version: '1.0.0' }, { versionNegotiation: { mode: { pin: MODERN } }, capabilities });
  cleanups.push(() => client.close());
  return client;
}

const ENVELOPE = (capabilities: Record<string, unknown> = {}) => ({
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1.0.0' },
  'io.modelcontextprotocol/clientCapabilities': capabilities,
});

/** A JSON-RPC answer as these tests read it. */
interface Answer {
  result: {
    resultType?: string;
    requestState?: string;
    inputRequests?: Record<string, { method: string }>;
    content?: unknown;
    _meta?: Record<string, { name?: string }>;
    [key: string]: unknown;
  };
  error: { code: number; message: string; data?: unknown };
}

let nextId = 1;
/** One raw 2026-07-28 request; the JSON answer (or the last message of an event stream). */
async function post(url: string, method: string, params: Record<string, unknown>, headers: Record<string, string> = {}): Promise<{ status: number; body: Answer }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': MODERN, 'mcp-method': method, ...headers },
    body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params }),
  });
  const text = await res.text();
  if ((res.headers.get('content-type') ?? '').includes('event-stream')) {
    const data = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)) as unknown);
    return { status: res.status, body: data.at(-1) as Answer };
  }
  return { status: res.status, body: (text === '' ? {} : JSON.parse(text)) as Answer };
}


/** Against the 2026 fixture: progress arrives, and a cancelled call is cancelled at the upstream too. */
async function progressAndCancel(client: Client): Promise<void> {
  const steps: number[] = [];
  const ran = (await client.callTool({ name: 'slow', arguments: { durationMs: 300, intervalMs: 100 } }, { onprogress: (p) => steps.push(p.progress) })) as CallToolResult;
  expect(ran.content).toEqual([{ type: 'text', text: expect.stringMatching(/^ran \d steps$/) }]);
  expect(steps.length).toBeGreaterThanOrEqual(2);
  expect(steps).toEqual([...steps].sort((a, b) => a - b));
  const before = JSON.parse(((await client.callTool({ name: 'cancelled', arguments: {} })) as CallToolResult & { content: Array<{ text: string }> }).content[0]!.text) as string[];
  const controller = new AbortController();
  const pending = client.callTool({ name: 'slow', arguments: { durationMs: 20_000, intervalMs: 50 } }, { signal: controller.signal });
  setTimeout(() => controller.abort(), 300);
  await expect(pending).rejects.toThrow();
  const deadline = Date.now() + 10_000;
  let after = before;
  while (after.length === before.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    after = JSON.parse(((await client.callTool({ name: 'cancelled', arguments: {} })) as CallToolResult & { content: Array<{ text: string }> }).content[0]!.text) as string[];
  }
  expect(after.length).toBe(before.length + 1);
}

const ELICIT = { name: 'trigger-elicitation-request', arguments: {} };
const everything = { command: NODE, args: [EVERYTHING, 'stdio'] };

describe('codemode proxy: a 2026-07-28 client in front of a 2025 upstream', () => {
  it('discovers, lists (with ignoreTools and the cache hint), calls with progress, gets tool errors, and is asked for input as input_required', async () => {
    const proxy = await proxyTo(everything, { ignoreTools: ['get-env'] });
    const client = modernClient({ elicitation: { form: {} } });
    let asked: unknown;
    client.setRequestHandler('elicitation/create', (request) => {
      asked = request.params;
      return { action: 'accept', content: { name: 'Ada' } };
    });
    await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
    expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);
    expect(client.getServerVersion()?.name).toMatch(/everything/i);
    expect(client.getServerCapabilities()?.tools).toBeDefined();

    const names = (await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['echo', 'get-sum', 'trigger-long-running-operation', 'trigger-elicitation-request']));
    expect(names).not.toContain('get-env');
    await expect(client.callTool({ name: 'get-env', arguments: {} })).rejects.toThrow(/hidden by ignoreTools/);

    const sum = (await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 40 } })) as CallToolResult;
    expect(JSON.stringify(sum.content)).toContain('42');

    const steps: number[] = [];
    const long = (await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } }, { onprogress: (p) => steps.push(p.progress) })) as CallToolResult;
    expect(long.isError ?? false).toBe(false);
    // In order; server-everything's last step can come after its result on a loaded machine, directly too.
    expect(steps.slice(0, 2)).toEqual([1, 2]);

    // Bad arguments: the upstream's tool error comes through as a result with isError.
    const bad = (await client.callTool({ name: 'get-sum', arguments: { a: 'x' } })) as CallToolResult;
    expect(bad.isError).toBe(true);

    // The upstream's elicitation/create during the call: input_required, answered by the client's handler, retried.
    const elicited = (await client.callTool(ELICIT)) as CallToolResult;
    expect(asked).toMatchObject({ message: expect.stringContaining('Please provide'), requestedSchema: { type: 'object' } });
    expect(JSON.stringify(elicited.content)).toContain('Name: Ada');
  }, 60_000);

  it('raw wire: resultType and cache hints; header mismatches are -32020 on 400; an unknown version is -32022; GET is 405', async () => {
    const proxy = await proxyTo(everything);
    const listed = await post(proxy.url, 'tools/list', { _meta: ENVELOPE() });
    expect(listed.status).toBe(200);
    expect(listed.body.result).toMatchObject({ resultType: 'complete', ttlMs: 0, cacheScope: 'private' });
    const discovered = await post(proxy.url, 'server/discover', { _meta: ENVELOPE() });
    expect(discovered.body.result).toMatchObject({ resultType: 'complete', supportedVersions: [MODERN], capabilities: { tools: expect.any(Object) } });
    expect(discovered.body.result._meta?.['io.modelcontextprotocol/serverInfo']?.name).toMatch(/everything/i);

    const wrongMethod = await post(proxy.url, 'tools/list', { _meta: ENVELOPE() }, { 'mcp-method': 'tools/call' });
    expect(wrongMethod.status).toBe(400);
    expect(wrongMethod.body.error).toMatchObject({ code: -32020, message: expect.stringContaining('Mcp-Method') });
    const wrongVersion = await post(proxy.url, 'tools/list', { _meta: { ...ENVELOPE(), 'io.modelcontextprotocol/protocolVersion': '2026-01-01' } });
    expect(wrongVersion.status).toBe(400);
    expect(wrongVersion.body.error.code).toBe(-32020);
    const future = await post(proxy.url, 'tools/list', { _meta: { ...ENVELOPE(), 'io.modelcontextprotocol/protocolVersion': '2027-01-01' } }, { 'mcp-protocol-version': '2027-01-01' });
    expect(future.status).toBe(400);
    expect(future.body.error).toMatchObject({ code: -32022, data: { supported: [MODERN], requested: '2027-01-01' } });
    // Not a date at all: still this door (not the 2025 "initialize first"), and the error carries the request's id.
    const odd = await post(proxy.url, 'server/discover', { _meta: { ...ENVELOPE(), 'io.modelcontextprotocol/protocolVersion': 'v999.0.0' } }, { 'mcp-protocol-version': 'v999.0.0' });
    expect(odd.status).toBe(400);
    expect(odd.body).toMatchObject({ id: expect.any(Number), error: { code: -32022, data: { requested: 'v999.0.0' } } });
    const bare = await post(proxy.url, 'tools/list', {});
    expect(bare.status).toBe(400);
    expect(bare.body).toMatchObject({ id: expect.any(Number), error: { code: -32602, message: expect.stringContaining('no _meta') } });
    const get = await fetch(proxy.url, { headers: { 'mcp-protocol-version': MODERN } });
    expect(get.status).toBe(405);
    expect(((await get.json()) as { error: { message: string } }).error.message).toMatch(/POST only/);
  }, 60_000);

  it('requestState: the retry answers the held call; tampered, replayed, foreign and expired ones are refused by name; an unanswered call is released and counted', async () => {
    // Long enough for the retries below on a loaded machine; the abandoned call is then waited for.
    const proxy = await proxyTo(everything, {}, { translation: { heldTtlMs: 4000 } });
    const caps = { elicitation: { form: {} } };
    const first = await post(proxy.url, 'tools/call', { ...ELICIT, _meta: ENVELOPE(caps) }, { 'mcp-name': ELICIT.name });
    expect(first.body.result).toMatchObject({ resultType: 'input_required', requestState: expect.any(String) });
    expect(proxy.translation).toMatchObject({ held: 1, inflight: 1, expired: 0 });
    const [key, request] = Object.entries(first.body.result.inputRequests ?? {})[0]!;
    expect(request.method).toBe('elicitation/create');
    const state = first.body.result.requestState!;
    const retry = (requestState: string, envelope = ENVELOPE(caps)) =>
      post(proxy.url, 'tools/call', { ...ELICIT, _meta: envelope, requestState, inputResponses: { [key]: { action: 'accept', content: { name: 'Grace' } } } });

    const tampered = state.slice(0, 5) + (state[5] === 'A' ? 'B' : 'A') + state.slice(6);
    expect((await retry(tampered)).body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/altered|not issued/) });
    const done = await retry(state);
    expect(done.body.result).toMatchObject({ resultType: 'complete' });
    expect(JSON.stringify(done.body.result.content)).toContain('Name: Grace');
    expect((await retry(state)).body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/already used/) });

    // A client that never retries: released after heldTtlMs, counted; its late retry is refused as expired.
    const abandoned = await post(proxy.url, 'tools/call', { ...ELICIT, _meta: ENVELOPE(caps) });
    expect(abandoned.body.result.resultType).toBe('input_required');
    // Polled, not slept: the release must come, but a loaded machine may run its timer late.
    const until = async (done: () => boolean): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    };
    await until(() => proxy.translation.expired === 1);
    expect(proxy.translation).toMatchObject({ held: 0, expired: 1 });
    const late = await retry(abandoned.body.result.requestState!);
    expect(late.body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/expired/) });
    await until(() => proxy.translation.inflight === 0);
    expect(proxy.translation.inflight).toBe(0);
  }, 60_000);

  it('held calls and upstream sessions are bounded: past the cap the upstream is refused (counted), and a busy identity is not evicted', async () => {
    const proxy = await proxyTo(everything, {}, { translation: { maxHeldPerTenant: 1, maxSessionsPerTenant: 1 } });
    const caps = { elicitation: { form: {} } };
    const first = await post(proxy.url, 'tools/call', { ...ELICIT, _meta: ENVELOPE(caps) });
    expect(first.body.result.resultType).toBe('input_required');
    // Same identity, second held call: the upstream's elicitation is refused; the tool reports the failure.
    const second = await post(proxy.url, 'tools/call', { ...ELICIT, _meta: ENVELOPE(caps) });
    expect(JSON.stringify(second.body)).toMatch(/too many calls waiting for client input/);
    expect(proxy.translation).toMatchObject({ held: 1, refused: 1 });
    // Another identity of the same tenant while the only session is busy holding a call: refused by name.
    const other = await post(proxy.url, 'tools/list', { _meta: { ...ENVELOPE(caps), 'io.modelcontextprotocol/clientInfo': { name: 'other', version: '1' } } });
    expect(other.body.error).toMatchObject({ data: { reason: 'UPSTREAM_SESSIONS_FULL' } });
    expect(proxy.translation.sessions).toBe(1);
  }, 60_000);

  it('a bearer-authenticated tenant cannot use another tenant\'s requestState', async () => {
    const proxy = await proxyTo(everything, {}, { authTokens: ['token-a', 'token-b'] });
    const caps = { elicitation: { form: {} } };
    const first = await post(proxy.url, 'tools/call', { ...ELICIT, _meta: ENVELOPE(caps) }, { authorization: 'Bearer token-a' });
    expect(first.body.result.resultType).toBe('input_required');
    const [key] = Object.keys(first.body.result.inputRequests ?? {});
    const stolen = await post(
      proxy.url,
      'tools/call',
      { ...ELICIT, _meta: ENVELOPE(caps), requestState: first.body.result.requestState, inputResponses: { [key!]: { action: 'decline' } } },
      { authorization: 'Bearer token-b' },
    );
    expect(stolen.body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/another client/) });
  }, 60_000);

  it('upstream list changes reach subscriptions/listen', async () => {
    const proxy = await proxyTo({ command: NODE, args: [CHANGING] });
    let changes = 0;
    const client = new Client(
      { name: 'proxy-eras', version: '1.0.0' },
      { versionNegotiation: { mode: { pin: MODERN } }, listChanged: { tools: { autoRefresh: false, onChanged: () => void changes++ } } },
    );
    cleanups.push(() => client.close());
    await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
    const added = (await client.callTool({ name: 'add_tool', arguments: { name: 'fresh' } })) as CallToolResult;
    expect(JSON.stringify(added.content)).toContain('added fresh');
    const deadline = Date.now() + 10_000;
    while (changes === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(changes).toBeGreaterThan(0);
    expect((await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name)).toContain('fresh');
  }, 60_000);

  it('cancelling a call (closing its request) cancels it upstream; the next call is served', async () => {
    const proxy = await proxyTo(everything);
    const client = modernClient();
    await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
    const controller = new AbortController();
    const started = Date.now();
    const pending = client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 20, steps: 20 } }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    await expect(pending).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(15_000);
    // The upstream call was given up (notifications/cancelled), not left running for its 20 s.
    const deadline = Date.now() + 5000;
    while (proxy.translation.inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(proxy.translation.inflight).toBe(0);
    const sum = (await client.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } })) as CallToolResult;
    expect(JSON.stringify(sum.content)).toContain('3');
  }, 60_000);
});

describe('codemode proxy: a 2026-07-28 client in front of a 2025 Streamable HTTP upstream (message-level session)', () => {
  it('progress, structured tool errors, JSON-RPC errors, elicitation as input_required, list changes, and cancellation that reaches the upstream', async () => {
    const fixture = await startFixtureHttp();
    cleanups.push(() => fixture.stop());
    const proxy = await proxyTo({ url: fixture.url });
    let changes = 0;
    const client = new Client(
      { name: 'raw-link', version: '1.0.0' },
      { versionNegotiation: { mode: { pin: MODERN } }, capabilities: { elicitation: { form: {} } }, listChanged: { tools: { autoRefresh: false, onChanged: () => void changes++ } } },
    );
    cleanups.push(() => client.close());
    client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { username: 'ada', email: 'ada@example.com' } }));
    await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
    expect(client.getServerVersion()?.name).toBe('codemode-conformance-fixture');

    const steps: number[] = [];
    await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, { onprogress: (p) => steps.push(p.progress) });
    expect(steps).toEqual([0, 50, 100]);
    expect(await client.callTool({ name: 'structured', arguments: { isError: true } })).toMatchObject({ isError: true, structuredContent: { count: expect.any(Number) } });
    await expect(client.callTool({ name: 'protocol_error', arguments: {} })).rejects.toThrow(/fixture says: bad params/);
    const elicited = (await client.callTool({ name: 'test_elicitation', arguments: { message: 'who?' } })) as CallToolResult;
    expect(JSON.stringify(elicited.content)).toContain('ada');

    await client.callTool({ name: 'notify', arguments: {} });
    const deadline = Date.now() + 10_000;
    while (changes === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(changes).toBeGreaterThan(0);

    const controller = new AbortController();
    const slow = client.callTool({ name: 'slow_progress', arguments: { durationMs: 20_000, intervalMs: 100 } }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    await expect(slow).rejects.toThrow();
    let seen = '[]';
    const until = Date.now() + 10_000;
    while (seen === '[]' && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 100));
      seen = ((await client.callTool({ name: 'cancelled_calls', arguments: {} })) as CallToolResult).content.map((c) => (c.type === 'text' ? c.text : '')).join('');
    }
    expect(seen).toContain('slow_progress');
  }, 60_000);
});

describe('codemode proxy: the translator across an upstream restart', () => {
  it('a 2025 upstream that forgot the session (restarted) gets a fresh one, and a call that asks for input there still reaches the client', async () => {
    const port = await freePort();
    let fixture = await startFixtureHttp(port);
    cleanups.push(() => fixture.stop());
    const proxy = await proxyTo({ url: fixture.url });
    const client = modernClient({ elicitation: { form: {} } });
    client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { username: 'kay', email: 'kay@example.com' } }));
    await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
    expect(JSON.stringify((await client.callTool({ name: 'echo', arguments: { text: 'before' } })).content)).toContain('before');
    await fixture.stop();
    fixture = await startFixtureHttp(port);
    const elicited = (await client.callTool({ name: 'test_elicitation', arguments: { message: 'again?' } })) as CallToolResult;
    expect(JSON.stringify(elicited.content)).toContain('kay');
    expect(proxy.translation.sessions).toBe(1);
  }, 60_000);
});

describe('codemode proxy: a 2026-07-28 client in front of a 2026-07-28 upstream', () => {
  it('forwards as it is: discover, list (ignoreTools applied), calls, errors, input_required, progress, cancellation, list changes', async () => {
    const proxy = await proxyTo({ url: modernUpstream.url }, { ignoreTools: ['whoami'] });
    let changes = 0;
    const client = new Client(
      { name: 'proxy-eras-modern', version: '2.0.0' },
      { versionNegotiation: { mode: { pin: MODERN } }, capabilities: { elicitation: { form: {} } }, listChanged: { tools: { autoRefresh: false, onChanged: () => void changes++ } } },
    );
    client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { name: 'Ada' } }));
    cleanups.push(() => client.close());
    await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
    expect(client.getServerVersion()?.name).toBe('modern-upstream');
    const names = (await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['echo', 'add_tool']));
    expect(names).not.toContain('whoami');
    await expect(client.callTool({ name: 'whoami', arguments: {} })).rejects.toThrow(/hidden by ignoreTools/);
    const echoed = (await client.callTool({ name: 'echo', arguments: { text: 'hi' } })) as CallToolResult;
    expect(echoed.structuredContent).toMatchObject({ text: 'hi' });
    await expect(client.callTool({ name: 'nope', arguments: {} })).rejects.toThrow(/Unknown tool: nope/);
    expect(await client.callTool({ name: 'fail', arguments: {} })).toMatchObject({ isError: true, structuredContent: { reason: 'on purpose', code: 7 } });
    // input_required passes through untouched: the client answers it, the upstream sees the retry.
    expect(((await client.callTool({ name: 'ask', arguments: {} })) as CallToolResult).content).toEqual([{ type: 'text', text: 'hello Ada' }]);
    await progressAndCancel(client);
    // initialize is not a 2026-07-28 method: the upstream's own refusal (404, -32601) reaches the client.
    const init = await post(proxy.url, 'initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' }, _meta: ENVELOPE() });
    expect(init.status).toBe(404);
    expect(init.body.error.code).toBe(-32601);
    await client.callTool({ name: 'add_tool', arguments: { name: 'via_proxy' } });
    const deadline = Date.now() + 10_000;
    while (changes === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(changes).toBeGreaterThan(0);
  }, 60_000);
});

describe('codemode proxy: a 2026-07-28 refusal from a 2026-07-28 upstream', () => {
  for (const [name, env] of [
    ['undici pool', undefined],
    ['node:http', '0'],
  ] as const) {
    it(`${name}: a -32600 on HTTP 400 reaches the client as it came, and the proxy does not take it for an era change`, async () => {
      const saved = process.env.CODEMODE_PROXY_RAW_HTTP;
      if (env !== undefined) process.env.CODEMODE_PROXY_RAW_HTTP = env;
      const upstream = await startMrtrUpstream();
      cleanups.push(() => upstream.close());
      const proxy = await proxyTo({ url: upstream.url });
      if (env !== undefined) {
        if (saved === undefined) delete process.env.CODEMODE_PROXY_RAW_HTTP;
        else process.env.CODEMODE_PROXY_RAW_HTTP = saved;
      }
      const refused = await post(proxy.url, 'tools/call', { name: 'bad', arguments: {}, _meta: ENVELOPE() }, { 'mcp-name': 'bad' });
      expect(refused.status).toBe(400);
      expect(refused.body.error).toMatchObject({ code: -32600, message: 'Invalid request: bad is refused on purpose' });
      const plain = await post(proxy.url, 'tools/call', { name: 'plain', arguments: {}, _meta: ENVELOPE() }, { 'mcp-name': 'plain' });
      expect(JSON.stringify(plain.body.result)).toContain('plain');
      // One discover (the first request's era probe): the refusal did not make the proxy learn the era again.
      expect(upstream.seen.filter((s) => s.method === 'server/discover')).toHaveLength(1);
      expect(upstream.seen.filter((s) => s.method === 'tools/call' && s.name === 'bad')).toHaveLength(1);
    }, 60_000);
  }
});

describe('codemode proxy: a 2025 client in front of a 2026-07-28-only upstream', () => {
  const cells: Array<[string, () => unknown, ServeProxyHttpOptions]> = [
    ['HTTP upstream, message-level forward path', () => ({ url: modernUpstream.url }), {}],
    ['HTTP upstream, SDK path', () => ({ url: modernUpstream.url }), { forward: false }],
    ['stdio upstream', () => ({ command: NODE, args: ['--experimental-strip-types', '--no-warnings', MODERN_ONLY, '--stdio'] }), {}],
  ];
  for (const [name, target, http] of cells) {
    it(`${name}: initialize after server/discover, list, call, tool error with structuredContent, ping, setLevel, input_required as elicitation/create, progress, cancellation, list_changed`, async () => {
      const proxy = await proxyTo(target(), {}, http);
      let changes = 0;
      const client = new Client(
        { name: 'old-host', version: '3.0.0' },
        { versionNegotiation: { mode: 'legacy' }, capabilities: { elicitation: { form: {} } }, listChanged: { tools: { autoRefresh: false, onChanged: () => void changes++ } } },
      );
      cleanups.push(() => client.close());
      let asked: unknown;
      client.setRequestHandler('elicitation/create', (request) => {
        asked = request.params;
        return { action: 'accept', content: { name: 'Lin' } };
      });
      await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
      expect(client.getNegotiatedProtocolVersion()).toBe('2025-11-25');
      expect(client.getServerVersion()?.name).toBe('modern-upstream');

      const names = (await client.listTools()).tools.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(['echo', 'ask', 'fail', 'whoami']));
      const failed = (await client.callTool({ name: 'fail', arguments: {} })) as CallToolResult;
      expect(failed).toMatchObject({ isError: true, structuredContent: { reason: 'on purpose', code: 7 } });
      await expect(client.ping()).resolves.toBeDefined();
      await expect(client.setLoggingLevel('debug')).resolves.toBeDefined();
      // The upstream sees the downstream's own identity in its envelope, and the level set with setLevel.
      const who = (await client.callTool({ name: 'whoami', arguments: {} })) as CallToolResult;
      const envelope = (who.content[0] as { text: string }).text;
      expect(envelope).toContain('old-host');
      expect(envelope).toContain('"debug"');

      const greeted = (await client.callTool({ name: 'ask', arguments: {} })) as CallToolResult;
      expect(asked).toMatchObject({ message: 'Your name?' });
      expect(greeted.content).toEqual([{ type: 'text', text: 'hello Lin' }]);
      await progressAndCancel(client);

      await client.callTool({ name: 'add_tool', arguments: { name: `old_${changes}_${Date.now()}` } });
      const deadline = Date.now() + 10_000;
      while (changes === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      expect(changes).toBeGreaterThan(0);
    }, 60_000);
  }

  it('message-level path: ignoreTools, Mcp-Param headers, one message per POST, and an upstream restarted as 2025 ends the session (a new one works)', async () => {
    const port = await freePort();
    let upstream = await spawnServer(['--experimental-strip-types', '--no-warnings', MODERN_ONLY, '--port', String(port)], /listening on (http:\S+)/, {}, 30_000);
    cleanups.push(() => upstream.stop());
    const proxy = await proxyTo({ url: `http://127.0.0.1:${port}/mcp` }, { ignoreTools: ['fail'] });
    const connect = async (): Promise<Client> => {
      const client = new Client({ name: 'old-host', version: '3.0.0' }, { versionNegotiation: { mode: 'legacy' } });
      cleanups.push(() => client.close());
      await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
      return client;
    };
    const client = await connect();
    expect(client.getServerVersion()?.name).toBe('modern-upstream');
    const names = (await client.listTools()).tools.map((t) => t.name);
    expect(names).toContain('regional');
    expect(names).not.toContain('fail');
    await expect(client.callTool({ name: 'fail', arguments: {} })).rejects.toThrow(/hidden by ignoreTools pattern "fail"/);
    // The tool declares `region` as an x-mcp-header parameter: the 2026-07-28 request carries Mcp-Param-Region.
    const regional = (await client.callTool({ name: 'regional', arguments: { region: 'eu-west' } })) as CallToolResult;
    expect(regional.content).toEqual([{ type: 'text', text: 'region eu-west, header eu-west' }]);

    // Raw: a batch is refused by name (2026-07-28 has none), with the session id the client was given.
    const sessionId = (client.transport as StreamableHTTPClientTransport).sessionId!;
    const batch = await fetch(proxy.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
      body: JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'tools/list' }, { jsonrpc: '2.0', id: 2, method: 'tools/list' }]),
    });
    expect(batch.status).toBe(400);
    expect(((await batch.json()) as Answer).error.message).toMatch(/one JSON-RPC message per POST/);
    const notMessage = await fetch(proxy.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
      body: 'null',
    });
    expect(notMessage.status).toBe(400);
    expect(((await notMessage.json()) as Answer).error.message).toMatch(/not a JSON-RPC message/);

    await upstream.stop();
    upstream = await spawnServer(['--experimental-strip-types', '--no-warnings', CONFORMANCE_SERVER, '--port', String(port)], /listening on (http:\S+)/, {}, 30_000);
    await expect(client.callTool({ name: 'echo', arguments: { text: 'x' } })).rejects.toThrow(/no longer speaks MCP 2026-07-28.*initialize again/);
    // The session is gone (404), and a new one reaches the restarted upstream on the 2025 path.
    const gone = await fetch(proxy.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
    });
    expect(gone.status).toBe(404);
    const again = await connect();
    expect(again.getServerVersion()?.name).toBe('codemode-conformance-fixture');
    expect(JSON.stringify(await again.callTool({ name: 'echo', arguments: { text: 'again' } }))).toContain('again');
  }, 90_000);

  for (const [name, http] of [
    ['message-level forward path', {}],
    ['SDK path', { forward: false }],
  ] as const) {
    it(`${name}, SEP-2322 rules: an upstream that answers initialize with "method not found" is discovered; the retry goes under a new id with requestState unchanged; an unrelated call carries neither`, async () => {
      const upstream = await startMrtrUpstream();
      cleanups.push(() => upstream.close());
      const proxy = await proxyTo({ url: upstream.url }, {}, http);
      const client = new Client({ name: 'old-host', version: '3.0.0' }, { versionNegotiation: { mode: 'legacy' }, capabilities: { elicitation: { form: {} } } });
      client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { confirmed: true } }));
      cleanups.push(() => client.close());
      await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
      expect(client.getServerVersion()?.name).toBe('mrtr-upstream');
      await expectSep2322(client, upstream);
      await expectStreamFidelity(client);
    }, 60_000);
  }

  it('message-level path: a client that cancels a call while it is asked for input gets the input request withdrawn, and nothing is retried', async () => {
    const upstream = await startMrtrUpstream();
    cleanups.push(() => upstream.close());
    const proxy = await proxyTo({ url: upstream.url });
    await expectCancelWhileAsked(async (elicit) => {
      const client = new Client({ name: 'old-host', version: '3.0.0' }, { versionNegotiation: { mode: 'legacy' }, capabilities: { elicitation: { form: {} } } });
      client.setRequestHandler('elicitation/create', elicit as never);
      cleanups.push(() => client.close());
      await client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)));
      return client;
    }, upstream);
  }, 60_000);

  it('an upstream that speaks neither era: initialize fails, naming both refusals', async () => {
    // A server that answers every POST with the unsupported-version error of 2026-07-28, but no server/discover either.
    const broken = await startHttp((req, res) => {
      req.resume();
      req.once('end', () => {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32022, message: 'Unsupported protocol version' } }));
      });
    });
    cleanups.push(() => broken.close());
    const proxy = await proxyTo({ url: `${broken.url}/mcp` });
    const client = new Client({ name: 'old-host', version: '3.0.0' }, { versionNegotiation: { mode: 'legacy' } });
    cleanups.push(() => client.close());
    await expect(client.connect(new StreamableHTTPClientTransport(new URL(proxy.url)))).rejects.toThrow(/speaks neither MCP era/);
  }, 60_000);
});

describe('codemode proxy: an upstream that changes era after a restart', () => {
  const fixture2025 = (port: number) => spawnServer(['--experimental-strip-types', '--no-warnings', CONFORMANCE_SERVER, '--port', String(port)], /listening on (http:\S+)/, {}, 30_000);
  const fixture2026 = (port: number) => spawnServer(['--experimental-strip-types', '--no-warnings', MODERN_ONLY, '--port', String(port)], /listening on (http:\S+)/, {}, 30_000);

  for (const [name, first, second, before, after] of [
    ['2025, then 2026-07-28 only', fixture2025, fixture2026, 'codemode-conformance-fixture', 'modern-upstream'],
    ['2026-07-28 only, then 2025', fixture2026, fixture2025, 'modern-upstream', 'codemode-conformance-fixture'],
  ] as const) {
    it(`${name}: the 2026-07-28 client's next request is served on the new era's path, with no error`, async () => {
      const port = await freePort();
      let upstream = await first(port);
      cleanups.push(() => upstream.stop());
      const proxy = await proxyTo({ url: `http://127.0.0.1:${port}/mcp` });
      const discover = async (): Promise<string | undefined> => (await post(proxy.url, 'server/discover', { _meta: ENVELOPE() })).body.result?._meta?.['io.modelcontextprotocol/serverInfo']?.name;
      const echo = async (): Promise<Answer> => (await post(proxy.url, 'tools/call', { name: 'echo', arguments: { text: 'again' }, _meta: ENVELOPE() }, { 'mcp-name': 'echo' })).body;
      expect(await discover()).toBe(before);
      expect(JSON.stringify((await echo()).result)).toContain('again');
      await upstream.stop();
      upstream = await second(port);
      const answered = await echo();
      expect(answered.error).toBeUndefined();
      expect(JSON.stringify(answered.result)).toContain('again');
      expect(await discover()).toBe(after);
    }, 60_000);
  }
});
