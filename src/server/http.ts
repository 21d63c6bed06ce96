/**
 * Hosting a `CodemodeServer` over Streamable HTTP (express 5 and the SDK's transport): `/mcp` with
 * stateful sessions (idle timeout) or `stateless` mode, DNS-rebinding protection (Host and Origin checks),
 * a body size limit, optional authentication, `/healthz`, and graceful shutdown.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import { hostHeaderValidation } from '@modelcontextprotocol/sdk/server/middleware/hostHeaderValidation.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import type { CodemodeServer, CodemodeSession } from './server.js';

const log = createLogger('server');

/** Sessions with no request for this long are closed: 30 minutes. */
export const DEFAULT_SESSION_IDLE_TIMEOUT_MS = 30 * 60_000;
/** Largest accepted request body: 4 MiB (the SDK's own default cap). */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/**
 * True for addresses only this machine can reach.
 *
 * @example
 * ```ts
 * isLoopbackHost('127.0.0.1'); // true
 * isLoopbackHost('0.0.0.0');   // false
 * ```
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/** Something that authenticates requests: `createHttpAuth(...)`, or an OAuth proxy's `requireAuth` + `router`. */
export interface HttpAuthLike {
  /** Runs before the MCP endpoint; sets `req.auth` or answers 401. */
  middleware?: RequestHandler;
  /** `createOAuthProxy(...).requireAuth` works here too. */
  requireAuth?: RequestHandler;
  /** Routes mounted at the root (OAuth metadata, /authorize, /token, ...). */
  router?: Router;
  /** Called when the HTTP server closes. */
  close?(): Promise<void>;
}

/** Builds the auth once the server's URL is known (an OAuth proxy needs it as its issuer by default). */
export type HttpAuthFactory = (server: { serverUrl: string; mcpPath: string }) => Promise<HttpAuthLike>;

export interface ServeHttpOptions {
  /** Interface to bind. Default `127.0.0.1`. */
  host?: string;
  /** Port; `0` (the default) picks a free one. */
  port?: number;
  /** Endpoint path. Default `/mcp`. */
  path?: string;
  /** No sessions: every POST gets a fresh MCP server (for horizontal scaling). GET/DELETE answer 405. */
  stateless?: boolean;
  /** Close sessions idle this long (ms); `null` never does. Default `DEFAULT_SESSION_IDLE_TIMEOUT_MS`. */
  sessionIdleTimeoutMs?: number | null;
  /** Largest request body in bytes; larger ones get 413. Default `DEFAULT_MAX_BODY_BYTES`. */
  maxBodyBytes?: number;
  /**
   * Host header names accepted (DNS-rebinding protection). Default for a loopback bind: localhost,
   * 127.0.0.1 and [::1]. For other binds the check is off unless this is given.
   */
  allowedHosts?: string[];
  /**
   * Origins (e.g. `https://app.example.com`) accepted besides those whose host is an allowed host. These
   * also get CORS answers (preflight included), so browser-based clients can talk to the server.
   */
  allowedOrigins?: string[];
  /** Authentication for the MCP endpoint, or a factory called once the port is bound. */
  auth?: HttpAuthLike | HttpAuthFactory;
  /** Allow a non-loopback bind without `auth`. Default false: that is refused. */
  allowUnauthenticated?: boolean;
}

export interface CodemodeHttpServer {
  /** The endpoint URL, e.g. `http://127.0.0.1:41234/mcp`. */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** Open MCP sessions (stateful mode). */
  readonly sessionCount: number;
  /**
   * Graceful shutdown: stops accepting, answers new requests 503, lets in-flight executes finish within
   * `graceMs`, aborts the rest, closes sessions, the engine and the upstreams. Idempotent.
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

function rpcError(res: Response, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });
}

/** Rejects a browser request from a foreign page: its Origin must name an allowed host or origin. */
function originValidation(allowedHostnames: readonly string[] | undefined, allowedOrigins: readonly string[]): RequestHandler {
  const origins = new Set(allowedOrigins.map((o) => o.replace(/\/+$/, '').toLowerCase()));
  return (req, res, next) => {
    const origin = req.headers.origin;
    if (origin === undefined || origin === '') return next();
    let hostname: string;
    try {
      hostname = new URL(origin).hostname;
    } catch {
      return rpcError(res, 403, -32000, `Invalid Origin header: ${origin}`);
    }
    if (origins.has(origin.toLowerCase())) {
      // An explicitly allowed origin is a browser client we serve: answer CORS, including the preflight
      // (which carries no credentials, so it is answered before auth).
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Vary', 'Origin');
      res.setHeader('Access-Control-Expose-Headers', 'Mcp-Session-Id, WWW-Authenticate');
      if (req.method === 'OPTIONS') {
        res.setHeader('Access-Control-Allow-Methods', 'GET, POST, DELETE, OPTIONS');
        res.setHeader('Access-Control-Allow-Headers', 'Content-Type, Authorization, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID');
        res.setHeader('Access-Control-Max-Age', '600');
        res.status(204).end();
        return;
      }
      return next();
    }
    // With no Host allowlist (non-loopback bind without --allowed-host) only the explicit origins count,
    // and when none are configured any origin passes: auth protects such a server.
    if (allowedHostnames === undefined ? origins.size === 0 : allowedHostnames.includes(hostname)) return next();
    rpcError(res, 403, -32000, `Origin not allowed: ${origin}`);
  };
}

interface SessionEntry {
  transport: StreamableHTTPServerTransport;
  session: CodemodeSession;
  lastSeen: number;
  /** POSTs in progress (an execute may run for minutes); an idle sweep never closes a busy session. */
  busy: number;
}

/**
 * Serves `server` over Streamable HTTP.
 *
 * @throws CodemodeError `INVALID_CONFIG` for a non-loopback bind without auth (unless
 * `allowUnauthenticated`), `INVALID_ARGUMENT` when the port cannot be bound.
 *
 * @example
 * ```ts
 * const server = await createCodemodeServerFromConfig(await loadServersConfig('mcp.json'));
 * const http = await serveHttp(server, { port: 3000 });
 * process.once('SIGTERM', () => void http.close({ graceMs: 10_000 }));
 * ```
 */
export async function serveHttp(server: CodemodeServer, options: ServeHttpOptions = {}): Promise<CodemodeHttpServer> {
  const host = options.host ?? '127.0.0.1';
  const path = options.path ?? '/mcp';
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const idleMs = options.sessionIdleTimeoutMs === undefined ? DEFAULT_SESSION_IDLE_TIMEOUT_MS : options.sessionIdleTimeoutMs;
  const hasAuth = typeof options.auth === 'function' || options.auth?.middleware !== undefined || options.auth?.requireAuth !== undefined;
  if (!isLoopbackHost(host) && !hasAuth && !options.allowUnauthenticated) {
    throw new CodemodeError(
      'INVALID_CONFIG',
      `Refusing to serve on ${host} without authentication: anyone who can reach it could run code with your tools. ` +
        'Configure auth (--auth-tokens-env or --jwks-url), bind 127.0.0.1, or pass --allow-unauthenticated if a trusted proxy in front authenticates.',
    );
  }
  if (!Number.isInteger(maxBody) || maxBody < 1) throw new CodemodeError('INVALID_CONFIG', `maxBodyBytes must be a positive integer, got ${String(maxBody)}.`);
  const allowedHostnames = options.allowedHosts ?? (isLoopbackHost(host) ? LOOPBACK_NAMES : undefined);

  const app = express();
  app.disable('x-powered-by');
  let draining = false;
  const sessions = new Map<string, SessionEntry>();
  // POSTs whose response has not ended yet; shutdown waits for them so the last results are delivered.
  let openPosts = 0;
  let postsIdle: (() => void) | undefined;
  app.use((req, res, next) => {
    if (req.method !== 'POST') return next();
    openPosts++;
    res.once('close', () => {
      openPosts--;
      if (openPosts === 0) postsIdle?.();
    });
    next();
  });
  const waitForPosts = (ms: number) =>
    openPosts === 0
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, ms);
          postsIdle = () => {
            clearTimeout(timer);
            resolve();
          };
        });

  // Before the Host check: load balancers probe by IP. It reveals only counts and states.
  app.get('/healthz', (_req, res) => {
    const stats = server.stats();
    const failed = stats.upstreams.filter((u) => u.state !== 'connected').map((u) => u.name);
    res.status(draining ? 503 : 200).json({
      status: draining ? 'draining' : failed.length > 0 ? 'degraded' : 'ok',
      sessions: options.stateless ? undefined : sessions.size,
      executions: { active: stats.activeExecutions, queued: stats.queuedExecutions },
      tools: stats.tools,
      upstreams: { connected: stats.upstreams.length - failed.length, failed },
    });
  });
  if (allowedHostnames !== undefined) app.use(hostHeaderValidation([...allowedHostnames]));
  app.use(originValidation(allowedHostnames, options.allowedOrigins ?? []));
  // The auth may only exist once the port is bound (a factory); requests wait for it rather than slip past.
  let resolveAuth!: (auth: HttpAuthLike | undefined) => void;
  const authReady = new Promise<HttpAuthLike | undefined>((resolve) => (resolveAuth = resolve));
  let auth: HttpAuthLike | undefined;
  app.use((req, res, next) => {
    authReady.then(
      (a) => (a?.router !== undefined ? a.router(req, res, next) : next()),
      (err: unknown) => next(err),
    );
  });
  app.use(path, (req, res, next) => {
    if (!draining) return next();
    rpcError(res, 503, -32000, 'The server is shutting down; retry shortly (or on another instance).', { 'Retry-After': '1', Connection: 'close' });
  });
  if (hasAuth) {
    app.use(path, (req, res, next) => {
      void authReady.then((a) => {
        const handler = a?.middleware ?? a?.requireAuth;
        if (handler === undefined) return rpcError(res, 500, -32603, 'Authentication is not configured correctly.');
        return handler(req, res, next);
      });
    });
  }
  app.post(path, express.json({ limit: maxBody, type: ['application/json', 'application/*+json'] }));

  const handleStateless = async (req: Request, res: Response): Promise<void> => {
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return rpcError(res, 405, -32000, 'This server is stateless: only POST is supported (no sessions, no GET stream).');
    }
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    const session = await server.connect(transport);
    res.once('close', () => void session.close());
    await transport.handleRequest(req, res, req.body);
  };

  const handleStateful = async (req: Request, res: Response): Promise<void> => {
    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') {
      const entry = sessions.get(sid);
      if (entry === undefined) {
        // The spec's answer for an unknown or expired session: the client must initialize again.
        return rpcError(res, 404, -32001, `Session not found: ${sid}. It expired or the server restarted; initialize a new session.`);
      }
      entry.lastSeen = Date.now();
      // A standalone GET stream stays open for the whole session, so only POSTs count as activity: a
      // client that went away with its stream open must not pin the session forever.
      if (req.method === 'POST') {
        entry.busy++;
        res.once('close', () => {
          entry.busy--;
          entry.lastSeen = Date.now();
        });
      }
      await entry.transport.handleRequest(req, res, req.body);
      return;
    }
    if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
      return rpcError(res, 400, -32000, 'Bad Request: no Mcp-Session-Id header. Send an initialize request first.');
    }
    const holder: { entry?: SessionEntry } = {};
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        if (holder.entry !== undefined) sessions.set(id, holder.entry);
      },
    });
    const session = await server.connect(transport);
    const entry: SessionEntry = { transport, session, lastSeen: Date.now(), busy: 1 };
    holder.entry = entry;
    void session.closed.then(() => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    });
    res.once('close', () => {
      entry.busy--;
      entry.lastSeen = Date.now();
    });
    await transport.handleRequest(req, res, req.body);
    // An initialize that failed leaves a transport without a session: nothing will ever reach it again.
    if (transport.sessionId === undefined || !sessions.has(transport.sessionId)) await session.close();
  };

  app.all(path, async (req, res) => {
    try {
      if (options.stateless) await handleStateless(req, res);
      else await handleStateful(req, res);
    } catch (error) {
      log.error('MCP HTTP request failed', { error: describeError(error) });
      rpcError(res, 500, -32603, 'Internal error in codemode; see its logs.');
    }
  });

  // Body parser failures (too large, bad JSON) as JSON-RPC errors, not express's HTML page.
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const e = err as { type?: string; status?: number };
    if (e.type === 'entity.too.large') return rpcError(res, 413, -32600, `Request body too large: the limit is ${maxBody} bytes.`);
    if (e.type === 'entity.parse.failed') return rpcError(res, 400, -32700, 'Parse error: the request body is not valid JSON.');
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) return rpcError(res, e.status, -32600, describeError(err));
    if (res.headersSent) return next(err);
    log.error('HTTP request failed', { error: describeError(err) });
    rpcError(res, 500, -32603, 'Internal error in codemode; see its logs.');
  });

  const httpServer = await new Promise<HttpServer>((resolve, reject) => {
    const s = app.listen(options.port ?? 0, host, (error?: Error) => (error === undefined ? resolve(s) : reject(error)));
    s.once('error', reject);
  }).catch((error: unknown) => {
    throw new CodemodeError('INVALID_ARGUMENT', `Cannot listen on ${host}:${options.port ?? 0}: ${describeError(error)}`, { cause: error });
  });
  // A slow client must not hold a socket open forever before sending its headers.
  httpServer.headersTimeout = 30_000;

  let sweeper: NodeJS.Timeout | undefined;
  if (!options.stateless && idleMs !== null) {
    sweeper = setInterval(
      () => {
        const cutoff = Date.now() - idleMs;
        for (const [id, entry] of sessions) {
          if (entry.busy <= 0 && entry.lastSeen < cutoff) {
            log.info('closing idle session', { session: id });
            sessions.delete(id);
            void entry.session.close();
          }
        }
      },
      Math.max(50, Math.min(idleMs / 2, 60_000)),
    );
    sweeper.unref();
  }

  const port = (httpServer.address() as AddressInfo).port;
  const displayHost = host.includes(':') ? `[${host}]` : host;
  try {
    auth = typeof options.auth === 'function' ? await options.auth({ serverUrl: `http://${displayHost}:${port}`, mcpPath: path }) : options.auth;
    if (hasAuth && auth?.middleware === undefined && auth?.requireAuth === undefined) {
      throw new CodemodeError('INVALID_CONFIG', 'The auth factory returned no middleware.');
    }
  } catch (err) {
    resolveAuth(undefined);
    clearInterval(sweeper);
    httpServer.closeAllConnections();
    await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    throw err;
  }
  resolveAuth(auth);
  let closing: Promise<void> | undefined;
  return {
    url: `http://${displayHost}:${port}${path}`,
    port,
    host,
    get sessionCount() {
      return sessions.size;
    },
    close(closeOptions = {}) {
      closing ??= (async () => {
        draining = true;
        clearInterval(sweeper);
        const stopped = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        httpServer.closeIdleConnections();
        try {
          await server.close({ ...(closeOptions.graceMs !== undefined ? { graceMs: closeOptions.graceMs } : {}), drain: () => waitForPosts(3_000) });
        } finally {
          await Promise.allSettled([...sessions.values()].map((e) => e.session.close()));
          sessions.clear();
          httpServer.closeAllConnections();
          await stopped;
          await auth?.close?.().catch((err: unknown) => log.warn('closing auth failed', { error: describeError(err) }));
        }
      })();
      return closing;
    },
  };
}
