/**
 * A 2026-07-28 downstream in front of a 2025 upstream: `LegacyTranslator`.
 *
 * A 2026-07-28 client sends stateless requests, each with its identity in the `_meta` envelope; a 2025
 * server wants one initialized session. The translator keeps one upstream session per downstream identity
 * (tenant, client info and capabilities: a session is never shared by two callers the upstream could tell
 * apart), initialized with that identity, and maps each request onto it:
 * - `server/discover` is answered from the session's `initialize` result;
 * - results gain `resultType`, list results a "do not cache" hint (`ttlMs: 0`, `cacheScope: 'private'`);
 * - `subscriptions/listen` is served here, from the session's list_changed notifications;
 * - a server-to-client request the upstream makes during a call (elicitation, sampling, roots) ends the
 *   downstream exchange with an `input_required` result. The upstream call is held open; the client's retry,
 *   with `inputResponses` and the `requestState` it was given, answers the held request and waits on.
 *
 * Held calls are bounded in count (per tenant and in all) and in time (`heldTtlMs`; an expired one is
 * cancelled upstream and counted). `requestState` is sealed with an HMAC under a key made at start-up: it
 * names the held call, its round, the tenant and the method, and expires; a forged, altered, replayed,
 * expired or foreign one is refused with a message that says which.
 *
 * @module
 */

import { createHash, randomUUID } from 'node:crypto';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { InitializeRequest, Progress } from '@modelcontextprotocol/sdk/types.js';
import { describeError } from '../errors.js';
import { createLogger } from '../log.js';
import {
  CLIENT_CAPABILITIES_META_KEY,
  CLIENT_INFO_META_KEY,
  LEGACY_PROTOCOL_VERSIONS,
  LOG_LEVEL_META_KEY,
  MODERN_PROTOCOL_VERSION,
  ModernCode,
  PROTOCOL_VERSION_META_KEY,
  SERVER_INFO_META_KEY,
  SUBSCRIPTION_ID_META_KEY,
  asModernResult,
  withoutEnvelope,
} from '../wire/eras.js';
import type { JsonRpcId, JsonRpcMessage } from '../wire/jsonrpc.js';
import { RpcCode, errorResponse } from '../wire/jsonrpc.js';
import { RequestStateSeal, subjectOf } from '../wire/request-state.js';
import { toWireError } from './proxy.js';
import { isModernOnlyRefusal, isSessionExpiredError } from './upstream.js';

const log = createLogger('proxy');

/** How long a call held for `input_required` waits for the client's retry: 5 minutes (a human may be answering). */
export const DEFAULT_HELD_TTL_MS = 5 * 60_000;
/** At most this many calls are held for `input_required` at once, in all. */
export const DEFAULT_MAX_HELD = 256;
/** At most this many of them belong to one tenant. */
export const DEFAULT_MAX_HELD_PER_TENANT = 32;
/**
 * At most this many upstream sessions (distinct downstream identities) are open at once. Each may be a child
 * process (a stdio upstream), so the bound is small; idle ones make room for new identities.
 */
export const DEFAULT_MAX_SESSIONS = 16;
/** At most this many of them belong to one tenant, so one caller cannot take them all. */
export const DEFAULT_MAX_SESSIONS_PER_TENANT = 8;
/** Input requests one held call may collect before the client answers; more are refused upstream. */
const MAX_PENDING_INPUTS = 16;

/**
 * The refusal of a `tools/call` to a tool `ignoreTools` hides, or undefined. The fronts (HTTP and stdio) check
 * before they choose a path, so it holds for forwarding and translation alike.
 */
export function hiddenToolRefusal(request: JsonRpcMessage & { id: JsonRpcId; method: string }, isHidden: (name: string) => string | undefined): JsonRpcMessage | undefined {
  if (request.method !== 'tools/call') return undefined;
  const name = request.params?.name;
  const hiddenBy = typeof name === 'string' ? isHidden(name) : undefined;
  if (hiddenBy === undefined) return undefined;
  return errorResponse(request.id, RpcCode.InvalidParams, `Tool "${String(name)}" is not available through this proxy (hidden by ignoreTools pattern "${hiddenBy}").`);
}

/** What `answer` returns when the upstream refused as a 2026-07-28-only server does: it changed era. */
export const ERA_CHANGED: unique symbol = Symbol('era changed');

/** One 2026-07-28 request from the downstream, and how to reach the downstream while it runs. */
export interface ModernExchange {
  readonly request: JsonRpcMessage & { id: JsonRpcId; method: string };
  /**
   * Who is asking, as far as the front door knows (the bearer principal and the forwarded header values).
   * Upstream sessions and held calls are never shared between tenants.
   */
  readonly tenant: string;
  /** Downstream headers to send upstream (the proxy's `forwardHeaders`). */
  readonly headers: Record<string, string>;
  /** Sends a notification on this request's stream (progress, log messages, listen events). */
  notify(message: JsonRpcMessage): void;
  /** Aborted when the downstream gives the request up (closed its stream, cancelled it). */
  readonly signal: AbortSignal;
}

/** One initialized 2025 upstream session, as the translator uses it (legacy-link.ts makes them). */
export interface LegacyLink {
  /** The upstream's `initialize` answer, as received. */
  readonly initializeResult: Record<string, unknown>;
  /** One request on the session; rejects with a v1 `McpError` for a JSON-RPC error answer. */
  request(method: string, params: Record<string, unknown>, options: { signal?: AbortSignal; onprogress?: (progress: Progress) => void }): Promise<Record<string, unknown>>;
  /** Ends the session (HTTP DELETE, or the child process). Never throws. */
  close(): Promise<void>;
  /** Set by the translator: called when the upstream ends the session on its own. */
  onclose?: (() => void) | undefined;
}

/** Where a link delivers what the upstream sends on its own: server-to-client requests and notifications. */
export interface LegacyLinkHandlers {
  request(method: string, params: unknown, signal: AbortSignal): Promise<Record<string, unknown>>;
  notification(method: string, params: Record<string, unknown> | undefined): void;
}

export interface LegacyTranslatorOptions {
  /** Connects one upstream session with these `initialize` params and headers, delivering to `handlers`. */
  connect(init: InitializeRequest['params'], headers: Record<string, string>, handlers: LegacyLinkHandlers): Promise<LegacyLink>;
  /** The `ignoreTools` matcher: the glob hiding `name`, or undefined. */
  isHidden(name: string): string | undefined;
  /** Upstream label for error messages. */
  label: string;
  heldTtlMs?: number;
  maxHeld?: number;
  maxHeldPerTenant?: number;
  maxSessions?: number;
  maxSessionsPerTenant?: number;
}

/** What the translator has done, for tests and operators. */
export interface TranslatorStats {
  /** Calls held for `input_required` right now. */
  readonly held: number;
  /** Held calls released because the client never retried in time (cancelled upstream). */
  readonly expired: number;
  /** Upstream input requests refused because the held-call caps were reached. */
  readonly refused: number;
  /** Upstream sessions open. */
  readonly sessions: number;
  /** Upstream calls in flight (held ones included). */
  readonly inflight: number;
}

type Outcome = { result: Record<string, unknown> } | { error: { code: number; message: string; data?: unknown } };

interface PendingInput {
  readonly key: string;
  readonly method: string;
  readonly params: unknown;
  sent: boolean;
  resolve(result: Record<string, unknown>): void;
  reject(error: Error): void;
}

/** A downstream call on its upstream session: one upstream request, possibly over several exchanges. */
class Call {
  readonly id = randomUUID();
  readonly tenant: string;
  readonly subject: string;
  readonly abort = new AbortController();
  round = 0;
  outcome: Outcome | undefined;
  /** The upstream refused the call as a 2026-07-28-only server: it changed era since the session began. */
  eraChanged = false;
  /** The exchange waiting for this call's next step, and how to answer it. */
  waiter: { exchange: ModernExchange; answer: (message: JsonRpcMessage) => void } | undefined;
  readonly pending: PendingInput[] = [];
  #inputs = 0;
  expiry: NodeJS.Timeout | undefined;

  constructor(tenant: string, subject: string) {
    this.tenant = tenant;
    this.subject = subject;
  }

  nextKey(): string {
    this.#inputs += 1;
    return `input-${this.#inputs}`;
  }
}

/** One upstream session, for one downstream identity. */
class LegacySession {
  readonly key: string;
  readonly tenant: string;
  connection: Promise<LegacyLink>;
  /** Calls in flight, oldest first: an upstream request or notification is taken to belong to the newest. */
  readonly calls: Call[] = [];
  readonly listeners = new Set<{ id: JsonRpcId; wants: Set<string>; exchange: ModernExchange }>();
  logLevel: string | undefined;
  lastUsed = Date.now();
  closed = false;
  /** Whether the link was closed (after the session was dropped and its last call ended). */
  linkClosed = false;

  constructor(key: string, tenant: string, connection: Promise<LegacyLink>) {
    this.key = key;
    this.tenant = tenant;
    this.connection = connection;
  }

  get busy(): boolean {
    return this.calls.length > 0 || this.listeners.size > 0;
  }
}

/** Which list_changed notification a `subscriptions/listen` flag asks for. */
const LISTEN_FLAGS: Record<string, string> = {
  toolsListChanged: 'notifications/tools/list_changed',
  promptsListChanged: 'notifications/prompts/list_changed',
  resourcesListChanged: 'notifications/resources/list_changed',
};

export class LegacyTranslator {
  readonly #options: LegacyTranslatorOptions;
  readonly #seal = new RequestStateSeal('this proxy');
  readonly #sessions = new Map<string, LegacySession>();
  /** Calls held for `input_required`, by id. */
  readonly #held = new Map<string, Call>();
  readonly #heldPerTenant = new Map<string, number>();
  #expired = 0;
  #refused = 0;
  #closed = false;

  constructor(options: LegacyTranslatorOptions) {
    this.#options = options;
  }

  get stats(): TranslatorStats {
    let inflight = 0;
    for (const s of this.#sessions.values()) inflight += s.calls.length;
    return { held: this.#held.size, expired: this.#expired, refused: this.#refused, sessions: this.#sessions.size, inflight };
  }

  /**
   * The answer to one 2026-07-28 request: a result, an error, or `undefined` for a listen request, which is
   * never answered (it ends when the downstream gives it up). Never rejects.
   */
  async answer(exchange: ModernExchange, detectEraChange?: false): Promise<JsonRpcMessage | undefined>;
  async answer(exchange: ModernExchange, detectEraChange: boolean): Promise<JsonRpcMessage | typeof ERA_CHANGED | undefined>;
  async answer(exchange: ModernExchange, detectEraChange = false): Promise<JsonRpcMessage | typeof ERA_CHANGED | undefined> {
    const { request } = exchange;
    try {
      const refusal = this.#checkEnvelope(request);
      if (refusal !== undefined) return refusal;
      const state = request.params?.requestState;
      if (state !== undefined) return await this.#resume(exchange, state);
      const session = this.#session(exchange);
      if (request.method === 'server/discover') return await this.#discover(request.id, session);
      if (request.method === 'subscriptions/listen') return await this.#listen(exchange, session);
      const { answer, eraChanged } = await this.#call(exchange, session);
      return detectEraChange && eraChanged ? ERA_CHANGED : answer;
    } catch (error) {
      if (detectEraChange && isModernOnlyRefusal(error)) return ERA_CHANGED;
      const wire = toWireError(error, request.method, this.#options.label);
      return errorResponse(request.id, wire.code, wire.message, wire.data);
    }
  }

  /** Closes every upstream session and releases every held call. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const call of [...this.#held.values()]) this.#release(call, 'the proxy is closing');
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.all(sessions.map(async (s) => (await s.connection.catch(() => undefined))?.close()));
  }

  #checkEnvelope(request: ModernExchange['request']): JsonRpcMessage | undefined {
    const meta = request.params?._meta as Record<string, unknown> | undefined;
    const version = meta?.[PROTOCOL_VERSION_META_KEY];
    if (version !== MODERN_PROTOCOL_VERSION) {
      return errorResponse(
        request.id,
        ModernCode.UnsupportedProtocolVersion,
        `Unsupported protocol version ${JSON.stringify(version ?? null)} in _meta["${PROTOCOL_VERSION_META_KEY}"]: this proxy speaks ${MODERN_PROTOCOL_VERSION} (or a 2025 session after initialize).`,
        { supported: [MODERN_PROTOCOL_VERSION], requested: version ?? null },
      );
    }
    const state = request.params?.requestState;
    if (state !== undefined && typeof state !== 'string') return errorResponse(request.id, RpcCode.InvalidParams, 'requestState must be a string, as the proxy gave it.');
    return undefined;
  }

  /** The upstream session for this exchange's identity, connecting it if needed. */
  #session(exchange: ModernExchange): LegacySession {
    if (this.#closed) throw new McpError(ErrorCode.ConnectionClosed, 'The proxy is closing');
    const meta = (exchange.request.params?._meta ?? {}) as Record<string, unknown>;
    const clientInfo = meta[CLIENT_INFO_META_KEY] ?? { name: 'unknown', version: '0' };
    const capabilities = meta[CLIENT_CAPABILITIES_META_KEY] ?? {};
    const key = createHash('sha256')
      .update(JSON.stringify([exchange.tenant, exchange.headers, clientInfo, capabilities]))
      .digest('base64url');
    const existing = this.#sessions.get(key);
    if (existing !== undefined && !existing.closed) {
      existing.lastUsed = Date.now();
      return existing;
    }
    const perTenant = this.#options.maxSessionsPerTenant ?? DEFAULT_MAX_SESSIONS_PER_TENANT;
    const mine = [...this.#sessions.values()].filter((s) => s.tenant === exchange.tenant);
    if (mine.length >= perTenant) this.#evictIdle(mine, perTenant, 'for this client');
    const max = this.#options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (this.#sessions.size >= max) this.#evictIdle([...this.#sessions.values()], max, 'in all');
    const init = { protocolVersion: LEGACY_PROTOCOL_VERSIONS.at(-1)!, capabilities, clientInfo } as InitializeRequest['params'];
    const session: LegacySession = new LegacySession(key, exchange.tenant, Promise.resolve(undefined as never));
    session.connection = this.#options.connect(init, exchange.headers, this.#handlers(session)).then(
      async (connection) => {
        if (session.closed) {
          await connection.close();
          throw new McpError(ErrorCode.ConnectionClosed, 'The upstream session was closed while it connected');
        }
        connection.onclose = () => this.#dropSession(session, 'the upstream closed the session');
        return connection;
      },
      (error: unknown) => {
        this.#dropSession(session, 'the upstream could not be connected');
        throw error;
      },
    );
    this.#sessions.set(key, session);
    return session;
  }

  /** Makes room for one more session among `pool`: the least recently used idle one goes; when none is idle, refuse. */
  #evictIdle(pool: LegacySession[], max: number, scope: string): void {
    const victim = pool.filter((s) => !s.busy).sort((a, b) => a.lastUsed - b.lastUsed)[0];
    if (victim === undefined) {
      throw new McpError(
        ErrorCode.InternalError,
        `The proxy has ${max} upstream sessions in use ${scope} (one per distinct client identity: client info and capabilities) and none is idle; try again when a call has finished.`,
        { reason: 'UPSTREAM_SESSIONS_FULL' },
      );
    }
    this.#dropSession(victim, 'evicted to make room for another client identity');
  }

  /**
   * Forgets a session; its link is closed once no call runs on it (an expired or failed one too, so its pool
   * and streams do not outlive it, while calls still running on it may end as they would have).
   */
  #dropSession(session: LegacySession, why: string): void {
    if (session.closed) return;
    session.closed = true;
    if (this.#sessions.get(session.key) === session) this.#sessions.delete(session.key);
    log.debug('upstream session for a 2026-07-28 client ended', { why });
    this.#closeIfDone(session);
  }

  #closeIfDone(session: LegacySession): void {
    if (!session.closed || session.linkClosed || session.calls.length > 0) return;
    session.linkClosed = true;
    void session.connection.then((link) => link.close()).catch(() => undefined);
  }

  /** The upstream-to-downstream routing of one session. */
  #handlers(session: LegacySession): LegacyLinkHandlers {
    return {
      request: (method, params, signal) => this.#ask(session, method, params, signal),
      notification: (method, params) => {
        if (method.endsWith('/list_changed')) {
          for (const listener of session.listeners) {
            if (!listener.wants.has(method)) continue;
            listener.exchange.notify({ jsonrpc: '2.0', method, params: { ...params, _meta: { [SUBSCRIPTION_ID_META_KEY]: listener.id } } });
          }
          return;
        }
        // A log message or a resource update: the newest call being waited on hears it.
        const call = [...session.calls].reverse().find((c) => c.waiter !== undefined);
        if (call?.waiter !== undefined) call.waiter.exchange.notify({ jsonrpc: '2.0', method, ...(params !== undefined ? { params } : {}) });
        else log.debug('dropped an upstream notification no 2026-07-28 request can carry', { method });
      },
    };
  }

  async #discover(id: JsonRpcId, session: LegacySession): Promise<JsonRpcMessage> {
    const connection = await session.connection;
    const init = connection.initializeResult as { capabilities?: unknown; serverInfo?: unknown; instructions?: unknown };
    return {
      jsonrpc: '2.0',
      id,
      result: {
        resultType: 'complete',
        supportedVersions: [MODERN_PROTOCOL_VERSION],
        capabilities: init.capabilities ?? {},
        ...(typeof init.instructions === 'string' ? { instructions: init.instructions } : {}),
        _meta: { [SERVER_INFO_META_KEY]: init.serverInfo ?? { name: 'unknown', version: '' } },
      },
    };
  }

  /** `subscriptions/listen`, served from the session's list_changed notifications until the downstream leaves. */
  async #listen(exchange: ModernExchange, session: LegacySession): Promise<undefined> {
    await session.connection;
    const requested = (exchange.request.params?.notifications ?? {}) as Record<string, unknown>;
    const wants = new Set(Object.entries(LISTEN_FLAGS).filter(([flag]) => requested[flag] === true).map(([, method]) => method));
    const listener = { id: exchange.request.id, wants, exchange };
    session.listeners.add(listener);
    exchange.notify({
      jsonrpc: '2.0',
      method: 'notifications/subscriptions/acknowledged',
      params: { notifications: requested, _meta: { [SUBSCRIPTION_ID_META_KEY]: exchange.request.id } },
    });
    await new Promise<void>((resolve) => {
      if (exchange.signal.aborted) resolve();
      else exchange.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    session.listeners.delete(listener);
    return undefined;
  }

  /** A request forwarded on the session as a new call. */
  async #call(exchange: ModernExchange, session: LegacySession): Promise<{ answer: JsonRpcMessage; eraChanged: boolean }> {
    const { request } = exchange;
    let connection = await session.connection;
    await this.#applyLogLevel(exchange, session, connection);
    const call = new Call(exchange.tenant, subjectOf(request.method, request.params));
    const params = withoutEnvelope(request.params) ?? {};
    const { requestState: _s, inputResponses: _r, ...upstreamParams } = params;
    const onprogress = (progress: Progress): void => {
      const waiter = call.waiter;
      const token = (waiter?.exchange.request.params?._meta as { progressToken?: unknown } | undefined)?.progressToken;
      if (waiter === undefined || (typeof token !== 'string' && typeof token !== 'number')) return;
      waiter.exchange.notify({ jsonrpc: '2.0', method: 'notifications/progress', params: { ...progress, progressToken: token } });
    };
    // Progress is asked of the upstream only when the client asked for it.
    const wantsProgress = (request.params?._meta as { progressToken?: unknown } | undefined)?.progressToken !== undefined;
    const send = (link: LegacyLink) => link.request(request.method, upstreamParams, { signal: call.abort.signal, ...(wantsProgress ? { onprogress } : {}) });
    session.calls.push(call);
    const waiting = this.#wait(call, exchange);
    void (async () => {
      try {
        let result: Record<string, unknown>;
        try {
          result = await send(connection);
        } catch (error) {
          if (!isSessionExpiredError(error) || call.abort.signal.aborted) throw error;
          // The upstream forgot the session (expired, restarted): a fresh one, and one retry (it did not run).
          log.info('upstream session expired; re-initializing and retrying once', { method: request.method });
          this.#dropSession(session, 'the upstream session expired');
          const again = this.#session(exchange);
          // The call moves with it: the new session's requests for input must find it.
          const i = session.calls.indexOf(call);
          if (i >= 0) session.calls.splice(i, 1);
          this.#closeIfDone(session);
          session = again;
          session.calls.push(call);
          connection = await again.connection;
          result = await send(connection);
        }
        this.#settle(call, { result: this.#shape(request.method, result) });
      } catch (error) {
        if (isModernOnlyRefusal(error)) call.eraChanged = true;
        const wire = toWireError(error, request.method, this.#options.label);
        this.#settle(call, { error: { code: wire.code, message: wire.message, ...(wire.data !== undefined ? { data: wire.data } : {}) } });
      } finally {
        const i = session.calls.indexOf(call);
        if (i >= 0) session.calls.splice(i, 1);
        session.lastUsed = Date.now();
        this.#closeIfDone(session);
      }
    })();
    const answer = await waiting;
    return { answer, eraChanged: call.eraChanged };
  }

  #shape(method: string, result: Record<string, unknown>): Record<string, unknown> {
    if (method === 'tools/list' && Array.isArray(result.tools)) {
      const tools = (result.tools as Array<{ name?: unknown }>).filter((t) => typeof t.name !== 'string' || this.#options.isHidden(t.name) === undefined);
      return asModernResult(method, { ...result, tools });
    }
    return asModernResult(method, result);
  }

  /** The 2026-07-28 per-request log level, as the 2025 session's `logging/setLevel` when it changes. */
  async #applyLogLevel(exchange: ModernExchange, session: LegacySession, connection: LegacyLink): Promise<void> {
    const level = (exchange.request.params?._meta as Record<string, unknown> | undefined)?.[LOG_LEVEL_META_KEY];
    if (typeof level !== 'string' || level === session.logLevel) return;
    if ((connection.initializeResult.capabilities as { logging?: unknown } | undefined)?.logging === undefined) return;
    session.logLevel = level;
    await connection.request('logging/setLevel', { level }, {}).catch((error: unknown) => {
      log.debug('the upstream refused logging/setLevel', { level, error: describeError(error) });
    });
  }

  /** Waits, for `exchange`, on the call's next step: its outcome, or input the upstream asks for. */
  #wait(call: Call, exchange: ModernExchange): Promise<JsonRpcMessage> {
    return new Promise<JsonRpcMessage>((resolve) => {
      const id = exchange.request.id;
      const onAbort = (): void => {
        // The downstream gave the call up while it ran: cancel it upstream.
        call.waiter = undefined;
        this.#cancel(call, 'the downstream client gave the request up');
        resolve(errorResponse(id, RpcCode.RequestTimeout, 'The request was cancelled by the client.'));
      };
      if (call.outcome !== undefined) {
        resolve(this.#final(id, call.outcome));
        return;
      }
      if (exchange.signal.aborted) {
        onAbort();
        return;
      }
      exchange.signal.addEventListener('abort', onAbort, { once: true });
      call.waiter = {
        exchange,
        answer: (message) => {
          exchange.signal.removeEventListener('abort', onAbort);
          call.waiter = undefined;
          resolve(message);
        },
      };
      if (call.pending.some((p) => !p.sent)) this.#requestInput(call);
    });
  }

  #final(id: JsonRpcId, outcome: Outcome): JsonRpcMessage {
    return 'result' in outcome ? { jsonrpc: '2.0', id, result: outcome.result } : { jsonrpc: '2.0', id, error: outcome.error };
  }

  #settle(call: Call, outcome: Outcome): void {
    if (call.outcome !== undefined) return;
    call.outcome = outcome;
    for (const p of call.pending.splice(0)) p.reject(new McpError(ErrorCode.InternalError, 'The call it belonged to has finished'));
    if (call.waiter !== undefined) {
      this.#unhold(call);
      call.waiter.answer(this.#final(call.waiter.exchange.request.id, outcome));
    }
    // Held with no waiter: the outcome waits for the retry (or for the expiry).
  }

  /** An upstream server-to-client request: becomes `input_required` on the newest call of the session. */
  #ask(session: LegacySession, method: string, params: unknown, signal: AbortSignal): Promise<Record<string, unknown>> {
    const call = session.calls.at(-1);
    if (call === undefined || call.outcome !== undefined) {
      throw new McpError(ErrorCode.InvalidRequest, `${method} cannot reach this client: it speaks MCP ${MODERN_PROTOCOL_VERSION}, where a server asks for input only while answering one of its requests (input_required).`);
    }
    if (call.pending.length >= MAX_PENDING_INPUTS) throw new McpError(ErrorCode.InternalError, `Too many input requests (${MAX_PENDING_INPUTS}) for one call are waiting for the client.`);
    if (!this.#held.has(call.id) && !this.#canHold(call.tenant)) {
      this.#refused += 1;
      throw new McpError(ErrorCode.InternalError, 'The proxy holds too many calls waiting for client input; try again later.', { reason: 'HELD_CALLS_FULL' });
    }
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const input: PendingInput = {
        key: call.nextKey(),
        method,
        params,
        sent: false,
        resolve,
        reject,
      };
      call.pending.push(input);
      signal.addEventListener(
        'abort',
        () => {
          const i = call.pending.indexOf(input);
          if (i >= 0) call.pending.splice(i, 1);
          reject(new McpError(ErrorCode.RequestTimeout, 'The upstream cancelled its request'));
        },
        { once: true },
      );
      if (call.waiter !== undefined) this.#requestInput(call);
    });
  }

  #canHold(tenant: string): boolean {
    if (this.#held.size >= (this.#options.maxHeld ?? DEFAULT_MAX_HELD)) return false;
    return (this.#heldPerTenant.get(tenant) ?? 0) < (this.#options.maxHeldPerTenant ?? DEFAULT_MAX_HELD_PER_TENANT);
  }

  /** Ends the waiting exchange with `input_required` for every input not yet asked, and holds the call. */
  #requestInput(call: Call): void {
    const waiter = call.waiter;
    if (waiter === undefined) return;
    if (!call.pending.some((p) => !p.sent)) return;
    // Every pending input is asked in this round, those the client left unanswered last time included.
    for (const p of call.pending) p.sent = true;
    call.round += 1;
    const ttl = this.#options.heldTtlMs ?? DEFAULT_HELD_TTL_MS;
    const requestState = this.#seal.seal({ call: call.id, round: call.round, tenant: call.tenant, method: call.subject, expires: Date.now() + ttl });
    this.#hold(call, ttl);
    const inputRequests = Object.fromEntries(call.pending.map((p) => [p.key, { method: p.method, ...(p.params !== undefined ? { params: p.params } : {}) }]));
    waiter.answer({ jsonrpc: '2.0', id: waiter.exchange.request.id, result: { resultType: 'input_required', inputRequests, requestState } });
  }

  #hold(call: Call, ttl: number): void {
    if (!this.#held.has(call.id)) {
      this.#held.set(call.id, call);
      this.#heldPerTenant.set(call.tenant, (this.#heldPerTenant.get(call.tenant) ?? 0) + 1);
    }
    if (call.expiry !== undefined) clearTimeout(call.expiry);
    call.expiry = setTimeout(() => {
      this.#expired += 1;
      log.info('released a call held for input_required: the client did not retry in time', { ttlMs: ttl, call: call.subject });
      this.#release(call, `the client did not answer input_required within ${Math.round(ttl / 1000)} s`);
    }, ttl);
    call.expiry.unref();
  }

  #unhold(call: Call): void {
    if (call.expiry !== undefined) clearTimeout(call.expiry);
    call.expiry = undefined;
    if (!this.#held.delete(call.id)) return;
    const n = (this.#heldPerTenant.get(call.tenant) ?? 1) - 1;
    if (n <= 0) this.#heldPerTenant.delete(call.tenant);
    else this.#heldPerTenant.set(call.tenant, n);
  }

  /** Gives a held call up: its input requests fail upstream, and the upstream call is cancelled. */
  #release(call: Call, why: string): void {
    this.#unhold(call);
    this.#cancel(call, why);
  }

  #cancel(call: Call, why: string): void {
    for (const p of call.pending.splice(0)) p.reject(new McpError(ErrorCode.InternalError, `No answer from the client: ${why}.`));
    if (call.outcome === undefined) {
      call.outcome = { error: { code: RpcCode.RequestTimeout, message: `The call was released: ${why}.` } };
      call.abort.abort(why);
    }
  }

  /** A retry that carries `requestState`: answers the held call's input requests and waits on it. */
  async #resume(exchange: ModernExchange, state: unknown): Promise<JsonRpcMessage> {
    const { request } = exchange;
    const opened = this.#seal.open(state as string, exchange.tenant, subjectOf(request.method, request.params));
    if ('refused' in opened) return errorResponse(request.id, RpcCode.InvalidParams, `${opened.refused}. Send the request again without requestState to start over.`);
    const call = this.#held.get(opened.call);
    if (call === undefined || call.round !== opened.round || call.waiter !== undefined) {
      return errorResponse(request.id, RpcCode.InvalidParams, 'requestState was already used (a replay), or its call was released. Send the request again without requestState to start over.');
    }
    // Single use: the next input_required round gets a new requestState.
    call.round += 1;
    this.#unhold(call);
    const responses = request.params?.inputResponses;
    const answers = typeof responses === 'object' && responses !== null && !Array.isArray(responses) ? (responses as Record<string, unknown>) : {};
    for (const p of [...call.pending]) {
      if (!p.sent) continue;
      const answer = answers[p.key];
      if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) {
        p.sent = false; // not answered: asked again
        continue;
      }
      call.pending.splice(call.pending.indexOf(p), 1);
      p.resolve(answer as Record<string, unknown>);
    }
    return this.#wait(call, exchange);
  }
}
