/**
 * Hosting a `CodemodeServer` over Streamable HTTP (express 5 and the v2 SDK): `/mcp` serves both protocol
 * eras. 2025-11-25 clients get stateful sessions (idle timeout, caps, rate) or `stateless` mode; 2026-07-28
 * requests are stateless by design and go to the SDK's `createMcpHandler` (envelope and header validation,
 * `server/discover`, `subscriptions/listen`, cache hints). Around both: DNS-rebinding protection (Host and Origin checks),
 * a body size limit, optional authentication, `/healthz`, and graceful shutdown.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Request, RequestHandler, Response, Router } from 'express';
import { NodeStreamableHTTPServerTransport, toNodeHandler } from '@modelcontextprotocol/node';
import { classifyInboundRequest, createMcpHandler, isInitializeRequest, PROTOCOL_VERSION_META_KEY } from '@modelcontextprotocol/server';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { createHostOriginGuard, createLimitedHttpServer, isLoopbackHost, jsonBodyErrorHandler, writeJsonRpcError } from '../wire/http-guard.js';
import type { HttpServerLimits } from '../wire/http-guard.js';
import type { CodemodeServer } from './server.js';
import {
  ANONYMOUS_PRINCIPAL,
  DEFAULT_MAX_SESSIONS,
  DEFAULT_MAX_SESSIONS_PER_PRINCIPAL,
  DEFAULT_SESSION_IDLE_TIMEOUT_MS,
  DEFAULT_SESSION_RATE_BURST,
  DEFAULT_SESSION_RATE_PER_SECOND,
  principalOf,
  SessionRateLimiter,
  SessionStore,
} from './sessions.js';
import type { SessionRate } from './sessions.js';
import type { SessionEntry } from './sessions.js';

export { isLoopbackHost, DEFAULT_SESSION_IDLE_TIMEOUT_MS, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_PRINCIPAL, DEFAULT_SESSION_RATE_PER_SECOND, DEFAULT_SESSION_RATE_BURST };
export type { SessionRate };

const log = createLogger('server');

/**
 * Largest accepted request body: 1 MiB. Parsing a body blocks the event loop every session shares: a
 * 3.9 MB search request held it for ~200 ms on a loaded 2-vCPU machine (bench/tenancy.ts), against a
 * 50 ms goal. The largest legitimate request, an execute at MAX_CODE_CHARS (200,000 characters), fits
 * with room to spare; raise it (--max-body) only for --expose-tools calls that carry large arguments.
 */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

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

export interface ServeHttpOptions extends HttpServerLimits {
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
  /**
   * Live sessions at once; an initialize past it gets HTTP 503. `null` = no cap. Default `DEFAULT_MAX_SESSIONS`.
   */
  maxSessions?: number | null;
  /**
   * Live sessions at once per authenticated principal (a static token, a JWT subject, an OAuth client and
   * user); an initialize past it gets HTTP 429. Unauthenticated sessions count toward `maxSessions` only.
   * `null` = no cap. Default `DEFAULT_MAX_SESSIONS_PER_PRINCIPAL`.
   */
  maxSessionsPerPrincipal?: number | null;
  /**
   * How fast one client may open sessions (stateful mode): `perSecond` on average, `burst` at once. A client
   * is its principal when authenticated, else its remote address (so clients behind one proxy share one).
   * An initialize past it gets HTTP 429 with `Retry-After`. `null` = no limit. Default
   * `{ perSecond: DEFAULT_SESSION_RATE_PER_SECOND, burst: DEFAULT_SESSION_RATE_BURST }` (10 and 60).
   */
  sessionRate?: SessionRate | null;
  /**
   * Let `/healthz` show details (sessions, executions, upstream names) to callers without credentials.
   * Default false: they get only `{"status": "ok"}` (200) or `{"status": "draining"}` (503); details need
   * a valid `Authorization` header when auth is on.
   */
  healthDetails?: boolean;
  /** Largest request body in bytes; larger ones get 413. Default `DEFAULT_MAX_BODY_BYTES`. */
  maxBodyBytes?: number;
  /**
   * Host header names accepted (DNS-rebinding protection), for `/mcp` and `/healthz` alike. Default for a
   * loopback bind: any loopback name (localhost, 127.x.y.z, [::1]). For other binds the check is off
   * unless this is given.
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
  writeJsonRpcError(res, status, code, message, headers);
}

function validSessionRate(rate: SessionRate | null | undefined): SessionRate | null {
  if (rate === undefined) return { perSecond: DEFAULT_SESSION_RATE_PER_SECOND, burst: DEFAULT_SESSION_RATE_BURST };
  if (rate === null) return null;
  const { perSecond, burst } = rate as Partial<SessionRate>;
  if (typeof perSecond !== 'number' || !Number.isFinite(perSecond) || perSecond <= 0) {
    throw new CodemodeError('INVALID_CONFIG', `sessionRate.perSecond must be a number > 0, or sessionRate null for no limit; got ${String(perSecond)}.`);
  }
  if (typeof burst !== 'number' || !Number.isInteger(burst) || burst < 1) {
    throw new CodemodeError('INVALID_CONFIG', `sessionRate.burst must be a whole number >= 1; got ${String(burst)}.`);
  }
  return { perSecond, burst };
}

function positiveOrNull(name: string, value: number | null | undefined, fallback: number): number | null {
  if (value === undefined) return fallback;
  if (value !== null && (!Number.isInteger(value) || value < 1)) throw new CodemodeError('INVALID_CONFIG', `${name} must be a positive whole number, or null for no cap; got ${String(value)}.`);
  return value;
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
  const maxSessions = positiveOrNull('maxSessions', options.maxSessions, DEFAULT_MAX_SESSIONS);
  const maxPerPrincipal = positiveOrNull('maxSessionsPerPrincipal', options.maxSessionsPerPrincipal, DEFAULT_MAX_SESSIONS_PER_PRINCIPAL);
  const sessionRate = validSessionRate(options.sessionRate);
  const rateLimiter = sessionRate === null ? undefined : new SessionRateLimiter(sessionRate);
  const rateText = sessionRate === null ? '' : `${sessionRate.perSecond} per second after a burst of ${sessionRate.burst}`;
  // Refused initializes are logged one line per reason per 10 s at most, with a count: a client looping on
  // initialize must not flood the log.
  const refusalLog = new Map<string, { at: number; count: number }>();
  const logRefusal = (reason: string, status: number): void => {
    const now = Date.now();
    const seen = refusalLog.get(reason) ?? { at: Number.NEGATIVE_INFINITY, count: 0 };
    seen.count++;
    if (now - seen.at >= 10_000) {
      log.warn(`new sessions refused: ${reason}`, { status, refused: seen.count });
      seen.at = now;
      seen.count = 0;
    }
    refusalLog.set(reason, seen);
  };
  const guard = createHostOriginGuard({
    bindHost: host,
    ...(options.allowedHosts !== undefined ? { allowedHosts: options.allowedHosts } : {}),
    ...(options.allowedOrigins !== undefined ? { allowedOrigins: options.allowedOrigins } : {}),
  });
  const app = express();
  app.disable('x-powered-by');
  // Built before any route or session: a bad limit is a config error, not a half-started server.
  const httpServer = createLimitedHttpServer(app, options);
  let draining = false;
  const sessions = new SessionStore({ maxSessions, maxSessionsPerPrincipal: maxPerPrincipal, idleTimeoutMs: options.stateless ? null : idleMs });
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

  // Host and Origin first, for every route: /healthz included (a rebinding page must not read it either).
  app.use((req, res, next) => {
    if (!guard.handle(req, res)) next();
  });
  // The auth may only exist once the port is bound (a factory); requests wait for it rather than slip past.
  let resolveAuth!: (auth: HttpAuthLike | undefined) => void;
  const authReady = new Promise<HttpAuthLike | undefined>((resolve) => (resolveAuth = resolve));
  let auth: HttpAuthLike | undefined;
  const authenticate: RequestHandler = (req, res, next) => {
    void authReady.then((a) => {
      const handler = a?.middleware ?? a?.requireAuth;
      if (handler === undefined) return rpcError(res, 500, -32603, 'Authentication is not configured correctly.');
      return handler(req, res, next);
    });
  };

  // Up or down for anyone who passes the Host check (load balancers); what is connected, failing and busy
  // only for callers with valid credentials, or everyone when healthDetails is set. Upstream names are
  // internal topology, not something to hand an anonymous prober.
  app.get('/healthz', (req, res) => {
    const details = () => {
      const stats = server.stats();
      const failed = stats.upstreams.filter((u) => u.state !== 'connected').map((u) => u.name);
      res.status(draining ? 503 : 200).json({
        status: draining ? 'draining' : failed.length > 0 ? 'degraded' : 'ok',
        sessions: options.stateless ? undefined : sessions.size,
        executions: { active: stats.activeExecutions, queued: stats.queuedExecutions },
        tools: stats.tools,
        upstreams: {
          connected: stats.upstreams.length - failed.length,
          failed,
          // Upstreams whose catalog the caps trimmed (huge descriptions or schemas, unusable names), with counts.
          trimmed: Object.fromEntries(stats.upstreams.filter((u) => u.trimmed !== undefined).map((u) => [u.name, u.trimmed])),
        },
      });
    };
    if (options.healthDetails === true) details();
    else if (hasAuth && req.headers.authorization !== undefined) void authenticate(req, res, () => details());
    else res.status(draining ? 503 : 200).json({ status: draining ? 'draining' : 'ok' });
  });
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
  if (hasAuth) app.use(path, authenticate);
  app.post(path, express.json({ limit: maxBody, type: ['application/json', 'application/*+json'] }));

  // 2026-07-28 requests: one server instance per request, built by the engine; catalog changes reach the
  // `subscriptions/listen` streams through the handler's notifier. In stateless mode the same handler also
  // serves 2025 clients, one request at a time (the SDK's stateless fallback).
  const factory = (ctx: Parameters<CodemodeServer['createServer']>[0]) => server.createServer(ctx);
  const mcpHandler = createMcpHandler(factory, {
    legacy: options.stateless ? 'stateless' : 'reject',
    onerror: (error) => log.debug('MCP request error', { error: describeError(error) }),
  });
  const serveMcp = toNodeHandler(mcpHandler, { onerror: (error) => log.error('MCP HTTP request failed', { error: describeError(error) }) });
  const stopToolsChanged = server.onToolsChanged(() => mcpHandler.notify.toolsChanged());

  /** The SDK's rule: a protocol version at or after this one belongs to the stateless era. */
  const FIRST_MODERN_PROTOCOL_VERSION = '2026-07-28';
  /**
   * True when `req` is a 2026-07-28 request (its version in `_meta` and the `Mcp-Protocol-Version` header), or
   * one the SDK's handler must reject as a malformed one.
   *
   * The common case is decided without the SDK's full classification (about 25 µs of schema checks, which
   * the handler then runs again): a single non-`initialize` message whose `_meta` claims a protocol version,
   * or that comes with an `Mcp-Protocol-Version` header of 2026-07-28 or later, can only be routed to the handler, as
   * modern or as a rejection; the handler validates it in full. Everything else is classified here.
   */
  const isModern = (req: Request): boolean => {
    const body = req.body as unknown;
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
      const { method, params } = body as { method?: unknown; params?: unknown };
      if (typeof method === 'string' && method !== 'initialize') {
        const meta = typeof params === 'object' && params !== null ? (params as { _meta?: unknown })._meta : undefined;
        if (typeof meta === 'object' && meta !== null && !Array.isArray(meta) && PROTOCOL_VERSION_META_KEY in meta) return true;
        const version = req.headers['mcp-protocol-version'];
        if (typeof version === 'string' && version.trim() >= FIRST_MODERN_PROTOCOL_VERSION) return true;
      }
    }
    const header = (name: string) => {
      const v = req.headers[name];
      return typeof v === 'string' ? v : undefined;
    };
    const outcome = classifyInboundRequest({
      httpMethod: req.method,
      ...(header('mcp-protocol-version') !== undefined ? { protocolVersionHeader: header('mcp-protocol-version') } : {}),
      ...(header('mcp-method') !== undefined ? { mcpMethodHeader: header('mcp-method') } : {}),
      ...(header('mcp-name') !== undefined ? { mcpNameHeader: header('mcp-name') } : {}),
      ...(req.body !== undefined ? { body: req.body as unknown } : {}),
    });
    return outcome.kind !== 'legacy';
  };

  const handleStateless = async (req: Request, res: Response): Promise<void> => {
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return rpcError(res, 405, -32000, 'This server is stateless: only POST is supported (no sessions, no GET stream).');
    }
    await serveMcp(req, res, req.body);
  };

  const handleStateful = async (req: Request, res: Response): Promise<void> => {
    const sid = req.headers['mcp-session-id'];
    const principal = principalOf(req);
    if (typeof sid === 'string') {
      // Another principal's session answers exactly like a missing one: its existence is not revealed.
      const entry = sessions.get(sid, principal);
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
    if (req.method === 'POST' && isModern(req)) {
      await serveMcp(req, res, req.body);
      return;
    }
    if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
      return rpcError(
        res,
        400,
        -32000,
        'Bad Request: no Mcp-Session-Id header. Send an initialize request first (protocol 2025-11-25), or send protocol 2026-07-28 requests with their version in _meta.',
      );
    }
    const retryAfter = rateLimiter?.take(principal === ANONYMOUS_PRINCIPAL ? `address:${req.socket.remoteAddress ?? ''}` : principal);
    if (retryAfter !== undefined) {
      logRefusal('a client passed the session rate', 429);
      return rpcError(
        res,
        429,
        -32000,
        `Too many new sessions from you: the limit is ${rateText}. Retry in ${retryAfter} s, and reuse a session rather than initialize again.`,
        { 'Retry-After': String(retryAfter) },
      );
    }
    const refused = sessions.reserve(principal);
    if (refused !== undefined) {
      logRefusal(refused.status === 429 ? 'a principal reached its session cap' : 'the server reached its session cap', refused.status);
      return rpcError(res, refused.status, -32000, refused.message, { 'Retry-After': '60' });
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      sessions.release(principal);
    };
    const holder: { entry?: SessionEntry } = {};
    let session;
    let transport: NodeStreamableHTTPServerTransport;
    try {
      transport = new NodeStreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          if (holder.entry !== undefined) sessions.add(id, holder.entry);
        },
      });
      session = await server.connect(transport);
    } catch (err) {
      release();
      throw err;
    }
    const t = transport;
    const entry: SessionEntry = { transport: t, session, principal, lastSeen: Date.now(), busy: 1 };
    holder.entry = entry;
    void session.closed.then(() => {
      if (t.sessionId !== undefined) sessions.delete(t.sessionId);
      release();
    });
    res.once('close', () => {
      entry.busy--;
      entry.lastSeen = Date.now();
    });
    try {
      await t.handleRequest(req, res, req.body);
    } finally {
      // An initialize that failed leaves a transport without a session: nothing will ever reach it again,
      // and closing it gives its slot back.
      if (t.sessionId === undefined || sessions.get(t.sessionId, principal) === undefined) await session.close();
    }
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
  app.use(jsonBodyErrorHandler(maxBody, 'HTTP request failed', 'Internal error in codemode; see its logs.'));

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port ?? 0, host, () => {
      httpServer.removeListener('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    sessions.drain();
    stopToolsChanged();
    void mcpHandler.close().catch(() => undefined);
    throw new CodemodeError('INVALID_ARGUMENT', `Cannot listen on ${host}:${options.port ?? 0}: ${describeError(error)}`, { cause: error });
  });

  const port = (httpServer.address() as AddressInfo).port;
  const displayHost = host.includes(':') ? `[${host}]` : host;
  try {
    auth = typeof options.auth === 'function' ? await options.auth({ serverUrl: `http://${displayHost}:${port}`, mcpPath: path }) : options.auth;
    if (hasAuth && auth?.middleware === undefined && auth?.requireAuth === undefined) {
      throw new CodemodeError('INVALID_CONFIG', 'The auth factory returned no middleware.');
    }
  } catch (err) {
    resolveAuth(undefined);
    sessions.drain();
    stopToolsChanged();
    await mcpHandler.close().catch(() => undefined);
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
        const stopped = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        httpServer.closeIdleConnections();
        try {
          await server.close({ ...(closeOptions.graceMs !== undefined ? { graceMs: closeOptions.graceMs } : {}), drain: () => waitForPosts(3_000) });
        } finally {
          stopToolsChanged();
          await mcpHandler.close().catch((err: unknown) => log.debug('closing the MCP handler failed', { error: describeError(err) }));
          await Promise.allSettled(sessions.drain().map((e) => e.session.close()));
          httpServer.closeAllConnections();
          await stopped;
          await auth?.close?.().catch((err: unknown) => log.warn('closing auth failed', { error: describeError(err) }));
        }
      })();
      return closing;
    },
  };
}
