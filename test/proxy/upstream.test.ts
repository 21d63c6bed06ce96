import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectUpstream, DEFAULT_CONNECT_TIMEOUT_MS } from '../../src/proxy/upstream.js';
import type { UpstreamConnection } from '../../src/proxy/upstream.js';
import { parseUpstreamConfig } from '../../src/proxy/config.js';
import { oversizedLineId } from '../../src/proxy/stdio-transport.js';
import { CodemodeError } from '../../src/errors.js';
import { EVERYTHING, NODE, freePort, readBody, spawnServer, startHttp, timeRejection } from './helpers.js';
import type { LoopbackServer } from './helpers.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.().catch(() => undefined);
});

async function http(handler: Parameters<typeof startHttp>[0]): Promise<LoopbackServer> {
  const s = await startHttp(handler);
  cleanups.push(() => s.close());
  return s;
}

/** Which client the failure tests run with: the v1 one (the proxy's) or the negotiating v2 one (serve's). */
let protocol: 'legacy' | 'auto' = 'legacy';

async function expectFailure(config: unknown, code: string, message: RegExp, maxMs: number, options = {}): Promise<CodemodeError> {
  const { error, ms } = await timeRejection(() =>
    protocol === 'auto' ? connectUpstream(config, { onStderr: () => undefined, ...options, protocol: 'auto' }) : connectUpstream(config, { onStderr: () => undefined, ...options }),
  );
  expect(error).toBeInstanceOf(CodemodeError);
  const e = error as CodemodeError;
  expect(e.code).toBe(code);
  expect(e.message).toMatch(message);
  expect(ms).toBeLessThan(maxMs);
  return e;
}

describe('parseUpstreamConfig', () => {
  it('accepts stdio and http configs', () => {
    expect(parseUpstreamConfig({ command: 'npx', args: ['-y', 'x'], env: { A: '1' }, cwd: '/tmp' })).toEqual({
      command: 'npx',
      args: ['-y', 'x'],
      env: { A: '1' },
      cwd: '/tmp',
    });
    expect(parseUpstreamConfig({ url: 'http://127.0.0.1:1/mcp', headers: { Authorization: 'Bearer x' }, transport: 'sse' })).toMatchObject({
      transport: 'sse',
    });
  });

  it('names the offending field', () => {
    expect(() => parseUpstreamConfig({ command: 'x', argz: [] }, 'mcpServers.a')).toThrow(/mcpServers\.a\.argz: unknown field/);
    expect(() => parseUpstreamConfig({ comand: 'x' }, 'mcpServers.a')).toThrow(/mcpServers\.a: expected either `command`.*found keys: comand/);
    expect(() => parseUpstreamConfig({ url: 'nope' }, 'mcpServers.b')).toThrow(/mcpServers\.b\.url: url must be an absolute URL/);
    expect(() => parseUpstreamConfig({ url: 'ftp://h/x' })).toThrow(/url: url must use http: or https:/);
    expect(() => parseUpstreamConfig({ url: 'http://h/mcp', transport: 'websocket' })).toThrow(/transport:/);
    expect(() => parseUpstreamConfig({ command: 'x', args: [1] }, 's')).toThrow(/s\.args\[0\]:/);
    expect(() => parseUpstreamConfig({ command: 'a', url: 'http://h' })).toThrow(/both `command` and `url`/);
    try {
      parseUpstreamConfig({ command: '' });
    } catch (e) {
      expect((e as CodemodeError).code).toBe('INVALID_CONFIG');
    }
  });
});

for (const mode of ['legacy', 'auto'] as const) describe(`connectUpstream failure classes (protocol ${mode})`, () => {
  beforeAll(() => {
    protocol = mode;
  });
  afterAll(() => {
    protocol = 'legacy';
  });

  it('documents a connect-timeout default', () => {
    expect(DEFAULT_CONNECT_TIMEOUT_MS).toBe(30_000);
  });

  it('nothing listening -> UPSTREAM_UNAVAILABLE within 1 s', async () => {
    const port = await freePort();
    await expectFailure({ url: `http://127.0.0.1:${port}/mcp` }, 'UPSTREAM_UNAVAILABLE', /nothing is listening there \(connection refused\) \(ECONNREFUSED\)/, 1000);
  });

  it('server root instead of /mcp (404, also tried as SSE) -> UPSTREAM_UNAVAILABLE within 1 s', async () => {
    const s = await http((req, res) => {
      res.writeHead(req.url === '/' ? 404 : 500, { 'content-type': 'text/plain' }).end('Not Found');
    });
    const e = await expectFailure({ url: `${s.url}/` }, 'UPSTREAM_UNAVAILABLE', /HTTP 404 Not Found: there is no MCP endpoint at this URL \(Streamable HTTP POST: 404; legacy SSE GET: 404\)\. This looks like the server root/, 1000);
    expect(e.message).toMatch(/\/mcp/);
  });

  it('405 on POST with transport http -> UPSTREAM_UNAVAILABLE naming the path', async () => {
    const s = await http((_req, res) => res.writeHead(405).end());
    await expectFailure({ url: `${s.url}/api`, transport: 'http' }, 'UPSTREAM_UNAVAILABLE', /HTTP 405 Method Not Allowed: there is no MCP endpoint at this URL\. Check the path/, 1000);
  });

  it('401 and 403 -> UPSTREAM_AUTH within 1 s', async () => {
    const s401 = await http((_req, res) => res.writeHead(401, { 'www-authenticate': 'Bearer' }).end('{"error":"unauthorized"}'));
    await expectFailure({ url: `${s401.url}/mcp` }, 'UPSTREAM_AUTH', /HTTP 401 Unauthorized: authorization was required and not accepted/, 1000);
    const s403 = await http((_req, res) => res.writeHead(403).end('forbidden'));
    await expectFailure({ url: `${s403.url}/mcp` }, 'UPSTREAM_AUTH', /HTTP 403 Forbidden: authorization was denied/, 1000);
  });

  it('an HTML page -> UPSTREAM_PROTOCOL within 1 s', async () => {
    const s = await http((_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><h1>Welcome</h1>'));
    await expectFailure({ url: `${s.url}/mcp` }, 'UPSTREAM_PROTOCOL', /is not an MCP server: it answered initialize with content type text\/html/, 1000);
  });

  it('JSON that is not JSON-RPC -> UPSTREAM_PROTOCOL within 1 s', async () => {
    const s = await http((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok","version":3}'));
    await expectFailure({ url: `${s.url}/mcp` }, 'UPSTREAM_PROTOCOL', /is not an MCP server: its answer to initialize is not a JSON-RPC message/, 1000);
  });

  it('a JSON-RPC error answer to initialize -> UPSTREAM_PROTOCOL with the upstream McpError as cause', async () => {
    const s = await http(async (req, res) => {
      if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
      }
      const body = JSON.parse(await readBody(req)) as { id: number };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: body.id, error: { code: -32602, message: 'Unsupported protocol version' } }));
    });
    const e = await expectFailure({ url: `${s.url}/mcp` }, 'UPSTREAM_PROTOCOL', /refused initialize: MCP error -32602: Unsupported protocol version/, 1000);
    expect((e.cause as { code: number }).code).toBe(-32602);
  });

  it('accepts the connection but never answers -> UPSTREAM_TIMEOUT after connectTimeoutMs', async () => {
    const s = await http(() => undefined); // never responds
    const e = await expectFailure({ url: `${s.url}/mcp` }, 'UPSTREAM_TIMEOUT', /accepted the connection but did not answer initialize within 1500 ms/, 3000, { connectTimeoutMs: 1500 });
    expect(e.message).toMatch(/connectTimeoutMs/);
  });

  it('stdio command not found -> UPSTREAM_UNAVAILABLE within 1 s', async () => {
    await expectFailure({ command: 'codemode-no-such-command-xyz', args: ['--x'] }, 'UPSTREAM_UNAVAILABLE', /Could not start upstream `codemode-no-such-command-xyz --x`: the command was not found/, 1000);
  });

  it('stdio command that exits at once -> UPSTREAM_UNAVAILABLE with exit code and stderr, within 1 s', async () => {
    const e = await expectFailure(
      { command: NODE, args: ['-e', 'console.error("fatal: API_KEY is not set"); process.exit(3)'] },
      'UPSTREAM_UNAVAILABLE',
      /exited with code 3 before answering initialize\. Its stderr ended with: "fatal: API_KEY is not set"/,
      1000,
    );
    expect(e.message).toContain(NODE);
  });

  it('stdio server that never answers -> UPSTREAM_TIMEOUT; one that prints to stdout -> UPSTREAM_PROTOCOL', async () => {
    await expectFailure({ command: NODE, args: ['-e', 'setInterval(() => {}, 1000)'] }, 'UPSTREAM_TIMEOUT', /started but did not answer initialize within 800 ms/, 4000, { connectTimeoutMs: 800 });
    await expectFailure({ command: NODE, args: ['-e', 'console.log("Server ready on stdio"); setInterval(() => {}, 1000)'] }, 'UPSTREAM_PROTOCOL', /not JSON-RPC/, 4000, { connectTimeoutMs: 800 });
  });

  it('an aborted signal -> ABORTED', async () => {
    const s = await http(() => undefined);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const { error, ms } = await timeRejection(() =>
      protocol === 'auto' ? connectUpstream({ url: `${s.url}/mcp` }, { signal: ac.signal, protocol: 'auto' }) : connectUpstream({ url: `${s.url}/mcp` }, { signal: ac.signal }),
    );
    expect((error as CodemodeError).code).toBe('ABORTED');
    expect(ms).toBeLessThan(1000);
  });
});

describe('connectUpstream success', () => {
  it('connects to a stdio server and mirrors its initialize result', async () => {
    const up: UpstreamConnection = await connectUpstream({ command: NODE, args: [EVERYTHING, 'stdio'] }, { onStderr: () => undefined });
    cleanups.push(() => up.close());
    expect(up.kind).toBe('stdio');
    expect(up.initializeResult.serverInfo.name).toMatch(/everything/i);
    expect(up.initializeResult.capabilities.tools).toBeDefined();
    const { tools } = await up.client.listTools();
    expect(tools.map((t) => t.name)).toContain('echo');
    await up.close();
    await up.close(); // idempotent
  });

  it('forwards custom initialize params verbatim', async () => {
    let seen: Record<string, unknown> | undefined;
    const s = await http(async (req, res) => {
      if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
      }
      const body = JSON.parse(await readBody(req)) as { id?: number; method: string; params: Record<string, unknown> };
      if (body.method === 'initialize') {
        seen = body.params;
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { protocolVersion: '2025-03-26', capabilities: { tools: {} }, serverInfo: { name: 'up', version: '9' }, instructions: 'hi', extra: 42 } }),
        );
        return;
      }
      res.writeHead(202).end();
    });
    const params = { protocolVersion: '2025-03-26', capabilities: { roots: { listChanged: true } }, clientInfo: { name: 'downstream', version: '1.2.3' }, _meta: { a: 1 } };
    const up = await connectUpstream({ url: `${s.url}/mcp` }, { initialize: params });
    cleanups.push(() => up.close());
    expect(seen).toEqual(params);
    expect(up.initializeResult).toMatchObject({ protocolVersion: '2025-03-26', instructions: 'hi', extra: 42 });
  });

  it('legacy SSE: auto falls back on 404/405 and works; transport sse goes straight there', async () => {
    const port = await freePort();
    const ev = await spawnServer([EVERYTHING, 'sse'], /running on port (\d+)/, { PORT: String(port) });
    cleanups.push(() => ev.stop());
    const auto = await connectUpstream({ url: `http://127.0.0.1:${port}/sse` });
    cleanups.push(() => auto.close());
    expect(auto.kind).toBe('sse');
    expect((await auto.client.callTool({ name: 'echo', arguments: { message: 'over sse' } })).content).toEqual([{ type: 'text', text: 'Echo: over sse' }]);
    const explicit = await connectUpstream({ url: `http://127.0.0.1:${port}/sse`, transport: 'sse' });
    cleanups.push(() => explicit.close());
    expect(explicit.kind).toBe('sse');
    await expect(connectUpstream({ url: `http://127.0.0.1:${port}/sse`, transport: 'http' })).rejects.toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
  });
});

describe('oversizedLineId (finding the request an oversized stdio line answered)', () => {
  it('reads the id at the head or, as the SDK serializes it, at the tail', () => {
    expect(oversizedLineId('{"jsonrpc":"2.0","id":7,"result":{"content":[{"text":"xxx', 'xxx"}]}}')).toBe(7);
    expect(oversizedLineId('{"id":"a\\"b","result":', '"}}')).toBe('a"b');
    expect(oversizedLineId('{"result":{"content":[{"type":"text","text":"xx', 'xx"}]},"jsonrpc":"2.0","id":42}')).toBe(42);
    expect(oversizedLineId('{"result":{"text":"', 'x"},"jsonrpc":"2.0","id":"req-1"}\r')).toBe('req-1');
  });

  it('does not take an "id" inside the text for the envelope id', () => {
    expect(oversizedLineId('{"result":{"text":"{\\"id\\":3,', '... \\"id\\": 9 and more"}}')).toBeUndefined();
    expect(oversizedLineId('{"method":"notifications/message","params":{"data":"', 'xx"}}')).toBeUndefined();
  });
});
