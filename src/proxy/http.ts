/**
 * Hosting a proxy over Streamable HTTP: one endpoint (`/mcp`), one proxy session per MCP session.
 *
 * Two paths. When the upstream is Streamable HTTP too, sessions are forwarded at the HTTP message level
 * (`HttpForwarder`, see forward.ts): no MCP termination, about 0.2 ms added per call. Otherwise (a stdio
 * upstream, legacy SSE, `auto` falling back to SSE, OAuth, a custom fetch, `requestTimeoutMs`, or an
 * environment HTTP proxy) each session is an SDK server transport bridged to an SDK client by `createProxy`.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { httpTransportOf, isStdioConfig } from './config.js';
import { HttpForwarder } from './forward.js';
import { compileToolGlobs, DEFAULT_IDLE_TIMEOUT_MS } from './proxy.js';
import type { Proxy, ProxySession } from './proxy.js';

const log = createLogger('proxy');

export interface ServeProxyHttpOptions {
  /** Interface to bind. Default `127.0.0.1`. Loopback hosts get DNS-rebinding protection (Host header check). */
  host?: string;
  /** Port; `0` (the default) picks a free one. */
  port?: number;
  /** Endpoint path. Default `/mcp`. */
  path?: string;
  /** Extra Host header values to accept (for a non-loopback bind behind a known name). */
  allowedHosts?: string[];
  /**
   * Forward HTTP -> HTTP at the message level when the upstream allows it (default `true`); `false` always
   * terminates MCP on both sides with the SDK's transports.
   */
  forward?: boolean;
}

export interface ProxyHttpServer {
  /** The endpoint URL, e.g. `http://127.0.0.1:41234/mcp`. */
  readonly url: string;
  readonly port: number;
  /** Stops listening and closes every session. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `proxy` over Streamable HTTP.
 *
 * @example
 * ```ts
 * const proxy = createProxy({ command: 'npx', args: ['-y', '@modelcontextprotocol/server-everything'] });
 * const http = await serveProxyHttp(proxy, { port: 3000 });
 * console.error(`proxy at ${http.url}`);
 * ```
 */
/** Whether the message-level forward path can serve `proxy` without losing a feature of the SDK path. */
function canForward(proxy: Proxy): boolean {
  const { target, options } = proxy;
  if (isStdioConfig(target)) return false;
  if (httpTransportOf(target) === 'sse') return false;
  if (options.authProvider !== undefined || options.fetch !== undefined) return false;
  // A request cap reset by progress needs the messages; the SDK path implements it.
  if (options.requestTimeoutMs !== undefined && options.requestTimeoutMs !== null) return false;
  // Node's own HTTP(S)_PROXY support applies to fetch (the SDK path), not to our dedicated agent.
  const env = process.env;
  if (env.NODE_USE_ENV_PROXY === '1' && (env.HTTP_PROXY ?? env.HTTPS_PROXY ?? env.http_proxy ?? env.https_proxy) !== undefined) return false;
  return true;
}

/** The Host names accepted, like the SDK's express app: loopback names for a loopback bind, else all. */
function allowedHostNames(host: string, allowed: string[] | undefined): Set<string> | undefined {
  if (allowed !== undefined) return new Set(allowed);
  if (['127.0.0.1', 'localhost', '::1'].includes(host)) return new Set(['localhost', '127.0.0.1', '[::1]']);
  return undefined;
}

function hostRejection(req: IncomingMessage, names: Set<string> | undefined): string | undefined {
  if (names === undefined) return undefined;
  const header = req.headers.host;
  if (header === undefined) return 'Missing Host header';
  let hostname: string;
  try {
    hostname = new URL(`http://${header}`).hostname;
  } catch {
    return `Invalid Host header: ${header}`;
  }
  return names.has(hostname) ? undefined : `Invalid Host: ${hostname}`;
}

function reply(res: ServerResponse, status: number, code: number, message: string): void {
  const text = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/**
 * Serves `proxy` over Streamable HTTP.
 *
 * @example
 * ```ts
 * const proxy = createProxy({ command: 'npx', args: ['-y', '@modelcontextprotocol/server-everything'] });
 * const http = await serveProxyHttp(proxy, { port: 3000 });
 * console.error(`proxy at ${http.url}`);
 * ```
 */
export async function serveProxyHttp(proxy: Proxy, options: ServeProxyHttpOptions = {}): Promise<ProxyHttpServer> {
  const host = options.host ?? '127.0.0.1';
  const path = options.path ?? '/mcp';
  const app = createMcpExpressApp({ host, ...(options.allowedHosts !== undefined ? { allowedHosts: options.allowedHosts } : {}) });
  const transports = new Map<string, { transport: StreamableHTTPServerTransport; session: ProxySession }>();

  /** The SDK path: one `StreamableHTTPServerTransport` per session, bridged by `proxy.connect`. */
  const sdkHandle = async (req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> => {
    try {
      const sid = req.headers['mcp-session-id'];
      if (typeof sid === 'string') {
        const entry = transports.get(sid);
        if (entry === undefined) {
          // The spec's answer for a session we don't know: the client must initialize again.
          reply(res, 404, -32001, `Session not found: ${sid}`);
          return;
        }
        if (req.method === 'GET') entry.session.standaloneStreamOpened();
        await entry.transport.handleRequest(req, res, body);
        return;
      }
      if (req.method !== 'POST' || !isInitializeRequest(body)) {
        reply(res, 400, -32000, 'Bad Request: send initialize first (no Mcp-Session-Id header)');
        return;
      }
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          // Runs while handling the initialize request below, after `session` is set.
          transports.set(id, { transport, session });
        },
      });
      const previousOnclose = transport.onclose;
      const session = await proxy.connect(transport, { idleTimeout: true, awaitStandaloneStream: true });
      // Protocol.connect wrapped onclose; chain ours after it so the map never keeps a dead session.
      const wrapped = transport.onclose;
      transport.onclose = () => {
        if (transport.sessionId !== undefined) transports.delete(transport.sessionId);
        (wrapped ?? previousOnclose)?.();
      };
      await transport.handleRequest(req, res, body);
    } catch (error) {
      log.error('proxy HTTP request failed', { error: describeError(error) });
      if (!res.headersSent) reply(res, 500, -32603, 'Internal error in the proxy');
    }
  };
  app.all(path, (req, res) => sdkHandle(req, res, req.body));

  let forwarder: HttpForwarder | undefined;
  if (options.forward !== false && canForward(proxy) && !isStdioConfig(proxy.target)) {
    const target = proxy.target;
    const opts = proxy.options;
    const ignore = opts.ignoreTools ?? [];
    forwarder = new HttpForwarder(target, {
      headers: { ...(target.headers ?? {}), ...(opts.headers ?? {}) },
      forwardHeaders: (opts.forwardHeaders ?? []).map((h) => h.toLowerCase()),
      isHidden: compileToolGlobs(ignore),
      hasHiddenTools: ignore.length > 0,
      connectTimeoutMs: opts.connectTimeoutMs,
      idleTimeoutMs: opts.idleTimeoutMs === undefined ? DEFAULT_IDLE_TIMEOUT_MS : opts.idleTimeoutMs,
      ...(httpTransportOf(target) === 'auto' ? { fallback: (req: IncomingMessage, res: ServerResponse, body: unknown) => void sdkHandle(req, res, body) } : {}),
    });
  }
  const detach = forwarder !== undefined ? proxy.attach(forwarder) : undefined;
  const hostNames = allowedHostNames(host, options.allowedHosts);
  /** The last Host header that passed: clients send the same one on every request. */
  let hostSeen: string | undefined;

  /** The forward path's share of the traffic: new sessions, and requests of its sessions. */
  const forward = async (fwd: HttpForwarder, req: IncomingMessage, res: ServerResponse, sid: string | undefined): Promise<void> => {
    if (req.headers.host === undefined || req.headers.host !== hostSeen) {
      const rejected = hostRejection(req, hostNames);
      if (rejected !== undefined) {
        reply(res, 403, -32000, rejected);
        return;
      }
      hostSeen = req.headers.host;
    }
    let raw: Buffer | undefined;
    let body: unknown;
    if (req.method === 'POST') {
      raw = await readBody(req);
      try {
        body = JSON.parse(raw.toString('utf8')) as unknown;
      } catch {
        reply(res, 400, -32700, 'Parse error: the request body is not JSON');
        return;
      }
      if (sid === undefined && !isInitializeRequest(body)) {
        reply(res, 400, -32000, 'Bad Request: send initialize first (no Mcp-Session-Id header)');
        return;
      }
    }
    await fwd.handle(req, res, sid, body, raw);
  };

  const server = createServer((req, res) => {
    const sid = req.headers['mcp-session-id'];
    const id = typeof sid === 'string' ? sid : undefined;
    const url = req.url ?? '/';
    const onPath = url === path || url.startsWith(`${path}?`);
    if (forwarder !== undefined && onPath && (id !== undefined ? forwarder.owns(id) : req.method === 'POST')) {
      forward(forwarder, req, res, id).catch((error: unknown) => {
        log.error('proxy HTTP request failed', { error: describeError(error) });
        if (!res.headersSent) reply(res, 500, -32603, 'Internal error in the proxy');
        else res.destroy();
      });
      return;
    }
    app(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    detach?.();
    throw new CodemodeError('INVALID_ARGUMENT', `Cannot listen on ${host}:${options.port ?? 0}: ${describeError(error)}`, { cause: error });
  });
  const port = (server.address() as AddressInfo).port;
  const displayHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${displayHost}:${port}${path}`,
    port,
    close() {
      closing ??= (async () => {
        await proxy.close();
        detach?.();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closing;
    },
  };
}
