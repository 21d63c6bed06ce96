/**
 * The bridge's upstream side: a message-level MCP client transport for Streamable HTTP and legacy
 * SSE. It moves JSON-RPC messages without interpreting them, which is why everything (sampling,
 * elicitation, roots, progress, cancellation, list-changed) is forwarded for free. It owns the
 * session: the session id and protocol-version headers, transparent re-initialization when the
 * upstream forgets the session (expiry, restart), the standalone GET stream, resumption with
 * Last-Event-ID, and the DELETE on close.
 *
 * @module
 */

import { mcpNameHeader } from '../wire/eras.js';
import type { Logger } from '../log.js';
import { describeError } from '../errors.js';
import type { JsonRpcId, JsonRpcMessage } from '../wire/jsonrpc.js';
import { RpcCode, errorResponse } from '../wire/jsonrpc.js';
import { readSse, readSseNode } from '../wire/sse.js';
import type { IncomingMessage } from 'node:http';
import { nativePost, nativePostAllowed, nativeRequest, toWebResponse } from './native-post.js';
import { readAll } from '../wire/body.js';
import type { SseEvent } from '../wire/sse.js';
import { UpstreamError, bodySnippet, classifyFetchError } from './upstream-error.js';

/** What the OAuth layer offers the transport. Loaded lazily; absent when OAuth is off. */
export interface AuthHooks {
  /** The Authorization header to send, refreshing proactively when the token is about to expire. */
  header(signal: AbortSignal): Promise<string | undefined>;
  /** The header from the tokens at hand, with no network work (used while shutting down). */
  currentHeader(): string | undefined;
  /** Reacts to a 401 (or a 403 insufficient_scope): refresh or authorize. Throws when it cannot. */
  unauthorized(res: Response, signal: AbortSignal): Promise<void>;
}

export interface UpstreamOptions {
  url: URL;
  headers: Record<string, string>;
  mode: 'http' | 'sse';
  auth: AuthHooks | undefined;
  /** Every message from the upstream that is not an answer to the transport's own requests. */
  onMessage: (message: JsonRpcMessage) => void;
  log: Logger;
}

/** Streams reconnect at most this often in a row before the transport stops trying. */
const MAX_STREAM_RECONNECTS = 5;
const DEFAULT_RECONNECT_MS = 1_000;
const DELETE_TIMEOUT_MS = 300;
const REINIT_TIMEOUT_MS = 15_000;
/** Largest JSON answer read whole (64 MiB, the host side's line cap); a larger one fails that request. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;
/** How long requests wait for the standalone GET stream to open before going out anyway. */
export const GET_STREAM_WAIT_MS = 2_000;

/**
 * Whether a response is `node:http`'s (native-post.ts) rather than fetch's. Told apart by shape: `instanceof
 * Response` would touch the global, which loads Node's fetch.
 */
function isNodeResponse<T>(res: T | IncomingMessage): res is IncomingMessage {
  return typeof (res as { statusCode?: unknown }).statusCode === 'number' || typeof (res as { pipe?: unknown }).pipe === 'function';
}

function isJson(contentType: string): boolean {
  return /^application\/(?:[\w.+-]*\+)?json\b/i.test(contentType);
}

/** Most of an error body read to find a JSON-RPC error in it; a longer one is not an MCP answer. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/** The JSON-RPC error response in an HTTP error's body, or undefined when the body is not one. */
async function jsonRpcErrorOf(res: Response): Promise<JsonRpcMessage | undefined> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > MAX_ERROR_BODY_BYTES || res.body === null) {
    await res.body?.cancel().catch(() => undefined);
    return undefined;
  }
  let text = '';
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (text.length > MAX_ERROR_BODY_BYTES) {
        await reader.cancel().catch(() => undefined);
        return undefined;
      }
    }
  } catch {
    return undefined;
  }
  try {
    const m = JSON.parse(text) as JsonRpcMessage;
    const e = m?.error as { code?: unknown; message?: unknown } | undefined;
    return m?.jsonrpc === '2.0' && typeof e?.code === 'number' && typeof e.message === 'string' ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A message-level client transport. `send` delivers one message; answers arrive through
 * `onMessage` (or through `request`'s promise for the transport's own requests).
 *
 * @example
 * ```ts
 * const up = new Upstream({ url, headers: {}, mode: 'http', auth: undefined, onMessage: write, log });
 * const init = await up.request(initializeMessage, 30_000, signal);
 * ```
 */
export class Upstream {
  sessionId: string | undefined;
  protocolVersion: string | undefined;
  /** Set once initialize succeeded; replayed to recover a lost session. */
  private initParams: JsonRpcMessage['params'] | undefined;
  private readonly waiters = new Map<JsonRpcId, (m: JsonRpcMessage) => void>();
  private readonly controller = new AbortController();
  private recovering: Promise<void> | undefined;
  private getStreamRunning = false;
  private sseEndpoint: URL | undefined;
  private internalIds = 0;
  private authorizing: Promise<void> | undefined;
  /** Request ids the host cancelled (bounded: oldest forgotten first). */
  private readonly cancelled = new Set<JsonRpcId>();
  private closed = false;
  private nativeAllowed: boolean | undefined;
  /** The configured headers, names lower-cased once (later ones win, as `Headers.set` does). */
  private readonly baseHeaders: Record<string, string>;

  constructor(private readonly opts: UpstreamOptions) {
    this.baseHeaders = Object.fromEntries(Object.entries(opts.headers).map(([k, v]) => [k.toLowerCase(), v]));
  }

  get mode(): 'http' | 'sse' {
    return this.opts.mode;
  }

  private get signal(): AbortSignal {
    return this.controller.signal;
  }

  /**
   * The request headers, names lower-cased (later ones win, as `Headers.set` does). A plain record, not
   * `Headers`: touching that global loads Node's fetch, which a plain session never needs (native-post.ts).
   */
  private async headers(extra: Record<string, string>, signal: AbortSignal): Promise<Record<string, string>> {
    const h: Record<string, string> = { ...this.baseHeaders };
    for (const [k, v] of Object.entries(extra)) h[k.toLowerCase()] = v;
    if (this.sessionId !== undefined) h['mcp-session-id'] = this.sessionId;
    if (this.protocolVersion !== undefined) h['mcp-protocol-version'] = this.protocolVersion;
    if (this.opts.auth !== undefined) {
      const auth = await this.opts.auth.header(signal);
      if (auth !== undefined) h.authorization = auth;
    }
    return h;
  }

  private dispatch(message: JsonRpcMessage): void {
    if (message.id !== undefined && message.id !== null && message.method === undefined) {
      const waiter = this.waiters.get(message.id);
      if (waiter !== undefined) {
        this.waiters.delete(message.id);
        waiter(message);
        return;
      }
    }
    this.opts.onMessage(message);
  }

  /** Dispatches the message of a `message` event (`seen` sees it first); other events are not messages. */
  private dispatchEvent(ev: SseEvent, seen?: (message: JsonRpcMessage) => void): void {
    if (ev.event !== 'message' || ev.data.trim() === '') return;
    try {
      const message = JSON.parse(ev.data) as JsonRpcMessage;
      seen?.(message);
      this.dispatch(message);
    } catch (err) {
      this.opts.log.warn('upstream sent an event that is not JSON; dropped', { error: describeError(err) });
    }
  }

  private dispatchText(text: string, url: URL): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new UpstreamError('UPSTREAM_PROTOCOL', `${url.href} sent a body that is not JSON: ${text.slice(0, 120)}`);
    }
    for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
      if (typeof m !== 'object' || m === null || (m as JsonRpcMessage).jsonrpc !== '2.0') {
        throw new UpstreamError('UPSTREAM_PROTOCOL', `${url.href} sent JSON that is not JSON-RPC 2.0: ${text.slice(0, 120)}`);
      }
      this.dispatch(m as JsonRpcMessage);
    }
  }

  /**
   * A deadline that does not run while an OAuth login is in progress: a person typing a password
   * is not a hung server. When a login ends, the full `timeoutMs` starts again.
   */
  private deadline(timeoutMs: number): { signal: AbortSignal; clear(): void } {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let cleared = false;
    const arm = (): void => {
      timer = setTimeout(() => {
        const auth = this.authorizing;
        if (auth !== undefined) void auth.finally(() => !cleared && arm());
        else controller.abort();
      }, timeoutMs);
    };
    arm();
    return {
      signal: controller.signal,
      clear: () => {
        cleared = true;
        clearTimeout(timer);
      },
    };
  }

  /** Runs the auth hook, marking the time as "authorizing" for deadlines. */
  private async authorize(res: Response, signal: AbortSignal): Promise<void> {
    const run = this.opts.auth!.unauthorized(res, signal);
    const tracked = run.then(
      () => undefined,
      () => undefined,
    );
    this.authorizing = tracked;
    try {
      await run;
    } finally {
      if (this.authorizing === tracked) this.authorizing = undefined;
    }
  }

  /**
   * Sends a request the transport answers itself (initialize, re-initialize) and waits for its
   * response, at most `timeoutMs`.
   */
  async request(message: JsonRpcMessage & { id: JsonRpcId }, timeoutMs: number, signal: AbortSignal, modernVersion?: string): Promise<JsonRpcMessage> {
    const timeout = this.deadline(timeoutMs);
    const both = AbortSignal.any([signal, timeout.signal, this.signal]);
    const answered = new Promise<JsonRpcMessage>((resolve, reject) => {
      this.waiters.set(message.id, resolve);
      both.addEventListener(
        'abort',
        () => {
          this.waiters.delete(message.id);
          reject(
            timeout.signal.aborted
              ? new UpstreamError('UPSTREAM_TIMEOUT', `${this.opts.url.href} accepted the connection but did not answer ${message.method ?? 'the request'} within ${Math.round(timeoutMs / 1000)} s (raise --connect-timeout if the server is just slow)`)
              : new UpstreamError('ABORTED', 'cancelled: the bridge is shutting down'),
          );
        },
        { once: true },
      );
    });
    answered.catch(() => undefined);
    try {
      await (modernVersion !== undefined ? this.sendModern(message, modernVersion, both) : this.send(message, both));
    } catch (err) {
      this.waiters.delete(message.id);
      if (both.aborted) return answered.finally(() => timeout.clear());
      timeout.clear();
      throw err;
    }
    const response = await answered.finally(() => timeout.clear());
    if (modernVersion === undefined && message.method === 'initialize' && response.result !== undefined) {
      this.initParams = message.params;
      const version = response.result.protocolVersion;
      if (typeof version === 'string') this.protocolVersion = version;
    }
    return response;
  }

  /** Notes that the host cancelled `id`, so a stream ending without its answer is expected. */
  markCancelled(id: JsonRpcId): void {
    this.cancelled.add(id);
    if (this.cancelled.size > 1_000) this.cancelled.delete(this.cancelled.values().next().value as JsonRpcId);
  }

  /**
   * Sends one 2026-07-28 message: stateless, with no session, and with the headers the revision requires
   * on HTTP (`Mcp-Protocol-Version` from the message's own `_meta`, `Mcp-Method`, and `Mcp-Name` for the
   * calls that name a tool, prompt or resource). An error answer with a JSON-RPC body (a 400 with -32022,
   * say) reaches the host as that JSON-RPC error, intact. `signal` aborts the request: over HTTP, closing
   * a 2026-07-28 request is how it is cancelled. `extraHeaders`: the call's `Mcp-Param-*` headers.
   */
  sendModern(message: JsonRpcMessage, version: string, signal: AbortSignal, extraHeaders: Record<string, string> = {}): Promise<void> {
    const headers: Record<string, string> = { ...extraHeaders, 'mcp-protocol-version': version };
    if (typeof message.method === 'string') headers['mcp-method'] = message.method;
    // Names that are not plain visible ASCII go in the revision's Base64 form.
    const name = typeof message.method === 'string' ? mcpNameHeader(message.method, message.params) : undefined;
    if (name !== undefined) headers['mcp-name'] = name;
    return this.send(message, signal, false, { headers, passErrors: true });
  }

  /** Delivers one message upstream. Retries once after re-authorizing or recovering the session. */
  async send(
    message: JsonRpcMessage,
    signal: AbortSignal = this.signal,
    duringRecovery = false,
    modern?: { headers: Record<string, string>; passErrors: boolean },
  ): Promise<void> {
    if (this.closed) throw new UpstreamError('CLOSED', 'the upstream connection is closed');
    if (this.opts.mode === 'sse') return this.sendSse(message, signal);
    let authRetried = false;
    let sessionRetried = false;
    const isInit = message.method === 'initialize';
    for (;;) {
      if (this.recovering !== undefined && !isInit && !duringRecovery) await this.recovering.catch(() => undefined);
      const sentSession = this.sessionId;
      const url = this.opts.url;
      let res: Response;
      try {
        const headers = await this.headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...modern?.headers }, signal);
        const both = AbortSignal.any([signal, this.signal]);
        if (this.native) {
          // The hot path (native-post.ts): a 2xx JSON or event-stream answer is read here; anything else
          // becomes a web Response and goes through the same checks as fetch's.
          const answer = await nativePost(url, headers, JSON.stringify(message), both);
          if (await this.takeNativeAnswer(answer, message, url)) return;
          res = toWebResponse(answer);
        } else {
          res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(message), signal: both });
        }
      } catch (err) {
        if (err instanceof UpstreamError) throw err;
        throw classifyFetchError(err, url, isInit ? 'cannot connect' : `${message.method ?? 'message'} failed`);
      }
      if (res.status === 401 || (res.status === 403 && /insufficient_scope/.test(res.headers.get('www-authenticate') ?? ''))) {
        if (this.opts.auth === undefined) {
          const text = await bodySnippet(res);
          throw new UpstreamError(
            'UPSTREAM_AUTH',
            `${url.href} requires authorization (HTTP ${res.status}) and OAuth is off (--auth none, or an Authorization header was given): check the credentials you pass${text ? ` (server said: ${text})` : ''}`,
            { status: res.status },
          );
        }
        if (authRetried) {
          await res.body?.cancel();
          throw new UpstreamError('UPSTREAM_AUTH', `${url.href} still answers HTTP ${res.status} after authorizing: the account may lack access`, { status: res.status });
        }
        authRetried = true;
        await this.authorize(res, signal);
        continue;
      }
      if (!isInit && sentSession !== undefined && (res.status === 404 || res.status === 400)) {
        const text = await bodySnippet(res);
        // 404 is the spec's "session expired". Some servers answer a stale session with 400 after a
        // restart; re-initializing is the only way forward for either (mcp-remote never recovers from 400).
        if (res.status === 404 || /session/i.test(text)) {
          if (sessionRetried) throw new UpstreamError('UPSTREAM_UNAVAILABLE', `the upstream rejected the session again after re-initializing (HTTP ${res.status}: ${text})`, { status: res.status });
          sessionRetried = true;
          this.opts.log.info('upstream session expired; re-initializing', { status: res.status });
          await this.recoverSession(sentSession, signal);
          continue;
        }
        throw new UpstreamError('UPSTREAM_PROTOCOL', `${url.href} rejected ${message.method ?? 'a message'} with HTTP 400: ${text}`, { status: 400, rpcCode: RpcCode.InternalError });
      }
      return this.handlePostResponse(res, message, url, modern?.passErrors ?? false);
    }
  }

  /**
   * A native answer that needs none of `handlePostResponse`'s checks (2xx, JSON or an event stream):
   * dispatched here; true when taken. Anything else is left for the caller to convert.
   */
  private async takeNativeAnswer(res: IncomingMessage, message: JsonRpcMessage, url: URL): Promise<boolean> {
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) return false;
    if (message.method === 'initialize') {
      const sid = res.headers['mcp-session-id'];
      if (typeof sid === 'string') this.sessionId = sid;
    }
    if (status === 202 || status === 204) {
      res.resume();
      return true;
    }
    const contentType = String(res.headers['content-type'] ?? '');
    if (isJson(contentType)) {
      const body = await readAll(res, MAX_ANSWER_BYTES);
      if (body === undefined) throw new UpstreamError('UPSTREAM_PROTOCOL', `${url.href} answered ${message.method ?? 'a message'} with more than ${MAX_ANSWER_BYTES} bytes of JSON`);
      const text = body.toString('utf8');
      if (text.trim() !== '') this.dispatchText(text, url);
      return true;
    }
    if (/^text\/event-stream/i.test(contentType)) {
      const requestId = message.method !== undefined && message.id !== undefined && message.id !== null ? message.id : undefined;
      void this.consumeStream(res, url, requestId);
      return true;
    }
    return false;
  }

  /** Whether POSTs take the native path (native-post.ts): Streamable HTTP to an http(s) URL, no env proxy. */
  private get native(): boolean {
    this.nativeAllowed ??= this.opts.mode === 'http' && nativePostAllowed(this.opts.url);
    return this.nativeAllowed;
  }

  private async handlePostResponse(res: Response, message: JsonRpcMessage, url: URL, passErrors = false): Promise<void> {
    const isInit = message.method === 'initialize';
    if (!res.ok && passErrors && isJson(res.headers.get('content-type') ?? '')) {
      const answer = await jsonRpcErrorOf(res);
      if (answer !== undefined) {
        // It answers this POST's request, whatever id it carries: servers send `id: null` when they refuse a
        // request before reading it (a 2025-only server given no session), and the host waits on its own id.
        if (message.method !== undefined && message.id !== undefined && message.id !== null) this.dispatch({ ...answer, id: message.id });
        else this.opts.log.warn(`${url.href} refused ${message.method ?? 'a message'} (HTTP ${res.status})`, { error: String(answer.error?.message) });
        return;
      }
      throw new UpstreamError(res.status >= 500 ? 'UPSTREAM_UNAVAILABLE' : 'UPSTREAM_PROTOCOL', `${url.href} answered HTTP ${res.status}`, { status: res.status });
    }
    if (!res.ok) {
      const text = await bodySnippet(res);
      if (isInit && (res.status === 404 || res.status === 405)) {
        throw new UpstreamError(
          'UPSTREAM_PROTOCOL',
          `${url.href} answered HTTP ${res.status} to an MCP POST: this URL is not an MCP endpoint (wrong path? MCP servers usually serve /mcp)`,
          { status: res.status },
        );
      }
      if (res.status === 403) throw new UpstreamError('UPSTREAM_AUTH', `${url.href} refused access (HTTP 403)${text ? `: ${text}` : ''}`, { status: 403 });
      throw new UpstreamError(res.status >= 500 ? 'UPSTREAM_UNAVAILABLE' : 'UPSTREAM_PROTOCOL', `${url.href} answered HTTP ${res.status}${text ? `: ${text}` : ''}`, { status: res.status });
    }
    if (isInit) {
      const sid = res.headers.get('mcp-session-id');
      if (sid !== null) this.sessionId = sid;
    }
    if (res.status === 202 || res.status === 204) {
      await res.body?.cancel();
      return;
    }
    const contentType = res.headers.get('content-type') ?? '';
    if (isJson(contentType)) {
      const text = await res.text();
      if (text.trim() !== '') this.dispatchText(text, url);
      return;
    }
    if (/^text\/event-stream/i.test(contentType) && res.body !== null) {
      const requestId = message.method !== undefined && message.id !== undefined && message.id !== null ? message.id : undefined;
      void this.consumeStream(res.body, url, requestId);
      return;
    }
    const text = await bodySnippet(res);
    throw new UpstreamError(
      'UPSTREAM_PROTOCOL',
      `${url.href} answered HTTP ${res.status} with ${contentType || 'no content type'}, not MCP (JSON or an event stream): is this an MCP endpoint?${text ? ` Body: ${text}` : ''}`,
      { status: res.status },
    );
  }

  /**
   * Reads a POST's event stream. If it ends before answering `requestId`, resumes with a GET and
   * Last-Event-ID after the server's retry interval (SEP-1699); without an event id the request
   * fails with a clear error instead of hanging.
   */
  private async consumeStream(body: ReadableStream<Uint8Array> | IncomingMessage, url: URL, requestId: JsonRpcId | undefined): Promise<void> {
    let lastEventId: string | undefined;
    let retryMs = DEFAULT_RECONNECT_MS;
    let answered = false;
    const onEvent = (ev: SseEvent): void => {
      if (ev.id !== undefined) lastEventId = ev.id;
      if (ev.retry !== undefined) retryMs = ev.retry;
      this.dispatchEvent(ev, (m) => {
        if (requestId !== undefined && m.id === requestId && m.method === undefined) answered = true;
      });
    };
    let stream: ReadableStream<Uint8Array> | IncomingMessage | undefined = body;
    for (let attempt = 0; stream !== undefined && attempt <= MAX_STREAM_RECONNECTS; attempt++) {
      try {
        if (isNodeResponse(stream)) await readSseNode(stream, onEvent, this.signal);
        else await readSse(stream, onEvent, this.signal);
      } catch (err) {
        if (this.closed) return;
        this.opts.log.debug('upstream event stream broke', { error: describeError(err) });
      }
      stream = undefined;
      if (this.closed || answered || requestId === undefined) return;
      if (lastEventId === undefined || this.cancelled.has(requestId)) break;
      await new Promise((r) => setTimeout(r, retryMs));
      if (this.closed) return;
      try {
        const res = await fetch(url, {
          method: 'GET',
          headers: await this.headers({ accept: 'text/event-stream', 'last-event-id': lastEventId }, this.signal),
          signal: this.signal,
        });
        if (res.ok && res.body !== null) stream = res.body;
        else await res.body?.cancel();
      } catch (err) {
        this.opts.log.debug('resuming the event stream failed', { error: describeError(err) });
      }
    }
    // A cancelled request gets no answer by design; synthesizing one would only confuse the host.
    if (!answered && requestId !== undefined && !this.closed && !this.cancelled.delete(requestId)) {
      this.dispatch(errorResponse(requestId, RpcCode.ConnectionClosed, `the upstream closed the response stream before answering (${url.href})`));
    }
  }

  /** Re-runs initialize with the host's original parameters after the upstream lost the session. */
  private recoverSession(lostSession: string, signal: AbortSignal): Promise<void> {
    if (this.sessionId !== lostSession) return Promise.resolve(); // another request already recovered
    this.recovering ??= (async () => {
      try {
        this.sessionId = undefined;
        const id = `codemode-remote-reinit-${++this.internalIds}`;
        const res = await this.request({ jsonrpc: '2.0', id, method: 'initialize', params: this.initParams }, REINIT_TIMEOUT_MS, signal);
        if (res.error !== undefined) throw new UpstreamError('UPSTREAM_PROTOCOL', `re-initializing the upstream session failed: ${res.error.message}`);
        await this.send({ jsonrpc: '2.0', method: 'notifications/initialized' }, signal, true);
        this.opts.log.info('upstream session recovered', { session: this.sessionId });
        await Promise.race([this.openGetStream(), new Promise((r) => setTimeout(r, GET_STREAM_WAIT_MS).unref())]);
      } finally {
        this.recovering = undefined;
      }
    })();
    return this.recovering;
  }

  /**
   * Opens the standalone GET stream that carries server-initiated requests and notifications
   * (sampling, elicitation, list-changed). 405 means the server has none; that is fine.
   */
  openGetStream(): Promise<void> {
    if (this.opts.mode !== 'http' || this.getStreamRunning || this.closed) return Promise.resolve();
    this.getStreamRunning = true;
    // Resolves once the first GET has its answer (stream open, or refused): servers drop
    // server-to-client requests sent before the stream exists, so callers wait for this.
    let markReady!: () => void;
    const ready = new Promise<void>((r) => (markReady = r));
    void (async () => {
      let failures = 0;
      let lastEventId: string | undefined;
      let retryMs = DEFAULT_RECONNECT_MS;
      try {
        while (!this.closed && failures <= MAX_STREAM_RECONNECTS) {
          const session = this.sessionId;
          let res: Response | IncomingMessage;
          try {
            const extra: Record<string, string> = { accept: 'text/event-stream' };
            if (lastEventId !== undefined) extra['last-event-id'] = lastEventId;
            const headers = await this.headers(extra, this.signal);
            res = this.native ? await nativeRequest('GET', this.opts.url, headers, undefined, this.signal) : await fetch(this.opts.url, { method: 'GET', headers, signal: this.signal });
          } catch (err) {
            markReady();
            if (this.closed) return;
            failures++;
            this.opts.log.debug('GET stream failed', { error: describeError(err) });
            await new Promise((r) => setTimeout(r, retryMs * failures));
            continue;
          }
          // 405: the server offers no standalone stream. 404 without a session: a stateless server with none.
          markReady();
          const status = isNodeResponse(res) ? (res.statusCode ?? 0) : res.status;
          const discard = async (): Promise<void> => {
            if (isNodeResponse(res)) res.resume();
            else await res.body?.cancel();
          };
          if (status === 405 || status === 501 || (status === 404 && session === undefined)) {
            await discard();
            return;
          }
          if ((status === 404 || status === 400) && session !== undefined) {
            await discard();
            this.getStreamRunning = false;
            await this.recoverSession(session, this.signal).catch((err: unknown) => this.opts.log.warn('could not recover the upstream session', { error: describeError(err) }));
            return;
          }
          if (status === 401 && this.opts.auth !== undefined && failures < MAX_STREAM_RECONNECTS) {
            failures++;
            try {
              await this.authorize(isNodeResponse(res) ? toWebResponse(res) : res, this.signal);
            } catch (err) {
              this.opts.log.warn('the event stream needs authorization and it failed; no server-initiated messages until restart', { error: describeError(err) });
              return;
            }
            continue;
          }
          if (status < 200 || status >= 300 || (!isNodeResponse(res) && res.body === null)) {
            await discard();
            failures++;
            this.opts.log.debug('GET stream refused', { status });
            await new Promise((r) => setTimeout(r, retryMs * failures));
            continue;
          }
          failures = 0;
          try {
            const onEvent = (ev: SseEvent): void => {
              if (ev.id !== undefined) lastEventId = ev.id;
              if (ev.retry !== undefined) retryMs = ev.retry;
              this.dispatchEvent(ev);
            };
            if (isNodeResponse(res)) await readSseNode(res, onEvent, this.signal);
            else await readSse(res.body!, onEvent, this.signal);
          } catch (err) {
            if (this.closed) return;
            this.opts.log.debug('GET stream broke', { error: describeError(err) });
          }
          failures++;
          if (!this.closed) await new Promise((r) => setTimeout(r, retryMs));
        }
      } finally {
        this.getStreamRunning = false;
        markReady();
      }
    })();
    return ready;
  }

  // ---- legacy HTTP+SSE transport (2024-11-05) ----

  /** Connects the legacy SSE stream and waits for its `endpoint` event. */
  async connectSse(timeoutMs: number, signal: AbortSignal, authRetried = false): Promise<void> {
    const url = this.opts.url;
    const both = AbortSignal.any([signal, this.signal, AbortSignal.timeout(timeoutMs)]);
    let res: Response;
    try {
      res = await fetch(url, { method: 'GET', headers: await this.headers({ accept: 'text/event-stream' }, both), signal: both });
    } catch (err) {
      throw classifyFetchError(err, url, 'cannot connect (SSE)');
    }
    if (res.status === 401 && this.opts.auth !== undefined && !authRetried) {
      await this.authorize(res, signal);
      return this.connectSse(timeoutMs, signal, true);
    }
    if (!res.ok || res.body === null) {
      const text = await bodySnippet(res);
      if (res.status === 401 || res.status === 403) throw new UpstreamError('UPSTREAM_AUTH', `${url.href} refused the SSE connection (HTTP ${res.status})${text ? `: ${text}` : ''}`, { status: res.status });
      throw new UpstreamError('UPSTREAM_PROTOCOL', `${url.href} answered HTTP ${res.status} to an SSE GET: not an MCP endpoint (wrong path?)`, { status: res.status });
    }
    const contentType = res.headers.get('content-type') ?? '';
    if (!/^text\/event-stream/i.test(contentType)) {
      await res.body.cancel();
      throw new UpstreamError('UPSTREAM_PROTOCOL', `${url.href} answered the SSE GET with ${contentType || 'no content type'}, not an event stream: is this an MCP endpoint?`);
    }
    const endpoint = new Promise<URL>((resolve, reject) => {
      both.addEventListener('abort', () => reject(new UpstreamError('UPSTREAM_TIMEOUT', `${url.href} opened an SSE stream but sent no endpoint event in time`)), { once: true });
      void readSse(
        res.body!,
        (ev) => {
          if (ev.event === 'endpoint') {
            try {
              const target = new URL(ev.data.trim(), url);
              if (target.origin !== url.origin) throw new Error(`endpoint origin ${target.origin} differs from ${url.origin}`);
              resolve(target);
            } catch (err) {
              reject(new UpstreamError('UPSTREAM_PROTOCOL', `bad SSE endpoint event: ${describeError(err)}`));
            }
          } else {
            this.dispatchEvent(ev);
          }
        },
        this.signal,
      )
        .catch(() => undefined)
        .then(() => {
          reject(new UpstreamError('UPSTREAM_UNAVAILABLE', `${url.href} closed the SSE stream`));
          if (!this.closed && this.sseEndpoint !== undefined) this.opts.log.warn('the upstream SSE stream closed; requests will fail until the bridge restarts');
          this.sseEndpoint = undefined;
        });
    });
    this.sseEndpoint = await endpoint;
  }

  private async sendSse(message: JsonRpcMessage, signal: AbortSignal): Promise<void> {
    const endpoint = this.sseEndpoint;
    if (endpoint === undefined) throw new UpstreamError('UPSTREAM_UNAVAILABLE', 'the upstream SSE stream is closed');
    let res: Response;
    try {
      res = await fetch(endpoint, {
        method: 'POST',
        headers: await this.headers({ 'content-type': 'application/json' }, signal),
        body: JSON.stringify(message),
        signal: AbortSignal.any([signal, this.signal]),
      });
    } catch (err) {
      throw classifyFetchError(err, endpoint, `${message.method ?? 'message'} failed`);
    }
    if (!res.ok) {
      const text = await bodySnippet(res);
      throw new UpstreamError(res.status === 401 || res.status === 403 ? 'UPSTREAM_AUTH' : 'UPSTREAM_PROTOCOL', `${endpoint.href} answered HTTP ${res.status}${text ? `: ${text}` : ''}`, { status: res.status });
    }
    if (message.method === 'initialize') this.initParams = message.params;
    await res.body?.cancel();
  }

  /**
   * Ends the session: DELETE it upstream (bounded by a short timeout so shutdown stays fast) and
   * abort every stream and request. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const session = this.sessionId;
    try {
      if (session !== undefined && this.opts.mode === 'http') {
        const headers: Record<string, string> = { ...this.baseHeaders, 'mcp-session-id': session };
        if (this.protocolVersion !== undefined) headers['mcp-protocol-version'] = this.protocolVersion;
        // No token refresh here: closing must not start network work it cannot finish.
        const auth = this.opts.auth?.currentHeader();
        if (auth !== undefined) headers.authorization = auth;
        const signal = AbortSignal.timeout(DELETE_TIMEOUT_MS);
        if (this.native) {
          const res = await nativeRequest('DELETE', this.opts.url, headers, undefined, signal);
          res.resume();
          this.opts.log.debug('upstream session deleted', { status: res.statusCode });
        } else {
          const res = await fetch(this.opts.url, { method: 'DELETE', headers, signal });
          await res.body?.cancel();
          this.opts.log.debug('upstream session deleted', { status: res.status });
        }
      }
    } catch (err) {
      this.opts.log.debug('DELETE of the upstream session failed', { error: describeError(err) });
    } finally {
      this.controller.abort();
      for (const [id, waiter] of this.waiters) waiter(errorResponse(id, RpcCode.ConnectionClosed, 'the bridge is shutting down'));
      this.waiters.clear();
    }
  }
}
