/**
 * Test harness for the OAuth proxy: a real MCP endpoint on 127.0.0.1 protected by the proxy, an SDK
 * OAuth client provider that "clicks through" the browser redirects programmatically, a round-robin
 * load balancer for multi-instance tests, and a throw-away redis-server.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createOAuthProxy } from '../../../src/server/auth/index.js';
import type { OAuthProxy, OAuthProxyOptions } from '../../../src/server/auth/index.js';
import type { IdpFixture } from '../../fixtures/idp-server.js';

export const SIGNING_KEY = 'test-signing-key-0123456789abcdef0123456789abcdef';

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export interface ProtectedServer {
  url: string;
  mcpUrl: string;
  proxy: OAuthProxy;
  close(): Promise<void>;
}

/**
 * An express app with the OAuth proxy at its root and a stateless MCP endpoint at /mcp whose `whoami`
 * tool calls the IdP's userinfo with the upstream token, proving the stored upstream token works.
 * `publicUrl` is the URL clients use (a load balancer's, for multi-instance tests).
 */
export async function startProtectedServer(
  idp: IdpFixture,
  overrides: Partial<OAuthProxyOptions> & { publicUrl?: string; issuerPath?: string } = {},
): Promise<ProtectedServer> {
  const http = createServer();
  const port = await listen(http);
  const url = overrides.publicUrl ?? `http://127.0.0.1:${port}`;
  const { publicUrl: _ignored, issuerPath, ...rest } = overrides;
  const proxy = createOAuthProxy({
    issuerUrl: `${url}${issuerPath ?? ''}`,
    resourceUrl: `${url}/mcp`,
    upstream: { type: 'oidc', issuer: idp.url, clientId: idp.clientId, clientSecret: idp.clientSecret, scopes: ['openid', 'profile'] },
    signingKey: SIGNING_KEY,
    rateLimit: false,
    ...rest,
  });
  const app = express();
  app.use(proxy.router);
  app.post('/mcp', proxy.requireAuth, express.json(), async (req, res) => {
    const server = new McpServer({ name: 'oauth-test', version: '1.0.0' });
    server.registerTool('whoami', { description: 'Calls the upstream userinfo with the upstream token' }, async (extra) => {
      const upstreamToken = extra.authInfo?.extra?.upstreamAccessToken;
      const info = await fetch(`${idp.url}/userinfo`, { headers: { authorization: `Bearer ${String(upstreamToken)}` } });
      const body = (await info.json()) as Record<string, unknown>;
      return {
        content: [{ type: 'text', text: JSON.stringify({ status: info.status, body, subject: extra.authInfo?.extra?.subject }) }],
        isError: !info.ok,
      };
    });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  app.all('/mcp', (_req, res) => {
    res.status(405).set('Allow', 'POST').end();
  });
  http.on('request', app);
  return {
    url: `http://127.0.0.1:${port}`,
    mcpUrl: `${url}/mcp`,
    proxy,
    async close() {
      await closeServer(http);
      await proxy.close();
    },
  };
}

/**
 * An SDK OAuthClientProvider whose "browser" follows the redirect chain with fetch and captures the
 * code sent to the redirect URI. `logins` counts how often the SDK asked for a (new) login.
 */
export class TestOAuthProvider implements OAuthClientProvider {
  readonly redirectUrl = 'http://127.0.0.1:1/callback';
  logins = 0;
  pendingCode: string | undefined;
  /** The `iss` of the authorization response (RFC 9207), for clients that check it (the v2 SDK's `finishAuth(code, iss)`). */
  pendingIss: string | undefined;
  #client: OAuthClientInformationMixed | undefined;
  #tokens: OAuthTokens | undefined;
  #verifier = '';

  get clientMetadata(): OAuthClientMetadata {
    return { client_name: 'oauth-proxy-test', redirect_uris: [this.redirectUrl], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.#client;
  }
  saveClientInformation(info: OAuthClientInformationMixed): void {
    this.#client = info;
  }
  tokens(): OAuthTokens | undefined {
    return this.#tokens;
  }
  saveTokens(tokens: OAuthTokens): void {
    this.#tokens = tokens;
  }
  saveCodeVerifier(verifier: string): void {
    this.#verifier = verifier;
  }
  codeVerifier(): string {
    return this.#verifier;
  }
  invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): void {
    if (scope === 'all' || scope === 'tokens') this.#tokens = undefined;
    if (scope === 'all' || scope === 'client') this.#client = undefined;
  }

  /** What the "user" clicks on the consent page. */
  consentAction: 'approve' | 'deny' = 'approve';
  consentPages = 0;
  /** The browser's cookies, by name (one origin in these tests). */
  readonly cookies = new Map<string, string>();

  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    this.logins++;
    let next = authorizationUrl.href;
    let init: RequestInit = {};
    for (let hop = 0; hop < 10; hop++) {
      if (next.startsWith(this.redirectUrl)) {
        const back = new URL(next);
        const error = back.searchParams.get('error');
        if (error !== null) throw new Error(`authorization failed: ${error} ${back.searchParams.get('error_description') ?? ''}`);
        this.pendingCode = back.searchParams.get('code') ?? undefined;
        this.pendingIss = back.searchParams.get('iss') ?? undefined;
        return;
      }
      const headers = new Headers(init.headers);
      if (this.cookies.size > 0) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
      const res = await fetch(next, { ...init, headers, redirect: 'manual' });
      for (const line of res.headers.getSetCookie()) {
        const [pair] = line.split(';');
        const [name, ...value] = (pair ?? '').split('=');
        if (name !== undefined && name !== '') this.cookies.set(name.trim(), value.join('='));
      }
      const location = res.headers.get('location');
      if (res.status === 200 && (res.headers.get('content-type') ?? '').includes('text/html')) {
        const form = parseConsentForm(await res.text());
        this.consentPages++;
        next = new URL(form.action, next).href;
        init = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ txn: form.txn, action: this.consentAction }).toString() };
        continue;
      }
      await res.body?.cancel();
      if (res.status < 300 || res.status >= 400 || location === null) throw new Error(`login stopped at ${next} with HTTP ${res.status}`);
      next = new URL(location, next).href;
      init = {};
    }
    throw new Error('too many redirects during login');
  }
}

/** Reads the consent form's action and hidden transaction id. */
export function parseConsentForm(html: string): { action: string; txn: string } {
  const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
  const txn = /name="txn" value="([^"]+)"/.exec(html)?.[1];
  if (action === undefined || txn === undefined) throw new Error(`no consent form in page: ${html.slice(0, 200)}`);
  return { action: action.replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code))), txn };
}

/** Connects an SDK client, doing the whole login if the server asks for one. */
export async function connectWithLogin(mcpUrl: string, provider: TestOAuthProvider): Promise<Client> {
  const client = new Client({ name: 'oauth-test-client', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  try {
    await client.connect(transport);
    return client;
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
    const code = provider.pendingCode;
    provider.pendingCode = undefined;
    if (code === undefined) throw new Error('login produced no code', { cause: err });
    await transport.finishAuth(code);
  }
  const retry = new Client({ name: 'oauth-test-client', version: '1.0.0' });
  await retry.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  return retry;
}

export interface WhoAmI {
  status: number;
  body: Record<string, unknown>;
  subject?: string;
}

export async function whoami(client: Client): Promise<WhoAmI> {
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  const first = (result.content as Array<{ type: string; text?: string }>)[0];
  return JSON.parse(first?.text ?? '{}') as WhoAmI;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A round-robin HTTP load balancer: each request goes to the next backend, so consecutive calls alternate instances. */
export async function startLoadBalancer(): Promise<{ url: string; port: number; backends: string[]; hits: number[]; close(): Promise<void> }> {
  const backends: string[] = [];
  const hits: number[] = [];
  let next = 0;
  const server = createServer((req, res) => {
    const index = next++ % backends.length;
    hits[index] = (hits[index] ?? 0) + 1;
    const target = new URL(req.url ?? '/', backends[index]);
    const upstream = httpRequest(target, { method: req.method, headers: { ...req.headers, host: target.host }, agent: false }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, port, backends, hits, close: () => closeServer(server) };
}

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Starts a private redis-server on a free loopback port with a temp dir and no persistence. */
export async function startRedis(): Promise<{ url: string; close(): Promise<void> }> {
  if (!hasRedisServer()) throw new Error('redis-server is not installed: the Redis OAuth storage tests need it (apt-get install -y redis-server)');
  const probe = createServer();
  const port = await listen(probe);
  await closeServer(probe);
  const dir = mkdtempSync(join(tmpdir(), 'codemode-redis-'));
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start in 10 s: ${output}`)), 10_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${output}`));
    });
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    async close() {
      if (child.exitCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** `codemode` from source (type stripping with the test loader), as the serve tests run it. */
const CODEMODE_CLI = ['--no-node-snapshot', '--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--import', join(ROOT, 'test/fixtures/ts-loader.mjs'), join(ROOT, 'src/cli/codemode.ts')];

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  stderr: () => string;
}

/** Spawns `codemode serve --http` and waits (bounded, 20 s) for its "listening on" line. */
export async function spawnServe(args: string[], env: NodeJS.ProcessEnv): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...CODEMODE_CLI, 'serve', '--http', ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`codemode serve did not start within 20 s:\n${stderr}`)), 20_000);
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const m = /listening on (http:\/\/\S+?)\/mcp\b/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`codemode serve exited with ${code}:\n${stderr}`));
    });
  });
  return { url, child, stderr: () => stderr };
}

/** Stops a `spawnServe` process: SIGTERM, then SIGKILL if it has not exited within 10 s. */
export async function stopServe(p: ServeProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.child.once('exit', () => resolve()));
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
