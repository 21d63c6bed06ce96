/**
 * Hosting a proxy over Streamable HTTP: one endpoint (`/mcp`), one proxy session per MCP session.
 *
 * Two paths. When the upstream is Streamable HTTP too, sessions are forwarded at the HTTP message level
 * (`HttpForwarder`, see forward.ts): no MCP termination, about 0.2 ms added per call. Otherwise (a stdio
 * upstream, legacy SSE, `auto` falling back to SSE, OAuth, a custom fetch, `requestTimeoutMs`, or an
 * environment HTTP proxy) each session is an SDK server transport bridged to an SDK client by `createProxy`.
 *
 * Both paths sit behind the same front door as `codemode serve --http` (src/wire): the Host/Origin check,
 * optional static bearer tokens (each session bound to the token that opened it), a body size cap, and
 * the headers/request timeouts and connection cap.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { createStaticBearerAuth } from '../wire/bearer.js';
import { createHostOriginGuard, createLimitedHttpServer, isLoopbackHost, jsonBodyErrorHandler, writeJsonRpcError } from '../wire/http-guard.js';
import type { HttpServerLimits } from '../wire/http-guard.js';
import { LEGACY_PROTOCOL_VERSIONS, isModernVersionHeader } from '../wire/eras.js';
import { compileToolGlobs } from '../wire/globs.js';
import { httpTransportOf, isStdioConfig } from './config.js';
import { HttpForwarder } from './forward.js';
import { ModernHttpFront } from './modern-http.js';
import type { ModernHttpFrontOptions } from './modern-http.js';
import type { TranslatorStats } from './modern.js';
import { readBody } from './forward-io.js';
import { DEFAULT_IDLE_TIMEOUT_MS } from './proxy.js';
import type { Proxy, ProxySession } from './proxy.js';

const log = createLogger('proxy');

/** Largest request body the proxy accepts: 4 MiB (the SDK's own default cap). */
export const DEFAULT_PROXY_MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface ServeProxyHttpOptions extends HttpServerLimits {
  /** Interface to bind. Default `127.0.0.1`. Loopback binds (any spelling) get DNS-rebinding protection (Host check). */
  host?: string;
  /** Port; `0` (the default) picks a free one. */
  port?: number;
  /** Endpoint path. Default `/mcp`. */
  path?: string;
  /**
   * Host header names accepted (for a non-loopback bind behind a known name). Replaces the loopback
   * default; without it a non-loopback bind checks no Host.
   */
  allowedHosts?: string[];
  /** Browser origins accepted besides those whose host is an allowed host; they also get CORS answers. */
  allowedOrigins?: string[];
  /**
   * Static bearer tokens clients must send (`Authorization: Bearer <token>`). Each session is bound to the
   * token that opened it. Required for a non-loopback bind unless `allowUnauthenticated`.
   */
  authTokens?: readonly string[];
  /** Allow a non-loopback bind without `authTokens`. Default false: that is refused. */
  allowUnauthenticated?: boolean;
  /** Largest request body in bytes; larger ones get 413. Default `DEFAULT_PROXY_MAX_BODY_BYTES`. */
  maxBodyBytes?: number;
  /**
   * Forward HTTP -> HTTP at the message level when the upstream allows it (default `true`); `false` always
   * terminates MCP on both sides with the SDK's transports.
   */
  forward?: boolean;
  /** Bounds of the 2026-07-28 -> 2025 translation (held `input_required` calls, sessions). */
  translation?: ModernHttpFrontOptions['translator'];
}

export interface ProxyHttpServer {
  /** The endpoint URL, e.g. `http://127.0.0.1:41234/mcp`. */
  readonly url: string;
  readonly port: number;
  /** What the 2026-07-28 -> 2025 translation holds and has released (see modern.ts). */
  readonly translation: TranslatorStats;
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

/**
 * Whether a request is for the 2026-07-28 door: a version header of 2026-07-28 or later, or, without a session,
 * any version header that is not a 2025 one (a client asking for a version this proxy does not speak is
 * answered in 2026-07-28's terms, with the supported versions).
 */
function isModernRequest(header: string | string[] | undefined, sessionId: string | undefined): boolean {
  if (isModernVersionHeader(header)) return true;
  return sessionId === undefined && typeof header === 'string' && !LEGACY_PROTOCOL_VERSIONS.includes(header);
}

function reply(res: ServerResponse, status: number, code: number, message: string): void {
  writeJsonRpcError(res, status, code, message);
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
  const maxBody = options.maxBodyBytes ?? DEFAULT_PROXY_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBody) || maxBody < 1) throw new CodemodeError('INVALID_CONFIG', `maxBodyBytes must be a positive integer, got ${String(maxBody)}.`);
  const auth = options.authTokens !== undefined ? createStaticBearerAuth(options.authTokens, 'codemode-proxy') : undefined;
  if (!isLoopbackHost(host) && auth === undefined && !options.allowUnauthenticated) {
    throw new CodemodeError(
      'INVALID_CONFIG',
      `Refusing to serve the proxy on ${host} without authentication: anyone who can reach it could use the upstream server with its credentials. ` +
        'Set --auth-tokens-env VAR (or CODEMODE_AUTH_TOKENS), bind 127.0.0.1, or pass --allow-unauthenticated if a trusted proxy in front authenticates.',
    );
  }
  const guard = createHostOriginGuard({ bindHost: host, allowedHosts: options.allowedHosts, allowedOrigins: options.allowedOrigins });
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: maxBody, type: ['application/json', 'application/*+json'] }));
  const transports = new Map<string, { transport: StreamableHTTPServerTransport; session: ProxySession }>();
  /**
   * Who opened each session (with auth on). A session id is not a credential: another token that learns
   * it gets 404, as if it did not exist.
   */
  const owners = new Map<string, string>();
  const principals = new WeakMap<IncomingMessage, string>();

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
      const principal = principals.get(req);
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          // Runs while handling the initialize request below, after `session` is set.
          transports.set(id, { transport, session });
          if (principal !== undefined) owners.set(id, principal);
        },
      });
      const previousOnclose = transport.onclose;
      const session = await proxy.connect(transport, { idleTimeout: true, awaitStandaloneStream: true });
      // Protocol.connect wrapped onclose; chain ours after it so the map never keeps a dead session.
      const wrapped = transport.onclose;
      transport.onclose = () => {
        if (transport.sessionId !== undefined) {
          transports.delete(transport.sessionId);
          owners.delete(transport.sessionId);
        }
        (wrapped ?? previousOnclose)?.();
      };
      await transport.handleRequest(req, res, body);
    } catch (error) {
      log.error('proxy HTTP request failed', { error: describeError(error) });
      if (!res.headersSent) reply(res, 500, -32603, 'Internal error in the proxy');
    }
  };
  app.all(path, (req, res) => sdkHandle(req, res, req.body));
  // Body parser failures (too large, bad JSON) as JSON-RPC errors, not express's HTML page.
  app.use(jsonBodyErrorHandler(maxBody, 'proxy HTTP request failed', 'Internal error in the proxy'));

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
      maxMessageBytes: opts.maxMessageBytes,
    });
  }
  const detach = forwarder !== undefined ? proxy.attach(forwarder) : undefined;
  // 2026-07-28 clients: no sessions; see modern-http.ts.
  const modern = new ModernHttpFront({
    target: proxy.target,
    options: proxy.options,
    isHidden: compileToolGlobs(proxy.options.ignoreTools ?? []),
    maxBodyBytes: maxBody,
    ...(options.translation !== undefined ? { translator: options.translation } : {}),
  });
  const detachModern = proxy.attach({ sessionCount: 0, close: () => modern.close() });

  /** The forward path's share of the traffic: new sessions, and requests of its sessions. */
  const forward = async (fwd: HttpForwarder, req: IncomingMessage, res: ServerResponse, sid: string | undefined): Promise<void> => {
    let raw: Buffer | undefined;
    let body: unknown;
    if (req.method === 'POST') {
      raw = await readBody(req, res, maxBody);
      if (raw === undefined) return;
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
    const principal = principals.get(req);
    if (sid === undefined && principal !== undefined) {
      // The forwarder names the new session in its answer's headers: remember who opened it.
      const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
      (res as { writeHead: unknown }).writeHead = (...args: unknown[]) => {
        const headers = args.find((a): a is OutgoingHttpHeaders => typeof a === 'object' && a !== null && !Array.isArray(a));
        const id = headers?.['mcp-session-id'] ?? res.getHeader('mcp-session-id');
        if (typeof id === 'string') owners.set(id, principal);
        return writeHead(...args);
      };
    }
    await fwd.handle(req, res, sid, body, raw);
  };

  const server = createLimitedHttpServer((req, res) => {
    if (guard.handle(req, res)) return;
    const sid = req.headers['mcp-session-id'];
    const id = typeof sid === 'string' ? sid : undefined;
    const url = req.url ?? '/';
    const onPath = url === path || url.startsWith(`${path}?`);
    if (onPath && auth !== undefined) {
      const principal = auth.authenticate(req.headers.authorization, res);
      if (principal === undefined) return;
      if (id !== undefined) {
        const owner = owners.get(id);
        const live = transports.has(id) || forwarder?.owns(id) === true;
        if (owner !== undefined && !live) owners.delete(id);
        if (owner !== undefined && live && owner !== principal) {
          // Exactly the answer for an unknown session: whether the id exists is not revealed.
          reply(res, 404, -32001, `Session not found: ${id}`);
          return;
        }
      }
      principals.set(req, principal);
    }
    if (onPath && isModernRequest(req.headers['mcp-protocol-version'], id)) {
      modern.handle(req, res, principals.get(req)).catch((error: unknown) => {
        log.error('proxy HTTP request failed', { error: describeError(error) });
        if (!res.headersSent) reply(res, 500, -32603, 'Internal error in the proxy');
        else res.destroy();
      });
      return;
    }
    if (forwarder !== undefined && onPath && (id !== undefined ? forwarder.owns(id) : req.method === 'POST')) {
      forward(forwarder, req, res, id).catch((error: unknown) => {
        log.error('proxy HTTP request failed', { error: describeError(error) });
        if (!res.headersSent) reply(res, 500, -32603, 'Internal error in the proxy');
        else res.destroy();
      });
      return;
    }
    app(req, res);
  }, options);
  // Forwarded sessions end inside the forwarder (idle, DELETE, upstream gone): forget their owners too.
  const ownerSweep = setInterval(() => {
    for (const id of owners.keys()) if (!transports.has(id) && forwarder?.owns(id) !== true) owners.delete(id);
  }, 60_000);
  ownerSweep.unref();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    clearInterval(ownerSweep);
    detach?.();
    detachModern();
    void modern.close();
    throw new CodemodeError('INVALID_ARGUMENT', `Cannot listen on ${host}:${options.port ?? 0}: ${describeError(error)}`, { cause: error });
  });
  const port = (server.address() as AddressInfo).port;
  const displayHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${displayHost}:${port}${path}`,
    port,
    get translation() {
      return modern.stats;
    },
    close() {
      closing ??= (async () => {
        clearInterval(ownerSweep);
        try {
          await proxy.close();
        } finally {
          detach?.();
          detachModern();
          server.closeAllConnections();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        }
      })();
      return closing;
    },
  };
}
