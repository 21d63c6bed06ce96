/**
 * codemode-remote's core: newline-delimited JSON-RPC on a local stdio pair, forwarded message by
 * message to one remote MCP session over Streamable HTTP (or legacy SSE).
 *
 * Why message-level rather than an SDK Server+Client pair: forwarding raw messages passes every
 * feature through (sampling, elicitation, roots, logging, progress, cancellation, list-changed)
 * without re-declaring handlers, keeps ids and `_meta` intact, and avoids loading the SDK's schema
 * modules, which dominate start-up time.
 *
 * @module
 */

import type { Readable, Writable } from 'node:stream';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { LineReader } from '../wire/line-reader.js';
import {
  CLIENT_CAPABILITIES_META_KEY,
  CLIENT_INFO_META_KEY,
  LEGACY_PROTOCOL_VERSIONS,
  LIST_METHODS,
  LOG_LEVEL_META_KEY,
  MODERN_ERROR_CODES,
  MODERN_PROTOCOL_VERSION,
  ModernCode,
  PROTOCOL_VERSION_META_KEY,
  SERVER_INFO_META_KEY,
  SUBSCRIPTION_ID_META_KEY,
  McpParamMemory,
  modernVersionOf,
  withoutEnvelope,
} from '../wire/eras.js';
import { compileToolGlobs } from '../wire/globs.js';
import type { JsonRpcId, JsonRpcMessage } from '../wire/jsonrpc.js';
import { RpcCode, errorResponse, isRequest, isResponse } from '../wire/jsonrpc.js';
import type { BridgeConfig } from './config.js';
import { InputRelay } from './input-relay.js';
import { UpstreamError } from './upstream-error.js';
import type { AuthHooks } from './upstream.js';
import { GET_STREAM_WAIT_MS, Upstream } from './upstream.js';

const log = createLogger('remote');

/** A 2025 host's requests to a 2026-07-28 remote remembered for an input_required retry; the oldest goes past this. */
const MAX_TRANSLATED_REQUESTS = 10_000;
/** input_required rounds one request may take before it fails. */
const MAX_INPUT_ROUNDS = 8;
/** Input requests of one round that are relayed to the host; a round asking more fails the request. */
const MAX_INPUT_REQUESTS = 16;
/** How long the host may take to answer one input request: 10 minutes (a person may be answering). */
const INPUT_TIMEOUT_MS = 10 * 60_000;


/** Largest line accepted from the host, in UTF-8 bytes; anything longer is a broken host, not a message. */
const MAX_LINE_BYTES = 64 * 1024 * 1024;

export interface BridgeIo {
  input: Readable;
  output: Writable;
}

export interface Bridge {
  /** Resolves with the exit code once the bridge has shut down. */
  readonly done: Promise<number>;
  /** Closes the upstream session (HTTP DELETE) and ends the bridge. Idempotent. */
  close(exitCode?: number): Promise<number>;
}

/** Ids of the bridge's own requests to the remote; their answers never reach the host. */
const INTERNAL_ID_PREFIX = 'codemode-remote-';

/**
 * Starts a bridge on `io` (the process's stdin/stdout in the CLI). Nothing touches the upstream
 * until the host sends `initialize`: there is no probe session.
 *
 * @example
 * ```ts
 * const bridge = startBridge(config, { input: hostIn, output: hostOut }); // the CLI passes stdin/stdout
 * process.on('SIGTERM', () => void bridge.close(0));
 * process.exitCode = await bridge.done;
 * ```
 */
export function startBridge(config: BridgeConfig, io: BridgeIo, authFactory?: () => Promise<AuthHooks>): Bridge {
  const shutdown = new AbortController();
  const ignoredBy = compileToolGlobs(config.ignoreTools);
  const toolsListIds = new Set<JsonRpcId>();
  let upstream: Upstream | undefined;
  // `modern`: the host speaks 2026-07-28 (a version in each request's `_meta`); every message is its own
  // stateless POST, and there is no session and no initialize.
  let state: 'idle' | 'connecting' | 'ready' | 'modern' | 'closed' = 'idle';
  let modernUpstream: Promise<Upstream> | undefined;
  /** Whether the remote has answered a 2026-07-28 request (then the host can no longer fall back to initialize). */
  let modernAnswered = false;
  /** 2026-07-28 requests in flight: aborting one is how it is cancelled over HTTP. */
  const modernInflight = new Map<JsonRpcId, AbortController>();
  /**
   * Set when a 2025 host meets a remote that speaks only 2026-07-28: the bridge answered `initialize` from
   * `server/discover`, and translates each message (the envelope from the host's initialize, `ping` and
   * `logging/setLevel` answered here, list changes from a `subscriptions/listen` stream).
   */
  let translation: { envelope: Record<string, unknown>; capabilities: Record<string, unknown>; logLevel?: string } | undefined;
  /**
   * Set when a 2026-07-28 host meets a remote that speaks only 2025: the bridge initialized one session with
   * the host's identity and translates back (`server/discover` from the initialize answer, `resultType` on
   * answers, `subscriptions/listen` served from the session's list_changed notifications).
   */
  let backwards: { version: string; initialize: Record<string, unknown>; listens: Set<JsonRpcId>; lists: Set<JsonRpcId>; relay: InputRelay } | undefined;
  /** A 2026-07-28 host's first request, while the bridge learns which era the remote speaks; later ones wait. */
  let modernFirst: Promise<void> | undefined;
  let queued: JsonRpcMessage[] = [];
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  let closing: Promise<number> | undefined;
  let authHooks: AuthHooks | undefined;
  // Messages after `initialized` wait until the standalone GET stream is open (or refused).
  let gate: Promise<unknown> = Promise.resolve();

  const write = (message: JsonRpcMessage): void => {
    if (state === 'closed' && message.error === undefined) return;
    if (!io.output.writable) return;
    io.output.write(`${JSON.stringify(message)}\n`);
  };

  const fromUpstream = (incoming: JsonRpcMessage): void => {
    let message = incoming;
    const isAnswer = message.id !== undefined && message.id !== null && message.method === undefined;
    if ((state === 'modern' || translation !== undefined) && isAnswer) {
      modernInflight.delete(message.id!);
      if (message.error === undefined) modernAnswered = true;
    }
    if (backwards !== undefined) {
      if (isAnswer && typeof message.id === 'string' && message.id.startsWith(INTERNAL_ID_PREFIX)) return;
      if (message.method !== undefined && message.id !== undefined && message.id !== null) {
        // A server-to-client request (sampling, elicitation, roots): the 2026-07-28 host is asked through
        // input_required on the call in flight (input-relay.ts).
        backwards.relay.fromRemote(message);
        return;
      }
      if (typeof message.method === 'string' && message.method.endsWith('/list_changed')) {
        for (const id of backwards.listens) write({ ...message, params: { ...message.params, _meta: { [SUBSCRIPTION_ID_META_KEY]: id } } });
        return;
      }
      const listed = isAnswer && backwards.lists.delete(message.id!);
      if (isAnswer && message.result !== undefined) {
        // 2026-07-28 list results carry a cache hint; the bridge knows nothing of the remote's lists, so:
        // do not cache (the host hears changes on its listen stream).
        const hint = listed && !('ttlMs' in message.result) ? { ttlMs: 0, cacheScope: 'private' } : {};
        message = { ...message, result: { resultType: 'complete', ...hint, ...message.result } };
      }
      if (isAnswer) {
        // The answer to a call that was held for input goes under the host's latest id (or waits for it).
        const relayed = backwards.relay.fromRemote(message);
        if (relayed === undefined) return;
        message = relayed;
      }
    }
    if (translation !== undefined) {
      // The answer to a retry after input_required goes back under the id the host used.
      const host = isAnswer ? retryIds.get(message.id!) : undefined;
      if (host !== undefined) {
        retryIds.delete(message.id!);
        message = { ...message, id: host };
      }
      // The bridge's own requests (the listen stream) and the revision's own notifications stay here.
      if (isAnswer && typeof message.id === 'string' && message.id.startsWith(INTERNAL_ID_PREFIX)) return;
      if (message.method === 'notifications/subscriptions/acknowledged') return;
      if (isAnswer && message.result !== undefined) {
        const { resultType, ttlMs: _ttl, cacheScope: _scope, ...rest } = message.result as Record<string, unknown>;
        if (resultType === 'input_required') {
          // The 2025 host is asked with server-to-client requests, and the request is sent again with the answers.
          void askHostForInput(message.id!, rest);
          return;
        }
        message = { ...message, result: rest };
      }
      if (isAnswer) translatedRequests.delete(message.id!);
    }
    if (message.id !== undefined && message.id !== null && toolsListIds.delete(message.id) && Array.isArray(message.result?.tools)) {
      // Whoever the host is, a 2026-07-28 remote gets the calls' Mcp-Param-* headers.
      if (state === 'modern' || translation !== undefined) paramHeaders.remember(message.result.tools as Array<{ name?: unknown; inputSchema?: unknown }>);
      message.result.tools = (message.result.tools as Array<{ name?: unknown }>).filter((t) => typeof t.name !== 'string' || ignoredBy(t.name) === undefined);
    }
    write(message);
  };

  /** The `x-mcp-header` parameters of the remote's tools, from the tools/list answers the host received. */
  const paramHeaders = new McpParamMemory();

  const close = (exitCode = 0): Promise<number> => {
    closing ??= (async () => {
      state = 'closed';
      backwards?.relay.close();
      shutdown.abort();
      try {
        await upstream?.close();
      } catch (err) {
        log.debug('closing the upstream failed', { error: describeError(err) });
      } finally {
        io.input.removeListener('data', onData);
        resolveDone(exitCode);
      }
      return exitCode;
    })();
    return closing;
  };

  const makeUpstream = (mode: 'http' | 'sse'): Upstream =>
    new Upstream({ url: config.url, headers: config.headers, mode, auth: authHooks, onMessage: fromUpstream, log });

  const connect = async (init: JsonRpcMessage & { id: JsonRpcId }): Promise<JsonRpcMessage> => {
    if (config.auth !== undefined && authFactory !== undefined) authHooks = await authFactory();
    const signal = shutdown.signal;
    const deadline = config.connectTimeoutMs;
    if (config.transport !== 'sse') {
      upstream = makeUpstream('http');
      try {
        const answer = await upstream.request(init, deadline, signal);
        const code = answer.error?.code;
        if ((code === RpcCode.MethodNotFound || code === ModernCode.UnsupportedProtocolVersion) && !signal.aborted) {
          // Answered in JSON-RPC, not HTTP: "no such method" is no 2025 server's answer to initialize, and an
          // unsupported version may mean a 2026-07-28-only one. Either may speak 2026-07-28: ask it.
          const translated = await discoverInstead(upstream, init, deadline, signal).catch(() => undefined);
          if (translated !== undefined) return translated;
        }
        return answer;
      } catch (err) {
        const status = err instanceof UpstreamError ? err.status : undefined;
        if (status === 400 && !signal.aborted) {
          const translated = await discoverInstead(upstream, init, deadline, signal).catch(() => undefined);
          if (translated !== undefined) return translated;
        }
        if (config.transport === 'http' || (status !== 404 && status !== 405) || signal.aborted) throw err;
        log.info(`Streamable HTTP answered ${status}; trying the legacy SSE transport once`);
        const http = upstream;
        upstream = makeUpstream('sse');
        await http.close();
        try {
          await upstream.connectSse(deadline, signal);
        } catch (sseErr) {
          throw new UpstreamError((err as UpstreamError).code, `${(err as Error).message} (the SSE fallback failed too: ${describeError(sseErr)})`, { cause: err, status });
        }
        return await upstream.request(init, deadline, signal);
      }
    }
    upstream = makeUpstream('sse');
    await upstream.connectSse(deadline, signal);
    return upstream.request(init, deadline, signal);
  };

  /** A 2025 host's message, as the 2026-07-28 remote expects it. */
  const forwardTranslated = (message: JsonRpcMessage, t: NonNullable<typeof translation>): void => {
    if (message.method === 'notifications/initialized') {
      const caps = t.capabilities as { tools?: { listChanged?: unknown }; prompts?: { listChanged?: unknown }; resources?: { listChanged?: unknown } };
      const notifications = {
        ...(caps.tools?.listChanged === true ? { toolsListChanged: true } : {}),
        ...(caps.prompts?.listChanged === true ? { promptsListChanged: true } : {}),
        ...(caps.resources?.listChanged === true ? { resourcesListChanged: true } : {}),
      };
      // The 2025 host's list_changed notifications come from one long-lived listen request.
      if (Object.keys(notifications).length > 0) {
        postModern({ jsonrpc: '2.0', id: `${INTERNAL_ID_PREFIX}listen`, method: 'subscriptions/listen', params: { notifications, _meta: t.envelope } }, MODERN_PROTOCOL_VERSION);
      }
      return;
    }
    if (isRequest(message) && message.method === 'ping') {
      write({ jsonrpc: '2.0', id: message.id, result: {} });
      return;
    }
    if (isRequest(message) && message.method === 'logging/setLevel') {
      const level = message.params?.level;
      if (typeof level === 'string') t.logLevel = level;
      write({ jsonrpc: '2.0', id: message.id, result: {} });
      return;
    }
    if (message.method === undefined) {
      // An answer: to one of the bridge's own input requests (the remote itself sends the host no requests).
      const waiter = typeof message.id === 'string' ? inputWaiters.get(message.id) : undefined;
      if (waiter !== undefined) waiter(message);
      return;
    }
    if (message.method === 'notifications/cancelled') {
      // A request retried after input_required runs under the bridge's retry id: that is the one to cancel.
      const id = message.params?.requestId;
      const pending = typeof id === 'string' || typeof id === 'number' ? translatedRequests.get(id) : undefined;
      if (pending !== undefined && pending.asking.length > 0) {
        // Cancelled while the host is being asked for input: nothing runs upstream, so nothing is retried.
        // The host's own input requests are withdrawn too (it may be showing a form).
        translatedRequests.delete(id as JsonRpcId);
        for (const inputId of pending.asking.splice(0)) {
          write({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: inputId, reason: 'the request it belonged to was cancelled' } });
          inputWaiters.get(inputId)?.(errorResponse(inputId, RpcCode.InternalError, 'cancelled'));
        }
        return;
      }
      if (pending?.current !== undefined) {
        retryIds.delete(pending.current);
        translatedRequests.delete(id as JsonRpcId);
        postModern({ ...message, params: { ...message.params, requestId: pending.current } }, MODERN_PROTOCOL_VERSION);
        return;
      }
      // The first round in flight: a cancelled request gets no answer, so nothing would clear its entry.
      if (pending !== undefined) translatedRequests.delete(id as JsonRpcId);
    }
    const params = (message.params ?? {}) as Record<string, unknown>;
    const meta = { ...(params._meta as Record<string, unknown> | undefined), ...t.envelope, ...(t.logLevel !== undefined ? { [LOG_LEVEL_META_KEY]: t.logLevel } : {}) };
    const outgoing = { ...message, params: { ...params, _meta: meta } };
    if (isRequest(outgoing)) {
      if (translatedRequests.size >= MAX_TRANSLATED_REQUESTS) translatedRequests.delete(translatedRequests.keys().next().value as JsonRpcId);
      translatedRequests.set(outgoing.id, { message: outgoing, rounds: 0, asking: [] });
    }
    postModern(outgoing, MODERN_PROTOCOL_VERSION);
  };

  /** A 2025 host's requests in flight to a 2026-07-28 remote, kept to be sent again after input_required. */
  /** `current`: the retry in flight upstream; `asking`: the host's input requests being waited for. */
  const translatedRequests = new Map<JsonRpcId, { message: JsonRpcMessage; rounds: number; current?: string; asking: string[] }>();
  /**
   * Retries in flight: the bridge's id for each, and the host's id it answers. 2026-07-28 wants a retry under a
   * new JSON-RPC id. Bounded like `translatedRequests`.
   */
  const retryIds = new Map<JsonRpcId, JsonRpcId>();
  let retries = 0;
  /** The bridge's own requests to the host (an input request of the remote), by id. */
  const inputWaiters = new Map<string, (answer: JsonRpcMessage) => void>();
  let inputIds = 0;

  /**
   * A 2026-07-28 remote answered a 2025 host's request with input_required: each input request goes to the
   * host as a server-to-client request, and the request goes to the remote again with the answers and the
   * remote's requestState. Bounded in rounds and in how long the host may take.
   */
  const askHostForInput = async (id: JsonRpcId, result: Record<string, unknown>): Promise<void> => {
    const pending = translatedRequests.get(id);
    const fail = (why: string): void => {
      translatedRequests.delete(id);
      write(errorResponse(id, RpcCode.InternalError, `codemode-remote: the remote asked for more input (input_required), and ${why}`));
    };
    if (pending === undefined) return fail('the request it belongs to is no longer known');
    if (++pending.rounds > MAX_INPUT_ROUNDS) return fail(`it did so more than ${MAX_INPUT_ROUNDS} times`);
    const requests = typeof result.inputRequests === 'object' && result.inputRequests !== null ? (result.inputRequests as Record<string, { method?: unknown; params?: unknown }>) : {};
    const entries = Object.entries(requests);
    if (entries.length > MAX_INPUT_REQUESTS) return fail(`it asked for ${entries.length} inputs at once, more than the ${MAX_INPUT_REQUESTS} codemode-remote relays`);
    const answers = await Promise.all(
      entries.map(
        ([key, request]) =>
          new Promise<[string, JsonRpcMessage]>((resolve) => {
            const inputId = `${INTERNAL_ID_PREFIX}input-${++inputIds}`;
            const timer = setTimeout(() => settle(errorResponse(inputId, RpcCode.RequestTimeout, 'the host did not answer in time')), INPUT_TIMEOUT_MS);
            timer.unref();
            const settle = (answer: JsonRpcMessage): void => {
              clearTimeout(timer);
              inputWaiters.delete(inputId);
              const at = pending.asking.indexOf(inputId);
              if (at !== -1) pending.asking.splice(at, 1);
              resolve([key, answer]);
            };
            inputWaiters.set(inputId, settle);
            pending.asking.push(inputId);
            write({ jsonrpc: '2.0', id: inputId, method: String(request.method), ...(request.params !== undefined ? { params: request.params as Record<string, unknown> } : {}) });
          }),
      ),
    );
    // Closed, or the host cancelled the request meanwhile (its entry is gone): no retry, and no answer.
    if (state === 'closed' || translatedRequests.get(id) !== pending) return;
    const refused = answers.find(([, answer]) => answer.error !== undefined);
    if (refused !== undefined) return fail(`the host refused ${String(requests[refused[0]]?.method)}: ${refused[1].error!.message}`);
    const inputResponses = Object.fromEntries(answers.map(([key, answer]) => [key, answer.result ?? {}]));
    const original = pending.message;
    const retry = {
      ...original,
      params: { ...original.params, inputResponses, ...(typeof result.requestState === 'string' ? { requestState: result.requestState } : {}) },
    };
    const retryId = `${INTERNAL_ID_PREFIX}retry-${++retries}`;
    if (pending.current !== undefined) retryIds.delete(pending.current);
    pending.current = retryId;
    if (retryIds.size >= MAX_TRANSLATED_REQUESTS) retryIds.delete(retryIds.keys().next().value as JsonRpcId);
    retryIds.set(retryId, id);
    postModern({ ...retry, id: retryId }, MODERN_PROTOCOL_VERSION);
  };

  /**
   * A remote that refused a 2025 `initialize` with HTTP 400 may speak only 2026-07-28: ask it
   * `server/discover` with the host's identity, and answer the host's `initialize` from that. Undefined
   * when the remote does not offer 2026-07-28 either (the caller reports the original refusal).
   */
  const discoverInstead = async (up: Upstream, init: JsonRpcMessage & { id: JsonRpcId }, deadline: number, signal: AbortSignal): Promise<JsonRpcMessage | undefined> => {
    const hostParams = (init.params ?? {}) as { protocolVersion?: unknown; capabilities?: unknown; clientInfo?: unknown };
    const envelope = {
      [PROTOCOL_VERSION_META_KEY]: MODERN_PROTOCOL_VERSION,
      [CLIENT_INFO_META_KEY]: hostParams.clientInfo ?? { name: 'codemode-remote', version: '0' },
      [CLIENT_CAPABILITIES_META_KEY]: hostParams.capabilities ?? {},
    };
    const answer = await up.request({ jsonrpc: '2.0', id: `${INTERNAL_ID_PREFIX}discover`, method: 'server/discover', params: { _meta: envelope } }, deadline, signal, MODERN_PROTOCOL_VERSION);
    const result = answer.result as { supportedVersions?: unknown; capabilities?: unknown; instructions?: unknown; _meta?: Record<string, unknown> } | undefined;
    if (answer.error !== undefined || !Array.isArray(result?.supportedVersions) || !result.supportedVersions.includes(MODERN_PROTOCOL_VERSION)) return undefined;
    const capabilities = typeof result.capabilities === 'object' && result.capabilities !== null ? (result.capabilities as Record<string, unknown>) : {};
    translation = { envelope, capabilities };
    modernUpstream = Promise.resolve(up);
    const requested = typeof hostParams.protocolVersion === 'string' ? hostParams.protocolVersion : undefined;
    log.info('the remote speaks MCP 2026-07-28 only; translating for this 2025 host');
    return {
      jsonrpc: '2.0',
      id: init.id,
      result: {
        protocolVersion: requested !== undefined && LEGACY_PROTOCOL_VERSIONS.includes(requested) ? requested : LEGACY_PROTOCOL_VERSIONS.at(-1)!,
        capabilities,
        serverInfo: result._meta?.[SERVER_INFO_META_KEY] ?? { name: 'unknown', version: '' },
        ...(typeof result.instructions === 'string' ? { instructions: result.instructions } : {}),
      },
    };
  };

  /** The answer to `server/discover` for a 2026-07-28 host, from the remote's 2025 initialize answer. */
  const discoverFromInitialize = (id: JsonRpcId, b: NonNullable<typeof backwards>): JsonRpcMessage => {
    const init = b.initialize as { capabilities?: unknown; serverInfo?: unknown; instructions?: unknown };
    return {
      jsonrpc: '2.0',
      id,
      result: {
        supportedVersions: [b.version],
        capabilities: init.capabilities ?? {},
        ...(typeof init.instructions === 'string' ? { instructions: init.instructions } : {}),
        _meta: { [SERVER_INFO_META_KEY]: init.serverInfo ?? { name: 'unknown', version: '' } },
        resultType: 'complete',
      },
    };
  };

  /** A 2026-07-28 host's message, over the one 2025 session with the remote. */
  const forwardBackwards = (incoming: JsonRpcMessage, b: NonNullable<typeof backwards>): void => {
    let message = incoming;
    if (isRequest(message) && message.method === 'server/discover') {
      write(discoverFromInitialize(message.id, b));
      return;
    }
    if (isRequest(message) && message.method === 'subscriptions/listen') {
      // Served here, from the session's list_changed notifications: acknowledged now, answered never (the
      // host closes it by cancelling).
      b.listens.add(message.id);
      write({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications: message.params?.notifications ?? {}, _meta: { [SUBSCRIPTION_ID_META_KEY]: message.id } } });
      return;
    }
    if (message.method === 'notifications/cancelled') {
      const id = message.params?.requestId;
      if ((typeof id === 'string' || typeof id === 'number') && b.listens.delete(id)) return;
    }
    const relayed = b.relay.fromHost(message);
    if (relayed === undefined) return; // a retry answering input_required: the relay took it
    message = relayed;
    if (isRequest(message) && LIST_METHODS.has(message.method)) b.lists.add(message.id);
    // The envelope is 2026-07-28's; the 2025 session already knows the host. Other `_meta` (progressToken,
    // traceparent) passes on.
    forward(message.params === undefined ? message : { ...message, params: withoutEnvelope(message.params) });
  };

  /**
   * A 2026-07-28 host's `server/discover` (its own, or the bridge's probe): sent as one, and if the remote
   * refuses it in a way a 2026-07-28 server would not (a 2025 server's "no session" or "method not found"),
   * the bridge initializes a 2025 session with the host's identity instead and translates from then on.
   * Either way the host gets one answer.
   */
  const firstModern = async (message: JsonRpcMessage & { id: JsonRpcId }, version: string): Promise<void> => {
    const internal = typeof message.id === 'string' && message.id.startsWith(INTERNAL_ID_PREFIX);
    const up = await modernUpstream!;
    let answer: JsonRpcMessage;
    try {
      answer = await up.request(message, config.connectTimeoutMs, shutdown.signal, version);
    } catch (err) {
      if (state === 'closed') return;
      const code = err instanceof CodemodeError ? err.code : 'UPSTREAM_UNAVAILABLE';
      if (internal) log.error(`the remote did not answer server/discover: ${describeError(err)}`);
      else write(errorResponse(message.id, err instanceof UpstreamError ? err.rpcCode : RpcCode.InternalError, `codemode-remote: ${describeError(err)}`, { reason: code, url: config.url.href }));
      return;
    }
    const refusedCode = answer.error?.code;
    // A 2025 server refuses server/discover for want of a session, or (stateless) with "method not found".
    if (refusedCode === undefined || MODERN_ERROR_CODES.has(refusedCode)) {
      if (answer.error === undefined) modernAnswered = true;
      if (!internal) fromUpstream(answer);
      return;
    }
    const meta = (message.params?._meta ?? {}) as Record<string, unknown>;
    const init = {
      jsonrpc: '2.0' as const,
      id: `${INTERNAL_ID_PREFIX}initialize`,
      method: 'initialize',
      params: { protocolVersion: LEGACY_PROTOCOL_VERSIONS.at(-1)!, capabilities: meta[CLIENT_CAPABILITIES_META_KEY] ?? {}, clientInfo: meta[CLIENT_INFO_META_KEY] ?? { name: 'codemode-remote', version: '0' } },
    };
    const initialized = await connect(init).catch(() => undefined);
    if (initialized?.result === undefined) {
      if (!internal) fromUpstream(answer); // not a 2025 server either: the host gets the remote's first refusal
      return;
    }
    log.info('the remote speaks MCP 2025 only; translating for this 2026-07-28 host');
    const relay = new InputRelay({ toHost: write, toRemote: (m) => void upstream?.send(m).catch(() => undefined) });
    backwards = { version, initialize: initialized.result, listens: new Set(), lists: new Set(), relay };
    state = 'ready';
    modernUpstream = undefined;
    forward({ jsonrpc: '2.0', method: 'notifications/initialized' });
    if (!internal) forwardBackwards(message, backwards);
  };

  /**
   * An answer the bridge makes itself for a host request. With a 2025 remote behind a 2026-07-28 host it goes
   * through the input relay like the remote's own answers, so the relay forgets the call (and the answer
   * carries the host's latest id); a call left tracked would be taken for the one a later input request
   * belongs to.
   */
  const answerHost = (answer: JsonRpcMessage): void => {
    const relayed = backwards !== undefined ? backwards.relay.fromRemote(answer) : answer;
    if (relayed !== undefined) write(relayed);
  };

  const forward = (message: JsonRpcMessage): void => {
    if (translation !== undefined) {
      forwardTranslated(message, translation);
      return;
    }
    const up = upstream;
    if (up === undefined) return;
    if (isRequest(message)) {
      if (message.method === 'tools/call' && typeof message.params?.name === 'string' && ignoredBy(message.params.name) !== undefined) {
        answerHost(errorResponse(message.id, RpcCode.InvalidParams, `Tool ${message.params.name} not found (hidden by --ignore-tool)`));
        return;
      }
      if (message.method === 'tools/list') toolsListIds.add(message.id);
    }
    if (message.method === 'notifications/cancelled') {
      const id = message.params?.requestId;
      if (typeof id === 'string' || typeof id === 'number') up.markCancelled(id);
    }
    let sent: Promise<void>;
    if (message.method === 'notifications/initialized') {
      sent = up.send(message);
      gate = sent.then(() => Promise.race([up.openGetStream(), new Promise((r) => setTimeout(r, GET_STREAM_WAIT_MS).unref())])).catch(() => undefined);
    } else {
      sent = gate.then(() => up.send(message));
    }
    sent.then(
      () => undefined,
      (err: unknown) => {
        if (state === 'closed') return;
        if (isRequest(message)) {
          toolsListIds.delete(message.id);
          const rpcCode = err instanceof UpstreamError ? err.rpcCode : RpcCode.InternalError;
          answerHost(errorResponse(message.id, rpcCode, `codemode-remote: ${describeError(err)}`));
        } else {
          log.warn(`could not forward ${message.method ?? (isResponse(message) ? 'a response' : 'a message')}`, { error: describeError(err) });
        }
      },
    );
  };

  /** One message of a 2026-07-28 host, sent as its own POST with the revision's headers. */
  const forwardModern = (message: JsonRpcMessage, version: string): void => {
    state = 'modern';
    modernUpstream ??= (async () => {
      if (config.auth !== undefined && authFactory !== undefined) authHooks = await authFactory();
      upstream = makeUpstream('http');
      return upstream;
    })();
    if (modernFirst === undefined) {
      // `server/discover` tells the bridge which era the remote speaks. When the host starts with anything
      // else (a listen request never answers; a long tools/call would be held to the connect timeout), the
      // bridge asks it itself first, with the same envelope, and keeps the answer to itself.
      const probe = isRequest(message) && message.method === 'server/discover';
      const first = probe ? message : { jsonrpc: '2.0' as const, id: `${INTERNAL_ID_PREFIX}probe`, method: 'server/discover', params: { _meta: message.params?._meta } };
      modernFirst = firstModern(first, version).catch((err: unknown) => log.error('the first request failed', { error: describeError(err) }));
      if (probe) return;
    }
    const after = modernFirst ?? Promise.resolve();
    void after.then(() => {
      if (state === 'closed') return;
      if (backwards !== undefined) forwardBackwards(message, backwards);
      else postModern(message, version);
    });
  };

  /** A tools/call's `Mcp-Param-*` headers, from the tool's declarations (none before the host listed it). */
  const toolParamHeaders = (message: JsonRpcMessage): Record<string, string> => {
    if (message.method !== 'tools/call' || typeof message.params?.name !== 'string') return {};
    return paramHeaders.headers(message.params.name, message.params.arguments);
  };

  /** Sends one 2026-07-28 message on `modernUpstream`; cancellations abort the request they name. */
  const postModern = (message: JsonRpcMessage, version: string): void => {
    if (modernUpstream === undefined) return;
    if (message.method === 'notifications/cancelled') {
      const id = message.params?.requestId;
      const inflight = typeof id === 'string' || typeof id === 'number' ? modernInflight.get(id) : undefined;
      if (inflight !== undefined) {
        modernInflight.delete(id as JsonRpcId);
        upstream?.markCancelled(id as JsonRpcId);
        inflight.abort();
      }
      return;
    }
    const request = isRequest(message) ? message : undefined;
    if (request !== undefined) {
      if (request.method === 'tools/call' && typeof request.params?.name === 'string' && ignoredBy(request.params.name) !== undefined) {
        translatedRequests.delete(request.id);
        write(errorResponse(request.id, RpcCode.InvalidParams, `Tool ${request.params.name} not found (hidden by --ignore-tool)`));
        return;
      }
      if (request.method === 'tools/list') toolsListIds.add(request.id);
    }
    const cancel = new AbortController();
    if (request !== undefined) modernInflight.set(request.id, cancel);
    modernUpstream
      .then((up) => up.sendModern(message, version, AbortSignal.any([cancel.signal, shutdown.signal]), toolParamHeaders(message)))
      .then(
        () => undefined,
        (err: unknown) => {
          if (state === 'closed' || cancel.signal.aborted) return;
          if (request === undefined) {
            log.warn(`could not forward ${message.method ?? 'a message'}`, { error: describeError(err) });
            return;
          }
          modernInflight.delete(request.id);
          toolsListIds.delete(request.id);
          const hostId = retryIds.get(request.id) ?? request.id;
          retryIds.delete(request.id);
          translatedRequests.delete(hostId);
          const rpcCode = err instanceof UpstreamError ? err.rpcCode : RpcCode.InternalError;
          const code = err instanceof CodemodeError ? err.code : 'UPSTREAM_UNAVAILABLE';
          write(errorResponse(hostId, rpcCode, `codemode-remote: ${describeError(err)}`, { reason: code, url: config.url.href }));
        },
      );
  };

  const handle = (message: JsonRpcMessage): void => {
    if (state === 'closed') return;
    if (backwards !== undefined) {
      forwardBackwards(message, backwards);
      return;
    }
    const version = modernVersionOf(message);
    if (version !== undefined && (state === 'idle' || state === 'modern')) {
      forwardModern(message, version);
      return;
    }
    if (state === 'modern' && message.method === 'notifications/cancelled') {
      forwardModern(message, '');
      return;
    }
    if (message.method === 'initialize' && isRequest(message) && state === 'modern' && !modernAnswered) {
      // A host in `auto` mode whose 2026-07-28 discovery the remote refused falls back to initialize.
      state = 'idle';
      modernUpstream = undefined;
      upstream = undefined;
    }
    if (state === 'modern') {
      if (isRequest(message)) {
        write(
          errorResponse(
            message.id,
            RpcCode.InvalidRequest,
            `codemode-remote: this connection speaks MCP 2026-07-28, and ${message.method} carries no protocol version in _meta (${PROTOCOL_VERSION_META_KEY})`,
          ),
        );
      }
      return;
    }
    if (message.method === 'initialize' && isRequest(message)) {
      if (state !== 'idle') {
        write(errorResponse(message.id, RpcCode.InvalidRequest, 'codemode-remote: initialize was already received'));
        return;
      }
      state = 'connecting';
      const started = performance.now();
      connect(message).then(
        (response) => {
          if (state === 'closed') return;
          write(response);
          if (response.error !== undefined) {
            log.error('the upstream refused initialize', { error: response.error.message });
            void close(1);
            return;
          }
          state = 'ready';
          log.debug('connected', { ms: Math.round(performance.now() - started), session: upstream?.sessionId, transport: upstream?.mode });
          const pending = queued;
          queued = [];
          for (const m of pending) forward(m);
        },
        (err: unknown) => {
          if (state === 'closed') return;
          const message_ = `codemode-remote could not connect to ${config.url.href}: ${describeError(err)}`;
          log.error(message_);
          const code = err instanceof CodemodeError ? err.code : 'UPSTREAM_UNAVAILABLE';
          write(errorResponse(message.id, err instanceof UpstreamError ? err.rpcCode : RpcCode.InternalError, message_, { reason: code, url: config.url.href }));
          void close(1);
        },
      );
      return;
    }
    if (state === 'idle' || state === 'connecting') {
      if (state === 'idle' && isRequest(message) && message.method !== 'ping') {
        write(errorResponse(message.id, RpcCode.InvalidRequest, `codemode-remote: ${message.method} before initialize`));
        return;
      }
      if (state === 'idle' && isRequest(message)) {
        write({ jsonrpc: '2.0', id: message.id, result: {} });
        return;
      }
      queued.push(message);
      return;
    }
    forward(message);
  };

  const onLine = (line: string): void => {
    if (line.trim() === '') return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      write(errorResponse(null, RpcCode.ParseError, 'codemode-remote: a line on stdin is not JSON'));
      return;
    }
    for (const item of Array.isArray(parsed) ? parsed : [parsed]) {
      if (typeof item !== 'object' || item === null || (item as JsonRpcMessage).jsonrpc !== '2.0') {
        write(errorResponse(null, RpcCode.InvalidRequest, 'codemode-remote: not a JSON-RPC 2.0 message'));
        continue;
      }
      handle(item as JsonRpcMessage);
    }
  };

  // One decoder for the whole stream: a multi-byte character split across two pipe reads stays whole.
  const reader = new LineReader({ maxLineBytes: MAX_LINE_BYTES });
  const onData = (chunk: Buffer | string): void => {
    for (const event of reader.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk)) {
      if (state === 'closed') return;
      if (event.kind === 'line') {
        onLine(event.line);
        continue;
      }
      log.error(`a line on stdin is ${event.bytes} bytes, over the ${MAX_LINE_BYTES}-byte limit; closing`);
      void close(1);
      return;
    }
    // A line that never ends must not keep the bridge running: it is already known to be too long.
    if (reader.discarding && state !== 'closed') {
      log.error(`a line on stdin exceeds ${MAX_LINE_BYTES} bytes; closing`);
      void close(1);
    }
  };
  io.input.on('data', onData);
  // stdin EOF is the host saying goodbye, in every state: connecting, waiting for a login, mid-call.
  io.input.once('end', () => {
    for (const event of reader.end()) if (event.kind === 'line' && event.line.trim() !== '') onLine(event.line);
    reader.clear();
    void close(0);
  });
  io.input.once('error', () => void close(0));
  io.output.on('error', () => void close(0));

  return { done, close };
}
