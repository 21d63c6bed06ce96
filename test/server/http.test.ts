import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CodeMode } from '../../src/codemode/codemode.js';
import { localTools } from '../../src/codemode/sources.js';
import { CodemodeError } from '../../src/errors.js';
import { createHttpAuth } from '../../src/server/http-auth.js';
import { serveHttp } from '../../src/server/http.js';
import type { CodemodeHttpServer } from '../../src/server/http.js';
import { createCodemodeServer } from '../../src/server/server.js';
import { connectClient, EVERYTHING, execute, inventoryEntry, startEngine } from './helpers.js';
import type { Engine } from './helpers.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function engine(...args: Parameters<typeof startEngine>): Promise<Engine> {
  const e = await startEngine(...args);
  cleanups.push(() => e.close());
  return e;
}

async function client(url: string, headers?: Record<string, string>): Promise<Client> {
  const c = await connectClient(url, headers);
  cleanups.push(() => c.close());
  return c;
}

/** Polls `predicate` every 25 ms for at most `ms`. */
async function until(predicate: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  expect(await predicate()).toBe(true);
}

/** A server over local tools, for tests that need a tool that takes a while. */
async function slowServer(
  options: { maxConcurrentExecutions?: number; maxQueuedExecutions?: number; progressIntervalMs?: number } = {},
  httpOptions: { sessionIdleTimeoutMs?: number } = {},
) {
  const mode = await CodeMode.create({
    sources: [
      localTools('t', [
        {
          name: 'sleep',
          input: { ms: z.number() },
          handler: (args, { signal }) =>
            new Promise((resolve, reject) => {
              const timer = setTimeout(() => resolve(`slept ${String(args.ms)}`), args.ms as number);
              signal.addEventListener('abort', () => {
                clearTimeout(timer);
                reject(new Error('cancelled'));
              });
            }),
        },
      ]),
    ],
  });
  const server = createCodemodeServer({ mode, ...options });
  const http = await serveHttp(server, { port: 0, ...httpOptions });
  cleanups.push(() => http.close({ graceMs: 0 }));
  return { server, http };
}

describe('codemode serve over Streamable HTTP', () => {
  it('serves execute, search and get_schema over the upstream catalog, with structured results', async () => {
    const { http } = await engine({ inventory: inventoryEntry });
    const c = await client(http.url);
    const { tools } = await c.listTools();
    expect(tools.map((t) => t.name)).toEqual(['execute', 'search', 'get_schema']);
    expect(tools[0]!.description).toMatch(/5 tools are available in the namespaces inventory \(5\)/);
    expect(c.getInstructions()).toContain('inventory: 5 tools');

    const result = await execute(
      c,
      `const { products } = await tools.inventory.list_products({ category: 'displays' });
       console.log('found', products.length);
       return products.map((p) => p.sku);`,
    );
    expect(result.isError).toBeUndefined();
    expect(result.structuredContent).toMatchObject({
      result: ['MN-270', 'MN-240'],
      logs: [{ level: 'log', message: 'found 2' }],
      toolCalls: [{ tool: 'inventory.list_products', ok: true }],
    });

    const search = await c.callTool({ name: 'search', arguments: { query: 'orders customer' } });
    expect(JSON.stringify(search.structuredContent)).toContain('inventory.search_orders');
    const schema = await c.callTool({ name: 'get_schema', arguments: { tools: ['inventory.create_order', 'nope'] } });
    expect((schema.content as Array<{ text: string }>)[0]!.text).toContain('create_order');
    expect(schema.structuredContent).toMatchObject({ notFound: ['nope'] });

    const unknown = await c.callTool({ name: 'nope', arguments: {} }).catch((e: unknown) => e);
    expect(String(unknown)).toMatch(/Unknown tool "nope"/);
  });

  it('reports a failing upstream clearly and keeps serving the others; strict refuses to start', async () => {
    const broken = { command: process.execPath, args: ['-e', 'process.stderr.write("boom\\n"); process.exit(3)'] };
    const { http } = await engine({ inventory: inventoryEntry, broken }, {}, { healthDetails: true });
    const c = await client(http.url);
    expect(c.getInstructions()).toMatch(/broken: UNAVAILABLE \(.+\)/);
    const health = await fetch(new URL('/healthz', http.url));
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'degraded', upstreams: { connected: 1, failed: ['broken'] } });
    const result = await execute(c, `return (await tools.inventory.get_product({ sku: 'KB-101' })).name`);
    expect(result.structuredContent).toMatchObject({ result: 'Mechanical keyboard' });

    const strict = await startEngine({ inventory: inventoryEntry, broken }, { strict: true }).catch((e: unknown) => e);
    expect(strict).toBeInstanceOf(CodemodeError);
    expect((strict as CodemodeError).code).toBe('UPSTREAM_UNAVAILABLE');
    expect((strict as CodemodeError).message).toMatch(/"broken": .*strict/);
  });

  it("an upstream's tools/list_changed refreshes the catalog and is passed on to clients", async () => {
    const { fileURLToPath } = await import('node:url');
    const changing = { command: process.execPath, args: [fileURLToPath(new URL('./fixtures/changing-server.mjs', import.meta.url))] };
    const { http } = await engine({ changing }, { exposeTools: true });
    const c = await client(http.url);
    let changed = 0;
    c.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      changed++;
    });
    expect((await execute(c, `return await tools.changing.add_tool({ name: 'fresh' })`)).structuredContent).toMatchObject({ result: 'added fresh' });
    const deadline = Date.now() + 5_000;
    while (changed === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(changed).toBeGreaterThan(0);
    expect((await c.listTools()).tools.map((t) => t.name)).toContain('changing__fresh');
    expect((await execute(c, 'return await tools.changing.fresh()')).structuredContent).toMatchObject({ result: 'hello from fresh' });
  });

  it('an upstream that dies later is reported by /healthz, and calls to it fail with a clear ToolError', async () => {
    const { fileURLToPath } = await import('node:url');
    const changing = { command: process.execPath, args: [fileURLToPath(new URL('./fixtures/changing-server.mjs', import.meta.url))] };
    const { http } = await engine({ changing, inventory: inventoryEntry }, {}, { healthDetails: true });
    const c = await client(http.url);
    expect((await execute(c, 'return await tools.changing.crash()')).structuredContent).toMatchObject({ result: 'bye' });
    await until(async () => ((await (await fetch(new URL('/healthz', http.url))).json()) as { status: string }).status === 'degraded');
    const failed = await execute(c, `return await tools.changing.add_tool({ name: 'x' })`);
    expect(failed.isError).toBe(true);
    expect(failed.structuredContent).toMatchObject({
      error: { name: 'ToolError', tool: 'changing.add_tool', message: expect.stringMatching(/server "changing" .*connection closed \(the server exited/) },
    });
    expect((await execute(c, `return (await tools.inventory.get_product({ sku: 'KB-101' })).sku`)).structuredContent).toMatchObject({ result: 'KB-101' });
    // The instructions are cached, but a session opened after the death is told of it.
    expect(c.getInstructions()).toMatch(/- changing: \d+ tools/);
    const later = await client(http.url);
    expect(later.getInstructions()).toMatch(/- changing: UNAVAILABLE \(the connection closed/);
  });

  it('--expose-tools passes upstream tools through, results and errors untouched', async () => {
    const { http } = await engine({ inventory: inventoryEntry }, { exposeTools: true });
    const c = await client(http.url);
    const names = (await c.listTools()).tools.map((t) => t.name);
    expect(names).toContain('inventory__get_product');
    const ok = await c.callTool({ name: 'inventory__get_product', arguments: { sku: 'MS-220' } });
    expect(ok.structuredContent).toMatchObject({ sku: 'MS-220', name: 'Wireless mouse' });
    // A raw request: the SDK's callTool would validate the error's structuredContent against the outputSchema.
    // Upstream progress reaches the caller of a passed-through tool.
    const everything = await engine({ everything: { command: process.execPath, args: [EVERYTHING] } }, { exposeTools: true });
    const ce = await client(everything.http.url);
    const progress: number[] = [];
    const long = await ce.request(
      { method: 'tools/call', params: { name: 'everything__trigger-long-running-operation', arguments: { duration: 1, steps: 3 } } },
      CallToolResultSchema,
      { onprogress: (p) => progress.push(p.progress) },
    );
    expect(long.isError).toBeFalsy();
    expect(progress.length).toBeGreaterThanOrEqual(2);
    const missing = (await c.request({ method: 'tools/call', params: { name: 'inventory__get_product', arguments: { sku: 'XX' } } }, CallToolResultSchema)) as CallToolResult;
    expect(missing.isError).toBe(true);
    expect(missing.structuredContent).toEqual({ error: 'not_found', sku: 'XX' });
  });

  it('answers a full queue at once with an isError result and a retry hint', async () => {
    const { server, http } = await slowServer({ maxConcurrentExecutions: 1, maxQueuedExecutions: 0 });
    const c = await client(http.url);
    const slow = execute(c, `return await tools.t.sleep({ ms: 1500 })`);
    await until(() => server.stats().activeExecutions === 1);
    const t0 = performance.now();
    const busy = await execute(c, 'return 1');
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(busy.isError).toBe(true);
    expect(busy.structuredContent).toMatchObject({ error: { kind: 'overloaded', retryAfterMs: expect.any(Number) } });
    expect((busy.content as Array<{ text: string }>)[0]!.text).toMatch(/busy.*Retry in about/);
    expect((await slow).structuredContent).toMatchObject({ result: 'slept 1500' });
  });

  it('reports progress while an execute runs when the caller asks for it', async () => {
    const { http } = await slowServer({ progressIntervalMs: 100 });
    const c = await client(http.url);
    const seen: Array<{ progress: number; message?: string }> = [];
    const result = await c.request(
      { method: 'tools/call', params: { name: 'execute', arguments: { code: 'return await tools.t.sleep({ ms: 700 })' } } },
      CallToolResultSchema,
      { onprogress: (p) => seen.push(p), resetTimeoutOnProgress: true },
    );
    expect(result.structuredContent).toMatchObject({ result: 'slept 700' });
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen.every((p) => p.message === 'running')).toBe(true);
    expect(seen.map((p) => p.progress)).toEqual([...seen.map((p) => p.progress)].sort((a, b) => a - b));
  });

  it("a caller's cancellation aborts its execute and frees the slot", async () => {
    const { server, http } = await slowServer({ maxConcurrentExecutions: 1 });
    const c = await client(http.url);
    const controller = new AbortController();
    const pending = c
      .request({ method: 'tools/call', params: { name: 'execute', arguments: { code: 'return await tools.t.sleep({ ms: 20000 })' } } }, CallToolResultSchema, { signal: controller.signal })
      .catch((e: unknown) => e);
    await until(() => server.stats().activeExecutions === 1);
    controller.abort();
    expect(String(await pending)).toMatch(/abort/i);
    await until(() => server.stats().activeExecutions === 0, 3_000);
    expect((await execute(c, 'return 2')).structuredContent).toMatchObject({ result: 2 });
  });

  it('graceful shutdown lets in-flight executes finish within the grace period, then aborts the rest', async () => {
    const a = await slowServer();
    const c1 = await client(a.http.url);
    const finishing = execute(c1, `return await tools.t.sleep({ ms: 400 })`);
    await until(() => a.server.stats().activeExecutions === 1);
    const closed = a.http.close({ graceMs: 5_000 });
    expect((await finishing).structuredContent).toMatchObject({ result: 'slept 400' });
    await closed;
    expect((await fetch(new URL('/healthz', a.http.url)).catch((e: unknown) => e)) instanceof Error).toBe(true);

    const b = await slowServer();
    const c2 = await client(b.http.url);
    const cut = execute(c2, `return await tools.t.sleep({ ms: 20000 })`);
    await until(() => b.server.stats().activeExecutions === 1);
    const t0 = performance.now();
    const closing = b.http.close({ graceMs: 300 });
    const result = await cut;
    await closing;
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toMatchObject({ error: { kind: 'aborted' } });
  });

  it('takes bodies up to 1 MiB by default: a 200,000-character execute fits, a 1.5 MB body gets 413 without a session', async () => {
    const { http } = await engine({});
    const c = await client(http.url);
    const code = `return ${JSON.stringify('x'.repeat(199_000))}.length;`;
    const r = (await c.callTool({ name: 'execute', arguments: { code } })) as CallToolResult;
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    const big = await fetch(http.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { pad: 'x'.repeat(1_500_000) } }),
    });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ error: { message: expect.stringContaining(`limit is ${1024 * 1024} bytes`) } });
  });

  it('rejects foreign Host and Origin headers (DNS rebinding), oversized bodies, and unknown sessions', async () => {
    const { http } = await engine({}, {}, { maxBodyBytes: 2_000 });
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
    const post = (headers: Record<string, string>, body: unknown = init) =>
      fetch(http.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body: JSON.stringify(body) });
    expect((await post({ origin: 'http://evil.example.com' })).status).toBe(403);
    const big = await post({}, { ...init, params: { ...init.params, pad: 'x'.repeat(5_000) } });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ error: { message: expect.stringContaining('limit is 2000 bytes') } });
    const junk = await fetch(http.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    expect(junk.status).toBe(400);
    expect((await post({ 'mcp-session-id': 'gone' })).status).toBe(404);
    expect((await post({ origin: `http://127.0.0.1:${http.port}` })).status).toBe(200);
    // The Host check itself (undici will not send a forged Host, so use node:http).
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(http.url, { method: 'POST', headers: { host: 'evil.example.com', 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.once('error', reject);
      req.end(JSON.stringify(init));
    });
    expect(status).toBe(403);
  });

  it('answers CORS (preflight included) for an explicitly allowed origin only', async () => {
    const { http } = await engine({}, {}, { allowedOrigins: ['https://app.example.com'], auth: createHttpAuth({ bearerTokens: ['t0ken'] }) });
    const preflight = await fetch(http.url, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/Authorization.*Mcp-Session-Id/);
    const c = await client(http.url, { origin: 'https://app.example.com', authorization: 'Bearer t0ken' });
    expect((await c.listTools()).tools).toHaveLength(3);
    const other = await fetch(http.url, { method: 'OPTIONS', headers: { origin: 'https://evil.example.com' } });
    expect(other.status).toBe(403);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('stateless mode serves each POST on its own and refuses GET', async () => {
    const { http } = await engine({ inventory: inventoryEntry }, {}, { stateless: true });
    const c = await client(http.url);
    const result = await execute(c, `return (await tools.inventory.search_orders({ customer: 'ada@example.com' })).orders.length`);
    expect(result.structuredContent).toMatchObject({ result: 2 });
    expect((await fetch(http.url, { headers: { accept: 'text/event-stream' } })).status).toBe(405);
    expect(http.sessionCount).toBe(0);
  });

  it('closes idle sessions after the idle timeout', async () => {
    const { http } = await engine({}, {}, { sessionIdleTimeoutMs: 200 });
    const c = await client(http.url);
    await c.ping();
    expect(http.sessionCount).toBe(1);
    await until(() => http.sessionCount === 0, 5_000);
    await expect(c.ping()).rejects.toThrow(/404|Session not found/);
  });

  it('never closes a session for idleness while one of its executes runs', async () => {
    const { http } = await slowServer({}, { sessionIdleTimeoutMs: 150 });
    const c = await client(http.url);
    const result = await execute(c, 'return await tools.t.sleep({ ms: 900 })');
    expect(result.structuredContent).toMatchObject({ result: 'slept 900' });
    expect(http.sessionCount).toBe(1);
    await c.ping();
  });

  it('refuses a non-loopback bind without auth', async () => {
    const { server } = await engine({});
    await expect(serveHttp(server, { host: '0.0.0.0', port: 0 })).rejects.toThrow(/Refusing to serve on 0\.0\.0\.0 without authentication/);
  });
});

describe('HTTP auth', () => {
  it('static bearer tokens: 401 with WWW-Authenticate without or with a wrong token, 200 with a right one', async () => {
    const auth = createHttpAuth({ bearerTokens: ['s3cret-one', 's3cret-two'] });
    const { http } = await engine({}, {}, { auth });
    const none = await fetch(http.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="codemode"');
    const wrong = await fetch(http.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer nope' }, body: '{}' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toMatch(/^Bearer realm="codemode", error="invalid_token", error_description=".+"$/);
    const c = await client(http.url, { authorization: 'Bearer s3cret-two' });
    expect((await c.listTools()).tools).toHaveLength(3);
    // /healthz stays open for load-balancer probes.
    expect((await fetch(new URL('/healthz', http.url))).status).toBe(200);
  });

  it('JWT via JWKS: checks signature, issuer, audience and expiry', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    const jwks = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => jwks.close(r)));
    const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
    const auth = createHttpAuth({ jwt: { jwksUrl, issuer: 'https://idp.test', audience: 'codemode-api' } });
    const { http } = await engine({}, {}, { auth });
    const sign = (claims: { aud?: string; iss?: string; exp?: string | number }) =>
      new SignJWT({ scope: 'mcp' })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(claims.iss ?? 'https://idp.test')
        .setAudience(claims.aud ?? 'codemode-api')
        .setSubject('user-1')
        .setIssuedAt()
        .setExpirationTime(claims.exp ?? '5m')
        .sign(privateKey);
    const c = await client(http.url, { authorization: `Bearer ${await sign({})}` });
    expect((await c.listTools()).tools).toHaveLength(3);
    for (const bad of [await sign({ aud: 'other' }), await sign({ iss: 'https://evil.test' }), await sign({ exp: Math.floor(Date.now() / 1000) - 3600 })]) {
      const res = await fetch(http.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${bad}` }, body: '{}' });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
    }
  });
});

// Keep the type import used when only some tests run.
export type { CodemodeHttpServer };
