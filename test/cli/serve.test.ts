import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, startCli, waitFor } from './helpers.js';

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
});

/** Waits until the server's /healthz reports `active` running executes. */
async function activeExecutions(url: string, active: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const health = (await (await fetch(new URL('/healthz', url))).json()) as { executions: { active: number } };
    if (health.executions.active === active) return;
    if (Date.now() > deadline) throw new Error(`never saw ${active} active executions: ${JSON.stringify(health)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts `codemode serve --http --port 0 ...` and waits for its URL. */
async function serveHttp(args: string[]) {
  // --health-details: activeExecutions() reads the execution counts, which /healthz hides from anonymous callers.
  const cli = startCli(['serve', '--http', '--port', '0', '--health-details', ...args]);
  cleanups.push(() => void cli.child.kill('SIGKILL'));
  const text = await waitFor(cli.stderrText, (t) => /listening on http:\/\/\S+/.test(t) || cli.child.exitCode !== null);
  const url = /listening on (http:\/\/\S+)/.exec(text)?.[1];
  if (url === undefined) throw new Error(`serve did not start:\n${text}`);
  return { ...cli, url };
}

async function httpClient(url: string): Promise<Client> {
  const client = new Client({ name: 'cli-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  cleanups.push(() => client.close());
  return client;
}

function execute(client: Client, code: string): Promise<CallToolResult> {
  return client.request({ method: 'tools/call', params: { name: 'execute', arguments: { code } } }, CallToolResultSchema, { timeout: 60_000 }) as Promise<CallToolResult>;
}

/** A minimal line-delimited JSON-RPC client over a child's stdio, to see the process's own exit code. */
function rpc(child: ReturnType<typeof startCli>['child']) {
  let buffer = '';
  const waiting = new Map<number, (msg: Record<string, unknown>) => void>();
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const msg = JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>;
      buffer = buffer.slice(nl + 1);
      if (typeof msg.id === 'number') waiting.get(msg.id)?.(msg);
    }
  });
  let id = 0;
  return {
    request(method: string, params: unknown): Promise<Record<string, unknown>> {
      const n = ++id;
      child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id: n, method, params })}\n`);
      return new Promise((resolve) => waiting.set(n, resolve));
    },
    notify(method: string) {
      child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method })}\n`);
    },
  };
}

describe('codemode serve', () => {
  it('documents every flag in --help', async () => {
    const { code, stdout } = await runCli(['serve', '--help']);
    expect(code).toBe(0);
    for (const flag of [
      '--config', '--stdio', '--http', '--host', '--port', '--stateless', '--session-idle-timeout', '--max-body', '--allowed-host', '--allowed-origin',
      '--auth-tokens-env', '--jwks-url', '--jwt-issuer', '--jwt-audience', '--allow-unauthenticated', '--expose-tools', '--strict', '--timeout', '--memory',
      '--max-tool-calls', '--max-concurrent', '--max-queue', '--connect-timeout', '--shutdown-grace', '--log-level', '--help',
    ]) {
      expect(stdout).toContain(flag);
    }
  });

  it('exits 2 for usage and config errors, before starting anything', async () => {
    const cases: Array<[string[], RegExp, NodeJS.ProcessEnv?]> = [
      [['serve', '--stdio', '--http'], /choose one of --stdio and --http/],
      [['serve', '--port', '8080'], /--port only applies with --http/],
      [['serve', '--http', '--port', 'eighty'], /--port must be a whole number/],
      [['serve', '--http', '--host', '0.0.0.0'], /refusing to serve on 0\.0\.0\.0 without authentication/],
      [['serve', '--http', '--auth-tokens-env', 'CODEMODE_TEST_NO_SUCH_VAR'], /CODEMODE_TEST_NO_SUCH_VAR: that environment variable is empty/],
      [['serve', '--http', '--jwks-url', 'https://idp.test/jwks'], /needs all of --jwks-url, --jwt-issuer and --jwt-audience/],
      [['serve', '--config', 'no/such/file.json'], /file\.json: no such file/],
      [['serve', '--frob'], /Unknown option '--frob'/],
    ];
    for (const [args, message, env] of cases) {
      const result = await runCli(args, { ...(env ? { env } : {}) });
      expect({ args, code: result.code }).toEqual({ args, code: 2 });
      expect(result.stderr).toMatch(message);
    }
  });

  it('--strict refuses to start when an upstream fails (exit 2, naming it)', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'codemode-serve-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const config = join(dir, 'mcp.json');
    await writeFile(config, JSON.stringify({ mcpServers: { broken: { command: 'codemode-test-no-such-command' } } }));
    const result = await runCli(['serve', '--config', config, '--strict']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/failed to start \(strict mode\): "broken": .*command was not found.*Fix or remove/);
  });

  it('HTTP: an "oauth" config section mounts the OAuth authorization server and protects /mcp', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'codemode-serve-oauth-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const config = join(dir, 'mcp.json');
    await writeFile(config, JSON.stringify({ mcpServers: {}, oauth: { upstream: { type: 'github', clientId: 'test-client', clientSecret: '${GH_SECRET}' }, consent: false } }));
    const cli = startCli(['serve', '--http', '--port', '0', '--config', config], { env: { GH_SECRET: 'shh', CODEMODE_OAUTH_SIGNING_KEY: 'k'.repeat(48) } });
    cleanups.push(() => void cli.child.kill('SIGKILL'));
    const text = await waitFor(cli.stderrText, (t) => /listening on http:\/\/\S+/.test(t) || cli.child.exitCode !== null);
    const url = /listening on (http:\/\/\S+)/.exec(text)?.[1];
    expect(url, text).toBeDefined();
    expect(text).toContain('auth: OAuth');
    const metadata = await fetch(new URL('/.well-known/oauth-authorization-server', url));
    expect(metadata.status).toBe(200);
    expect(await metadata.json()).toMatchObject({ issuer: expect.stringContaining(new URL(url!).host), token_endpoint: expect.any(String) });
    const denied = await fetch(url!, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(denied.status).toBe(401);
    expect(denied.headers.get('www-authenticate')).toMatch(/^Bearer .*resource_metadata=/);
  });

  it('stdio: serves execute over stdout and exits 0 promptly on stdin EOF', async () => {
    const cli = startCli(['serve', '--stdio', '--config', 'examples/mcp.json']);
    cleanups.push(() => void cli.child.kill('SIGKILL'));
    const client = rpc(cli.child);
    const init = await client.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } });
    expect(init.result).toMatchObject({ serverInfo: { name: 'codemode' }, capabilities: { tools: {} } });
    client.notify('notifications/initialized');
    const call = await client.request('tools/call', { name: 'execute', arguments: { code: 'return (await tools.inventory.list_products({ inStockOnly: true })).products.length' } });
    expect(call.result).toMatchObject({ structuredContent: { result: 6 } });
    const t0 = performance.now();
    cli.child.stdin.end();
    const done = await cli.finished;
    expect(done.code).toBe(0);
    expect(performance.now() - t0).toBeLessThan(3_000);
  });

  it('HTTP: SIGTERM lets a running execute finish, then exits 0', async () => {
    const server = await serveHttp(['--config', 'examples/mcp.json']);
    const client = await httpClient(server.url);
    const running = execute(client, `const t = Date.now(); while (Date.now() - t < 1500) {} return (await tools.inventory.get_product({ sku: 'KB-101' })).stock`);
    await activeExecutions(server.url, 1);
    server.child.kill('SIGTERM');
    const result = await running;
    expect(result.structuredContent).toMatchObject({ result: 14 });
    const done = await server.finished;
    expect(done.code).toBe(0);
    expect(done.stderr).toContain('shutting down (SIGTERM)');
  });

  it('HTTP: SIGTERM aborts an execute that outlives --shutdown-grace, and the caller learns why', async () => {
    const server = await serveHttp(['--timeout', 'none', '--shutdown-grace', '0.3']);
    const client = await httpClient(server.url);
    const running = execute(client, 'while (true) {}');
    await activeExecutions(server.url, 1);
    const t0 = performance.now();
    server.child.kill('SIGTERM');
    const result = await running;
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toMatchObject({ error: { kind: 'aborted' } });
    const done = await server.finished;
    expect(done.code).toBe(0);
    expect(performance.now() - t0).toBeLessThan(5_000);
  });
});
