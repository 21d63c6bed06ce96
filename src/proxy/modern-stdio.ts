/**
 * `codemode proxy` over stdio for a 2026-07-28 host. The host's first message decides the connection's
 * era: `initialize` keeps today's 2025 session (the SDK server of proxy.ts); a request whose `_meta` carries
 * 2026-07-28 makes the whole connection 2026-07-28, served here:
 * - a 2026-07-28 upstream gets the host's messages as they are: over stdio piped to the child line by line,
 *   over Streamable HTTP one POST per request with the revision's headers (`Mcp-Method`, `Mcp-Name`), its
 *   answers (JSON or an event stream) written back message by message;
 * - a 2025 upstream is reached through `LegacyTranslator` (modern.ts), as for HTTP clients.
 *
 * The upstream's era is learned once from a `server/discover` carrying the host's first envelope.
 * `ignoreTools` applies on every path.
 *
 * @module
 */

import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage, MessageExtraInfo } from '@modelcontextprotocol/sdk/types.js';
import { createLogger } from '../log.js';
import { MODERN_ERROR_CODES, MODERN_PROTOCOL_VERSION, ModernCode, PROTOCOL_VERSION_META_KEY, McpParamMemory, mcpNameHeader, modernVersionOf } from '../wire/eras.js';
import type { JsonRpcId, JsonRpcMessage } from '../wire/jsonrpc.js';
import { RpcCode, errorResponse, isRequest } from '../wire/jsonrpc.js';
import { SseParser } from '../wire/sse.js';
import type { UpstreamConfig } from './config.js';
import { describeUpstream, isStdioConfig } from './config.js';
import { readAll } from './forward-io.js';
import type { Era } from './modern-http.js';
import { ModernHttpUpstream, createTranslator, reachableByMessages } from './modern-http.js';
import { hiddenToolRefusal } from './modern.js';
import type { LegacyTranslator } from './modern.js';
import type { ProxyOptions } from './proxy.js';
import { toWireError } from './proxy.js';
import type { StdioUpstreamTransport } from './stdio-transport.js';
import { DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES } from './stdio-transport.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, stdioTransport } from './upstream.js';

const log = createLogger('proxy');

const PROBE_ID = 'codemode-proxy-discover';

export interface ModernStdioOptions {
  target: UpstreamConfig;
  options: ProxyOptions;
  isHidden: (name: string) => string | undefined;
}

/**
 * Wraps the downstream stdio transport so its first message can choose the era. Give it to `proxy.connect`
 * in place of the transport itself: 2025 messages reach the proxy session unchanged.
 */
export class EraSwitchingTransport implements Transport {
  onmessage?: ((message: JSONRPCMessage, extra?: MessageExtraInfo) => void) | undefined;
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  readonly #inner: Transport;
  readonly #options: ModernStdioOptions;
  #mode: 'undecided' | 'legacy' | 'modern' = 'undecided';
  #front: ModernStdioFront | undefined;

  constructor(inner: Transport, options: ModernStdioOptions) {
    this.#inner = inner;
    this.#options = options;
  }

  start(): Promise<void> {
    this.#inner.onmessage = (message, extra) => this.#route(message, extra);
    this.#inner.onclose = () => {
      void this.#front?.close();
      this.onclose?.();
    };
    this.#inner.onerror = (error) => this.onerror?.(error);
    return this.#inner.start();
  }

  send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    return this.#inner.send(message, options);
  }

  async close(): Promise<void> {
    await this.#front?.close();
    await this.#inner.close();
  }

  #route(message: JSONRPCMessage, extra?: MessageExtraInfo): void {
    const m = message as JsonRpcMessage;
    if (this.#mode === 'undecided') {
      if (isRequest(m) && modernVersionOf(m) !== undefined) {
        this.#mode = 'modern';
        this.#front = new ModernStdioFront(this.#options, (out) => void this.#inner.send(out as JSONRPCMessage).catch(() => undefined));
      } else if (m.method === 'initialize') {
        this.#mode = 'legacy';
      }
    }
    if (this.#mode === 'modern') this.#front!.handle(m);
    else this.onmessage?.(message, extra);
  }
}

/** Serves one 2026-07-28 stdio host. */
export class ModernStdioFront {
  readonly #target: UpstreamConfig;
  readonly #options: ProxyOptions;
  readonly #isHidden: (name: string) => string | undefined;
  readonly #write: (message: JsonRpcMessage) => void;
  readonly #label: string;
  #translator: LegacyTranslator | undefined;
  readonly #http: ModernHttpUpstream | undefined;
  /** A 2026-07-28 stdio upstream, piped. */
  #pipe: StdioUpstreamTransport | undefined;
  #era: Promise<Era> | undefined;
  /** Requests in flight: cancelling one aborts it (HTTP, translation) or is passed on (pipe). */
  readonly #inflight = new Map<JsonRpcId, AbortController>();
  /** `tools/list` requests whose answers are filtered by `ignoreTools`. */
  readonly #lists = new Set<JsonRpcId>();
  #closed = false;
  /** The `x-mcp-header` parameters of the upstream's tools, from the lists the host received (bounded). */
  readonly #paramHeaders = new McpParamMemory();

  constructor(options: ModernStdioOptions, write: (message: JsonRpcMessage) => void) {
    this.#target = options.target;
    this.#options = options.options;
    this.#isHidden = options.isHidden;
    this.#write = write;
    this.#label = describeUpstream(options.target);
    this.#http = reachableByMessages(options.target, options.options) ? new ModernHttpUpstream(options.target, options.options) : undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of this.#inflight.values()) c.abort();
    this.#http?.close();
    await Promise.all([this.#pipe?.close(), this.#translator?.close()]);
  }

  handle(message: JsonRpcMessage): void {
    if (this.#closed) return;
    if (!isRequest(message)) {
      this.#notification(message);
      return;
    }
    const version = (message.params?._meta as Record<string, unknown> | undefined)?.[PROTOCOL_VERSION_META_KEY];
    if (version !== MODERN_PROTOCOL_VERSION) {
      this.#write(
        version === undefined
          ? errorResponse(message.id, RpcCode.InvalidRequest, `This connection speaks MCP ${MODERN_PROTOCOL_VERSION}, and ${message.method} carries no protocol version in _meta["${PROTOCOL_VERSION_META_KEY}"].`)
          : errorResponse(message.id, ModernCode.UnsupportedProtocolVersion, `Unsupported protocol version ${JSON.stringify(version)}: this proxy speaks ${MODERN_PROTOCOL_VERSION}.`, {
              supported: [MODERN_PROTOCOL_VERSION],
              requested: version,
            }),
      );
      return;
    }
    const hidden = hiddenToolRefusal(message, this.#isHidden);
    if (hidden !== undefined) {
      this.#write(hidden);
      return;
    }
    const controller = new AbortController();
    this.#inflight.set(message.id, controller);
    void this.#request(message, controller.signal)
      .catch((error: unknown) => {
        if (controller.signal.aborted || this.#closed) return;
        const wire = toWireError(error, message.method, this.#label);
        this.#write(errorResponse(message.id, wire.code, wire.message, wire.data));
      })
      .finally(() => {
        if (this.#inflight.get(message.id) === controller) this.#inflight.delete(message.id);
      });
  }

  #notification(message: JsonRpcMessage): void {
    if (message.method === 'notifications/cancelled') {
      const id = message.params?.requestId;
      if (typeof id === 'string' || typeof id === 'number') {
        this.#inflight.get(id)?.abort();
        this.#inflight.delete(id);
      }
    }
    // A piped upstream hears every notification (cancellation included) as the host sent it.
    if (this.#pipe !== undefined && message.method !== undefined) void this.#pipe.send(message as JSONRPCMessage).catch(() => undefined);
  }

  async #request(message: JsonRpcMessage & { id: JsonRpcId; method: string }, signal: AbortSignal): Promise<void> {
    const era = await this.#learnEra(message);
    if (signal.aborted) return;
    if (era === 'legacy') {
      this.#translator ??= createTranslator(this.#target, this.#options, this.#isHidden);
      const answer = await this.#translator.answer({ request: message, tenant: 'stdio', headers: {}, notify: this.#write, signal });
      if (answer !== undefined && !signal.aborted) this.#write(answer);
      return;
    }
    if (message.method === 'tools/list') this.#lists.add(message.id);
    if (this.#pipe !== undefined) {
      await this.#pipe.send(message as JSONRPCMessage);
      return;
    }
    await this.#post(message, signal);
  }

  /** The upstream's era, learned once; a failure to learn it is not remembered. */
  #learnEra(message: JsonRpcMessage): Promise<Era> {
    this.#era ??= (this.#http !== undefined ? this.#http.learnEra(message, {}) : isStdioConfig(this.#target) ? this.#probeStdio(message) : Promise.resolve<Era>('legacy')).catch(
      (error: unknown) => {
        this.#era = undefined;
        throw error;
      },
    );
    return this.#era;
  }

  /**
   * Starts the stdio upstream and asks it `server/discover` with the host's envelope. A 2026-07-28 answer
   * keeps the child as the pipe; anything else closes it (the translator starts its own 2025 session).
   */
  async #probeStdio(message: JsonRpcMessage): Promise<Era> {
    if (!isStdioConfig(this.#target)) return 'legacy';
    const cfg = this.#target;
    const child = await stdioTransport(cfg, this.#options);
    const timeoutMs = this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const answer = await new Promise<JsonRpcMessage | undefined>((resolve, reject) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      child.onmessage = (m) => {
        const reply = m as JsonRpcMessage;
        if (reply.id !== PROBE_ID) return;
        clearTimeout(timer);
        resolve(reply);
      };
      child.onclose = () => {
        clearTimeout(timer);
        resolve(undefined);
      };
      child
        .start()
        .then(() => child.send({ jsonrpc: '2.0', id: PROBE_ID, method: 'server/discover', params: { _meta: message.params?._meta ?? {} } } as JSONRPCMessage))
        .catch(reject);
    }).catch((error: unknown) => {
      void child.close();
      throw error;
    });
    const versions = (answer?.result as { supportedVersions?: unknown } | undefined)?.supportedVersions;
    const modern = (Array.isArray(versions) && versions.includes(MODERN_PROTOCOL_VERSION)) || (answer?.error !== undefined && MODERN_ERROR_CODES.has(answer.error.code));
    if (!modern) {
      log.info('the upstream does not speak MCP 2026-07-28; translating onto a 2025 session', { code: answer?.error?.code });
      await child.close();
      return 'legacy';
    }
    log.info('the upstream speaks MCP 2026-07-28; piping the host to it');
    this.#pipe = child;
    child.onmessage = (m) => this.#fromPipe(m as JsonRpcMessage);
    child.onclose = () => {
      if (this.#pipe !== child) return;
      this.#pipe = undefined;
      this.#era = undefined;
      if (this.#closed) return;
      log.warn('the upstream exited; it will be started again on the next request', { upstream: this.#label });
      for (const [id, controller] of this.#inflight) {
        controller.abort();
        this.#write(errorResponse(id, RpcCode.InternalError, `Upstream ${this.#label} exited while handling this request.`, { reason: 'UPSTREAM_UNAVAILABLE' }));
      }
      this.#inflight.clear();
    };
    return 'modern';
  }

  #fromPipe(message: JsonRpcMessage): void {
    if (message.id === PROBE_ID) return;
    const isAnswer = message.method === undefined && message.id !== undefined && message.id !== null;
    if (isAnswer) this.#inflight.delete(message.id!);
    this.#write(this.#filtered(message));
  }

  #filtered(message: JsonRpcMessage): JsonRpcMessage {
    if (message.id === undefined || message.id === null || message.method !== undefined || !this.#lists.delete(message.id)) return message;
    const tools = message.result?.tools;
    if (!Array.isArray(tools)) return message;
    if (this.#http !== undefined) this.#paramHeaders.remember(tools as Array<{ name?: unknown; inputSchema?: unknown }>);
    return { ...message, result: { ...message.result, tools: (tools as Array<{ name?: unknown }>).filter((t) => typeof t.name !== 'string' || this.#isHidden(t.name) === undefined) } };
  }

  /** One request to a 2026-07-28 HTTP upstream; its answer, and the notifications before it, go to the host. */
  async #post(message: JsonRpcMessage & { id: JsonRpcId; method: string }, signal: AbortSignal): Promise<void> {
    const http = this.#http!;
    const headers = { ...http.headers({}), 'mcp-protocol-version': MODERN_PROTOCOL_VERSION, 'mcp-method': message.method };
    const name = mcpNameHeader(message.method, message.params);
    if (name !== undefined) (headers as Record<string, string>)['mcp-name'] = name;
    if (message.method === 'tools/call' && typeof message.params?.name === 'string') {
      Object.assign(headers, this.#paramHeaders.headers(message.params.name, message.params.arguments));
    }
    const { res } = await http.post(headers, Buffer.from(JSON.stringify(message)), signal);
    const type = String(res.headers['content-type'] ?? '');
    // No single message from the upstream is held whole past the cap the stdio transport keeps too.
    const maxBytes = this.#options.maxMessageBytes ?? DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES;
    const tooLarge = (): Error => new Error(`the upstream sent a message over the ${maxBytes}-byte limit (maxMessageBytes)`);
    if (type.includes('text/event-stream')) {
      let answered = false;
      let pending = 0;
      const parser = new SseParser({
        onEvent: (event) => {
          pending = 0;
          if (event.data === '') return;
          let m: JsonRpcMessage;
          try {
            m = JSON.parse(event.data) as JsonRpcMessage;
          } catch {
            log.debug('dropped an event that is not JSON from the upstream');
            return;
          }
          if (m.id === message.id && m.method === undefined) answered = true;
          this.#write(this.#filtered(m));
        },
      });
      res.setEncoding('utf8');
      for await (const chunk of res as AsyncIterable<string>) {
        pending += (chunk as string).length;
        if (pending > maxBytes) {
          res.destroy();
          throw tooLarge();
        }
        parser.feed(chunk);
      }
      if (!answered && !signal.aborted) throw new Error(`the upstream's event stream ended without answering ${message.method}`);
      return;
    }
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      res.destroy();
      throw tooLarge();
    }
    const body = await readAll(res, maxBytes);
    if (body === undefined) throw tooLarge();
    const text = body.toString('utf8');
    let reply: unknown;
    try {
      reply = JSON.parse(text);
    } catch {
      throw new Error(`the upstream answered HTTP ${res.statusCode ?? 0} with ${type === '' ? 'no content type' : type}: ${text.slice(0, 200)}`);
    }
    const m = reply as JsonRpcMessage;
    if (typeof m !== 'object' || m === null || (m.result === undefined && m.error === undefined)) {
      throw new Error(`the upstream answered HTTP ${res.statusCode ?? 0} without a JSON-RPC answer: ${text.slice(0, 200)}`);
    }
    // A JSON-RPC error on a 4xx (a -32022 on 400, say) is the upstream's answer: passed on intact, under the host's id.
    this.#write(this.#filtered({ ...m, id: message.id }));
  }
}

