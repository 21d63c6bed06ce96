/**
 * The scale-out setup of docs/deploy.md, for real: two `codemode serve --http` processes behind nginx
 * (Debian's package), sharing one redis-server for the OAuth proxy's state. 2026-07-28 requests are
 * balanced round robin (nothing ties a request to an instance); 2025-11-25 sessions are pinned to one
 * instance by client address; the OAuth endpoints are balanced too, so one login spans both instances.
 * A v2 SDK client of each era logs in through nginx (the IdP fixture approves) and runs executes with
 * upstream calls; nginx's access log shows which instance answered each request.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import type { CallToolResult, OAuthDiscoveryState } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startIdp } from '../fixtures/idp-server.js';
import type { IdpFixture } from '../fixtures/idp-server.js';
import { startRedis, TestOAuthProvider } from '../server/auth/harness.js';
import { SERVICES, skipWithout } from '../setup/services.js';
import { freePort, INVENTORY, startServe } from './helpers.js';
import type { Spawned } from './helpers.js';

const skip = skipWithout(SERVICES.nginx) || skipWithout(SERVICES.redis);
const MODERN = '2026-07-28';

/** The test's OAuth client, with the discovery state the v2 SDK binds the callback to (SEP-2352). */
class V2OAuthProvider extends TestOAuthProvider {
  #discovery: OAuthDiscoveryState | undefined;
  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.#discovery = state;
  }
  discoveryState(): OAuthDiscoveryState | undefined {
    return this.#discovery;
  }
}

/** The nginx.conf of docs/deploy.md, with test paths (kept in step with the doc by the test below). */
function nginxConfig(dir: string, port: number, backends: string[]): string {
  const servers = backends.map((b) => `    server ${b};`).join('\n');
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  log_format mcp '$request_method $uri [$http_mcp_protocol_version] $upstream_addr $status';
  access_log ${dir}/access.log mcp;

  # 2026-07-28 requests name their revision in Mcp-Protocol-Version: any instance can serve them.
  # 2025-11-25 requests belong to a session that lives in one instance: keep each client on one.
  # Everything else (OAuth metadata, /authorize, /token, the IdP callback) is shared through Redis.
  map "$uri|$http_mcp_protocol_version" $codemode_pool {
    "~^/mcp\\|${MODERN}$" codemode_any;
    "~^/mcp\\|"           codemode_sticky;
    default               codemode_any;
  }
  upstream codemode_any {
${servers}
    keepalive 16;
  }
  upstream codemode_sticky {
    ip_hash;
${servers}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://$codemode_pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }
  }
}
`;
}

let dir: string;
let redis: { url: string; close(): Promise<void> } | undefined;
let idp: IdpFixture | undefined;
const instances: Array<Spawned & { url: string }> = [];
let nginx: ChildProcess | undefined;
let publicUrl: string;

async function waitForHttp(url: string, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${deadlineMs} ms`, { cause: err });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

beforeAll(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'codemode-deploy-'));
  redis = await startRedis();
  idp = await startIdp({ accessTokenTtlSeconds: 300, issueRefreshTokens: true });
  const port = await freePort();
  publicUrl = `http://127.0.0.1:${port}`;
  const config = join(dir, 'codemode.json');
  writeFileSync(
    config,
    JSON.stringify({
      mcpServers: { inventory: { command: process.execPath, args: [INVENTORY] } },
      oauth: {
        issuerUrl: publicUrl,
        upstream: { type: 'oidc', issuer: idp.url, clientId: idp.clientId, clientSecret: idp.clientSecret, scopes: ['openid', 'profile'] },
        signingKey: '${CODEMODE_TEST_SIGNING_KEY}',
        storage: { type: 'redis', url: redis.url },
      },
    }),
  );
  const env = { CODEMODE_TEST_SIGNING_KEY: 'deploy-test-signing-key-0123456789abcdef0123456789' };
  for (let i = 0; i < 2; i++) instances.push(await startServe(['--config', config, '--log-level', 'warn'], env));
  const backends = instances.map((s) => new URL(s.url).host);
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, backends));
  nginx = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let nginxErr = '';
  nginx.stderr!.on('data', (c: Buffer) => (nginxErr += c.toString()));
  await waitForHttp(`${publicUrl}/healthz`, 15_000).catch((err: unknown) => {
    throw new Error(`nginx did not come up: ${nginxErr}`, { cause: err });
  });
}, 90_000);

afterAll(async () => {
  if (nginx !== undefined && nginx.exitCode === null) {
    const exited = new Promise((r) => nginx!.once('exit', r));
    nginx.kill('SIGTERM');
    await exited;
  }
  await Promise.allSettled(instances.map((s) => s.stop()));
  await redis?.close();
  await idp?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** Connects a v2 client through nginx, doing the whole OAuth login when the server asks for one. */
async function connectWithLogin(mode: 'legacy' | { pin: string }, provider: V2OAuthProvider): Promise<Client> {
  const make = () => new Client({ name: 'deploy-test', version: '1.0.0' }, { versionNegotiation: { mode } });
  const first = make();
  const transport = new StreamableHTTPClientTransport(new URL(`${publicUrl}/mcp`), { authProvider: provider });
  try {
    await first.connect(transport);
    return first;
  } catch (err) {
    const unauthorized = err instanceof UnauthorizedError || provider.pendingCode !== undefined;
    if (!unauthorized) throw err;
    const code = provider.pendingCode;
    provider.pendingCode = undefined;
    if (code === undefined) throw new Error('login produced no code', { cause: err });
    // The server advertises RFC 9207, so the v2 client requires the response's iss, as a real redirect would carry it.
    await transport.finishAuth(code, provider.pendingIss);
  }
  const client = make();
  await client.connect(new StreamableHTTPClientTransport(new URL(`${publicUrl}/mcp`), { authProvider: provider }));
  return client;
}

/** nginx's access log: which backend served each request. */
function accessLog(): Array<{ method: string; uri: string; version: string; backend: string; status: number }> {
  return readFileSync(join(dir, 'access.log'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [method, uri, version, backend, status] = /^(\S+) (\S+) \[([^\]]*)\] (\S+) (\d+)$/.exec(l)!.slice(1);
      return { method: method!, uri: uri!, version: version!, backend: backend!, status: Number(status) };
    });
}

const STOCK = `const a = await tools.inventory.get_product({ sku: 'KB-101' });
return a.sku;`;

describe.skipIf(skip)('two codemode serve --http behind nginx, OAuth state in one Redis (docs/deploy.md)', () => {
  it('a 2026-07-28 client logs in once and its requests are spread over both instances', async () => {
    const provider = new V2OAuthProvider();
    const client = await connectWithLogin({ pin: MODERN }, provider);
    try {
      expect(provider.logins).toBe(1);
      expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);
      for (let i = 0; i < 6; i++) {
        const r = (await client.callTool({ name: 'execute', arguments: { code: STOCK } })) as CallToolResult;
        expect(r.structuredContent).toMatchObject({ result: 'KB-101' });
      }
      expect((await client.listTools()).tools.map((t) => t.name)).toContain('execute');
    } finally {
      await client.close();
    }
    const modern = accessLog().filter((e) => e.uri === '/mcp' && e.version === MODERN && e.status === 200);
    expect(modern.length).toBeGreaterThanOrEqual(7);
    // Round robin: both instances answered this client's requests, with the token either one issued.
    expect(new Set(modern.map((e) => e.backend)).size).toBe(2);
    // The login itself crossed instances too (registration, authorize, callback, token).
    const oauth = accessLog().filter((e) => e.uri !== '/mcp' && e.uri !== '/healthz');
    expect(new Set(oauth.map((e) => e.backend)).size).toBe(2);
  });

  it('a 2025-11-25 client keeps its session on one instance, and works', async () => {
    const before = accessLog().length;
    const provider = new V2OAuthProvider();
    const client = await connectWithLogin('legacy', provider);
    try {
      expect(client.getNegotiatedProtocolVersion()).toBe('2025-11-25');
      for (let i = 0; i < 4; i++) {
        const r = (await client.callTool({ name: 'execute', arguments: { code: STOCK } })) as CallToolResult;
        expect(r.structuredContent).toMatchObject({ result: 'KB-101' });
      }
    } finally {
      await client.close();
    }
    const legacy = accessLog()
      .slice(before)
      .filter((e) => e.uri === '/mcp' && e.version !== MODERN && e.status === 200);
    expect(legacy.length).toBeGreaterThanOrEqual(5);
    expect(new Set(legacy.map((e) => e.backend)).size).toBe(1);
  });

  it('docs/deploy.md shows this configuration', () => {
    const doc = readFileSync(new URL('../../docs/deploy.md', import.meta.url), 'utf8');
    for (const line of ['map "$uri|$http_mcp_protocol_version" $codemode_pool {', 'ip_hash;', 'proxy_buffering off;', 'proxy_set_header Host $http_host;', '"~^/mcp\\|2026-07-28$" codemode_any;']) {
      expect(doc, line).toContain(line);
    }
  });
});
