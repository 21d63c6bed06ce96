/**
 * `codemode proxy` as a process: spawned through a test-only entry (test/fixtures/proxy-cli-entry.ts) that
 * calls runProxyCommand, with real stdio and Streamable HTTP clients on both sides.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { parseProxyArgs } from '../../src/cli/proxy-command.js';
import { CONFORMANCE_SERVER, FIXTURE_ENV, NODE, freePort, spawnServer, startFixtureHttp, timeRejection } from './helpers.js';

const ENTRY = fileURLToPath(new URL('../fixtures/proxy-cli-entry.ts', import.meta.url));
const LOADER = fileURLToPath(new URL('../fixtures/ts-loader.mjs', import.meta.url));
const CLI = ['--experimental-strip-types', '--no-warnings', '--import', LOADER, ENTRY];

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.().catch(() => undefined);
});

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(NODE, [...CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...FIXTURE_ENV } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const textOf = (r: unknown): string => ((r as CallToolResult).content[0] as { text: string }).text;

describe('codemode proxy: arguments', () => {
  it('--help documents every flag and exits 0', async () => {
    const { code, stdout } = await run(['--help']);
    expect(code).toBe(0);
    for (const flag of [
      '--stdio',
      '--http',
      '--host',
      '--port',
      '--transport',
      '--header',
      '--connect-timeout',
      '--request-timeout',
      '--idle-timeout',
      '--ignore-tool',
      '--forward-header',
      '--max-upstream-message',
      '--allowed-host',
      '--allowed-origin',
      '--auth-tokens-env',
      '--allow-unauthenticated',
      '--max-body',
      '--headers-timeout',
      '--receive-timeout',
      '--max-connections',
      '--help',
    ]) {
      expect(stdout).toContain(flag);
    }
  });

  it('bad usage exits 2 with a message on stderr', async () => {
    for (const args of [[], ['--stdio', '--http', 'http://x/mcp'], ['http://x/mcp', '--port', 'abc', '--http'], ['--bogus'], ['a', 'b'], ['not a url']]) {
      const { code, stderr, stdout } = await run(args);
      expect(code, args.join(' ')).toBe(2);
      expect(stderr).toMatch(/^codemode proxy: /);
      expect(stdout).toBe('');
    }
  });

  it('parses both forms and picks the other transport by default', () => {
    expect(parseProxyArgs(['http://127.0.0.1:1/mcp', '--header', 'Authorization: Bearer t', '--ignore-tool', 'x_*'])).toMatchObject({
      mode: 'stdio',
      target: { url: 'http://127.0.0.1:1/mcp', headers: { Authorization: 'Bearer t' } },
      options: { ignoreTools: ['x_*'] },
    });
    expect(parseProxyArgs(['--port', '9000', '--', 'npx', '-y', 'srv', '--flag'])).toMatchObject({ mode: 'http', port: 9000, target: { command: 'npx', args: ['-y', 'srv', '--flag'] } });
    expect(() => parseProxyArgs(['http://h/mcp', '--header', 'X: ${CODEMODE_SURELY_UNSET_VAR}'])).toThrow(/CODEMODE_SURELY_UNSET_VAR is not set/);
  });
});

describe('codemode proxy: end to end', () => {
  it('serves a Streamable HTTP server over stdio, and exits 0 on stdin EOF (no signal needed)', async () => {
    const up = await startFixtureHttp();
    cleanups.push(() => up.stop());
    const child = spawn(NODE, [...CLI, up.url], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...FIXTURE_ENV } });
    cleanups.push(async () => void child.kill('SIGKILL'));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const lines: Array<Record<string, unknown>> = [];
    let buf = '';
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
        lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        buf = buf.slice(i + 1);
      }
    });
    const send = (m: object): void => void child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', ...m })}\n`);
    send({ id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    await vi.waitFor(() => expect(lines).toHaveLength(1), { timeout: 10_000 });
    expect(lines[0]).toMatchObject({ id: 1, result: { serverInfo: { name: 'codemode-conformance-fixture' } } });
    send({ method: 'notifications/initialized' });
    send({ id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'via stdio' } } });
    await vi.waitFor(() => expect(lines).toHaveLength(2), { timeout: 10_000 });
    expect(lines[1]).toEqual({ jsonrpc: '2.0', id: 2, result: { content: [{ type: 'text', text: 'via stdio' }] } });
    child.stdin.end(); // EOF, and nothing else
    expect(await exited).toEqual({ code: 0, signal: null });
  });

  it('fails loudly in stdio mode: initialize is answered with the cause', async () => {
    const port = await freePort();
    const client = new Client({ name: 't', version: '1' });
    const transport = new StdioClientTransport({ command: NODE, args: [...CLI, `http://127.0.0.1:${port}/mcp`], stderr: 'pipe', env: { ...FIXTURE_ENV, PATH: process.env.PATH ?? '' } });
    cleanups.push(() => client.close());
    const { error } = await timeRejection(() => client.connect(transport));
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).message).toMatch(/Cannot reach upstream http:\/\/127\.0\.0\.1:\d+\/mcp: nothing is listening there/);
  });

  it('serves a stdio server over Streamable HTTP, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const server = await spawnServer(
      [...CLI, '--http', '--port', String(port), '--ignore-tool', 'delete_*', '--', NODE, '--experimental-strip-types', '--no-warnings', CONFORMANCE_SERVER, '--stdio'],
      /listening on (http:\S+)/,
    );
    cleanups.push(() => server.stop());
    expect(server.url).toBe(`http://127.0.0.1:${port}/mcp`);
    const client = new Client({ name: 't', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(server.url)));
    expect((await client.listTools()).tools.map((t) => t.name)).not.toContain('delete_everything');
    expect(textOf(await client.callTool({ name: 'echo', arguments: { text: 'via http' } }))).toBe('via http');
    await client.close();
    const code = await new Promise<number | null>((resolve) => {
      server.child.once('exit', (c) => resolve(c));
      server.child.kill('SIGTERM');
    });
    expect(code).toBe(0);
  });
});

/** A raw request to 127.0.0.1:`port` with any Host header (fetch will not send a forged one). */
function raw(port: number, method: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/mcp', method, headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        // An accepted GET is an endless SSE stream: the status is all we need.
        if (method === 'GET' && res.statusCode === 200) {
          res.destroy();
          return resolve({ status: 200, text: '', headers: res.headers });
        }
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
      },
    );
    req.once('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error('no answer')));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const INIT = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
const STDIO_UPSTREAM = ['--', NODE, '--experimental-strip-types', '--no-warnings', CONFORMANCE_SERVER, '--stdio'];

describe('codemode proxy: the HTTP face', () => {
  it('--host ::ffff:127.0.0.1 is loopback: a foreign Host header gets 403, a loopback one is served', async () => {
    const port = await freePort();
    const server = await spawnServer([...CLI, '--http', '--host', '::ffff:127.0.0.1', '--port', String(port), ...STDIO_UPSTREAM], /listening on (http:\S+)/);
    cleanups.push(() => server.stop());
    const evil = await raw(port, 'POST', { host: 'evil.example' }, INIT);
    expect(evil.status).toBe(403);
    expect(evil.text).toMatch(/Invalid Host: evil\.example/);
    expect((await raw(port, 'POST', { host: `127.0.0.1:${port}`, origin: 'https://evil.example' }, INIT)).status).toBe(403);
    const ok = await raw(port, 'POST', { host: `[::ffff:7f00:1]:${port}` }, INIT);
    expect(ok.status).toBe(200);
  });

  it('refuses a non-loopback bind without tokens or --allow-unauthenticated (exit 2, before starting the upstream)', async () => {
    const refused = await run(['--http', '--host', '0.0.0.0', '--', NODE, '-e', 'require("fs").writeFileSync(1, "STARTED")']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/refusing to serve on 0\.0\.0\.0 without authentication.*--auth-tokens-env.*--allow-unauthenticated/);
    const empty = await run(['--http', '--auth-tokens-env', 'CODEMODE_SURELY_UNSET_VAR', '--', NODE, '-e', '0']);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/CODEMODE_SURELY_UNSET_VAR: that environment variable is empty or not set/);
    expect(() => parseProxyArgs(['http://127.0.0.1:1/mcp', '--auth-tokens-env', 'X'])).toThrow(/--auth-tokens-env applies to --http only/);
  });

  it('--receive-timeout cuts a client that trickles its request body (408), and the proxy keeps serving', async () => {
    const port = await freePort();
    const server = await spawnServer([...CLI, '--http', '--port', String(port), '--headers-timeout', '1000', '--receive-timeout', '1500', ...STDIO_UPSTREAM], /listening on (http:\S+)/);
    cleanups.push(() => server.stop());
    const { connect } = await import('node:net');
    const start = Date.now();
    const s = connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    cleanups.push(async () => void s.destroy());
    let answer = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (answer += d));
    const closed = new Promise<number>((resolve) => s.once('close', () => resolve(Date.now() - start)));
    s.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{`);
    const trickle = setInterval(() => s.destroyed || s.write(' '), 200);
    cleanups.push(async () => clearInterval(trickle));
    const ms = await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeLessThan(10_000);
    expect((await raw(port, 'POST', { host: `127.0.0.1:${port}` }, INIT)).status).toBe(200);
  });

  // Both ways the proxy serves HTTP: the SDK path (stdio upstream) and the message-level forward path (HTTP upstream).
  for (const path of ['sdk', 'forward'] as const) {
    it(`--auth-tokens-env (${path} path): 401 without a token, and a session is bound to the token that opened it`, async () => {
      let upstream: string[] = STDIO_UPSTREAM;
      if (path === 'forward') {
        const up = await startFixtureHttp();
        cleanups.push(() => up.stop());
        upstream = [up.url];
      }
      const port = await freePort();
      const server = await spawnServer([...CLI, '--http', '--port', String(port), '--auth-tokens-env', 'PROXY_TEST_TOKENS', ...upstream], /listening on (http:\S+)/, {
        PROXY_TEST_TOKENS: 'alice-token,bob-token',
      });
      cleanups.push(() => server.stop());

      const none = await raw(port, 'POST', { host: `127.0.0.1:${port}` }, INIT);
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toMatch(/^Bearer realm=/);
      expect((await raw(port, 'POST', { host: `127.0.0.1:${port}`, authorization: 'Bearer mallory' }, INIT)).status).toBe(401);

      const alice = new Client({ name: 'alice', version: '1' });
      const transport = new StreamableHTTPClientTransport(new URL(server.url), { requestInit: { headers: { authorization: 'Bearer alice-token' } } });
      await alice.connect(transport);
      cleanups.push(() => alice.close());
      const sid = transport.sessionId!;
      expect(sid).toBeTruthy();
      const bob = { host: `127.0.0.1:${port}`, authorization: 'Bearer bob-token', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };
      const call = { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo', arguments: { text: 'stolen' } } };
      expect((await raw(port, 'POST', bob, call)).status).toBe(404);
      expect((await raw(port, 'GET', { ...bob, accept: 'text/event-stream' })).status).toBe(404);
      expect((await raw(port, 'DELETE', bob)).status).toBe(404);
      // Alice's session survived all of it.
      expect(textOf(await alice.callTool({ name: 'echo', arguments: { text: 'still mine' } }))).toBe('still mine');
    });
  }
});
