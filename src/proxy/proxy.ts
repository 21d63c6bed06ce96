/**
 * The forwarding MCP server: `createProxy(target, options)`.
 *
 * Each downstream session gets its own upstream session. Nothing touches the upstream until the
 * downstream sends `initialize`; that request is answered only after the upstream answered its own
 * `initialize` (with the downstream's params), and with the upstream's result, so capabilities,
 * instructions and serverInfo are mirrored and every upstream failure becomes the JSON-RPC error answer
 * to `initialize`. Everything else (requests, notifications, server-to-client requests, progress,
 * cancellation, ping) is forwarded both ways without reinterpretation.
 *
 * @module
 */

import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { CancelledNotificationSchema, ErrorCode, InitializeRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import type {
  InitializeRequest,
  InitializeResult,
  JSONRPCRequest,
  Notification,
  Progress,
  RequestId,
  ServerNotification,
  ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { compileToolGlobs } from '../wire/globs.js';
import { wireErrorMessage } from '../wire/jsonrpc.js';
import { MAX_TIMER_DELAY_MS } from '../wire/timers.js';
import { describeUpstream, parseUpstreamConfig } from './config.js';
import type { UpstreamConfig } from './config.js';
import { classifyRequestError, connectUpstream, mayBeModernOnly, isSessionExpiredError } from './upstream.js';
import type { ConnectUpstreamOptions, UpstreamConnection } from './upstream.js';
import type { NegotiatedClient, UpstreamClient } from './negotiated-client.js';
import { LEGACY_PROTOCOL_VERSIONS, LOG_LEVEL_META_KEY } from '../wire/eras.js';

const log = createLogger('proxy');

/** How long an upstream message with no request to ride on waits for the downstream's standalone stream. */
const STANDALONE_WAIT_MS = 5000;
/** At most this many such messages wait; more are sent at once (and may be dropped by the transport). */
const MAX_PENDING_DOWN = 1000;

/** Default idle timeout of a downstream session with no traffic and nothing in flight: 30 minutes. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30 * 60_000;

/** Any JSON object: results are forwarded as received, not re-validated (the SDK's strict tool-result
 * validation would throw on upstream `structuredContent` it considers invalid). */
const AnyResult = z.looseObject({});

export interface ProxyOptions
  extends Pick<ConnectUpstreamOptions, 'connectTimeoutMs' | 'authProvider' | 'fetch' | 'inheritEnv' | 'onStderr' | 'headers' | 'maxMessageBytes'> {
  /**
   * Milliseconds a forwarded request may run, reset by every progress notification. Default `null`:
   * no cap (the downstream client decides when to give up, and its cancellation is forwarded).
   */
  requestTimeoutMs?: number | null;
  /**
   * Close a downstream HTTP session (and its upstream session) after this long without traffic and with
   * nothing in flight, for clients that never close. Default `DEFAULT_IDLE_TIMEOUT_MS`; `null` disables
   * it. Applies to sessions served by `serveProxyHttp` (or connected with `{ idleTimeout: true }`).
   */
  idleTimeoutMs?: number | null;
  /** Tool-name globs (`*`, `?`) hidden from `tools/list`; calling a hidden tool is refused. */
  ignoreTools?: readonly string[];
  /**
   * Downstream HTTP request header names (case-insensitive) copied to the upstream HTTP session, taken
   * from the downstream `initialize` request. Default none: `Authorization`, cookies and the rest of the
   * caller's headers never reach the upstream unless listed here.
   */
  forwardHeaders?: readonly string[];
}

/** One downstream session and its upstream session. */
export interface ProxySession {
  /** The MCP server facing the downstream client. */
  readonly server: Server;
  /** The upstream connection, once the downstream initialized (and while it is alive). */
  readonly upstream: UpstreamConnection<UpstreamClient> | undefined;
  /** Closes both sides. Idempotent. */
  close(): Promise<void>;
  /** Resolves when the session closed, for whatever reason. */
  readonly closed: Promise<void>;
  /**
   * Tells the session the downstream opened its standalone SSE stream (HTTP GET), so messages the
   * upstream sends outside any request can be delivered there. `serveProxyHttp` calls it.
   */
  standaloneStreamOpened(): void;
}

/** Options of `Proxy.connect`. */
export interface ProxyConnectOptions {
  /** Apply the proxy's `idleTimeoutMs` to this session. Default `false` (a stdio session ends with stdin). */
  idleTimeout?: boolean;
  /**
   * Hold messages the upstream sends outside any request until the downstream's standalone SSE stream is
   * open (`standaloneStreamOpened()`) or a request they can ride on is in flight. Needed over Streamable
   * HTTP, where the SDK drops such messages while no stream is open. Default `false`.
   */
  awaitStandaloneStream?: boolean;
}

/** A lazy proxy to one upstream MCP server. */
export interface Proxy {
  /** The validated upstream config. */
  readonly target: UpstreamConfig;
  /**
   * Serves one downstream session over `transport`. The upstream is contacted on `initialize`.
   * `serveProxyHttp` passes `{ idleTimeout: true, awaitStandaloneStream: true }`.
   */
  connect(transport: Transport, options?: ProxyConnectOptions): Promise<ProxySession>;
  /** The options it was created with. */
  readonly options: Readonly<ProxyOptions>;
  /** Number of open sessions. */
  readonly sessionCount: number;
  /**
   * Lets a host that forwards sessions itself (`serveProxyHttp`'s HTTP -> HTTP path) have them counted in
   * `sessionCount` and closed by `close()`. Returns a function that detaches it again.
   */
  attach(host: { readonly sessionCount: number; close(): Promise<void> }): () => void;
  /** Closes every session. Idempotent. */
  close(): Promise<void>;
}

/**
 * An error whose `message` goes on the wire as-is. The SDK prefixes `McpError` messages with
 * "MCP error <code>: "; re-throwing an upstream `McpError` would send the prefix and the downstream client
 * would add its own, doubling it.
 */
export class WireError extends Error {
  readonly code: number;
  readonly data: unknown;
  constructor(code: number, message: string, data?: unknown) {
    super(message);
    this.code = code;
    this.data = data;
  }
}

/** The low-level server with capability checks off: the upstream, not the proxy, decides what it supports. */
class ForwardingServer extends Server {
  protected override assertCapabilityForMethod(): void {}
  protected override assertNotificationCapability(): void {}
  protected override assertRequestHandlerCapability(): void {}
}

class Session implements ProxySession {
  readonly server: ForwardingServer;
  readonly closed: Promise<void>;
  #resolveClosed!: () => void;
  #upstream: UpstreamConnection<UpstreamClient> | undefined;
  #connecting: Promise<UpstreamConnection<UpstreamClient>> | undefined;
  /**
   * Set when the upstream speaks only 2026-07-28: the session reaches it with the v2 client (which retries
   * `input_required` after asking this downstream through server-to-client requests).
   */
  #modern = false;
  /** The level a 2025 downstream set with `logging/setLevel`, sent in each request's envelope to a 2026-07-28 upstream. */
  #modernLogLevel: string | undefined;
  #initParams: InitializeRequest['params'] | undefined;
  #headers: Record<string, string> = {};
  #closing: Promise<void> | undefined;
  /** Downstream requests currently forwarded upstream, oldest first. */
  readonly #inflight: RequestId[] = [];
  #idleTimer: NodeJS.Timeout | undefined;
  readonly #idleMs: number | null;
  readonly #proxy: ProxyImpl;
  /** Whether the downstream sent `notifications/initialized`. */
  #downstreamInitialized = false;
  /** Whether messages outside any request can go to the downstream now. */
  #standaloneReady: boolean;
  /** Upstream-initiated messages waiting for a way down (see `#route`). */
  readonly #pendingDown: Array<(related: RequestId | undefined) => void> = [];
  #pendingTimer: NodeJS.Timeout | undefined;

  constructor(proxy: ProxyImpl, options: ProxyConnectOptions) {
    this.#proxy = proxy;
    const idle = proxy.options.idleTimeoutMs === undefined ? DEFAULT_IDLE_TIMEOUT_MS : proxy.options.idleTimeoutMs;
    this.#idleMs = options.idleTimeout === true ? idle : null;
    this.#standaloneReady = options.awaitStandaloneStream !== true;
    this.closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.server = new ForwardingServer({ name: 'codemode-proxy', version: '0.1.0' }, { capabilities: {} });
    const server = this.server;
    // Forwarded, not answered locally.
    server.removeRequestHandler('ping');
    server.removeRequestHandler('logging/setLevel');
    server.setRequestHandler(InitializeRequestSchema, async (request, extra) => {
      this.#touch();
      if (this.#initParams !== undefined) throw new McpError(ErrorCode.InvalidRequest, 'This session is already initialized');
      this.#initParams = request.params;
      this.#headers = pickHeaders(extra.requestInfo?.headers, this.#proxy.options.forwardHeaders ?? []);
      try {
        const upstream = await this.#ensureUpstream();
        if (!this.#modern) return upstream.initializeResult as InitializeResult & Record<string, unknown>;
        // A 2026-07-28 upstream: the downstream gets the 2025 version it asked for (or the newest one).
        const asked = request.params.protocolVersion;
        const protocolVersion = LEGACY_PROTOCOL_VERSIONS.includes(asked) ? asked : LEGACY_PROTOCOL_VERSIONS.at(-1)!;
        return { ...upstream.initializeResult, protocolVersion } as InitializeResult & Record<string, unknown>;
      } catch (error) {
        // Failed: the client may try initialize again on this connection once the upstream is fixed.
        this.#initParams = undefined;
        throw error;
      }
    });
    server.fallbackRequestHandler = async (request, extra) => {
      this.#touch();
      if (request.method === 'ping' && (this.#upstream === undefined || this.#modern)) return {};
      if (request.method === 'logging/setLevel' && this.#modern) {
        // 2026-07-28 has no setLevel: the v2 client sends the level with every request from now on.
        const level = (request.params as { level?: unknown } | undefined)?.level;
        if (typeof level === 'string') this.#modernLogLevel = level;
        return {};
      }
      if (this.#initParams === undefined) {
        throw new McpError(ErrorCode.InvalidRequest, `Received ${request.method} before initialize`);
      }
      if (request.method === 'tools/call') {
        const name = (request.params as { name?: unknown } | undefined)?.name;
        const hiddenBy = typeof name === 'string' ? this.#proxy.isHidden(name) : undefined;
        if (hiddenBy !== undefined) {
          throw new WireError(ErrorCode.InvalidParams, `Tool "${String(name)}" is not available through this proxy (hidden by ignoreTools pattern "${hiddenBy}").`);
        }
      }
      const result = await this.#forward(request as JSONRPCRequest, extra.requestId, extra.signal, extra.sendNotification, extra._meta?.progressToken);
      if (request.method === 'tools/list' && Array.isArray(result.tools)) {
        return { ...result, tools: (result.tools as Array<{ name?: unknown }>).filter((t) => typeof t.name !== 'string' || this.#proxy.isHidden(t.name) === undefined) };
      }
      return result;
    };
    server.fallbackNotificationHandler = async (notification) => {
      this.#touch();
      const upstream = this.#upstream;
      // A 2026-07-28 upstream takes no notifications: cancellation aborts the request itself.
      if (upstream === undefined || this.#modern) return;
      await (upstream.client as Client).notification(notification as Notification).catch((error: unknown) => {
        log.debug('could not forward notification upstream', { method: notification.method, error: describeError(error) });
      });
    };
    server.oninitialized = () => {
      this.#downstreamInitialized = true;
      // Now the upstream may learn the session is ready (and start sending requests such as roots/list).
      void this.#upstream?.releaseInitialized().catch((error: unknown) => log.debug('could not send initialized upstream', { error: describeError(error) }));
      this.#flushPending(undefined);
    };
    server.onerror = (error) => log.debug('downstream transport error', { error: describeError(error) });
    server.onclose = () => {
      void this.close();
    };
  }

  get upstream(): UpstreamConnection<UpstreamClient> | undefined {
    return this.#upstream;
  }

  /** Connects (or reconnects) the upstream once, however many requests wait for it. */
  #ensureUpstream(): Promise<UpstreamConnection<UpstreamClient>> {
    if (this.#upstream !== undefined) return Promise.resolve(this.#upstream);
    if (this.#closing !== undefined) return Promise.reject(new WireError(ErrorCode.ConnectionClosed, 'The proxy session is closed'));
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<UpstreamConnection<UpstreamClient>> {
    const { options, target } = this.#proxy;
    let connection: UpstreamConnection<UpstreamClient>;
    try {
      connection = await connectUpstream(target, {
        ...upstreamConnectOptions(options, this.#headers),
        ...(this.#initParams !== undefined ? { initialize: this.#initParams } : {}),
        holdInitialized: true,
        configure: (client) => this.#wireUpstream(client),
      });
    } catch (error) {
      if (mayBeModernOnly(error) && this.#closing === undefined) {
        // The upstream refused a 2025 initialize for its version: it may speak only 2026-07-28.
        connection = await this.#connectModern(error);
      } else {
        if (error instanceof CodemodeError && error.cause instanceof McpError && error.code === 'UPSTREAM_PROTOCOL') {
          // The upstream answered initialize with a JSON-RPC error: pass it on as it was.
          throw new WireError(error.cause.code, wireErrorMessage(error.cause), error.cause.data);
        }
        throw toWireError(error, 'initialize');
      }
    }
    if (this.#closing !== undefined) {
      await connection.close();
      throw new WireError(ErrorCode.ConnectionClosed, 'The proxy session closed while the upstream was connecting');
    }
    this.#upstream = connection;
    // A reconnect happens after the downstream initialized: the upstream may know at once.
    if (this.#downstreamInitialized) await connection.releaseInitialized();
    const client = connection.client;
    client.onclose = () => {
      // An upstream that goes away (a stdio child exiting) is reconnected on the next request.
      if (this.#upstream === connection) {
        this.#upstream = undefined;
        if (this.#closing === undefined) log.warn('upstream closed; it will be reconnected on the next request', { upstream: describeUpstream(target) });
      }
    };
    return connection;
  }

  /**
   * Connects a 2026-07-28 upstream with the v2 client, presenting the downstream's identity and capabilities
   * (sent in every request's envelope). `initialize` is answered only after its `server/discover` succeeded;
   * if the upstream speaks neither era, the downstream hears both refusals.
   */
  async #connectModern(legacyRefusal: unknown): Promise<UpstreamConnection<UpstreamClient>> {
    const { options, target } = this.#proxy;
    const init = this.#initParams;
    let connection: UpstreamConnection<UpstreamClient>;
    try {
      connection = await connectUpstream(target, {
        protocol: 'auto',
        ...(init !== undefined ? { clientInfo: init.clientInfo, capabilities: init.capabilities } : {}),
        ...upstreamConnectOptions(options, this.#headers),
        configure: (client) => this.#wireModern(client as NegotiatedClient),
      });
    } catch (error) {
      const first = describeError(legacyRefusal);
      throw new WireError(
        ErrorCode.InternalError,
        `Upstream ${describeUpstream(target)} speaks neither MCP era this proxy can reach: it refused a 2025 initialize (${first}), and a 2026-07-28 connection failed too (${describeError(error)}).`,
        { reason: 'UPSTREAM_PROTOCOL' },
      );
    }
    const version = (connection.client as NegotiatedClient).protocolVersion;
    log.info('the upstream speaks MCP 2026-07-28 only; translating for this 2025 session', { upstream: describeUpstream(target), version });
    this.#modern = true;
    return connection;
  }

  /**
   * Routing for a 2026-07-28 upstream: its `input_required` rounds reach the downstream as server-to-client
   * requests (the v2 client asks its handlers, then retries the call with the answers); notifications that
   * come with a request (log messages) go down as they are.
   */
  #wireModern(client: NegotiatedClient): void {
    const inner = client.inner;
    // Only what the downstream declared: the v2 client refuses a handler for a capability it lacks.
    const caps = (this.#initParams?.capabilities ?? {}) as Record<string, unknown>;
    const methods = (['elicitation/create', 'sampling/createMessage', 'roots/list'] as const).filter((m) => caps[m.slice(0, m.indexOf('/'))] !== undefined);
    for (const method of methods) {
      inner.setRequestHandler(method, (async (request: { method: string; params?: unknown }, ctx: { mcpReq?: { signal?: AbortSignal } }) => {
        const related = await this.#route();
        try {
          return await this.server.request({ method: request.method, params: request.params } as ServerRequest, AnyResult, {
            ...(ctx.mcpReq?.signal !== undefined ? { signal: ctx.mcpReq.signal } : {}),
            timeout: MAX_TIMER_DELAY_MS,
            ...(related !== undefined ? { relatedRequestId: related } : {}),
          });
        } catch (error) {
          throw toWireError(error, request.method);
        }
      }) as never);
    }
    inner.fallbackNotificationHandler = async (notification) => {
      const related = await this.#route();
      await this.server
        .notification(notification as ServerNotification, related !== undefined ? { relatedRequestId: related } : undefined)
        .catch((error: unknown) => log.debug('could not forward notification downstream', { method: notification.method, error: describeError(error) }));
    };
    for (const method of ['notifications/tools/list_changed', 'notifications/prompts/list_changed', 'notifications/resources/list_changed'] as const) {
      inner.setNotificationHandler(method, (() => {
        void this.server.notification({ method } as ServerNotification).catch(() => undefined);
      }) as never);
    }
  }

  /** Installs the upstream-to-downstream forwarding on a fresh upstream client, before it connects. */
  #wireUpstream(client: Client): void {
    handleServerRequests(client, async (request, signal) => {
      const related = await this.#route();
      try {
        return await this.server.request({ method: request.method, params: request.params } as ServerRequest, AnyResult, {
          signal,
          // Forwarded requests are not capped: the largest timer Node accepts stands in for "none".
          timeout: MAX_TIMER_DELAY_MS,
          ...(related !== undefined ? { relatedRequestId: related } : {}),
        });
      } catch (error) {
        if (error instanceof McpError || error instanceof WireError) throw toWireError(error, request.method);
        throw new WireError(ErrorCode.InternalError, `The proxy could not forward ${request.method} to the downstream client: ${describeError(error)}`);
      }
    });
    client.fallbackNotificationHandler = async (notification) => {
      const related = await this.#route();
      try {
        await this.server.notification(notification as ServerNotification, related !== undefined ? { relatedRequestId: related } : undefined);
      } catch (error) {
        // The request it rode on finished meanwhile: the standalone stream is the other way down.
        if (related === undefined) {
          log.debug('could not forward notification downstream', { method: notification.method, error: describeError(error) });
          return;
        }
        await this.server
          .notification(notification as ServerNotification)
          .catch((e: unknown) => log.debug('could not forward notification downstream', { method: notification.method, error: describeError(e) }));
      }
    };
    client.onerror = (error) => log.debug('upstream transport error', { error: describeError(error) });
  }

  /**
   * The downstream request an upstream-initiated message belongs to. The upstream ties a log message or an
   * elicitation to its request through its HTTP stream, which a client transport does not expose, so the
   * newest forwarded request stands in. Sending it on that request's stream (instead of the standalone
   * GET stream, which a client may not have opened yet) is what makes it arrive.
   */
  #related(): RequestId | undefined {
    return this.#inflight.at(-1);
  }

  /**
   * Resolves with the request to relate an upstream-initiated message to, or `undefined` for the standalone
   * stream, once one of them can carry it. Over Streamable HTTP the SDK silently drops a message sent
   * while the client's standalone stream is not open yet (right after initialize), so such messages wait
   * (bounded) for that stream or for a downstream request to ride on.
   */
  #route(): Promise<RequestId | undefined> {
    const related = this.#related();
    if (related !== undefined) return Promise.resolve(related);
    if ((this.#standaloneReady && this.#downstreamInitialized) || this.#closing !== undefined || this.#pendingDown.length >= MAX_PENDING_DOWN) {
      return Promise.resolve(undefined);
    }
    return new Promise((resolve) => {
      this.#pendingDown.push(resolve);
      this.#pendingTimer ??= setTimeout(() => {
        log.debug('no downstream stream opened in time; sending held messages to the standalone stream');
        this.#flushPending(undefined, true);
      }, STANDALONE_WAIT_MS);
    });
  }

  #flushPending(related: RequestId | undefined, force = false): void {
    if (related === undefined && !force && !(this.#standaloneReady && this.#downstreamInitialized)) return;
    if (this.#pendingTimer !== undefined) {
      clearTimeout(this.#pendingTimer);
      this.#pendingTimer = undefined;
    }
    for (const resolve of this.#pendingDown.splice(0)) resolve(related);
  }

  standaloneStreamOpened(): void {
    if (this.#standaloneReady) return;
    // The GET has arrived; the transport registers its stream a few ticks later.
    setTimeout(() => {
      this.#standaloneReady = true;
      this.#flushPending(undefined);
    }, 50).unref();
  }

  async #forward(
    request: JSONRPCRequest,
    requestId: RequestId,
    signal: AbortSignal,
    sendNotification: (n: ServerNotification) => Promise<void>,
    progressToken: string | number | undefined,
  ): Promise<Record<string, unknown>> {
    const timeout = this.#proxy.options.requestTimeoutMs ?? null;
    const options: RequestOptions = {
      signal,
      timeout: timeout ?? MAX_TIMER_DELAY_MS,
      resetTimeoutOnProgress: true,
      ...(progressToken !== undefined
        ? {
            // The SDK replaces the token with its own upstream id; put the downstream's back on the way down.
            onprogress: (progress: Progress) => {
              void sendNotification({ method: 'notifications/progress', params: { ...progress, progressToken } }).catch(() => undefined);
            },
          }
        : {}),
    };
    const level = this.#modern ? this.#modernLogLevel : undefined;
    const params = level === undefined ? request.params : { ...request.params, _meta: { ...request.params?._meta, [LOG_LEVEL_META_KEY]: level } };
    const message = { method: request.method, params } as ServerRequest;
    this.#inflight.push(requestId);
    this.#flushPending(requestId);
    try {
      let upstream = await this.#ensureUpstream();
      // A client that never sent notifications/initialized still gets served; the upstream is told first.
      await upstream.releaseInitialized();
      try {
        return await upstream.client.request(message, AnyResult, options);
      } catch (error) {
        if (!isSessionExpiredError(error) || signal.aborted) throw error;
        // The upstream forgot our session (expired, or it restarted): initialize again and retry once.
        // Safe to retry: the upstream refused the request before running it.
        log.info('upstream session expired; re-initializing and retrying once', { method: request.method, error: describeError(error) });
        if (this.#upstream === upstream) this.#upstream = undefined;
        void upstream.close();
        upstream = await this.#ensureUpstream();
        return await upstream.client.request(message, AnyResult, options);
      }
    } catch (error) {
      throw toWireError(error, request.method, describeUpstream(this.#proxy.target));
    } finally {
      const i = this.#inflight.lastIndexOf(requestId);
      if (i >= 0) this.#inflight.splice(i, 1);
      this.#touch();
    }
  }

  #touch(): void {
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    const idle = this.#idleMs;
    if (idle === null || this.#closing !== undefined) return;
    this.#idleTimer = setTimeout(() => {
      if (this.#inflight.length > 0) {
        this.#touch();
        return;
      }
      log.info('closing idle proxy session', { idleMs: idle });
      void this.close();
    }, idle);
    this.#idleTimer.unref();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
      this.#flushPending(undefined, true);
      try {
        const pending = this.#connecting;
        const upstream = this.#upstream ?? (await pending?.catch(() => undefined));
        this.#upstream = undefined;
        await upstream?.close();
      } finally {
        try {
          await this.server.close();
        } finally {
          this.#proxy.forget(this);
          this.#resolveClosed();
        }
      }
    })();
    return this.#closing;
  }

  /** Starts the idle clock when the downstream transport connects (a client that never initializes). */
  start(): void {
    this.#touch();
  }
}

/** The `connectUpstream` options every upstream session of the proxy shares, with `headers` added. */
export function upstreamConnectOptions(
  options: ProxyOptions,
  headers: Record<string, string>,
): Pick<ConnectUpstreamOptions, 'connectTimeoutMs' | 'authProvider' | 'fetch' | 'inheritEnv' | 'onStderr' | 'maxMessageBytes' | 'headers'> {
  return {
    ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
    ...(options.authProvider !== undefined ? { authProvider: options.authProvider } : {}),
    ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
    ...(options.inheritEnv !== undefined ? { inheritEnv: options.inheritEnv } : {}),
    ...(options.onStderr !== undefined ? { onStderr: options.onStderr } : {}),
    ...(options.maxMessageBytes !== undefined ? { maxMessageBytes: options.maxMessageBytes } : {}),
    headers: { ...(options.headers ?? {}), ...headers },
  };
}

/**
 * Routes an upstream v1 client's server-to-client requests to `handle`, with a signal that aborts when the
 * upstream cancels one. The SDK's own cancellation handler ignores `requestId: 0` (a falsy check), and the
 * first request an upstream sends has id 0; this one looks the id up properly. `ping` is answered by the SDK.
 */
export function handleServerRequests(client: Client, handle: (request: { method: string; params?: unknown }, signal: AbortSignal) => Promise<Record<string, unknown>>): void {
  client.removeRequestHandler('ping');
  const cancellers = new Map<RequestId, AbortController>();
  client.setNotificationHandler(CancelledNotificationSchema, (notification) => {
    const id = notification.params.requestId;
    if (id !== undefined) cancellers.get(id)?.abort(notification.params.reason ?? 'cancelled by the upstream');
  });
  client.fallbackRequestHandler = async (request, extra) => {
    const cancel = new AbortController();
    cancellers.set(extra.requestId, cancel);
    try {
      return await handle(request, AbortSignal.any([extra.signal, cancel.signal]));
    } finally {
      cancellers.delete(extra.requestId);
    }
  };
}

export function pickHeaders(headers: Record<string, string | string[] | undefined> | undefined, allow: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers === undefined || allow.length === 0) return out;
  const wanted = new Set(allow.map((h) => h.toLowerCase()));
  for (const [name, value] of Object.entries(headers)) {
    if (!wanted.has(name.toLowerCase()) || value === undefined) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** Maps anything thrown while forwarding to the error the downstream receives. */
export function toWireError(error: unknown, method: string, label = 'the upstream'): WireError {
  if (error instanceof WireError) return error;
  if (error instanceof McpError) {
    if (error.code === ErrorCode.ConnectionClosed && wireErrorMessage(error) === 'Connection closed') {
      return new WireError(ErrorCode.InternalError, `Upstream ${label} closed the connection while handling ${method}.`, { reason: 'UPSTREAM_UNAVAILABLE' });
    }
    if (error.code === ErrorCode.RequestTimeout && wireErrorMessage(error) === 'Request timed out') {
      return new WireError(ErrorCode.RequestTimeout, `The upstream did not answer ${method} in time (requestTimeoutMs).`, error.data);
    }
    return new WireError(error.code, wireErrorMessage(error), error.data);
  }
  const local = error instanceof CodemodeError ? error : classifyRequestError(error, label, method);
  return new WireError(ErrorCode.InternalError, local.message, { reason: local.code });
}

class ProxyImpl implements Proxy {
  readonly target: UpstreamConfig;
  readonly options: ProxyOptions;
  readonly #sessions = new Set<Session>();
  readonly #hidden: (name: string) => string | undefined;
  #closed = false;

  constructor(target: UpstreamConfig, options: ProxyOptions) {
    this.target = target;
    this.options = options;
    this.#hidden = compileToolGlobs(options.ignoreTools ?? []);
  }

  readonly #hosts = new Set<{ readonly sessionCount: number; close(): Promise<void> }>();

  get sessionCount(): number {
    let n = this.#sessions.size;
    for (const h of this.#hosts) n += h.sessionCount;
    return n;
  }

  attach(host: { readonly sessionCount: number; close(): Promise<void> }): () => void {
    this.#hosts.add(host);
    return () => void this.#hosts.delete(host);
  }

  isHidden(name: string): string | undefined {
    return this.#hidden(name);
  }

  async connect(transport: Transport, options: ProxyConnectOptions = {}): Promise<ProxySession> {
    if (this.#closed) throw new CodemodeError('CLOSED', 'This proxy is closed');
    const session = new Session(this, options);
    this.#sessions.add(session);
    try {
      await session.server.connect(transport);
    } catch (error) {
      await session.close();
      throw error;
    }
    session.start();
    return session;
  }

  forget(session: Session): void {
    this.#sessions.delete(session);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...[...this.#sessions].map((s) => s.close()), ...[...this.#hosts].map((h) => h.close())]);
  }
}

/**
 * Creates a lazy proxy to `target` (validated now; contacted only when a downstream client initializes).
 *
 * @example
 * ```ts
 * import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
 * const proxy = createProxy({ url: 'http://127.0.0.1:3000/mcp' }, { ignoreTools: ['delete_*'] });
 * await proxy.connect(new StdioServerTransport());
 * ```
 */
export function createProxy(target: UpstreamConfig | unknown, options: ProxyOptions = {}): Proxy {
  const config = parseUpstreamConfig(target, 'proxy target');
  for (const [key, value] of [
    ['requestTimeoutMs', options.requestTimeoutMs],
    ['idleTimeoutMs', options.idleTimeoutMs],
  ] as const) {
    if (value !== undefined && value !== null && (!Number.isFinite(value) || value <= 0 || value > MAX_TIMER_DELAY_MS)) {
      throw new CodemodeError('INVALID_ARGUMENT', `${key} must be a positive number of milliseconds up to ${MAX_TIMER_DELAY_MS}, or null for none; got ${String(value)}`);
    }
  }
  return new ProxyImpl(config, options);
}
