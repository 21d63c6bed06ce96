/**
 * Sessions of `serveHttp` against a real server on 127.0.0.1:0: bound to the principal that opened them,
 * capped overall and per principal, and a `/healthz` that tells strangers only up or down.
 */
import { request } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpAuth } from '../../src/server/http-auth.js';
import { DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_PRINCIPAL, DEFAULT_SESSION_RATE_BURST, DEFAULT_SESSION_RATE_PER_SECOND, serveHttp } from '../../src/server/http.js';
import { SessionRateLimiter } from '../../src/server/sessions.js';
import type { ServeHttpOptions } from '../../src/server/http.js';
import { execute, inventoryEntry, startEngine } from './helpers.js';
import type { Engine } from './helpers.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const ALICE = 'alice-token-1111';
const BOB = 'bob-token-2222';

async function engine(servers: Record<string, unknown>, http: ServeHttpOptions): Promise<Engine> {
  const e = await startEngine(servers, {}, http);
  cleanups.push(() => e.close());
  return e;
}

async function connect(url: string, token: string): Promise<{ client: Client; sessionId: string }> {
  const client = new Client({ name: 'sessions-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
  await client.connect(transport);
  cleanups.push(() => client.close());
  return { client, sessionId: transport.sessionId! };
}

const INIT = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } };

/** A raw request; the body is read whole (an SSE answer to one POST ends with its response). */
async function send(url: string, method: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(url, {
    method,
    headers: { accept: 'application/json, text/event-stream', ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(20_000),
  });
  // A GET that was accepted is an endless SSE stream: read only the status.
  if (method === 'GET' && res.status === 200) {
    await res.body?.cancel();
    return { status: res.status, headers: res.headers, text: '' };
  }
  return { status: res.status, headers: res.headers, text: await res.text() };
}

async function initialize(url: string, token: string): Promise<{ status: number; sessionId: string | null; text: string }> {
  const res = await send(url, 'POST', { authorization: `Bearer ${token}` }, INIT);
  return { status: res.status, sessionId: res.headers.get('mcp-session-id'), text: res.text };
}

describe('HTTP sessions', () => {
  it("a session belongs to the principal that opened it: another token's POST, GET and DELETE get 404", async () => {
    const { http } = await engine({}, { auth: createHttpAuth({ bearerTokens: [ALICE, BOB] }) });
    const alice = await connect(http.url, ALICE);
    const headers = { authorization: `Bearer ${BOB}`, 'mcp-session-id': alice.sessionId, 'mcp-protocol-version': '2025-06-18' };

    const call = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'execute', arguments: { code: 'return 1' } } };
    const post = await send(http.url, 'POST', headers, call);
    expect(post.status).toBe(404);
    // The same answer as for a session that does not exist: nothing tells Bob that Alice's id is real.
    const missing = await send(http.url, 'POST', { ...headers, 'mcp-session-id': 'no-such-session' }, call);
    expect(JSON.parse(post.text).error.code).toBe(JSON.parse(missing.text).error.code);
    expect(post.text.replace(alice.sessionId, 'X')).toBe(missing.text.replace('no-such-session', 'X'));
    expect((await send(http.url, 'GET', { ...headers, accept: 'text/event-stream' })).status).toBe(404);
    expect((await send(http.url, 'DELETE', headers)).status).toBe(404);

    // Alice's session is untouched and still hers.
    expect(http.sessionCount).toBe(1);
    expect((await execute(alice.client, 'return 40 + 2')).structuredContent).toMatchObject({ result: 42 });
    const own = await send(http.url, 'DELETE', { ...headers, authorization: `Bearer ${ALICE}` });
    expect(own.status).toBe(200);
    expect(http.sessionCount).toBe(0);
  });

  it('caps live sessions per principal (429) and overall (503), with a JSON-RPC error saying what to do', async () => {
    const { http } = await engine({}, { auth: createHttpAuth({ bearerTokens: [ALICE, BOB] }), maxSessions: 3, maxSessionsPerPrincipal: 2 });
    const a1 = await initialize(http.url, ALICE);
    const a2 = await initialize(http.url, ALICE);
    expect([a1.status, a2.status]).toEqual([200, 200]);
    const a3 = await initialize(http.url, ALICE);
    expect(a3.status).toBe(429);
    expect(a3.sessionId).toBeNull();
    expect(JSON.parse(a3.text)).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32000, message: expect.stringMatching(/limit is 2\b.*DELETE/) } });

    expect((await initialize(http.url, BOB)).status).toBe(200);
    const b2 = await initialize(http.url, BOB);
    expect(b2.status).toBe(503);
    expect(JSON.parse(b2.text).error.message).toMatch(/limit of 3 open sessions.*Retry later/);
    expect(http.sessionCount).toBe(3);

    // Closing one frees its slot at once.
    expect((await send(http.url, 'DELETE', { authorization: `Bearer ${ALICE}`, 'mcp-session-id': a1.sessionId!, 'mcp-protocol-version': '2025-06-18' })).status).toBe(200);
    const deadline = Date.now() + 5_000;
    while (http.sessionCount > 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect((await initialize(http.url, BOB)).status).toBe(200);
  });

  it('caps unauthenticated sessions overall, and refused initializes leave nothing behind', async () => {
    const { http } = await engine({}, { maxSessions: 2 });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await send(http.url, 'POST', {}, INIT)).status);
    expect(statuses).toEqual([200, 200, 503, 503, 503, 503]);
    expect(http.sessionCount).toBe(2);
  });

  it('limits how fast one principal opens sessions (429 with Retry-After); other principals and open sessions are unaffected', async () => {
    const { http } = await engine({}, { auth: createHttpAuth({ bearerTokens: [ALICE, BOB] }), sessionRate: { perSecond: 0.2, burst: 3 } });
    const alice = [];
    for (let i = 0; i < 5; i++) alice.push(await initialize(http.url, ALICE));
    expect(alice.map((a) => a.status)).toEqual([200, 200, 200, 429, 429]);
    expect(alice[3]!.sessionId).toBeNull();
    expect(JSON.parse(alice[3]!.text)).toMatchObject({
      jsonrpc: '2.0',
      id: null,
      error: { code: -32000, message: expect.stringMatching(/Too many new sessions.*0\.2 per second after a burst of 3.*Retry in [1-5] s.*reuse a session/) },
    });
    const retry = await send(http.url, 'POST', { authorization: `Bearer ${ALICE}` }, INIT);
    expect(Number(retry.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(retry.headers.get('retry-after'))).toBeLessThanOrEqual(5);
    expect(http.sessionCount).toBe(3);

    // Bob has his own bucket, and Alice's open sessions keep working.
    expect((await initialize(http.url, BOB)).status).toBe(200);
    const call = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'execute', arguments: { code: 'return 40 + 2' } } };
    const used = await send(http.url, 'POST', { authorization: `Bearer ${ALICE}`, 'mcp-session-id': alice[0]!.sessionId!, 'mcp-protocol-version': '2025-06-18' }, call);
    expect(used.status).toBe(200);
    expect(used.text).toContain('42');
  });

  it('without auth, limits sessions per client address: an initialize loop opens only its burst', async () => {
    const { http } = await engine({}, { sessionRate: { perSecond: 0.01, burst: 4 } });
    const statuses: number[] = [];
    for (let i = 0; i < 300; i++) statuses.push((await send(http.url, 'POST', {}, INIT)).status);
    expect(statuses.slice(0, 4)).toEqual([200, 200, 200, 200]);
    expect(statuses.filter((s) => s === 429)).toHaveLength(296);
    expect(http.sessionCount).toBe(4);
  });

  it('sessionRate null lifts the limit, and a malformed one is a config error', async () => {
    const { http } = await engine({}, { sessionRate: null });
    const statuses: number[] = [];
    for (let i = 0; i < 70; i++) statuses.push((await send(http.url, 'POST', {}, INIT)).status);
    expect(new Set(statuses)).toEqual(new Set([200]));
    for (const bad of [{ perSecond: 0, burst: 1 }, { perSecond: 1, burst: 0 }, { perSecond: Number.NaN, burst: 2 }, { perSecond: 1, burst: 1.5 }]) {
      await expect(serveHttp({} as never, { sessionRate: bad })).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(/sessionRate\.(perSecond|burst) must be/) });
    }
  });

  it('has documented defaults', () => {
    expect(DEFAULT_MAX_SESSIONS).toBe(1_000);
    expect(DEFAULT_MAX_SESSIONS_PER_PRINCIPAL).toBe(100);
    expect(DEFAULT_SESSION_RATE_PER_SECOND).toBe(10);
    expect(DEFAULT_SESSION_RATE_BURST).toBe(60);
  });
});

describe('SessionRateLimiter', () => {
  it('allows a burst, then refills at the rate, per client, and forgets the longest-unseen client past 10,000', () => {
    let now = 0;
    const limiter = new SessionRateLimiter({ perSecond: 2, burst: 3 }, () => now);
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([undefined, undefined, undefined]);
    expect(limiter.take('a')).toBe(1);
    expect(limiter.take('b')).toBeUndefined();
    now = 400; // 0.8 of a session refilled: still refused
    expect(limiter.take('a')).toBe(1);
    now = 600; // 1.2
    expect(limiter.take('a')).toBeUndefined();
    expect(limiter.take('a')).toBe(1);
    now = 100_000; // full again, never more than the burst
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([undefined, undefined, undefined, 1]);

    const slow = new SessionRateLimiter({ perSecond: 0.1, burst: 1 }, () => now);
    expect(slow.take('x')).toBeUndefined();
    expect(slow.take('x')).toBe(10);

    for (let i = 0; i < 10_005; i++) limiter.take(`client-${i}`);
    expect(limiter.size).toBe(10_000);
  });
});

describe('/healthz', () => {
  const broken = { command: process.execPath, args: ['-e', 'process.exit(3)'] };

  /** GET /healthz with a chosen Host header (fetch will not send a forged one). */
  function get(url: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = request(new URL('/healthz', url), { headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.once('error', reject);
      req.end();
    });
  }

  it('tells callers without credentials only up or down, details need a valid token, and Host is checked', async () => {
    const { http } = await engine({ 'internal-billing-db': broken, inventory: inventoryEntry }, { auth: createHttpAuth({ bearerTokens: [ALICE] }) });
    const anonymous = await get(http.url, {});
    expect(anonymous.status).toBe(200);
    expect(JSON.parse(anonymous.text)).toEqual({ status: 'ok' });
    expect(anonymous.text).not.toContain('internal-billing-db');

    const wrong = await get(http.url, { authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.text).not.toContain('internal-billing-db');

    const detailed = await get(http.url, { authorization: `Bearer ${ALICE}` });
    expect(detailed.status).toBe(200);
    expect(JSON.parse(detailed.text)).toMatchObject({ status: 'degraded', upstreams: { connected: 1, failed: ['internal-billing-db'] } });

    const rebound = await get(http.url, { host: 'evil.example', authorization: `Bearer ${ALICE}` });
    expect(rebound.status).toBe(403);
    expect(rebound.text).not.toContain('internal-billing-db');
  });

  it('without auth, details only with healthDetails', async () => {
    const quiet = await engine({ 'internal-billing-db': broken }, {});
    expect(JSON.parse((await get(quiet.http.url, {})).text)).toEqual({ status: 'ok' });
    const open = await engine({ 'internal-billing-db': broken }, { healthDetails: true });
    expect(JSON.parse((await get(open.http.url, {})).text)).toMatchObject({ upstreams: { failed: ['internal-billing-db'] } });
  });
});
