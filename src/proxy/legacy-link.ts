/**
 * 2025 upstream sessions for the translator (modern.ts), two ways:
 * - `sdkLink`: the v1 SDK client over any transport (`connectUpstream`: a stdio command, legacy SSE, OAuth, a
 *   custom fetch);
 * - `rawHttpLink`: a Streamable HTTP session driven at the message level, one `node:http` POST per message,
 *   with no SDK transport. The SDK's client transport (fetch, web streams) costs about 1 ms of CPU per call,
 *   most of a translated call's cost; this path is what keeps translation near plain forwarding.
 *
 * @module
 */

import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { StringDecoder } from 'node:string_decoder';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { InitializeRequest, Progress } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { describeError } from '../errors.js';
import { createLogger } from '../log.js';
import type { JsonRpcId, JsonRpcMessage } from '../wire/jsonrpc.js';
import { SseParser } from '../wire/sse.js';
import { MAX_TIMER_DELAY_MS } from '../wire/timers.js';
import type { HttpUpstreamConfig, UpstreamConfig } from './config.js';
import type { LegacyLink, LegacyLinkHandlers } from './modern.js';
import type { ProxyOptions } from './proxy.js';
import { handleServerRequests, upstreamConnectOptions } from './proxy.js';
import { ACCEPT_BOTH, readAll } from './forward-io.js';
import { RawHttpPool } from './raw-http.js';
import { DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES } from './stdio-transport.js';
import { connectUpstream, DEFAULT_CONNECT_TIMEOUT_MS } from './upstream.js';

const log = createLogger('proxy');

const AnyResult = z.looseObject({});

/** A 2025 session through `connectUpstream` (the v1 SDK client). */
export async function sdkLink(target: UpstreamConfig, opts: ProxyOptions, init: InitializeRequest['params'], headers: Record<string, string>, handlers: LegacyLinkHandlers): Promise<LegacyLink> {
  const connection = await connectUpstream(target, {
    ...upstreamConnectOptions(opts, headers),
    initialize: init,
    holdInitialized: true,
    configure: (client) => {
      handleServerRequests(client, (request, signal) => handlers.request(request.method, request.params, signal));
      client.fallbackNotificationHandler = async (notification) => handlers.notification(notification.method, notification.params as Record<string, unknown> | undefined);
      client.onerror = (error) => log.debug('upstream transport error', { error: describeError(error) });
    },
  });
  await connection.releaseInitialized();
  const link: LegacyLink = {
    initializeResult: connection.initializeResult as Record<string, unknown>,
    request: (method, params, options) =>
      connection.client.request({ method, params } as never, AnyResult, {
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
        timeout: MAX_TIMER_DELAY_MS,
        ...(options.onprogress !== undefined ? { onprogress: options.onprogress } : {}),
      }),
    close: () => connection.close(),
  };
  connection.client.onclose = () => link.onclose?.();
  return link;
}

/** How long a GET stream that ended waits before it is opened again. */
const GET_RETRY_MS = 1000;
/** GET streams that fail within `GET_RETRY_MS` of opening, in a row, before the session is given up. */
const MAX_GET_FAILURES = 5;

/**
 * A 2025 Streamable HTTP session at the message level. Resolves once `initialize` was answered and
 * `notifications/initialized` sent; rejects with what `classifyConnectError` understands (an HTTP status as
 * `StreamableHTTPError`, a JSON-RPC error as `McpError`).
 */
export async function rawHttpLink(target: HttpUpstreamConfig, opts: ProxyOptions, init: InitializeRequest['params'], forwarded: Record<string, string>, handlers: LegacyLinkHandlers): Promise<LegacyLink> {
  const link = new RawHttpLink(target, opts, forwarded, handlers);
  try {
    await link.initialize(init);
  } catch (error) {
    await link.close();
    throw error;
  }
  return link;
}

class RawHttpLink implements LegacyLink {
  initializeResult: Record<string, unknown> = {};
  onclose?: (() => void) | undefined;
  readonly #url: URL;
  readonly #send: typeof httpRequest;
  readonly #agent: HttpAgent;
  readonly #headers: OutgoingHttpHeaders;
  readonly #handlers: LegacyLinkHandlers;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #requests = new Set<ClientRequest>();
  /** undici's pool for the requests of plain `http:` upstreams (see raw-http.ts for why); TLS uses node:http. */
  readonly #pool: RawHttpPool | undefined;
  #sessionId: string | undefined;
  #version = '2025-11-25';
  #nextId = 1;
  #closed = false;
  #getFailures = 0;

  constructor(target: HttpUpstreamConfig, opts: ProxyOptions, forwarded: Record<string, string>, handlers: LegacyLinkHandlers) {
    this.#url = new URL(target.url);
    const https = this.#url.protocol === 'https:';
    this.#send = https ? (httpsRequest as unknown as typeof httpRequest) : httpRequest;
    this.#agent = https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.#headers = { ...(target.headers ?? {}), ...(opts.headers ?? {}), ...forwarded };
    this.#handlers = handlers;
    this.#timeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#maxBytes = opts.maxMessageBytes ?? DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES;
    this.#pool = https || process.env.CODEMODE_PROXY_RAW_HTTP === '0' ? undefined : new RawHttpPool(this.#url);
  }

  async initialize(init: InitializeRequest['params']): Promise<void> {
    const signal = AbortSignal.timeout(this.#timeoutMs);
    const answer = await this.#exchange({ jsonrpc: '2.0', id: 0, method: 'initialize', params: init as unknown as Record<string, unknown> }, signal, undefined, true);
    this.initializeResult = answer;
    if (typeof answer.protocolVersion === 'string') this.#version = answer.protocolVersion;
    await this.#post({ jsonrpc: '2.0', method: 'notifications/initialized' }, AbortSignal.timeout(this.#timeoutMs)).then(({ res }) => res.resume());
    this.#openGet();
  }

  request(method: string, params: Record<string, unknown>, options: { signal?: AbortSignal; onprogress?: (progress: Progress) => void }): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    const withToken = options.onprogress === undefined ? params : { ...params, _meta: { ...(params._meta as Record<string, unknown> | undefined), progressToken: id } };
    const message = { jsonrpc: '2.0' as const, id, method, params: withToken };
    if (this.#pool !== undefined) return this.#pooled(this.#pool, message, options.signal, options.onprogress);
    return this.#exchange(message, options.signal, options.onprogress);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const req of this.#requests) req.destroy();
    await this.#pool?.close();
    if (this.#sessionId !== undefined) {
      await new Promise<void>((resolve) => {
        const req = this.#send(this.#url, { method: 'DELETE', headers: { ...this.#headers, 'mcp-session-id': this.#sessionId!, 'mcp-protocol-version': this.#version }, agent: this.#agent, signal: AbortSignal.timeout(2000) });
        req.once('response', (res) => {
          res.resume();
          resolve();
        });
        req.once('error', () => resolve());
        req.end();
      });
    }
    this.#agent.destroy();
  }

  /** The headers of a POST in this session: the configured ones, the content types and the session's. */
  #postHeaders(length: number): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = { ...this.#headers, 'content-type': 'application/json', accept: ACCEPT_BOTH, 'content-length': length };
    if (this.#sessionId !== undefined) {
      headers['mcp-session-id'] = this.#sessionId;
      headers['mcp-protocol-version'] = this.#version;
    }
    return headers;
  }

  #post(message: JsonRpcMessage, signal: AbortSignal | undefined): Promise<{ res: IncomingMessage; req: ClientRequest }> {
    const body = Buffer.from(JSON.stringify(message));
    const headers = this.#postHeaders(body.length);
    return new Promise((resolve, reject) => {
      if (this.#closed) {
        reject(new McpError(ErrorCode.ConnectionClosed, 'Connection closed'));
        return;
      }
      const req = this.#send(this.#url, { method: 'POST', headers, agent: this.#agent, ...(signal !== undefined ? { signal } : {}) });
      this.#requests.add(req);
      req.once('close', () => this.#requests.delete(req));
      req.once('response', (res) => resolve({ res, req }));
      req.once('error', reject);
      req.end(body);
    });
  }

  /** One request and its answer; the messages before the answer on its stream go where they belong. */
  async #exchange(message: JsonRpcMessage & { id: JsonRpcId }, signal: AbortSignal | undefined, onprogress: ((p: Progress) => void) | undefined, initializing = false): Promise<Record<string, unknown>> {
    const onAbort = (): void => {
      // 2025 cancellation: tell the upstream (the stream is closed too).
      void this.#post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: message.id, reason: 'cancelled by the client' } }, AbortSignal.timeout(2000))
        .then(({ res }) => res.resume())
        .catch(() => undefined);
    };
    if (signal?.aborted) throw new McpError(ErrorCode.RequestTimeout, 'The request was cancelled');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const { res } = await this.#post(message, signal);
      const status = res.statusCode ?? 0;
      if (initializing) {
        const sid = res.headers['mcp-session-id'];
        if (typeof sid === 'string') this.#sessionId = sid;
      }
      const type = String(res.headers['content-type'] ?? '');
      if (status < 200 || status >= 300) {
        const text = (await this.#readBounded(res)).toString('utf8').slice(0, 1000);
        throw new StreamableHTTPError(status, `Error POSTing to endpoint: ${text}`);
      }
      let answer: JsonRpcMessage | undefined;
      if (type.includes('text/event-stream')) {
        answer = await this.#readStream(res, message.id, onprogress);
      } else if (type.includes('application/json')) {
        answer = JSON.parse((await this.#readBounded(res)).toString('utf8')) as JsonRpcMessage;
      } else {
        res.resume();
        throw new StreamableHTTPError(-1, `Unexpected content type: ${type === '' ? '(none)' : type}`);
      }
      if (answer === undefined) throw new McpError(ErrorCode.ConnectionClosed, `The upstream's stream ended without answering ${message.method}`);
      if (answer.error !== undefined) throw new McpError(answer.error.code, answer.error.message, answer.error.data);
      if (answer.result === undefined) throw new McpError(ErrorCode.InternalError, `The upstream answered ${message.method} with neither a result nor an error`);
      return answer.result;
    } catch (error) {
      if (signal?.aborted) throw new McpError(ErrorCode.RequestTimeout, 'The request was cancelled');
      throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** `#exchange` on undici's pool: the same answer handling, with callbacks instead of streams. */
  #pooled(pool: RawHttpPool, message: JsonRpcMessage & { id: JsonRpcId; method: string }, signal: AbortSignal | undefined, onprogress: ((p: Progress) => void) | undefined): Promise<Record<string, unknown>> {
    if (this.#closed) return Promise.reject(new McpError(ErrorCode.ConnectionClosed, 'Connection closed'));
    if (signal?.aborted) return Promise.reject(new McpError(ErrorCode.RequestTimeout, 'The request was cancelled'));
    const body = Buffer.from(JSON.stringify(message));
    const headers = this.#postHeaders(body.length) as Record<string, string | number>;
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      let status = 0;
      let stream: SseParser | undefined;
      let decoder: StringDecoder | undefined;
      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      let abort: () => void = () => undefined;
      const settle = (answer: JsonRpcMessage | undefined, error?: unknown): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (error !== undefined) reject(error);
        else if (answer === undefined) reject(new McpError(ErrorCode.ConnectionClosed, `The upstream's stream ended without answering ${message.method}`));
        else if (answer.error !== undefined) reject(new McpError(answer.error.code, answer.error.message, answer.error.data));
        else if (answer.result === undefined) reject(new McpError(ErrorCode.InternalError, `The upstream answered ${message.method} with neither a result nor an error`));
        else resolve(answer.result);
      };
      const onAbort = (): void => {
        abort();
        settle(undefined, new McpError(ErrorCode.RequestTimeout, 'The request was cancelled'));
        void this.#post({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: message.id, reason: 'cancelled by the client' } }, AbortSignal.timeout(2000))
          .then(({ res }) => res.resume())
          .catch(() => undefined);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      abort = pool.post(headers, body, {
        head: (s, h) => {
          status = s;
          const type = h['content-type'] ?? '';
          if (s >= 200 && s < 300 && type.includes('text/event-stream')) {
            decoder = new StringDecoder('utf8');
            stream = new SseParser({
              onEvent: (event) => {
                size = 0;
                if (event.data === '' || settled) return;
                let m: JsonRpcMessage;
                try {
                  m = JSON.parse(event.data) as JsonRpcMessage;
                } catch {
                  return;
                }
                if (m.id === message.id && m.method === undefined) {
                  settle(m);
                  // The upstream ends the stream after the answer; aborting would cost the keep-alive connection
                  // (undici closes the socket). One that keeps it open is cut off after a grace period.
                  setTimeout(abort, 5000).unref();
                  return;
                }
                if (m.method === 'notifications/progress' && onprogress !== undefined && m.params?.progressToken === message.id) {
                  const { progressToken: _t, ...progress } = m.params as Record<string, unknown>;
                  onprogress(progress as Progress);
                  return;
                }
                this.#dispatch(m);
              },
            });
          } else if (s >= 200 && s < 300 && !type.includes('application/json')) {
            settle(undefined, new StreamableHTTPError(-1, `Unexpected content type: ${type === '' ? '(none)' : type}`));
            abort();
          }
        },
        data: (chunk) => {
          size += chunk.length;
          if (size > this.#maxBytes) {
            settle(undefined, new McpError(ErrorCode.InternalError, `The upstream's answer is over the ${this.#maxBytes}-byte message limit`));
            abort();
            return true;
          }
          if (stream !== undefined) stream.feed(decoder!.write(chunk));
          else chunks.push(chunk);
          return true;
        },
        waitDrain: () => undefined,
        end: () => {
          if (settled) return;
          const text = Buffer.concat(chunks).toString('utf8');
          if (status < 200 || status >= 300) {
            settle(undefined, new StreamableHTTPError(status, `Error POSTing to endpoint: ${text.slice(0, 1000)}`));
            return;
          }
          if (stream !== undefined) {
            settle(undefined);
            return;
          }
          try {
            settle(JSON.parse(text) as JsonRpcMessage);
          } catch (error) {
            settle(undefined, error);
          }
        },
        error: (error) => settle(undefined, error),
      });
    });
  }

  /** A body, refused past the message cap. */
  async #readBounded(res: IncomingMessage): Promise<Buffer> {
    const body = await readAll(res, this.#maxBytes);
    if (body === undefined) throw new McpError(ErrorCode.InternalError, `The upstream's answer is over the ${this.#maxBytes}-byte message limit`);
    return body;
  }

  /** Reads an event stream up to the answer to `id`, dispatching what comes before it. */
  async #readStream(res: IncomingMessage, id: JsonRpcId | undefined, onprogress: ((p: Progress) => void) | undefined): Promise<JsonRpcMessage | undefined> {
    let answer: JsonRpcMessage | undefined;
    // Bytes since the last whole event: one event may not grow past the message cap.
    let pending = 0;
    const parser = new SseParser({
      onEvent: (event) => {
        pending = 0;
        if (event.data === '' || answer !== undefined) return;
        let m: JsonRpcMessage;
        try {
          m = JSON.parse(event.data) as JsonRpcMessage;
        } catch {
          log.debug('dropped an upstream event that is not JSON');
          return;
        }
        if (id !== undefined && m.id === id && m.method === undefined) {
          answer = m;
          return;
        }
        if (m.method === 'notifications/progress' && onprogress !== undefined && m.params?.progressToken === id) {
          const { progressToken: _t, ...progress } = m.params as Record<string, unknown>;
          onprogress(progress as Progress);
          return;
        }
        this.#dispatch(m);
      },
    });
    res.setEncoding('utf8');
    // Not destroyed on the early break below: the rest of an answered stream drains, so the keep-alive socket
    // goes back to the agent (a destroyed one costs the next call a new connection, a TLS handshake on https).
    for await (const chunk of res.iterator({ destroyOnReturn: false }) as AsyncIterable<string>) {
      pending += chunk.length;
      if (pending > this.#maxBytes) {
        res.destroy();
        throw new McpError(ErrorCode.InternalError, `The upstream sent an event over the ${this.#maxBytes}-byte message limit`);
      }
      parser.feed(chunk);
      if (answer !== undefined) {
        res.resume();
        break;
      }
    }
    return answer;
  }

  /** A message the upstream sent on its own: a request to answer, or a notification. */
  #dispatch(m: JsonRpcMessage): void {
    if (m.method === undefined) return;
    if (m.id === undefined || m.id === null) {
      this.#handlers.notification(m.method, m.params);
      return;
    }
    const requestId = m.id;
    const abort = new AbortController();
    void this.#handlers.request(m.method, m.params, abort.signal).then(
      (result) => this.#reply({ jsonrpc: '2.0', id: requestId, result }),
      (error: unknown) => {
        const e = error instanceof McpError ? error : undefined;
        const code = e?.code ?? ErrorCode.InternalError;
        const message = e !== undefined ? e.message.replace(`MCP error ${e.code}: `, '') : describeError(error);
        this.#reply({ jsonrpc: '2.0', id: requestId, error: { code, message, ...(e?.data !== undefined ? { data: e.data } : {}) } });
      },
    );
  }

  #reply(message: JsonRpcMessage): void {
    this.#post(message, AbortSignal.timeout(this.#timeoutMs))
      .then(({ res }) => res.resume())
      .catch((error: unknown) => log.debug('could not answer the upstream', { error: describeError(error) }));
  }

  /** The standalone GET stream: list changes and requests outside any call. Reopened while the session lives. */
  #openGet(): void {
    if (this.#closed || this.#sessionId === undefined) return;
    const req = this.#send(this.#url, {
      method: 'GET',
      headers: { ...this.#headers, accept: 'text/event-stream', 'mcp-session-id': this.#sessionId, 'mcp-protocol-version': this.#version },
      agent: this.#agent,
    });
    this.#requests.add(req);
    const started = Date.now();
    const again = (): void => {
      this.#requests.delete(req);
      if (this.#closed) return;
      // A stream that keeps failing at once means the upstream is gone: the session ends (the translator
      // starts a new one on the next request) instead of retrying forever.
      this.#getFailures = Date.now() - started < GET_RETRY_MS ? this.#getFailures + 1 : 0;
      if (this.#getFailures >= MAX_GET_FAILURES) {
        log.info('the upstream\'s stream keeps failing; ending the session');
        this.onclose?.();
        return;
      }
      setTimeout(() => this.#openGet(), Math.max(0, GET_RETRY_MS - (Date.now() - started))).unref();
    };
    req.once('response', (res) => {
      const status = res.statusCode ?? 0;
      if (status === 404) {
        res.resume();
        this.#requests.delete(req);
        log.info('the upstream forgot the session');
        this.onclose?.();
        return;
      }
      if (status === 405 || status < 200 || status >= 300) {
        // No standalone stream (allowed): list changes then arrive only on request streams.
        res.resume();
        this.#requests.delete(req);
        return;
      }
      let pending = 0;
      const parser = new SseParser({
        onEvent: (event) => {
          pending = 0;
          if (event.data === '') return;
          try {
            this.#dispatch(JSON.parse(event.data) as JsonRpcMessage);
          } catch {
            log.debug('dropped an upstream event that is not JSON');
          }
        },
      });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        pending += chunk.length;
        if (pending > this.#maxBytes) {
          log.warn(`the upstream sent an event over the ${this.#maxBytes}-byte message limit on its stream; reopening it`);
          res.destroy();
          return;
        }
        parser.feed(chunk);
      });
      res.once('end', again);
      res.once('error', again);
    });
    req.once('error', again);
    req.end();
  }
}
