/**
 * The HTTP front door shared by `codemode serve --http` and `codemode proxy --http`: one loopback test,
 * one Host/Origin check (DNS-rebinding protection), and one set of socket limits (headers and request
 * timeouts, a connection cap). Plain `node:http`, no SDK, so the proxy and the server hold the same rules.
 *
 * @module
 */

import { createRequire } from 'node:module';
import type * as NodeHttp from 'node:http';
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import { BlockList, isIP } from 'node:net';
import type { Socket } from 'node:net';
import { CodemodeError } from '../errors.js';
import { createLogger } from '../log.js';

const log = createLogger('http');

// node:http through require, and only when a server is created: see net-errors.ts (an ES import of node:http
// loads undici, ~45 ms of start-up for `codemode serve --stdio`, which uses this module only for isLoopbackHost).
const nodeHttp = (): typeof NodeHttp => createRequire(import.meta.url)('node:http') as typeof NodeHttp;

/** A client must send all its request headers within this time: 10 s. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
/**
 * A client must send its whole request (headers and body) within this time: 30 s. It covers receiving the
 * request only; a response that streams for minutes (a long execute, the SSE GET stream) is not cut.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Open TCP connections accepted at once; more are closed at once by the kernel-facing listener. */
export const DEFAULT_MAX_CONNECTIONS = 2_000;
/**
 * How often Node checks the two timeouts above: 1 s. Node's default (30 s) would let a trickling client
 * live up to twice the timeout.
 */
export const TIMEOUT_CHECK_INTERVAL_MS = 1_000;

// BlockList understands every spelling of an address (::ffff:127.0.0.1, ::ffff:7f00:1, 0:0:0:0:0:0:0:1),
// which a string comparison does not: that gap once let `--host ::ffff:127.0.0.1` skip the Host check.
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Lower case, without brackets or a trailing dot: `[::1]` -> `::1`, `LocalHost.` -> `localhost`. */
function bareHost(host: string): string {
  return host.trim().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase();
}

/**
 * True for addresses and names only this machine can reach: `127.0.0.0/8`, `::1`, IPv4-mapped
 * `::ffff:127.x.y.z` (in any spelling), and `localhost`. Brackets and a trailing dot are ignored.
 *
 * @example
 * ```ts
 * isLoopbackHost('127.0.0.1');        // true
 * isLoopbackHost('[::ffff:7f00:1]');  // true
 * isLoopbackHost('0.0.0.0');          // false
 * ```
 */
export function isLoopbackHost(host: string): boolean {
  const h = bareHost(host);
  if (h === 'localhost') return true;
  const family = isIP(h);
  if (family === 0) return false;
  return LOOPBACK.check(h, family === 6 ? 'ipv6' : 'ipv4');
}

/** Where a request may come from. */
export interface HostOriginPolicy {
  /** The address the server binds; a loopback bind checks Host even without `allowedHosts`. */
  bindHost: string;
  /**
   * Host header names accepted (the port is ignored). Default for a loopback bind: any loopback name
   * (`localhost`, `127.x.y.z`, `[::1]`, ...). For other binds there is no Host check unless this is given.
   */
  allowedHosts?: readonly string[];
  /** Browser origins accepted besides those whose host is an allowed host; they also get CORS answers. */
  allowedOrigins?: readonly string[];
}

/** A refusal: the HTTP status and a message for the JSON-RPC error body. */
export interface HttpRefusal {
  status: number;
  message: string;
}

/** The hostname of a Host header (`example.com:8080` -> `example.com`), or undefined when it does not parse. */
function hostnameOf(header: string): string | undefined {
  try {
    return bareHost(new URL(`http://${header}`).hostname);
  } catch {
    return undefined;
  }
}

/** How many distinct Host headers a guard remembers its verdict for. */
const HOST_VERDICT_CACHE_SIZE = 64;

/** The `Host` and `Origin` check, built once per server. */
export interface HostOriginGuard {
  /** Whether Host headers are checked at all (false for a non-loopback bind without `allowedHosts`). */
  readonly checksHost: boolean;
  /** The refusal for `req`'s Host header, or undefined when it passes. */
  checkHost(req: IncomingMessage): HttpRefusal | undefined;
  /**
   * Checks Host and Origin and answers the request when it must stop here: 403 for a foreign Host or
   * Origin, 204 for an allowed origin's CORS preflight. Returns true when it answered. Sets the CORS
   * headers on `res` for an allowed cross-origin request.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

/**
 * Builds the Host/Origin check for a server.
 *
 * @example
 * ```ts
 * const guard = createHostOriginGuard({ bindHost: '127.0.0.1' });
 * http.createServer((req, res) => { if (!guard.handle(req, res)) app(req, res); });
 * ```
 */
export function createHostOriginGuard(policy: HostOriginPolicy): HostOriginGuard {
  const explicit = policy.allowedHosts?.map((h) => hostnameOf(h) ?? bareHost(h));
  const loopbackOnly = explicit === undefined && isLoopbackHost(policy.bindHost);
  const checksHost = explicit !== undefined || loopbackOnly;
  const hostAllowed = (hostname: string): boolean => (explicit !== undefined ? explicit.includes(hostname) : loopbackOnly ? isLoopbackHost(hostname) : true);
  const origins = new Set((policy.allowedOrigins ?? []).map((o) => o.replace(/\/+$/, '').toLowerCase()));

  const verdictOf = (header: string): HttpRefusal | undefined => {
    const hostname = hostnameOf(header);
    if (hostname === undefined) return { status: 403, message: `Invalid Host header: ${header}` };
    if (hostAllowed(hostname)) return undefined;
    return {
      status: 403,
      message: `Invalid Host: ${hostname}. This server accepts ${explicit !== undefined ? explicit.join(', ') : 'loopback names only'}; add the name with --allowed-host if it is yours.`,
    };
  };
  // Parsing a Host header with URL costs about 15 µs, on every request; a server sees a handful of distinct
  // values. Client-chosen values must not grow the cache, so it is emptied when full.
  const verdicts = new Map<string, HttpRefusal | null>();
  const checkHost = (req: IncomingMessage): HttpRefusal | undefined => {
    if (!checksHost) return undefined;
    const header = req.headers.host;
    if (header === undefined || header === '') return { status: 403, message: 'Missing Host header: this server checks Host to block DNS-rebinding attacks.' };
    const known = verdicts.get(header);
    if (known !== undefined) return known ?? undefined;
    const verdict = verdictOf(header);
    if (verdicts.size >= HOST_VERDICT_CACHE_SIZE) verdicts.clear();
    verdicts.set(header, verdict ?? null);
    return verdict;
  };

  return {
    checksHost,
    checkHost,
    handle(req, res) {
      const refused = checkHost(req);
      if (refused !== undefined) {
        writeJsonRpcError(res, refused.status, -32000, refused.message);
        return true;
      }
      const origin = req.headers.origin;
      if (origin === undefined || origin === '') return false;
      let hostname: string;
      try {
        hostname = bareHost(new URL(origin).hostname);
      } catch {
        writeJsonRpcError(res, 403, -32000, `Invalid Origin header: ${origin}`);
        return true;
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
          res.writeHead(204).end();
          return true;
        }
        return false;
      }
      // With no Host check (non-loopback bind without --allowed-host) only the explicit origins count, and
      // when none are configured any origin passes: auth protects such a server.
      if (!checksHost ? origins.size === 0 : hostAllowed(hostname)) return false;
      writeJsonRpcError(res, 403, -32000, `Origin not allowed: ${origin}`);
      return true;
    },
  };
}

/**
 * Answers with a JSON-RPC error body (`id: null`), unless the response has started already.
 *
 * @example
 * ```ts
 * writeJsonRpcError(res, 404, -32001, 'Session not found');
 * ```
 */
export function writeJsonRpcError(res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.writableEnded) return;
  const text = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }).end(text);
}

/**
 * An express-style error handler for JSON body parsing: too large (413), not JSON (400) and other client
 * errors answer as JSON-RPC errors, not express's HTML page; anything else is logged as `what` and answered
 * 500 with `internalMessage`. Shared by serve and the proxy so both refuse bodies alike.
 */
export function jsonBodyErrorHandler(maxBodyBytes: number, what: string, internalMessage: string) {
  return (err: unknown, _req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void => {
    const e = err as { type?: string; status?: number };
    if (e.type === 'entity.too.large') return writeJsonRpcError(res, 413, -32600, `Request body too large: the limit is ${maxBodyBytes} bytes.`);
    if (e.type === 'entity.parse.failed') return writeJsonRpcError(res, 400, -32700, 'Parse error: the request body is not valid JSON.');
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) return writeJsonRpcError(res, e.status, -32600, err instanceof Error ? err.message : String(err));
    if (res.headersSent) return next(err);
    log.error(what, { error: err instanceof Error ? err.message : String(err) });
    writeJsonRpcError(res, 500, -32603, internalMessage);
  };
}

/** Socket limits of an HTTP server. `null` turns one off (not recommended on a shared server). */
export interface HttpServerLimits {
  /** Time to receive the request headers (ms). Default `DEFAULT_HEADERS_TIMEOUT_MS`. */
  headersTimeoutMs?: number | null;
  /** Time to receive the whole request, body included (ms). Default `DEFAULT_REQUEST_TIMEOUT_MS`. */
  requestTimeoutMs?: number | null;
  /** Open connections at once. Default `DEFAULT_MAX_CONNECTIONS`. */
  maxConnections?: number | null;
}

/** The limits with defaults applied, as the server enforces them (0 = off, Node's convention). */
export interface ResolvedHttpServerLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  maxConnections: number;
}

/**
 * Validates `limits` and fills in the defaults.
 *
 * @throws CodemodeError `INVALID_CONFIG` for a non-positive value, or a headers timeout above the request timeout.
 */
export function resolveHttpServerLimits(limits: HttpServerLimits = {}): ResolvedHttpServerLimits {
  const pick = (name: string, value: number | null | undefined, fallback: number): number => {
    if (value === null) return 0;
    if (value === undefined) return fallback;
    if (!Number.isInteger(value) || value < 1) throw new CodemodeError('INVALID_CONFIG', `${name} must be a positive whole number, or null for no limit; got ${String(value)}.`);
    return value;
  };
  const requestTimeoutMs = pick('requestTimeoutMs', limits.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS);
  // The headers are part of the request: a larger headers timeout would never apply (Node refuses it).
  const headersDefault = requestTimeoutMs === 0 ? DEFAULT_HEADERS_TIMEOUT_MS : Math.min(DEFAULT_HEADERS_TIMEOUT_MS, requestTimeoutMs);
  const headersTimeoutMs = pick('headersTimeoutMs', limits.headersTimeoutMs, headersDefault);
  if (requestTimeoutMs > 0 && (headersTimeoutMs === 0 || headersTimeoutMs > requestTimeoutMs)) {
    throw new CodemodeError('INVALID_CONFIG', `The headers timeout (${headersTimeoutMs} ms) must not exceed the request timeout (${requestTimeoutMs} ms): headers are part of the request.`);
  }
  return { headersTimeoutMs, requestTimeoutMs, maxConnections: pick('maxConnections', limits.maxConnections, DEFAULT_MAX_CONNECTIONS) };
}

const TIMEOUT_BODY = JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Request timeout: the request was not received in time; send it faster.' }, id: null });
/** Closing a socket that will not read its 408 must not wait on it: 1 s. */
const CLOSE_GRACE_MS = 1_000;

/**
 * An `http.Server` for `handler` with the limits applied: slow (or silent) clients are answered 408 and
 * disconnected once a timeout passes, and connections past the cap are dropped at once. Not listening yet.
 *
 * @example
 * ```ts
 * const server = createLimitedHttpServer(app, { requestTimeoutMs: 30_000 });
 * server.listen(3000, '127.0.0.1');
 * ```
 */
export function createLimitedHttpServer(handler: RequestListener, limits: HttpServerLimits = {}): Server {
  const resolved = resolveHttpServerLimits(limits);
  const server = nodeHttp().createServer(
    {
      headersTimeout: resolved.headersTimeoutMs,
      requestTimeout: resolved.requestTimeoutMs,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    },
    handler,
  );
  if (resolved.maxConnections > 0) server.maxConnections = resolved.maxConnections;
  let lastDropLog = 0;
  server.on('drop', () => {
    // One line per second at most: a flood must not become a log flood.
    if (Date.now() - lastDropLog < 1_000) return;
    lastDropLog = Date.now();
    log.warn('connection refused: the connection cap is reached', { maxConnections: resolved.maxConnections });
  });
  // Node's default answer half-closes the socket and waits for the client to close its side, which a
  // hostile client never does. Answer, then really close.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (socket.destroyed) return;
    // A response already under way (an early 413, say) must not get a second status line in its middle.
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (error.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent === true) {
      socket.destroy();
      return;
    }
    const timeout = error.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
    const head = timeout ? 'HTTP/1.1 408 Request Timeout' : tooLarge ? 'HTTP/1.1 431 Request Header Fields Too Large' : 'HTTP/1.1 400 Bad Request';
    const message = timeout ? '' : tooLarge ? 'Request headers too large; send smaller headers.' : 'Bad Request: malformed HTTP.';
    const body = timeout ? TIMEOUT_BODY : JSON.stringify({ jsonrpc: '2.0', error: { code: -32600, message }, id: null });
    const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    timer.unref();
    socket.end(`${head}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`, () => {
      clearTimeout(timer);
      socket.destroy();
    });
  });
  return server;
}
