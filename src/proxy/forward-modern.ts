/**
 * 2025 Streamable HTTP sessions in front of a 2026-07-28-only Streamable HTTP upstream, at the message level:
 * the forward path's (`forward.ts`) answer when the upstream refuses a 2025 `initialize` for its version.
 *
 * The SDK path did this with the v2 client and a v1 server transport per session, which cost about 1.5 ms of
 * CPU per call on both sides. Here each downstream message becomes one upstream POST, translated as it passes:
 * - `initialize` is answered from the upstream's `server/discover`, asked with the client's own identity, and
 *   only once that succeeded (the proxy's fail-loud rule);
 * - each request carries the envelope built from that `initialize` (version, client info and capabilities,
 *   plus the level from `logging/setLevel`) in `_meta`, and the `Mcp-Method`/`Mcp-Name`/`Mcp-Param-*` headers
 *   (the `Mcp-Param-*` ones from the `x-mcp-header` parameters of the tools this session listed: a client that
 *   calls a tool it listed in an earlier session sends none until it lists again);
 * - answers lose `resultType` and the cache hints; notifications the upstream sends with a request (progress,
 *   log messages) go down on that request's event stream;
 * - an `input_required` answer becomes server-to-client requests on the request's event stream, and the
 *   request goes up again with the client's answers and the upstream's `requestState` (bounded in rounds,
 *   inputs per round, and time per answer);
 * - `ping` and `logging/setLevel` are answered here; `notifications/cancelled` closes that request's upstream
 *   exchange (2026-07-28's cancellation), as does the client closing its POST;
 * - the standalone GET stream is fed by one `subscriptions/listen` request while it is open.
 *
 * An upstream that answers in 2025's terms again (it restarted as a 2025 server) ends the session: the request
 * gets an error saying so, and the client's next request gets 404, so it initializes again on the 2025 path.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode } from '@modelcontextprotocol/sdk/types.js';
import { describeError } from '../errors.js';
import { createLogger } from '../log.js';
import {
  CLIENT_CAPABILITIES_META_KEY,
  CLIENT_INFO_META_KEY,
  LEGACY_PROTOCOL_VERSIONS,
  LOG_LEVEL_META_KEY,
  MODERN_PROTOCOL_VERSION,
  PROTOCOL_VERSION_META_KEY,
  SERVER_INFO_META_KEY,
  isSessionRefusal,
  mcpNameHeader,
  McpParamMemory,
} from '../wire/eras.js';
import type { JsonRpcId, JsonRpcMessage } from '../wire/jsonrpc.js';
import { RpcCode, errorResponse, isRequest } from '../wire/jsonrpc.js';
import { SseParser } from '../wire/sse.js';
import type { HttpUpstreamConfig } from './config.js';
import { sendJson } from './forward-io.js';
import { ModernHttpUpstream } from './modern-http.js';
import { hiddenToolRefusal } from './modern.js';
import { DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES } from './stdio-transport.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, classifyRequestError } from './upstream.js';

const log = createLogger('proxy');

/** input_required rounds one request may take before it fails. */
const MAX_INPUT_ROUNDS = 8;
/** Input requests one round may carry; more fails the request (they would all go to the client at once). */
const MAX_INPUT_REQUESTS = 16;
/** Server-to-client requests one session may have waiting for the client's answer. */
const MAX_WAITING_INPUTS = 64;
/** How long the client may take to answer one input request. */
const INPUT_TIMEOUT_MS = 5 * 60_000;
/** A listen stream that ends this many times in a row, each within `LISTEN_QUICK_MS`, is given up. */
const MAX_LISTEN_FAILURES = 5;
const LISTEN_QUICK_MS = 5_000;
const LISTEN_RETRY_MS = 1_000;
/** Largest error body read from the upstream to report it. */
const MAX_ERROR_BYTES = 64 * 1024;

type Json = Record<string, unknown>;

export interface TranslatedSessionsOptions {
  target: HttpUpstreamConfig;
  /** The config's and the proxy's upstream headers, merged. */
  headers: Record<string, string>;
  isHidden: (name: string) => string | undefined;
  hasHiddenTools: boolean;
  connectTimeoutMs: number | undefined;
  idleTimeoutMs: number | null;
  maxMessageBytes: number | undefined;
}

/** Where an exchange's other messages go, and whether that place can take more now (backpressure). */
interface MessageSink {
  (m: JsonRpcMessage): void;
  /** True while the client's side has more buffered than it should: the upstream is not read meanwhile. */
  blocked?: () => boolean;
  /** Calls `resume` once the client's side drained (or went away). */
  wait?: (resume: () => void) => void;
}

/** Write pressure of one downstream response, for a `MessageSink`. */
function pressureOf(res: ServerResponse): Pick<MessageSink, 'blocked' | 'wait'> {
  return {
    blocked: () => res.writableNeedDrain && !res.destroyed,
    wait: (resume) => {
      const go = (): void => {
        res.removeListener('drain', go);
        res.removeListener('close', go);
        resume();
      };
      res.once('drain', go);
      res.once('close', go);
    },
  };
}

/** Thrown inside an exchange when the upstream answered in 2025's terms: the session must end. */
class EraChanged extends Error {}

/** Why a session's requests were cut off by the proxy (not by the client): they get a named error. */
class SessionEnded extends Error {}


/** One 2025 downstream session, translated onto 2026-07-28 requests. */
class TranslatedSession {
  readonly id = randomUUID();
  /** Forwarded headers, fixed at initialize (they are the client's identity upstream). */
  readonly forwarded: Record<string, string>;
  readonly envelope: Json;
  /** Which list_changed notifications the upstream offers (for the listen request). */
  readonly listens: Json;
  logLevel: string | undefined;
  last = Date.now();
  closed = false;
  /** Downstream requests in flight, by id: aborting one closes its upstream exchange. */
  readonly inflight = new Map<JsonRpcId, AbortController>();
  /** The proxy's requests to the client (input requests), waiting for its answer. */
  readonly waiters = new Map<string, (answer: JsonRpcMessage) => void>();
  readonly params = new McpParamMemory();
  stream: ServerResponse | undefined;
  listen: AbortController | undefined;
  timer: NodeJS.Timeout | undefined;

  constructor(forwarded: Record<string, string>, envelope: Json, listens: Json) {
    this.forwarded = forwarded;
    this.envelope = envelope;
    this.listens = listens;
  }

  /** The envelope of the next request: the client's identity, and the level it set. */
  meta(own: unknown): Json {
    const base = typeof own === 'object' && own !== null ? (own as Json) : {};
    return { ...base, ...this.envelope, ...(this.logLevel !== undefined ? { [LOG_LEVEL_META_KEY]: this.logLevel } : {}) };
  }

}

/**
 * A downstream POST's answer: JSON when it is one message, an event stream once anything else must go first
 * (a notification, an input request). The stream is only used when the client accepts one.
 */
class DownstreamAnswer {
  readonly #res: ServerResponse;
  readonly streams: boolean;
  #streaming = false;

  constructor(res: ServerResponse, accept: string | undefined) {
    this.#res = res;
    this.streams = String(accept ?? '').includes('text/event-stream');
  }

  get gone(): boolean {
    return this.#res.writableEnded || this.#res.destroyed;
  }

  get res(): ServerResponse {
    return this.#res;
  }

  /** Sends a message ahead of the answer; dropped when the client takes no event stream. */
  event(message: JsonRpcMessage): boolean {
    if (!this.streams || this.gone) return false;
    if (!this.#streaming) {
      this.#streaming = true;
      this.#res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    }
    this.#res.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
    return true;
  }

  final(message: JsonRpcMessage): void {
    if (this.gone) return;
    if (this.#streaming) this.#res.end(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
    else sendJson(this.#res, 200, message);
  }
}

/**
 * The translated sessions of one forwarder. `owns`/`handle` mirror `HttpForwarder`'s; `initialize` takes over a
 * downstream `initialize` the upstream refused for its version.
 */
export class TranslatedSessions {
  readonly #options: TranslatedSessionsOptions;
  readonly #label: string;
  readonly #sessions = new Map<string, TranslatedSession>();
  #upstream: ModernHttpUpstream | undefined;
  #inputIds = 0;
  #retries = 0;
  #closed = false;

  constructor(options: TranslatedSessionsOptions) {
    this.#options = options;
    this.#label = options.target.url;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  owns(sessionId: string): boolean {
    return this.#sessions.has(sessionId);
  }

  get #up(): ModernHttpUpstream {
    this.#upstream ??= new ModernHttpUpstream({ ...this.#options.target, headers: this.#options.headers }, { connectTimeoutMs: this.#options.connectTimeoutMs });
    return this.#upstream;
  }

  /**
   * A downstream `initialize` whose 2025 form the upstream refused (`legacyRefusal`): asks `server/discover`
   * with the client's identity, and answers `initialize` from it, or fails naming both refusals.
   */
  async initialize(res: ServerResponse, message: JsonRpcMessage & { id: JsonRpcId }, forwarded: Record<string, string>, legacyRefusal: unknown): Promise<void> {
    if (this.#closed) {
      sendJson(res, 503, errorResponse(message.id, ErrorCode.ConnectionClosed, 'The proxy is closing'));
      return;
    }
    const params = (message.params ?? {}) as { protocolVersion?: unknown; capabilities?: unknown; clientInfo?: unknown };
    const envelope: Json = {
      [PROTOCOL_VERSION_META_KEY]: MODERN_PROTOCOL_VERSION,
      [CLIENT_INFO_META_KEY]: params.clientInfo ?? { name: 'unknown', version: '0' },
      [CLIENT_CAPABILITIES_META_KEY]: params.capabilities ?? {},
    };
    const probe: JsonRpcMessage & { id: JsonRpcId; method: string } = { jsonrpc: '2.0', id: message.id, method: 'server/discover', params: { _meta: envelope } };
    let answer: JsonRpcMessage | undefined;
    let failure: unknown;
    try {
      answer = await this.#once(probe, forwarded, AbortSignal.timeout(this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS));
    } catch (error) {
      failure = error;
    }
    const result = answer?.result as { supportedVersions?: unknown; capabilities?: unknown; instructions?: unknown; serverInfo?: unknown; _meta?: Json } | undefined;
    if (!Array.isArray(result?.supportedVersions) || !result.supportedVersions.includes(MODERN_PROTOCOL_VERSION)) {
      const why = failure !== undefined ? describeError(failure) : answer?.error !== undefined ? answer.error.message : `its server/discover answer offers no ${MODERN_PROTOCOL_VERSION}`;
      sendJson(
        res,
        200,
        errorResponse(
          message.id,
          ErrorCode.InternalError,
          `Upstream ${this.#label} speaks neither MCP era this proxy can reach: it refused a 2025 initialize (${describeError(legacyRefusal)}), and a 2026-07-28 connection failed too (${why}).`,
          { reason: 'UPSTREAM_PROTOCOL' },
        ),
      );
      return;
    }
    if (this.#closed) {
      sendJson(res, 503, errorResponse(message.id, ErrorCode.ConnectionClosed, 'The proxy is closing'));
      return;
    }
    const capabilities = typeof result.capabilities === 'object' && result.capabilities !== null ? (result.capabilities as Record<string, { listChanged?: unknown }>) : {};
    const listens: Json = {
      ...(capabilities.tools?.listChanged === true ? { toolsListChanged: true } : {}),
      ...(capabilities.prompts?.listChanged === true ? { promptsListChanged: true } : {}),
      ...(capabilities.resources?.listChanged === true ? { resourcesListChanged: true } : {}),
    };
    const session = new TranslatedSession(forwarded, envelope, listens);
    this.#sessions.set(session.id, session);
    this.#startIdleClock(session);
    log.info('the upstream speaks MCP 2026-07-28 only; translating this 2025 session at the message level', { upstream: this.#label });
    const requested = typeof params.protocolVersion === 'string' ? params.protocolVersion : undefined;
    sendJson(
      res,
      200,
      {
        jsonrpc: '2.0',
        id: message.id,
        result: {
          protocolVersion: requested !== undefined && LEGACY_PROTOCOL_VERSIONS.includes(requested) ? requested : LEGACY_PROTOCOL_VERSIONS.at(-1)!,
          capabilities,
          serverInfo: result._meta?.[SERVER_INFO_META_KEY] ?? result.serverInfo ?? { name: 'unknown', version: '' },
          ...(typeof result.instructions === 'string' ? { instructions: result.instructions } : {}),
        },
      },
      { 'mcp-session-id': session.id },
    );
  }

  /** Serves a request of a session of ours (`owns` said yes). */
  async handle(req: IncomingMessage, res: ServerResponse, sessionId: string, body: unknown): Promise<void> {
    const session = this.#sessions.get(sessionId);
    if (session === undefined) {
      sendJson(res, 404, errorResponse(null, -32001, `Session not found: ${sessionId}`));
      return;
    }
    session.last = Date.now();
    if (req.method === 'GET') this.#openStream(session, req, res);
    else if (req.method === 'DELETE') {
      this.#end(session, 'The session was ended (HTTP DELETE) while this request was in flight.');
      res.writeHead(200).end();
    } else if (req.method === 'POST') await this.#post(session, req, res, body);
    else sendJson(res, 405, errorResponse(null, -32000, 'Method not allowed.'), { allow: 'GET, POST, DELETE' });
  }

  async #post(session: TranslatedSession, req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    if (Array.isArray(body)) {
      sendJson(res, 400, errorResponse(null, RpcCode.InvalidRequest, `This upstream speaks MCP ${MODERN_PROTOCOL_VERSION} only, which has no batches: send one JSON-RPC message per POST.`));
      return;
    }
    if (typeof body !== 'object' || body === null) {
      sendJson(res, 400, errorResponse(null, RpcCode.InvalidRequest, 'Invalid request: the body is not a JSON-RPC message.'));
      return;
    }
    const message = body as JsonRpcMessage;
    if (!isRequest(message)) {
      this.#notificationOrAnswer(session, message);
      res.writeHead(202).end();
      return;
    }
    if (message.method === 'initialize') {
      sendJson(res, 400, errorResponse(message.id, RpcCode.InvalidRequest, 'Invalid request: this session is initialized already.'));
      return;
    }
    if (message.method === 'ping') {
      sendJson(res, 200, { jsonrpc: '2.0', id: message.id, result: {} });
      return;
    }
    if (message.method === 'logging/setLevel') {
      // 2026-07-28 has no setLevel: the level rides in each later request's envelope.
      const level = message.params?.level;
      if (typeof level !== 'string') {
        sendJson(res, 200, errorResponse(message.id, RpcCode.InvalidParams, 'Invalid params: logging/setLevel takes a level (a string such as "info").'));
        return;
      }
      session.logLevel = level;
      sendJson(res, 200, { jsonrpc: '2.0', id: message.id, result: {} });
      return;
    }
    if (message.params !== undefined && (typeof message.params !== 'object' || message.params === null || Array.isArray(message.params))) {
      sendJson(res, 200, errorResponse(message.id, RpcCode.InvalidParams, `Invalid params: the params of ${message.method} must be an object.`));
      return;
    }
    const hidden = this.#options.hasHiddenTools ? hiddenToolRefusal(message, this.#options.isHidden) : undefined;
    if (hidden !== undefined) {
      sendJson(res, 200, hidden);
      return;
    }
    const abort = new AbortController();
    if (session.inflight.has(message.id)) {
      sendJson(res, 200, errorResponse(message.id, RpcCode.InvalidRequest, `Invalid request: a request with id ${JSON.stringify(message.id)} is in flight already in this session.`));
      return;
    }
    session.inflight.set(message.id, abort);
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort();
    };
    res.once('close', onClose);
    const down = new DownstreamAnswer(res, req.headers.accept);
    try {
      down.final(await this.#request(session, message, down, abort.signal));
    } catch (error) {
      if (error instanceof EraChanged) {
        log.warn('the upstream answered in MCP 2025 terms: it no longer speaks 2026-07-28; ending this session so the client initializes again', { upstream: this.#label });
        const why = `Upstream ${this.#label} no longer speaks MCP ${MODERN_PROTOCOL_VERSION} (it restarted as a 2025 server). This session is closed: initialize again.`;
        down.final(errorResponse(message.id, ErrorCode.ConnectionClosed, why));
        this.#end(session, why);
        return;
      }
      if (abort.signal.aborted) {
        const reason: unknown = abort.signal.reason;
        if (reason instanceof SessionEnded) down.final(errorResponse(message.id, ErrorCode.ConnectionClosed, reason.message));
        // The client cancelled or went away: nothing to answer. An open event stream is ended (what was
        // written, such as withdrawn input requests, still arrives); anything else is cut off.
        else if (!down.gone) {
          if (res.headersSent) res.end();
          else res.destroy();
        }
        return;
      }
      const local = classifyRequestError(error, this.#label, message.method);
      log.debug('forwarding failed', { upstream: this.#label, error: local.message });
      down.final(errorResponse(message.id, ErrorCode.InternalError, local.message, { reason: local.code }));
    } finally {
      res.removeListener('close', onClose);
      session.inflight.delete(message.id);
      session.last = Date.now();
    }
  }

  /** A client notification (cancellation), or its answer to one of the proxy's input requests. */
  #notificationOrAnswer(session: TranslatedSession, message: JsonRpcMessage): void {
    if (message.method === undefined) {
      const waiter = typeof message.id === 'string' ? session.waiters.get(message.id) : undefined;
      if (waiter !== undefined) waiter(message);
      else log.debug('dropped an answer to no request of the proxy', { id: message.id });
      return;
    }
    if (message.method === 'notifications/cancelled') {
      // Over 2026-07-28 HTTP, closing the request's exchange is the cancellation.
      const id = message.params?.requestId;
      if (typeof id === 'string' || typeof id === 'number') session.inflight.get(id)?.abort();
    }
    // notifications/initialized and the rest have no 2026-07-28 counterpart: the session already exists.
  }

  /**
   * One downstream request, answered: sent up with the envelope, and sent again with the client's answers
   * for as many input_required rounds as the bounds allow. The answer is in the client's 2025 terms.
   */
  async #request(session: TranslatedSession, message: JsonRpcMessage & { id: JsonRpcId; method: string }, down: DownstreamAnswer, signal: AbortSignal): Promise<JsonRpcMessage> {
    const params = (message.params ?? {}) as Json;
    const first: JsonRpcMessage & { id: JsonRpcId; method: string } = { ...message, params: { ...params, _meta: session.meta(params._meta) } };
    let outgoing = first;
    for (let round = 0; ; round++) {
      const sink: MessageSink = Object.assign((m: JsonRpcMessage) => {
        if (m.method === 'notifications/subscriptions/acknowledged') return;
        if (m.method !== undefined && m.id === undefined) down.event(m);
      }, pressureOf(down.res));
      const answer = await this.#exchange(session, outgoing, signal, sink);
      const fail = (why: string): JsonRpcMessage =>
        errorResponse(message.id, ErrorCode.InternalError, `The upstream asked for more input (input_required) during ${message.method}, and ${why}`);
      if (answer.error !== undefined) return { jsonrpc: '2.0', id: message.id, error: answer.error };
      const { resultType, ttlMs: _ttl, cacheScope: _scope, ...result } = (answer.result ?? {}) as Json;
      if (resultType !== 'input_required') {
        if (message.method === 'tools/list' && Array.isArray(result.tools)) {
          const tools = result.tools as Array<{ name?: unknown; inputSchema?: unknown }>;
          session.params.remember(tools);
          if (this.#options.hasHiddenTools) result.tools = tools.filter((t) => typeof t.name !== 'string' || this.#options.isHidden(t.name) === undefined);
        }
        return { jsonrpc: '2.0', id: message.id, result };
      }
      if (round + 1 >= MAX_INPUT_ROUNDS) return fail(`it did so ${MAX_INPUT_ROUNDS} times, the most this proxy relays for one request`);
      if (!down.streams) return fail('the client does not accept an event stream (Accept: text/event-stream) to be asked on');
      const requests = typeof result.inputRequests === 'object' && result.inputRequests !== null ? Object.entries(result.inputRequests as Record<string, { method?: unknown; params?: unknown }>) : [];
      if (requests.length > MAX_INPUT_REQUESTS) return fail(`it asked for ${requests.length} inputs at once, more than the ${MAX_INPUT_REQUESTS} this proxy relays`);
      if (session.waiters.size + requests.length > MAX_WAITING_INPUTS) return fail(`this session already waits for ${session.waiters.size} answers of the client`);
      const answers = await Promise.all(requests.map(([key, request]) => this.#ask(session, down, request, signal).then((a) => [key, a] as const)));
      if (signal.aborted) throw new Error('cancelled');
      const refused = answers.find(([, a]) => a.error !== undefined);
      if (refused !== undefined) return fail(`the client refused ${String(requests.find(([k]) => k === refused[0])?.[1].method)}: ${refused[1].error!.message}`);
      outgoing = {
        ...first,
        // 2026-07-28: a retry is a new request, under a new JSON-RPC id, with this round's answers and state only.
        id: `codemode-proxy-retry-${++this.#retries}`,
        params: {
          ...(first.params as Json),
          inputResponses: Object.fromEntries(answers.map(([key, a]) => [key, a.result ?? {}])),
          ...(typeof result.requestState === 'string' ? { requestState: result.requestState } : {}),
        },
      };
    }
  }

  /** One input request to the client, on the request's event stream; its answer, or an error answer. */
  #ask(session: TranslatedSession, down: DownstreamAnswer, request: { method?: unknown; params?: unknown }, signal: AbortSignal): Promise<JsonRpcMessage> {
    const id = `codemode-proxy-input-${++this.#inputIds}`;
    return new Promise((resolve) => {
      const settle = (answer: JsonRpcMessage): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        session.waiters.delete(id);
        resolve(answer);
      };
      const onAbort = (): void => {
        // The client may be showing a form for it: withdraw the input request, as a 2025 server cancels its own.
        down.event({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: 'the request it belonged to ended' } });
        settle(errorResponse(id, RpcCode.InternalError, 'the request was cancelled'));
      };
      const timer = setTimeout(() => settle(errorResponse(id, RpcCode.RequestTimeout, `no answer within ${INPUT_TIMEOUT_MS / 1000} s`)), INPUT_TIMEOUT_MS);
      timer.unref();
      signal.addEventListener('abort', onAbort, { once: true });
      session.waiters.set(id, settle);
      const sent = down.event({ jsonrpc: '2.0', id, method: String(request.method), ...(typeof request.params === 'object' && request.params !== null ? { params: request.params as Json } : {}) });
      if (!sent) settle(errorResponse(id, RpcCode.InternalError, 'the client is no longer listening'));
    });
  }

  /** The headers of one 2026-07-28 request of `session`. */
  #headers(session: TranslatedSession | undefined, forwarded: Record<string, string>, message: JsonRpcMessage & { method: string }): Record<string, string | number | string[] | undefined> {
    const headers = this.#up.headers(forwarded) as Record<string, string>;
    headers['mcp-protocol-version'] = MODERN_PROTOCOL_VERSION;
    headers['mcp-method'] = message.method;
    const name = mcpNameHeader(message.method, message.params);
    if (name !== undefined) headers['mcp-name'] = name;
    if (session !== undefined && message.method === 'tools/call' && typeof message.params?.name === 'string') {
      Object.assign(headers, session.params.headers(message.params.name, message.params.arguments));
    }
    return headers;
  }

  /** `#exchange` for a request of no session yet (the discover of `initialize`). */
  #once(message: JsonRpcMessage & { id: JsonRpcId; method: string }, forwarded: Record<string, string>, signal: AbortSignal): Promise<JsonRpcMessage> {
    return this.#send(this.#headers(undefined, forwarded, message), message, signal, () => undefined);
  }

  #exchange(session: TranslatedSession, message: JsonRpcMessage & { id: JsonRpcId; method: string }, signal: AbortSignal, onMessage: MessageSink): Promise<JsonRpcMessage> {
    return this.#send(this.#headers(session, session.forwarded, message), message, signal, onMessage);
  }

  /**
   * POSTs `message` and reads its answer (JSON, or an event stream whose other messages go to `onMessage`).
   * Every message is held to the cap. A JSON-RPC error on an HTTP error is the answer; an HTTP error in 2025's
   * terms throws `EraChanged`; any other failure throws what `classifyRequestError` understands.
   */
  #send(headers: Record<string, string | number | string[] | undefined>, message: JsonRpcMessage & { id: JsonRpcId }, signal: AbortSignal, onMessage: MessageSink): Promise<JsonRpcMessage> {
    const maxBytes = this.#options.maxMessageBytes ?? DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES;
    const body = Buffer.from(JSON.stringify(message));
    return new Promise<JsonRpcMessage>((resolve, reject) => {
      let status = 0;
      let sse: SseParser | undefined;
      // One decoder per exchange: a multi-byte character split across two chunks must not become U+FFFD.
      const decoder = new StringDecoder('utf8');
      let answer: JsonRpcMessage | undefined;
      let failed = false;
      const chunks: Buffer[] = [];
      let size = 0;
      let abortExchange: () => void = () => undefined;
      const fail = (error: unknown): void => {
        if (failed) return;
        failed = true;
        // A long-lived signal (a listen loop's) must not keep this exchange's buffers alive.
        signal.removeEventListener('abort', onAbort);
        sse = undefined;
        chunks.length = 0;
        abortExchange();
        reject(error);
      };
      const tooLarge = (): Error => new Error(`the upstream sent a message over the ${maxBytes}-byte limit (maxMessageBytes)`);
      const take = (m: JsonRpcMessage): void => {
        if (m.id === message.id && m.method === undefined) answer = m;
        else onMessage(m);
      };
      const sink = {
        head: (s: number, type: string): void => {
          status = s;
          if (s >= 200 && s < 300 && type.includes('text/event-stream')) {
            sse = new SseParser({
              onEvent: (event) => {
                size = 0;
                if (event.data === '') return;
                try {
                  take(JSON.parse(event.data) as JsonRpcMessage);
                } catch {
                  log.debug('dropped an event that is not JSON from the upstream');
                }
              },
            });
          }
        },
        data: (chunk: Buffer): void => {
          if (failed) return;
          size += chunk.length;
          const limit = status >= 200 && status < 300 ? maxBytes : MAX_ERROR_BYTES;
          if (size > limit) {
            fail(status >= 200 && status < 300 ? tooLarge() : new StreamableHTTPError(status, `Error POSTing to endpoint: HTTP ${status} with a body over ${limit} bytes`));
            return;
          }
          if (sse !== undefined) sse.feed(decoder.write(chunk));
          else chunks.push(chunk);
        },
        end: (): void => {
          if (failed) return;
          if (sse === undefined) {
            const text = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8');
            let parsed: JsonRpcMessage | undefined;
            try {
              parsed = JSON.parse(text) as JsonRpcMessage;
            } catch {
              parsed = undefined;
            }
            const rpc = typeof parsed === 'object' && parsed !== null && (parsed.result !== undefined || parsed.error !== undefined) ? parsed : undefined;
            if (status < 200 || status >= 300) {
              if (isSessionRefusal(status, rpc)) {
                fail(new EraChanged(`HTTP ${status}`));
                return;
              }
              if (rpc === undefined) {
                fail(new StreamableHTTPError(status, `Error POSTing to endpoint: ${text.slice(0, 1000)}`));
                return;
              }
            }
            if (rpc === undefined) {
              fail(new Error(`the upstream answered HTTP ${status} without a JSON-RPC answer: ${text.slice(0, 200)}`));
              return;
            }
            answer = rpc;
          }
          if (answer === undefined) {
            fail(new Error(`the upstream's event stream ended without answering ${String((message as JsonRpcMessage).method)}`));
            return;
          }
          failed = true;
          signal.removeEventListener('abort', onAbort);
          resolve({ ...answer, id: message.id });
        },
        error: (error: unknown): void => fail(error),
      };
      const onAbort = (): void => fail(new Error('cancelled'));
      if (signal.aborted) {
        onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      const up = this.#up;
      if (up.pool !== undefined) {
        abortExchange = up.pool.post(headers, body, {
          head: (s, h) => sink.head(s, h['content-type'] ?? ''),
          data: (chunk) => {
            sink.data(chunk);
            // A client that reads slowly holds the upstream's stream back, instead of its messages piling up here.
            return onMessage.blocked?.() !== true;
          },
          waitDrain: (resume) => (onMessage.wait !== undefined ? onMessage.wait(resume) : resume()),
          end: () => sink.end(),
          error: (error) => sink.error(error),
        });
        return;
      }
      const local = new AbortController();
      abortExchange = () => local.abort();
      up.post(headers as Record<string, string>, body, local.signal).then(
        ({ res }) => {
          sink.head(res.statusCode ?? 0, String(res.headers['content-type'] ?? ''));
          res.on('data', (chunk: Buffer) => {
            sink.data(chunk);
            if (onMessage.blocked?.() === true && onMessage.wait !== undefined) {
              res.pause();
              onMessage.wait(() => res.resume());
            }
          });
          res.once('end', () => sink.end());
          res.once('error', (error) => sink.error(error));
          res.once('aborted', () => sink.error(Object.assign(new Error('the connection closed mid-answer'), { code: 'ECONNRESET' })));
        },
        (error: unknown) => sink.error(error),
      );
    });
  }

  /** The standalone GET stream: list changes from one `subscriptions/listen` upstream while it is open. */
  #openStream(session: TranslatedSession, _req: IncomingMessage, res: ServerResponse): void {
    if (session.stream !== undefined && !session.stream.writableEnded && !session.stream.destroyed) {
      sendJson(res, 409, errorResponse(null, -32000, 'Conflict: only one standalone event stream (GET) is allowed per session.'));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    session.stream = res;
    res.once('close', () => {
      if (session.stream !== res) return;
      session.stream = undefined;
      session.listen?.abort();
      session.listen = undefined;
    });
    if (Object.keys(session.listens).length > 0) void this.#listen(session, res);
  }

  async #listen(session: TranslatedSession, stream: ServerResponse): Promise<void> {
    const abort = new AbortController();
    session.listen = abort;
    let failures = 0;
    let n = 0;
    while (!abort.signal.aborted && !session.closed && session.stream === stream) {
      const started = Date.now();
      const request: JsonRpcMessage & { id: JsonRpcId; method: string } = { jsonrpc: '2.0', id: `codemode-proxy-listen-${++n}`, method: 'subscriptions/listen', params: { notifications: session.listens, _meta: session.meta(undefined) } };
      try {
        const sink: MessageSink = Object.assign((m: JsonRpcMessage) => {
          if (typeof m.method !== 'string' || !m.method.endsWith('/list_changed') || stream.writableEnded) return;
          stream.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: m.method })}\n\n`);
        }, pressureOf(stream));
        await this.#exchange(session, request, abort.signal, sink);
      } catch (error) {
        if (abort.signal.aborted || session.closed) return;
        if (error instanceof EraChanged) {
          this.#end(session, `Upstream ${this.#label} no longer speaks MCP ${MODERN_PROTOCOL_VERSION} (it restarted as a 2025 server). This session is closed: initialize again.`);
          return;
        }
        log.debug('the upstream listen stream failed', { error: describeError(error) });
      }
      failures = Date.now() - started < LISTEN_QUICK_MS ? failures + 1 : 0;
      if (failures >= MAX_LISTEN_FAILURES) {
        // Ending the GET stream tells the client: it may open it again, which starts a new listen loop.
        log.warn(`the upstream's subscriptions/listen stream ended ${MAX_LISTEN_FAILURES} times in a row; ending the client's event stream`, { upstream: this.#label });
        stream.end();
        return;
      }
      await new Promise((r) => setTimeout(r, LISTEN_RETRY_MS).unref());
    }
  }

  #startIdleClock(session: TranslatedSession): void {
    const idleMs = this.#options.idleTimeoutMs;
    if (idleMs === null) return;
    const check = (): void => {
      const quiet = Date.now() - session.last;
      // An open GET stream alone does not keep a session: as on the 2025 forward path, only traffic does.
      if (session.inflight.size > 0 || quiet < idleMs) {
        session.timer = setTimeout(check, Math.max(50, idleMs - quiet));
        session.timer.unref();
        return;
      }
      log.info('closing idle proxy session', { idleMs });
      this.#end(session, 'The session was closed after being idle.');
    };
    session.timer = setTimeout(check, idleMs);
    session.timer.unref();
  }

  /** Ends a session: its requests' exchanges, its listen stream, its GET stream, and the waiting inputs. */
  #end(session: TranslatedSession, why: string): void {
    if (session.closed) return;
    session.closed = true;
    this.#sessions.delete(session.id);
    if (session.timer !== undefined) clearTimeout(session.timer);
    // Requests still in flight are answered with `why` (see #post), not cut off.
    const ended = new SessionEnded(why);
    for (const abort of session.inflight.values()) abort.abort(ended);
    session.listen?.abort();
    session.stream?.end();
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const session of [...this.#sessions.values()]) this.#end(session, 'The proxy is closing.');
    this.#upstream?.close();
    await Promise.resolve();
  }
}

