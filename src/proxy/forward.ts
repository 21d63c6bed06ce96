/**
 * The lean Streamable HTTP -> Streamable HTTP forward path of `serveProxyHttp`.
 *
 * Terminating MCP on both sides with the SDK's transports costs about 1.5 ms of CPU per call (a web
 * `Request` per POST on the server side, web streams for every SSE answer on the client side), which is
 * the whole latency budget many times over. When both sides speak Streamable HTTP there is nothing to
 * translate, so this path forwards HTTP messages instead: each downstream session maps to its own
 * upstream session (the `Mcp-Session-Id` is translated, so the upstream session can be replaced behind the
 * client's back), request bodies are parsed only to find method names and ids, and answers (JSON or SSE)
 * are piped back as they arrive. Only three things look inside messages:
 * - `initialize`, which is answered only after the upstream answered it, with upstream failures turned into
 *   the JSON-RPC error answer by the same classification as `connectUpstream` (`classifyConnectError`);
 * - `tools/call` of a tool hidden by `ignoreTools` (refused here) and `tools/list` answers (filtered);
 * - upstream HTTP failures of a running session, answered with JSON-RPC errors (`classifyRequestError`),
 *   or, when the upstream forgot the session (`isSessionExpiredError`), a transparent re-initialize with the
 *   stored params and one retry.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, InitializeResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import type { JsonRpcId as Id, JsonRpcMessage } from '../wire/jsonrpc.js';
import { errorResponse, isRequest, wireErrorMessage } from '../wire/jsonrpc.js';
import type { HttpUpstreamConfig } from './config.js';
import { ACCEPT_BOTH, PROTOCOL_HEADERS, RESPONSE_HEADERS, pipeFilteredLists, readAll, readAnswer, sendJson, wireErrorOf } from './forward-io.js';
import type { Json } from './forward-io.js';
import { TranslatedSessions } from './forward-modern.js';
import { ForwardSession } from './forward-session.js';
import type { ForwardSessionOwner } from './forward-session.js';
import { RawHttpPool } from './raw-http.js';
import { classifyConnectError, classifyRequestError, DEFAULT_CONNECT_TIMEOUT_MS, mayBeModernOnly, isSessionExpiredError } from './upstream.js';

const log = createLogger('proxy');

export interface ForwarderOptions {
  /** Upstream headers from the config and the proxy options (already merged). */
  headers: Record<string, string>;
  /** Downstream header names copied upstream (lower-case), taken from the downstream `initialize`. */
  forwardHeaders: readonly string[];
  /** Tool-name matcher of `ignoreTools`: the glob that hides `name`, or `undefined`. */
  isHidden: (name: string) => string | undefined;
  hasHiddenTools: boolean;
  connectTimeoutMs: number | undefined;
  idleTimeoutMs: number | null;
  /**
   * Called with a downstream `initialize` whose upstream answered 404/405 when `transport` is `auto`:
   * the SDK path takes the request over (it tries legacy SSE and classifies both answers).
   */
  fallback?: (req: IncomingMessage, res: ServerResponse, body: unknown) => void;
  /** The cap on one upstream message of a translated (2026-07-28 upstream) session. */
  maxMessageBytes?: number | undefined;
}

interface UpstreamAnswer {
  res: IncomingMessage;
  req: ClientRequest;
}

/**
 * Forwards Streamable HTTP sessions to one Streamable HTTP upstream. `handle` serves a request for a session
 * it owns (or a new `initialize`) and returns true; false means the request is not its own.
 */
export class HttpForwarder implements ForwardSessionOwner {
  readonly #url: URL;
  readonly #target: { protocol: string; hostname: string; port: number | undefined; path: string };
  readonly #label: string;
  readonly #options: ForwarderOptions;
  readonly #agent: HttpAgent;
  /** The undici-backed POST client (src/proxy/raw-http.ts), for plain `http:` upstreams. */
  readonly #raw: RawHttpPool | undefined;
  readonly #request: typeof httpRequest;
  readonly #sessions = new Map<string, ForwardSession>();
  /** Sessions whose upstream speaks only 2026-07-28, translated message by message (forward-modern.ts). */
  readonly #translated: TranslatedSessions;
  #closed = false;

  constructor(config: HttpUpstreamConfig, options: ForwarderOptions) {
    this.#url = new URL(config.url);
    // Parsed once: http.request would otherwise convert the URL on every call.
    this.#target = { protocol: this.#url.protocol, hostname: this.#url.hostname.replace(/^\[|\]$/g, ''), port: this.#url.port === '' ? undefined : Number(this.#url.port), path: `${this.#url.pathname}${this.#url.search}` };
    this.#label = config.url;
    this.#options = options;
    const https = this.#url.protocol === 'https:';
    // Keep-alive: a fresh TCP connection per call would cost more than the whole latency budget.
    this.#agent = https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.#request = https ? (httpsRequest as unknown as typeof httpRequest) : httpRequest;
    this.#raw = https || process.env.CODEMODE_PROXY_RAW_HTTP === '0' ? undefined : new RawHttpPool(this.#url);
    this.#translated = new TranslatedSessions({
      target: config,
      headers: options.headers,
      isHidden: options.isHidden,
      hasHiddenTools: options.hasHiddenTools,
      connectTimeoutMs: options.connectTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs,
      maxMessageBytes: options.maxMessageBytes,
    });
  }

  get sessionCount(): number {
    return this.#sessions.size + this.#translated.sessionCount;
  }

  owns(sessionId: string): boolean {
    return this.#sessions.has(sessionId) || this.#translated.owns(sessionId);
  }

  /** Serves `req` if it belongs here: a session of ours, or (with `body`) a new initialize. */
  async handle(req: IncomingMessage, res: ServerResponse, sessionId: string | undefined, body: unknown, raw: Buffer | undefined): Promise<void> {
    if (sessionId === undefined) {
      await this.#initialize(req, res, body);
      return;
    }
    if (this.#translated.owns(sessionId)) {
      await this.#translated.handle(req, res, sessionId, body);
      return;
    }
    const session = this.#sessions.get(sessionId);
    if (session === undefined) {
      sendJson(res, 404, errorResponse(null, -32001, `Session not found: ${sessionId}`));
      return;
    }
    session.last = Date.now();
    if (req.method === 'POST') await this.#post(session, req, res, body, raw ?? Buffer.alloc(0));
    else if (req.method === 'GET') await this.#get(session, req, res);
    else if (req.method === 'DELETE') await this.#delete(session, res);
    else sendJson(res, 405, errorResponse(null, -32000, 'Method not allowed.'), { allow: 'GET, POST, DELETE' });
  }

  #upstreamHeaders(session: ForwardSession | undefined, req: IncomingMessage | undefined, extra?: Record<string, string>): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = { ...(session?.headers ?? this.#options.headers) };
    if (req !== undefined) {
      for (const name of PROTOCOL_HEADERS) {
        const v: string | string[] | undefined = req.headers[name];
        if (v !== undefined) (headers as Record<string, string | string[]>)[name] = v;
      }
    }
    if (session?.upstreamId !== undefined) headers['mcp-session-id'] = session.upstreamId;
    if (headers['mcp-protocol-version'] === undefined && session?.protocolVersion !== undefined) headers['mcp-protocol-version'] = session.protocolVersion;
    return extra === undefined ? headers : Object.assign(headers, extra);
  }

  /** Sends one request upstream; resolves with the response head (the body is left to the caller). */
  #send(method: string, headers: OutgoingHttpHeaders, body: Buffer | undefined, signal?: AbortSignal, started?: (req: ClientRequest) => void): Promise<UpstreamAnswer> {
    return new Promise((resolve, reject) => {
      if (body !== undefined) headers['content-length'] = body.length;
      const req = this.#request({ ...this.#target, method, headers, agent: this.#agent, ...(signal !== undefined ? { signal } : {}) });
      started?.(req);
      req.once('response', (res) => resolve({ res, req }));
      req.once('error', reject);
      req.end(body);
    });
  }

  /**
   * Runs `initialize` upstream for `session` within the connect timeout: returns the raw answer (and the raw
   * SSE text when the upstream answered with a stream), or throws what `classifyConnectError` understands.
   */
  async #upstreamInitialize(session: ForwardSession, req: IncomingMessage | undefined, message: Json): Promise<{ message: Json; sse: string | undefined; res: IncomingMessage }> {
    const timeoutMs = this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      const headers = this.#upstreamHeaders(undefined, req, { ...session.headers, 'content-type': 'application/json', accept: ACCEPT_BOTH });
      delete headers['mcp-session-id'];
      const { res } = await this.#send('POST', headers, Buffer.from(JSON.stringify(message)), abort.signal);
      if (res.statusCode === undefined || res.statusCode < 200 || res.statusCode >= 300) {
        const text = (await readAll(res).catch(() => Buffer.alloc(0))).toString('utf8').slice(0, 1000);
        throw Object.assign(new StreamableHTTPError(res.statusCode ?? -1, `Error POSTing to endpoint: ${text}`), { status: res.statusCode });
      }
      const answer = await readAnswer(res, message.id as Id);
      const reply = answer.message as Json;
      if (typeof reply !== 'object' || reply === null || reply.jsonrpc !== '2.0' || reply.id !== message.id || !('result' in reply || 'error' in reply)) {
        throw new SyntaxError(`expected a JSON-RPC answer to request ${JSON.stringify(message.id)}, got ${JSON.stringify(reply).slice(0, 120)}`);
      }
      if ('error' in reply) {
        const e = reply.error as { code?: unknown; message?: unknown; data?: unknown };
        throw new McpError(typeof e.code === 'number' ? e.code : ErrorCode.InternalError, String(e.message ?? 'initialize failed'), e.data);
      }
      const parsed = InitializeResultSchema.safeParse(reply.result);
      if (!parsed.success) {
        throw new CodemodeError('UPSTREAM_PROTOCOL', `Upstream ${this.#label} sent an invalid initialize result: ${parsed.error.message.slice(0, 300)}`);
      }
      const sid = res.headers['mcp-session-id'];
      session.upstreamId = typeof sid === 'string' ? sid : undefined;
      session.protocolVersion = parsed.data.protocolVersion;
      return { message: reply, sse: answer.sse, res };
    } catch (error) {
      if (abort.signal.aborted) throw new McpError(ErrorCode.RequestTimeout, 'Request timed out');
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  async #initialize(req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    const message = body as Json;
    const forward: Record<string, string> = {};
    for (const name of this.#options.forwardHeaders) {
      const v = req.headers[name];
      if (v !== undefined) forward[name] = Array.isArray(v) ? v.join(', ') : v;
    }
    const session = new ForwardSession(this, { ...this.#options.headers, ...forward }, message);
    let answer: { message: Json; sse: string | undefined };
    try {
      answer = await this.#upstreamInitialize(session, req, message);
    } catch (error) {
      const status = (error as { status?: unknown }).status;
      if ((status === 404 || status === 405) && this.#options.fallback !== undefined) {
        // `auto`: the SDK path retries as legacy SSE and classifies both answers.
        this.#options.fallback(req, res, body);
        return;
      }
      if (mayBeModernOnly(error)) {
        // A 2026-07-28-only upstream: this session is translated message by message (forward-modern.ts).
        await this.#translated.initialize(res, message as unknown as JsonRpcMessage & { id: Id }, forward, error);
        return;
      }
      if (error instanceof McpError && error.code !== ErrorCode.RequestTimeout) {
        // The upstream answered initialize with a JSON-RPC error: pass it on as it was.
        sendJson(res, 200, { jsonrpc: '2.0', id: message.id as Id, error: { code: error.code, message: wireErrorMessage(error), ...(error.data !== undefined ? { data: error.data } : {}) } });
        return;
      }
      const local = classifyConnectError(error, { label: this.#label, kind: 'http', timeoutMs: this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS });
      log.warn('upstream initialize failed', { upstream: this.#label, error: local.message });
      const wire = wireErrorOf(local);
      sendJson(res, 200, errorResponse(message.id as Id, wire.code, wire.message, wire.data));
      return;
    }
    if (this.#closed) {
      void this.endSession(session);
      sendJson(res, 503, errorResponse(message.id as Id, ErrorCode.ConnectionClosed, 'The proxy is closing'));
      return;
    }
    this.#sessions.set(session.id, session);
    session.startIdleClock(this.#options.idleTimeoutMs);
    const headers: OutgoingHttpHeaders = { 'mcp-session-id': session.id };
    if (answer.sse !== undefined) {
      res.writeHead(200, { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }).end(answer.sse);
    } else {
      sendJson(res, 200, answer.message, headers);
    }
  }

  /** Replays the stored `initialize` (and `notifications/initialized`) to get a fresh upstream session. */
  async reinitialize(session: ForwardSession): Promise<void> {
    const old = session.upstreamId;
    log.info('upstream session expired; re-initializing and retrying once', { upstream: this.#label });
    const message = { ...session.initialize, id: `codemode-proxy-reinit-${randomUUID()}` };
    await this.#upstreamInitialize(session, undefined, message);
    const note = Buffer.from(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
    const { res } = await this.#send('POST', this.#upstreamHeaders(session, undefined, { 'content-type': 'application/json', accept: ACCEPT_BOTH }), note);
    res.resume();
    log.debug('upstream session replaced', { old, new: session.upstreamId });
  }

  async #post(session: ForwardSession, req: IncomingMessage, res: ServerResponse, body: unknown, raw: Buffer): Promise<void> {
    const messages = Array.isArray(body) ? (body as unknown[]) : [body];
    let listIds: Set<Id> | undefined;
    if (this.#options.hasHiddenTools) {
      for (const m of messages) {
        if (!isRequest(m)) continue;
        if (m.method === 'tools/list') (listIds ??= new Set()).add(m.id);
        if (m.method === 'tools/call' || m.method === 'tools/list') {
          if (messages.length > 1) {
            sendJson(res, 400, errorResponse(null, ErrorCode.InvalidRequest, 'This proxy filters tools (ignoreTools): send tools/list and tools/call one per POST, not in a JSON-RPC batch.'));
            return;
          }
          const name = m.params?.name;
          const hiddenBy = m.method === 'tools/call' && typeof name === 'string' ? this.#options.isHidden(name) : undefined;
          if (hiddenBy !== undefined) {
            sendJson(res, 200, errorResponse(m.id, ErrorCode.InvalidParams, `Tool "${name as string}" is not available through this proxy (hidden by ignoreTools pattern "${hiddenBy}").`));
            return;
          }
        }
      }
    }
    session.inflight++;
    try {
      if (listIds === undefined) await this.#quickPost(session, req, res, raw, messages, Array.isArray(body));
      else await this.#exchange(session, req, res, 'POST', raw, messages, Array.isArray(body), listIds);
    } finally {
      session.inflight--;
      session.last = Date.now();
    }
  }

  /**
   * The common case of `#exchange` (a POST whose answer is passed on untouched) written with callbacks:
   * per call it saves the promise chain, which on a busy 2-core machine is measurable against a 0.3 ms
   * budget. Anything but a 2xx answer goes to the general path, which retries after a re-initialize.
   */
  #quickPost(session: ForwardSession, req: IncomingMessage, res: ServerResponse, raw: Buffer, messages: unknown[], batch: boolean): Promise<void> {
    if (this.#raw !== undefined) return this.#rawPost(this.#raw, session, req, res, raw, messages, batch);
    return new Promise<void>((resolve) => {
      const used = session.upstreamId;
      const headers = this.#upstreamHeaders(session, req);
      headers['content-length'] = raw.length;
      let settled = false;
      const onClose = (): void => {
        if (!res.writableFinished) up.destroy();
        resolve();
      };
      const up = this.#request({ ...this.#target, method: 'POST', headers, agent: this.#agent }, (answer) => {
        settled = true;
        const status = answer.statusCode ?? 502;
        if (status >= 200 && status < 300) {
          this.#pipe({ res: answer, req: up }, res, 'POST', status, session, undefined);
          return;
        }
        res.removeListener('close', onClose);
        void readAll(answer)
          .catch(() => Buffer.alloc(0))
          .then((text) => this.#afterRefusal(session, req, res, raw, messages, batch, status, text.toString('utf8').slice(0, 1000), used))
          .then(resolve);
      });
      up.once('error', (error) => {
        if (settled || res.writableFinished || res.destroyed) return;
        res.removeListener('close', onClose);
        this.#fail(res, messages, batch, error, 'POST');
        resolve();
      });
      res.once('close', onClose);
      up.end(raw);
    });
  }

  /** The same on the undici pool (plain `http:` upstreams): no ClientRequest/IncomingMessage per call. */
  #rawPost(pool: RawHttpPool, session: ForwardSession, req: IncomingMessage, res: ServerResponse, raw: Buffer, messages: unknown[], batch: boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      const used = session.upstreamId;
      let pass = false;
      let refused = 0;
      const refusal: Buffer[] = [];
      const onClose = (): void => {
        if (!res.writableFinished) abort();
        resolve();
      };
      const abort = pool.post(this.#upstreamHeaders(session, req), raw, {
        head: (status, headers) => {
          if (status < 200 || status >= 300) {
            refused = status;
            return;
          }
          pass = true;
          const out: OutgoingHttpHeaders = {};
          for (const name of RESPONSE_HEADERS) {
            const v = headers[name];
            if (v !== undefined) out[name] = v;
          }
          if (headers['content-length'] !== undefined) out['content-length'] = headers['content-length'];
          if (headers['mcp-session-id'] !== undefined) out['mcp-session-id'] = session.id;
          res.writeHead(status, out);
        },
        data: (chunk) => {
          if (pass) return res.write(chunk);
          if (refusal.length < 64) refusal.push(chunk);
          return true;
        },
        waitDrain: (resume) => res.once('drain', resume),
        end: () => {
          if (pass) {
            res.end();
            return;
          }
          res.removeListener('close', onClose);
          void this.#afterRefusal(session, req, res, raw, messages, batch, refused, Buffer.concat(refusal).toString('utf8').slice(0, 1000), used).then(resolve);
        },
        error: (error) => {
          if (res.writableFinished || res.destroyed) return;
          if (pass) {
            // Cut off mid-answer: the client must see a broken stream, not a truncated success.
            res.destroy();
            return;
          }
          res.removeListener('close', onClose);
          this.#fail(res, messages, batch, error, 'POST');
          resolve();
        },
      });
      res.once('close', onClose);
    });
  }

  /** A non-2xx answer on the quick path: re-initialize and retry if the session expired, else the error. */
  async #afterRefusal(session: ForwardSession, req: IncomingMessage, res: ServerResponse, raw: Buffer, messages: unknown[], batch: boolean, status: number, text: string, used: string | undefined): Promise<void> {
    const error = new StreamableHTTPError(status, `Error POSTing to endpoint: ${text}`);
    if (used === undefined || !isSessionExpiredError(error)) {
      this.#fail(res, messages, batch, error, 'POST');
      return;
    }
    try {
      await session.renew(used);
    } catch (renewError) {
      this.#fail(res, messages, batch, renewError, 'POST');
      return;
    }
    await this.#exchange(session, req, res, 'POST', raw, messages, batch, undefined, 1);
  }

  async #get(session: ForwardSession, req: IncomingMessage, res: ServerResponse): Promise<void> {
    await this.#exchange(session, req, res, 'GET', undefined, [], false, undefined);
  }

  /** Forwards one POST or GET, re-initializing and retrying once if the upstream forgot the session. */
  async #exchange(session: ForwardSession, req: IncomingMessage, res: ServerResponse, method: 'POST' | 'GET', raw: Buffer | undefined, messages: unknown[], batch: boolean, listIds: Set<Id> | undefined, firstAttempt = 0): Promise<void> {
    // The downstream went away before the answer was complete: so does the upstream request.
    let current: ClientRequest | undefined;
    let gone = false;
    const onClose = (): void => {
      if (res.writableFinished) return;
      gone = true;
      current?.destroy();
    };
    res.once('close', onClose);
    try {
      for (let attempt = firstAttempt; ; attempt++) {
        const used = session.upstreamId;
        let answer: UpstreamAnswer;
        try {
          answer = await this.#send(method, this.#upstreamHeaders(session, req), raw, undefined, (r) => {
            current = r;
          });
        } catch (error) {
          if (gone) return;
          this.#fail(res, messages, batch, error, method);
          return;
        }
        const status = answer.res.statusCode ?? 502;
        if (status >= 200 && status < 300) {
          this.#pipe(answer, res, method, status, session, listIds);
          if (!res.writableFinished) await new Promise<void>((resolve) => res.once('close', resolve));
          return;
        }
        if (status === 405 && method === 'GET') {
          // No standalone stream upstream: the client expects exactly this answer.
          answer.res.resume();
          res.writeHead(405, { allow: String(answer.res.headers.allow ?? 'POST, DELETE') }).end();
          return;
        }
        const text = (await readAll(answer.res).catch(() => Buffer.alloc(0))).toString('utf8').slice(0, 1000);
        const error = new StreamableHTTPError(status, `Error ${method === 'POST' ? 'POSTing to' : 'GETting'} endpoint: ${text}`);
        if (attempt === 0 && used !== undefined && isSessionExpiredError(error)) {
          try {
            await session.renew(used);
          } catch (renewError) {
            this.#fail(res, messages, batch, renewError, method);
            return;
          }
          continue;
        }
        this.#fail(res, messages, batch, error, method);
        return;
      }
    } finally {
      res.removeListener('close', onClose);
    }
  }

  /** Streams an upstream answer down: raw bytes, or event by event when a `tools/list` answer is filtered. */
  #pipe(answer: UpstreamAnswer, res: ServerResponse, method: 'POST' | 'GET', status: number, session: ForwardSession, listIds: Set<Id> | undefined): void {
    const up = answer.res;
    const headers: OutgoingHttpHeaders = {};
    for (const name of RESPONSE_HEADERS) {
      const v: string | string[] | undefined = up.headers[name];
      if (v !== undefined) (headers as Record<string, string | string[]>)[name] = v;
    }
    if (up.headers['mcp-session-id'] !== undefined) headers['mcp-session-id'] = session.id;
    up.once('aborted', () => res.destroy());
    up.once('error', () => res.destroy());
    if (listIds === undefined) {
      const length = up.headers['content-length'];
      if (length !== undefined) headers['content-length'] = length;
      res.writeHead(status, headers);
      // A standalone stream (GET) may stay quiet for long: its client should see the headers at once. A
      // POST answer goes out with its first event, in one write (one wake-up of the client, not two).
      if (method === 'GET') res.flushHeaders();
      up.pipe(res);
      return;
    }
    res.writeHead(status, headers);
    pipeFilteredLists(up, res, listIds, this.#options.isHidden);
  }

  /** Answers every request in `messages` with the classified upstream failure. */
  #fail(res: ServerResponse, messages: unknown[], batch: boolean, error: unknown, method: 'POST' | 'GET'): void {
    const requests = messages.filter(isRequest);
    const what = requests[0]?.method ?? (method === 'GET' ? 'the event stream (GET)' : 'a notification');
    const local = classifyRequestError(error, this.#label, what);
    log.debug('forwarding failed', { upstream: this.#label, error: local.message });
    if (requests.length === 0) {
      if (method === 'GET') sendJson(res, 502, errorResponse(null, ErrorCode.InternalError, local.message, { reason: local.code }));
      else if (!res.headersSent) res.writeHead(202).end();
      return;
    }
    const errors = requests.map((r) => errorResponse(r.id, ErrorCode.InternalError, local.message, { reason: local.code }));
    sendJson(res, 200, batch ? errors : errors[0]);
  }

  async #delete(session: ForwardSession, res: ServerResponse): Promise<void> {
    await session.close();
    res.writeHead(200).end();
  }

  /** Ends the upstream session (HTTP DELETE, bounded) and forgets the downstream one. */
  async endSession(session: ForwardSession): Promise<void> {
    this.#sessions.delete(session.id);
    if (session.upstreamId === undefined) return;
    try {
      const { res } = await this.#send('DELETE', this.#upstreamHeaders(session, undefined), undefined, AbortSignal.timeout(1000));
      res.resume();
    } catch (error) {
      log.debug('could not end the upstream session', { error: describeError(error) });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#sessions.values()].map((s) => s.close()));
    await this.#translated.close();
    this.#agent.destroy();
    await this.#raw?.close();
  }
}
