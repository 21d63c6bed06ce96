/**
 * `serveProxyHttp`'s door for 2026-07-28 clients: requests whose `Mcp-Protocol-Version` header names
 * 2026-07-28. They carry no session; each POST is one request, answered with JSON or an event stream.
 *
 * Which era the upstream speaks decides the path, learned once (per proxy) from a `server/discover` with the
 * first request's envelope:
 * - a 2026-07-28 Streamable HTTP upstream gets each request as it came (body, the `Mcp-*` headers), and its
 *   answer goes down as it arrives: pure forwarding, with `ignoreTools` applied;
 * - any other upstream (a stdio command, legacy SSE, a 2025 Streamable HTTP server) is reached through a
 *   2025 session per client identity, translated by `LegacyTranslator`.
 *
 * Every refusal is a JSON-RPC error in the 2026-07-28 shapes: a header that disagrees with the body is
 * `-32020` on HTTP 400, an unsupported version `-32022`.
 *
 * @module
 */

import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createLogger } from '../log.js';
import { MODERN_ERROR_CODES, MODERN_PROTOCOL_VERSION, ModernCode, PROTOCOL_VERSION_META_KEY, isSessionRefusal } from '../wire/eras.js';
import type { JsonRpcId, JsonRpcMessage } from '../wire/jsonrpc.js';
import { RpcCode, errorResponse, isRequest } from '../wire/jsonrpc.js';
import type { HttpUpstreamConfig, UpstreamConfig } from './config.js';
import { describeUpstream, httpTransportOf, isStdioConfig } from './config.js';
import { ACCEPT_BOTH, RESPONSE_HEADERS, pipeFilteredLists, readAll, readAnswer, readBody, sendJson } from './forward-io.js';
import { ERA_CHANGED, LegacyTranslator, hiddenToolRefusal } from './modern.js';
import { RawHttpPool } from './raw-http.js';
import type { LegacyTranslatorOptions, TranslatorStats } from './modern.js';
import type { ProxyOptions } from './proxy.js';
import { pickHeaders, toWireError } from './proxy.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from './upstream.js';
import { rawHttpLink, sdkLink } from './legacy-link.js';

const log = createLogger('proxy');

export interface ModernHttpFrontOptions {
  target: UpstreamConfig;
  options: ProxyOptions;
  isHidden: (name: string) => string | undefined;
  maxBodyBytes: number;
  /** Overrides of the translator's bounds (held calls, sessions), for tests and operators. */
  translator?: Pick<LegacyTranslatorOptions, 'heldTtlMs' | 'maxHeld' | 'maxHeldPerTenant' | 'maxSessions' | 'maxSessionsPerTenant'>;
}

export type Era = 'modern' | 'legacy';

/** Largest refusal body read to tell a 2026-07-28 refusal from a 2025 one; a larger one is neither. */
const MAX_REFUSAL_BYTES = 64 * 1024;

/**
 * A `LegacyTranslator` whose sessions reach `target` with the proxy's options: at the message level for a
 * plain Streamable HTTP upstream (falling back to the SDK client when an `auto` upstream turns out to be
 * legacy SSE), through the v1 SDK client otherwise.
 */
export function createTranslator(
  target: UpstreamConfig,
  opts: ProxyOptions,
  isHidden: (name: string) => string | undefined,
  bounds: ModernHttpFrontOptions['translator'] = {},
): LegacyTranslator {
  const raw = reachableByMessages(target, opts) && process.env.CODEMODE_PROXY_RAW_HTTP !== '0';
  return new LegacyTranslator({
    ...bounds,
    label: describeUpstream(target),
    isHidden,
    connect: async (init, headers, handlers) => {
      if (!raw) return sdkLink(target, opts, init, headers, handlers);
      try {
        return await rawHttpLink(target as HttpUpstreamConfig, opts, init, headers, handlers);
      } catch (error) {
        const status = (error as { code?: unknown }).code;
        if (httpTransportOf(target as HttpUpstreamConfig) !== 'auto' || (status !== 404 && status !== 405)) throw error;
        return sdkLink(target, opts, init, headers, handlers);
      }
    },
  });
}

/** Whether a 2026-07-28 upstream can be reached by forwarding messages (Streamable HTTP, no OAuth, no custom fetch). */
export function reachableByMessages(target: UpstreamConfig, options: ProxyOptions): target is HttpUpstreamConfig {
  if (isStdioConfig(target) || httpTransportOf(target) === 'sse') return false;
  return options.authProvider === undefined && options.fetch === undefined;
}

/**
 * A Streamable HTTP upstream as 2026-07-28 sees it: one POST per message, and its era learned once from a
 * `server/discover` with the first request's envelope.
 */
export class ModernHttpUpstream {
  readonly #target: HttpUpstreamConfig;
  readonly #options: ProxyOptions;
  readonly #label: string;
  readonly #url: URL;
  readonly #agent: HttpAgent;
  readonly #inflight = new Set<ClientRequest>();
  #era: Promise<Era> | undefined;
  /** undici's pool for forwarding to a plain `http:` upstream (raw-http.ts says why); TLS uses node:http. */
  readonly pool: RawHttpPool | undefined;

  constructor(target: HttpUpstreamConfig, options: ProxyOptions) {
    this.#target = target;
    this.#options = options;
    this.#label = describeUpstream(target);
    this.#url = new URL(target.url);
    const https = this.#url.protocol === 'https:';
    this.#agent = https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.pool = https || process.env.CODEMODE_PROXY_RAW_HTTP === '0' ? undefined : new RawHttpPool(this.#url);
  }

  close(): void {
    for (const req of this.#inflight) req.destroy();
    this.#agent.destroy();
    void this.pool?.close();
  }

  /** Forgets the learned era (the upstream answered in the other era's terms): the next request asks again. */
  forgetEra(): void {
    this.#era = undefined;
  }

  /**
   * The upstream's era: asks `server/discover` once with this request's envelope. An answer, or a refusal
   * only a 2026-07-28 server gives, means modern; any other refusal (no session, method not found, HTTP 4xx)
   * means a 2025 server. A failure to reach it is not remembered.
   */
  learnEra(message: JsonRpcMessage, headers: Record<string, string>): Promise<Era> {
    this.#era ??= this.#probe(message, headers).catch((error: unknown) => {
      this.#era = undefined;
      throw error;
    });
    return this.#era;
  }

  async #probe(message: JsonRpcMessage, headers: Record<string, string>): Promise<Era> {
    const probe = { jsonrpc: '2.0', id: 'codemode-proxy-discover', method: 'server/discover', params: { _meta: message.params?._meta ?? {} } };
    const timeoutMs = this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const { res, req } = await this.post(
      { ...this.headers(headers), 'mcp-protocol-version': MODERN_PROTOCOL_VERSION, 'mcp-method': 'server/discover' },
      Buffer.from(JSON.stringify(probe)),
      AbortSignal.timeout(timeoutMs),
    );
    try {
      const status = res.statusCode ?? 0;
      const type = String(res.headers['content-type'] ?? '');
      if (!type.includes('json') && !type.includes('event-stream')) {
        res.resume();
        if (status >= 500) throw new Error(`HTTP ${status} from ${this.#label}`);
        log.info('the upstream refused server/discover; speaking MCP 2025 to it', { status });
        return 'legacy';
      }
      const answer = (await readAnswer(res, probe.id)).message as JsonRpcMessage;
      const versions = (answer.result as { supportedVersions?: unknown } | undefined)?.supportedVersions;
      if ((Array.isArray(versions) && versions.includes(MODERN_PROTOCOL_VERSION)) || (answer.error !== undefined && MODERN_ERROR_CODES.has(answer.error.code))) {
        log.info('the upstream speaks MCP 2026-07-28; forwarding 2026-07-28 requests as they are');
        return 'modern';
      }
      if (status >= 500) throw new Error(`HTTP ${status} from ${this.#label}: ${answer.error?.message ?? 'no answer'}`);
      log.info('the upstream does not speak MCP 2026-07-28; translating onto 2025 sessions', { status, code: answer.error?.code });
      return 'legacy';
    } finally {
      req.destroy();
    }
  }

  /** The headers of a POST upstream: the config's, the proxy's, the forwarded ones, and the content types. */
  headers(forwarded: Record<string, string>): OutgoingHttpHeaders {
    return { ...(this.#target.headers ?? {}), ...(this.#options.headers ?? {}), ...forwarded, 'content-type': 'application/json', accept: ACCEPT_BOTH };
  }

  /** POSTs `body`; resolves with the response head (the body is the caller's to read). */
  post(headers: OutgoingHttpHeaders, body: Buffer, signal: AbortSignal): Promise<{ res: IncomingMessage; req: ClientRequest }> {
    const url = this.#url;
    const send = url.protocol === 'https:' ? (httpsRequest as unknown as typeof httpRequest) : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, { method: 'POST', headers: { ...headers, 'content-length': body.length }, agent: this.#agent, signal });
      this.#inflight.add(req);
      req.once('close', () => this.#inflight.delete(req));
      req.once('response', (res) => resolve({ res, req }));
      req.once('error', reject);
      req.end(body);
    });
  }
}

export class ModernHttpFront {
  readonly #options: ProxyOptions;
  readonly #isHidden: (name: string) => string | undefined;
  readonly #maxBody: number;
  readonly #translator: LegacyTranslator;
  readonly #label: string;
  /** The upstream, when a 2026-07-28 one could be reached by forwarding messages. */
  readonly #upstream: ModernHttpUpstream | undefined;
  readonly #hasHidden: boolean;

  constructor(front: ModernHttpFrontOptions) {
    this.#hasHidden = (front.options.ignoreTools ?? []).length > 0;
    this.#options = front.options;
    this.#isHidden = front.isHidden;
    this.#maxBody = front.maxBodyBytes;
    this.#label = describeUpstream(front.target);
    this.#translator = createTranslator(front.target, front.options, front.isHidden, front.translator);
    this.#upstream = reachableByMessages(front.target, front.options) ? new ModernHttpUpstream(front.target, front.options) : undefined;
  }

  get stats(): TranslatorStats {
    return this.#translator.stats;
  }

  async close(): Promise<void> {
    this.#upstream?.close();
    await this.#translator.close();
  }

  /** Serves one 2026-07-28 HTTP request. `principal` is the bearer token's principal, when auth is on. */
  async handle(req: IncomingMessage, res: ServerResponse, principal: string | undefined): Promise<void> {
    if (req.method !== 'POST') {
      sendJson(
        res,
        405,
        errorResponse(null, RpcCode.InvalidRequest, `MCP ${MODERN_PROTOCOL_VERSION} over HTTP is POST only: it has no sessions and no standalone stream (use subscriptions/listen for notifications).`),
        { allow: 'POST' },
      );
      return;
    }
    const raw = await readBody(req, res, this.#maxBody);
    if (raw === undefined) return;
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      sendJson(res, 400, errorResponse(null, RpcCode.ParseError, 'Parse error: the request body is not JSON'));
      return;
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body) || (body as JsonRpcMessage).jsonrpc !== '2.0') {
      sendJson(res, 400, errorResponse(null, RpcCode.InvalidRequest, `Invalid request: MCP ${MODERN_PROTOCOL_VERSION} takes one JSON-RPC 2.0 message per POST (no batches).`));
      return;
    }
    const message = body as JsonRpcMessage;
    if (!isRequest(message)) {
      // Notifications need no answer here (cancellation over HTTP is closing the stream); a client sends no responses.
      if (typeof message.method === 'string' && (message.id === undefined || message.id === null)) res.writeHead(202).end();
      else sendJson(res, 400, errorResponse(null, RpcCode.InvalidRequest, `Invalid request: a ${MODERN_PROTOCOL_VERSION} client sends requests and notifications only.`));
      return;
    }
    if (message.method === 'initialize') {
      // Not a 2026-07-28 method. A 2026-07-28 upstream answers it itself (pure forwarding); otherwise this proxy
      // answers as a 2026-07-28 server that does not implement it.
      if (this.#upstream !== undefined && (await this.#upstream.learnEra(message, {}).catch(() => 'legacy' as const)) === 'modern') {
        // Final: the upstream's 404 with -32601 is its answer to pass on, not a sign it changed era.
        await this.#forward(this.#upstream, req, res, message, raw, pickHeaders(req.headers, this.#options.forwardHeaders ?? []), true);
        return;
      }
      sendJson(
        res,
        404,
        errorResponse(message.id, RpcCode.MethodNotFound, `Method not found: initialize is not part of MCP ${MODERN_PROTOCOL_VERSION}. A 2025 client sends it without a 2026-07-28 Mcp-Protocol-Version header.`),
      );
      return;
    }
    const mismatch = headerMismatch(req, message);
    if (mismatch !== undefined) {
      sendJson(res, 400, errorResponse(message.id, mismatch.code, mismatch.message));
      return;
    }
    const hidden = hiddenToolRefusal(message, this.#isHidden);
    if (hidden !== undefined) {
      sendJson(res, 200, hidden);
      return;
    }
    const headers = pickHeaders(req.headers, this.#options.forwardHeaders ?? []);
    const upstream = this.#upstream;
    const era = upstream === undefined ? 'legacy' : await this.#learnEra(upstream, res, message, headers);
    if (era === undefined) return;
    if (era === 'modern' && upstream !== undefined) {
      if (await this.#forward(upstream, req, res, message, raw, headers)) return;
    } else if (await this.#translate(req, res, message, principal, headers)) {
      return;
    }
    // The upstream answered in the other era's terms: it changed era (a restart, a deploy). Learn it again,
    // once, and serve this request on the path that fits.
    if (upstream === undefined) return;
    log.warn(`the upstream no longer speaks the era it spoke (${era === 'modern' ? '2026-07-28' : '2025'}); asking it again`, { upstream: this.#label });
    upstream.forgetEra();
    const again = await this.#learnEra(upstream, res, message, headers);
    if (again === undefined) return;
    if (again === 'modern') await this.#forward(upstream, req, res, message, raw, headers, true);
    else await this.#translate(req, res, message, principal, headers, true);
  }

  /** The upstream's era, or undefined after answering the client that it could not be learned. */
  async #learnEra(upstream: ModernHttpUpstream, res: ServerResponse, message: JsonRpcMessage & { id: JsonRpcId }, headers: Record<string, string>): Promise<Era | undefined> {
    try {
      return await upstream.learnEra(message, headers);
    } catch (error) {
      const wire = toWireError(error, 'server/discover', this.#label);
      sendJson(res, 200, errorResponse(message.id, wire.code, `The proxy could not reach the upstream to learn its protocol era: ${wire.message}`, wire.data));
      return undefined;
    }
  }

  /**
   * Same era on both sides: the request goes up as it came, the answer down as it arrives. Returns false,
   * having answered nothing, when the upstream refused the request the way a 2025 server refuses a request
   * without a session (it changed era); `final` passes such a refusal on instead.
   */
  async #forward(
    upstream: ModernHttpUpstream,
    req: IncomingMessage,
    res: ServerResponse,
    message: JsonRpcMessage & { id: JsonRpcId; method: string },
    raw: Buffer,
    forwarded: Record<string, string>,
    final = false,
  ): Promise<boolean> {
    const headers = upstream.headers(forwarded);
    for (const [name, value] of Object.entries(req.headers)) {
      if (name.startsWith('mcp-') && name !== 'mcp-session-id' && value !== undefined) headers[name] = value;
    }
    // tools/list answers are filtered by ignoreTools, which the streaming path below does not do.
    if (upstream.pool !== undefined && !(message.method === 'tools/list' && this.#hasHidden)) return this.#forwardPooled(upstream.pool, res, message, raw, headers, final);
    const gone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    let answer: { res: IncomingMessage; req: ClientRequest };
    try {
      answer = await upstream.post(headers, raw, gone.signal);
    } catch (error) {
      if (gone.signal.aborted) return true;
      const wire = toWireError(error, message.method, this.#label);
      sendJson(res, 200, errorResponse(message.id, wire.code, wire.message, wire.data));
      return true;
    }
    const up = answer.res;
    if (!final && up.statusCode === 400 && String(up.headers['content-type'] ?? '').includes('application/json')) {
      // A refusal: read it (bounded) to tell a 2026-07-28 refusal, passed on, from a 2025 "no session".
      const body = await readAll(up, MAX_REFUSAL_BYTES);
      if (isSessionRefusal(400, body === undefined ? undefined : (parseJson(body) as JsonRpcMessage | undefined))) return false;
      // Anything else is the upstream's answer, passed on as it came (cut at the cap).
      res.writeHead(400, { 'content-type': String(up.headers['content-type']) }).end(body ?? '');
      return true;
    }
    const down: OutgoingHttpHeaders = {};
    for (const name of RESPONSE_HEADERS) {
      const v: string | string[] | undefined = up.headers[name];
      if (v !== undefined) (down as Record<string, string | string[]>)[name] = v;
    }
    res.writeHead(up.statusCode ?? 502, down);
    up.once('error', () => res.destroy());
    if (message.method === 'tools/list' && up.statusCode === 200) pipeFilteredLists(up, res, new Set([message.id]), this.#isHidden);
    else up.pipe(res);
    return true;
  }

  /** `#forward` on undici's pool: the answer streamed down chunk by chunk, with backpressure. */
  #forwardPooled(pool: RawHttpPool, res: ServerResponse, message: JsonRpcMessage & { id: JsonRpcId; method: string }, raw: Buffer, headers: OutgoingHttpHeaders, final: boolean): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let status = 0;
      let refusal: Buffer[] | undefined;
      let size = 0;
      let gone = false;
      const abort = pool.post(headers as Record<string, string | string[] | number | undefined>, raw, {
        head: (s, h) => {
          status = s;
          if (!final && s === 400 && (h['content-type'] ?? '').includes('application/json')) {
            // A refusal: read it (bounded) to tell a 2026-07-28 refusal, passed on, from a 2025 "no session".
            refusal = [];
            return;
          }
          const down: OutgoingHttpHeaders = {};
          for (const name of RESPONSE_HEADERS) if (h[name] !== undefined) down[name] = h[name];
          res.writeHead(s, down);
        },
        data: (chunk) => {
          if (refusal === undefined) return res.write(chunk);
          size += chunk.length;
          if (size <= MAX_REFUSAL_BYTES) refusal.push(chunk);
          return true;
        },
        waitDrain: (resume) => res.once('drain', resume),
        end: () => {
          if (refusal === undefined) {
            res.end();
            resolve(true);
            return;
          }
          const raw = Buffer.concat(refusal);
          if (isSessionRefusal(status, size > MAX_REFUSAL_BYTES ? undefined : (parseJson(raw) as JsonRpcMessage | undefined))) {
            resolve(false);
            return;
          }
          // Anything else is the upstream's answer, passed on as it came (cut at the cap).
          res.writeHead(status, { 'content-type': 'application/json' }).end(raw);
          resolve(true);
        },
        error: (error) => {
          if (!gone && res.headersSent) res.destroy();
          else if (!gone) {
            const wire = toWireError(error, message.method, this.#label);
            sendJson(res, 200, errorResponse(message.id, wire.code, wire.message, wire.data));
          }
          resolve(true);
        },
      });
      res.once('close', () => {
        if (res.writableFinished) return;
        // The client closed its request: over HTTP that is how 2026-07-28 cancels, so the upstream's goes too.
        gone = true;
        abort();
        resolve(true);
      });
    });
  }

  /**
   * A 2025 upstream: the translator answers, with notifications on an event stream when the client takes one.
   * Returns false, having answered nothing, when the upstream turned out to speak only 2026-07-28 now.
   */
  async #translate(
    req: IncomingMessage,
    res: ServerResponse,
    message: JsonRpcMessage & { id: JsonRpcId; method: string },
    principal: string | undefined,
    headers: Record<string, string>,
    final = false,
  ): Promise<boolean> {
    const streams = String(req.headers.accept ?? '').includes('text/event-stream');
    if (message.method === 'subscriptions/listen' && !streams) {
      sendJson(res, 400, errorResponse(message.id, RpcCode.InvalidRequest, 'subscriptions/listen answers with an event stream: send Accept: text/event-stream.'));
      return true;
    }
    const gone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    let streaming = false;
    const event = (m: JsonRpcMessage): string => `event: message\ndata: ${JSON.stringify(m)}\n\n`;
    const notify = (m: JsonRpcMessage): void => {
      if (!streams || res.writableEnded || res.destroyed) return;
      if (!streaming) {
        streaming = true;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'mcp-protocol-version': MODERN_PROTOCOL_VERSION });
        res.flushHeaders();
      }
      res.write(event(m));
    };
    const tenant = JSON.stringify([principal ?? '', headers]);
    const answer = await this.#translator.answer({ request: message, tenant, headers, notify, signal: gone.signal }, !final);
    if (answer === ERA_CHANGED) return false;
    if (res.writableEnded || res.destroyed) return true;
    if (answer === undefined) {
      res.end();
      return true;
    }
    if (streaming) res.end(event(answer));
    // An unsupported version is refused with HTTP 400, as the revision requires.
    else sendJson(res, answer.error?.code === ModernCode.UnsupportedProtocolVersion ? 400 : 200, answer, { 'mcp-protocol-version': MODERN_PROTOCOL_VERSION });
    return true;
  }
}

/**
 * Where the request's headers disagree with its body, the error: a missing envelope version is invalid params
 * (-32602), a header that disagrees with the body a header mismatch (-32020), as 2026-07-28 says.
 */
function headerMismatch(req: IncomingMessage, message: JsonRpcMessage & { method: string }): { code: number; message: string } | undefined {
  const header = req.headers['mcp-protocol-version'];
  const meta = message.params?._meta;
  const version = typeof meta === 'object' && meta !== null ? (meta as Record<string, unknown>)[PROTOCOL_VERSION_META_KEY] : undefined;
  if (typeof version !== 'string') {
    return {
      code: RpcCode.InvalidParams,
      message: `Invalid params: a ${MODERN_PROTOCOL_VERSION} request carries its protocol version in _meta["${PROTOCOL_VERSION_META_KEY}"], and this one has ${meta === undefined ? 'no _meta' : 'none'}.`,
    };
  }
  if (version !== header) {
    return { code: ModernCode.HeaderMismatch, message: `The Mcp-Protocol-Version header (${String(header)}) does not match _meta["${PROTOCOL_VERSION_META_KEY}"] (${JSON.stringify(version)}).` };
  }
  const method = req.headers['mcp-method'];
  if (method !== message.method) {
    return {
      code: ModernCode.HeaderMismatch,
      message: method === undefined ? `The Mcp-Method header is missing: it must be ${message.method}.` : `The Mcp-Method header (${String(method)}) does not match the method in the body (${message.method}).`,
    };
  }
  return undefined;
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}
