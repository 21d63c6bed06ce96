/**
 * Connecting to an upstream MCP server, failing loudly.
 *
 * `connectUpstream` starts or reaches the server, runs `initialize`, and returns a connected SDK `Client`.
 * Every way this can go wrong becomes a `CodemodeError` whose code says which class of failure it is and
 * whose message names the cause and what to do:
 *
 * | failure                                             | code                   | typical time |
 * |-----------------------------------------------------|------------------------|--------------|
 * | nothing listening (ECONNREFUSED, DNS failure)       | `UPSTREAM_UNAVAILABLE` | < 50 ms      |
 * | wrong path, e.g. the server root instead of `/mcp`  | `UPSTREAM_UNAVAILABLE` | < 100 ms     |
 * | 401 / 403                                           | `UPSTREAM_AUTH`        | < 50 ms      |
 * | an HTML page, or JSON that is not JSON-RPC          | `UPSTREAM_PROTOCOL`    | < 50 ms      |
 * | a JSON-RPC error answer to `initialize`             | `UPSTREAM_PROTOCOL`    | (cause is the upstream `McpError`) |
 * | stdio command not found / not executable            | `UPSTREAM_UNAVAILABLE` | < 50 ms      |
 * | stdio command exits before answering                | `UPSTREAM_UNAVAILABLE` | its run time |
 * | accepts the connection but never answers            | `UPSTREAM_TIMEOUT`     | `connectTimeoutMs` (default 30 s) |
 *
 * @module
 */

// Types only (erased): the v1 client loads on the first legacy connection (loadV1Client).
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type * as V1ClientSdk from '@modelcontextprotocol/sdk/client/index.js';
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
// Types only (erased): the modules themselves load on first use (loadHttpSdk).
import type * as SseSdk from '@modelcontextprotocol/sdk/client/sse.js';
import type * as StreamableHttpSdk from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike, Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, InitializeResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import type {
  ClientCapabilities,
  Implementation,
  InitializeRequest,
  InitializeResult,
  JSONRPCMessage,
  MessageExtraInfo,
} from '@modelcontextprotocol/sdk/types.js';
import { CodemodeError, describeError } from '../errors.js';
import type { CodemodeErrorCode } from '../errors.js';
import { createLogger } from '../log.js';
import { describeHttpStatus, networkFailureOf } from '../wire/net-errors.js';
import { describeUpstream, httpTransportOf, isStdioConfig, parseUpstreamConfig } from './config.js';
import type { HttpUpstreamConfig, StdioUpstreamConfig, UpstreamConfig } from './config.js';
import { meteredFetch } from './metered-fetch.js';
import { DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES, StdioUpstreamTransport } from './stdio-transport.js';
import { NegotiatedClient, toV1Error } from './negotiated-client.js';
import type { UpstreamClient } from './negotiated-client.js';
// Types only (erased): the v2 client package loads on the first negotiated connection (loadV2Client).
import type * as V2ClientSdk from '@modelcontextprotocol/client';

const log = createLogger('proxy');

/**
 * How long `connectUpstream` waits for an upstream to answer `initialize`: 30 s. Long enough for an
 * `npx -y some-server` that downloads its package on first start, short enough that a hung upstream is
 * reported before a typical host gives up (hosts commonly wait 60 s).
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;

/** The identity codemode presents upstream when no downstream `initialize` is being forwarded. */
export const DEFAULT_CLIENT_INFO: Implementation = { name: 'codemode', version: '0.1.0' };

export interface ConnectUpstreamOptions {
  /** Client identity sent in `initialize`. Ignored when `initialize` is given. */
  clientInfo?: Implementation;
  /** Client capabilities sent in `initialize`. Ignored when `initialize` is given. */
  capabilities?: ClientCapabilities;
  /**
   * Forward these `initialize` params verbatim (protocol version, capabilities, clientInfo, `_meta`) instead
   * of codemode's own. The proxy uses this so the upstream sees the real downstream client.
   */
  initialize?: InitializeRequest['params'];
  /** Milliseconds to wait for the `initialize` answer. Default `DEFAULT_CONNECT_TIMEOUT_MS`. */
  connectTimeoutMs?: number;
  /** Aborts the connection attempt (rejects with `CodemodeError('ABORTED')`). */
  signal?: AbortSignal;
  /** HTTP only: OAuth client provider (SDK `OAuthClientProvider`) used on 401. */
  authProvider?: OAuthClientProvider;
  /** HTTP only: the fetch implementation, e.g. one that goes through HTTP(S)_PROXY. */
  fetch?: FetchLike;
  /**
   * Largest single message accepted from the upstream, in bytes. A bigger answer is discarded as it
   * streams in and its request fails with a JSON-RPC error naming the limit; the session stays up.
   * Default `DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES` (32 MiB).
   */
  maxMessageBytes?: number;
  /** HTTP only: extra headers merged over `config.headers` (e.g. allowlisted downstream headers). */
  headers?: Record<string, string>;
  /**
   * Stdio only: start the child with our whole environment (plus `config.env`). Default `false`: only a
   * minimal set (PATH, HOME, USER, SHELL, TERM, LOGNAME) plus `config.env`, like other MCP hosts, so secrets
   * in our environment do not leak into every server.
   */
  inheritEnv?: boolean;
  /** Stdio only: receives the child's stderr. Default: written through to our stderr. */
  onStderr?: (chunk: string) => void;
  /**
   * Which protocol eras to speak. `legacy` (the default): the v1 SDK client, `initialize` only (the proxy
   * forwards a downstream `initialize` this way). For both eras pass `NegotiatedConnectOptions`.
   */
  protocol?: 'legacy';
  /** Called on each fresh `Client` before it connects: install request/notification handlers here. */
  configure?: (client: Client) => void;
  /**
   * Hold the `notifications/initialized` the client sends after `initialize` until
   * `UpstreamConnection.releaseInitialized()` is called. A proxy uses this so the upstream learns the
   * session is ready when the downstream client is, not before (servers send requests such as
   * `roots/list` as soon as they see it).
   */
  holdInitialized?: boolean;
}

/**
 * Options for a connection that negotiates the era: the v2 SDK client in `auto` mode, 2026-07-28 where the
 * server offers it (`server/discover`), else 2025-11-25 (`initialize`). Over stdio the probe runs on the
 * one child process (no second copy of the server is started). The connection's `client` is an
 * `UpstreamClient`.
 */
export interface NegotiatedConnectOptions extends Omit<ConnectUpstreamOptions, 'protocol' | 'configure' | 'initialize' | 'holdInitialized'> {
  protocol: 'auto';
  /** Called on the client before it connects: install notification handlers here. */
  configure?: (client: UpstreamClient) => void;
  /** Called as soon as a stdio upstream's child process was spawned (not for HTTP). */
  onSpawn?: () => void;
  /**
   * Called once a stdio upstream's child was spawned, while it boots (a few hundred ms for a Node server):
   * time on the caller's thread that would otherwise be spent waiting, for its own warm-up.
   */
  whileBooting?: () => void;
}

/** A live upstream session. */
export interface UpstreamConnection<C extends UpstreamClient = Client> {
  /** The connected SDK client. Set `client.onclose` to learn when the upstream goes away. */
  readonly client: C;
  /** The transport actually used (`auto` resolves to `http` or `sse`). */
  readonly kind: 'stdio' | 'http' | 'sse';
  /**
   * The upstream's `initialize` answer, exactly as received (capabilities, serverInfo, instructions, ...).
   * On a 2026-07-28 connection (no `initialize`), the same fields from its `server/discover` answer, with
   * the negotiated version as `protocolVersion`.
   */
  readonly initializeResult: InitializeResult;
  /** The validated config. */
  readonly config: UpstreamConfig;
  /** The upstream's Mcp-Session-Id (Streamable HTTP only). */
  readonly sessionId: string | undefined;
  /** Sends the held `notifications/initialized` (see `holdInitialized`); no-op otherwise. Idempotent. */
  releaseInitialized(): Promise<void>;
  /** Terminates the upstream session (HTTP DELETE, or ends the child process). Idempotent, never throws. */
  close(): Promise<void>;
}

/**
 * A transport wrapper that rewrites the outgoing `initialize` params and records the raw `initialize`
 * result. The SDK `Client` always sends its own protocol version and identity; a proxy has to send the
 * downstream's, and return the upstream's answer untouched (including fields the SDK schema strips).
 */
class InitializeTap implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: (<T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void) | undefined;
  rawResult: Record<string, unknown> | undefined;
  /** The held `notifications/initialized`, when `hold` is set. */
  held: { message: JSONRPCMessage; options: TransportSendOptions | undefined } | undefined;
  hold = false;
  #initId: string | number | undefined;

  readonly inner: Transport;
  readonly override: InitializeRequest['params'] | undefined;

  constructor(inner: Transport, override: InitializeRequest['params'] | undefined) {
    this.inner = inner;
    this.override = override;
    inner.onclose = () => this.onclose?.();
    inner.onerror = (error) => this.onerror?.(error);
    inner.onmessage = (message, extra) => {
      if (this.#initId !== undefined && 'id' in message && message.id === this.#initId && 'result' in message) {
        this.rawResult = message.result as Record<string, unknown>;
        this.#initId = undefined;
      }
      this.onmessage?.(message, extra);
    };
  }

  get sessionId(): string | undefined {
    return this.inner.sessionId;
  }

  setProtocolVersion(version: string): void {
    this.inner.setProtocolVersion?.(version);
  }

  start(): Promise<void> {
    return this.inner.start();
  }

  send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if ('method' in message && message.method === 'initialize' && 'id' in message) {
      this.#initId = message.id;
      if (this.override !== undefined) message = { ...message, params: this.override };
    }
    if (this.hold && 'method' in message && message.method === 'notifications/initialized' && !('id' in message)) {
      this.held = { message, options };
      return Promise.resolve();
    }
    return this.inner.send(message, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

interface Attempt {
  kind: 'stdio' | 'http' | 'sse';
  transport: Transport;
  stdio?: StdioUpstreamTransport;
}

/**
 * The SDK's HTTP client side (Streamable HTTP, legacy SSE, OAuth), loaded the first time an HTTP upstream
 * connects: about 55-60 ms of module loading that a start-up with only stdio upstreams (or none) does not
 * pay. Its error classes are recognised by name (`isSdkHttpError`), not against this copy: other code makes
 * them from its own static import (the proxy's forward path, callers of `isSessionExpiredError`), before
 * this module ever loaded them.
 */
type HttpClientSdk = typeof StreamableHttpSdk & typeof SseSdk;
let httpSdk: HttpClientSdk | undefined;
async function loadHttpSdk(): Promise<HttpClientSdk> {
  if (httpSdk !== undefined) return httpSdk;
  const [streamable, sse] = await Promise.all([import('@modelcontextprotocol/sdk/client/streamableHttp.js'), import('@modelcontextprotocol/sdk/client/sse.js')]);
  httpSdk = { ...streamable, ...sse };
  return httpSdk;
}

/** The (not yet started) transport of a stdio upstream, with its environment, cwd, stderr and message cap. */
export async function stdioTransport(
  cfg: StdioUpstreamConfig,
  options: Pick<ConnectUpstreamOptions, 'inheritEnv' | 'onStderr' | 'maxMessageBytes'>,
): Promise<StdioUpstreamTransport> {
  return new StdioUpstreamTransport({
    command: cfg.command,
    args: cfg.args ?? [],
    env: await stdioEnv(cfg, options.inheritEnv ?? false),
    cwd: cfg.cwd,
    onStderr: options.onStderr,
    maxMessageBytes: options.maxMessageBytes,
  });
}

/** The SDK's default child environment (PATH, HOME, ...), from its stdio client module, loaded when first needed (~20 ms). */
let defaultEnvironment: (() => Record<string, string>) | undefined;
async function loadDefaultEnvironment(): Promise<() => Record<string, string>> {
  defaultEnvironment ??= (await import('@modelcontextprotocol/sdk/client/stdio.js')).getDefaultEnvironment;
  return defaultEnvironment;
}

async function stdioEnv(config: StdioUpstreamConfig, inheritEnv: boolean): Promise<Record<string, string>> {
  const base: Record<string, string> = {};
  const source = inheritEnv ? process.env : (await loadDefaultEnvironment())();
  for (const [k, v] of Object.entries(source)) if (v !== undefined) base[k] = v;
  return { ...base, ...(config.env ?? {}) };
}


type SdkHttpErrorName = 'StreamableHTTPError' | 'SseError' | 'UnauthorizedError' | 'SdkHttpError';

/** Whether `err` is (or extends) one of the SDK's HTTP client error classes, whichever import made it. */
function isSdkHttpError(err: unknown, ...names: SdkHttpErrorName[]): err is Error & { code?: unknown } {
  if (!(err instanceof Error)) return false;
  // A short chain (subclass -> SDK class -> Error); the bound is a guard against a hostile prototype loop.
  let proto: unknown = Object.getPrototypeOf(err);
  for (let depth = 0; depth < 8 && proto !== null && proto !== Error.prototype; depth++) {
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
    if (typeof name === 'string' && (names as string[]).includes(name)) return true;
    proto = Object.getPrototypeOf(proto);
  }
  return false;
}

function httpStatusOf(err: unknown): number | undefined {
  if (isSdkHttpError(err, 'StreamableHTTPError', 'SseError')) {
    return typeof err.code === 'number' && err.code > 0 ? err.code : undefined;
  }
  // The v2 SDK's HTTP errors carry the status as `status` (their `code` is a string).
  if (isSdkHttpError(err, 'SdkHttpError')) {
    const status = (err as { status?: unknown }).status;
    return typeof status === 'number' && status > 0 ? status : undefined;
  }
  return undefined;
}

interface ClassifyContext {
  label: string;
  kind: 'stdio' | 'http' | 'sse';
  timeoutMs: number;
  stdio?: StdioUpstreamTransport | undefined;
  /** For `auto`: the Streamable HTTP failure that made us try SSE. */
  httpFailure?: unknown;
}

function err(code: CodemodeErrorCode, message: string, cause: unknown): CodemodeError {
  return new CodemodeError(code, message, { cause });
}

/** Turns whatever a connection attempt threw into a `CodemodeError` that names the cause. */
export function classifyConnectError(error: unknown, ctx: ClassifyContext): CodemodeError {
  if (error instanceof CodemodeError) return error;
  const { label } = ctx;
  const detail = describeError(error);

  if (ctx.stdio !== undefined) {
    const t = ctx.stdio;
    const tail = t.stderrTail === '' ? '' : ` Its stderr ended with: ${JSON.stringify(t.stderrTail.slice(-600))}`;
    if (t.spawnError !== undefined) {
      const code = t.spawnError.code;
      const why =
        code === 'ENOENT'
          ? 'the command was not found. Check that it is installed and on PATH (or give an absolute path)'
          : code === 'EACCES'
            ? 'the command is not executable (permission denied)'
            : `it could not be started (${code ?? t.spawnError.message})`;
      return err('UPSTREAM_UNAVAILABLE', `Could not start upstream \`${label}\`: ${why}.`, error);
    }
    if (error instanceof McpError && error.code === ErrorCode.RequestTimeout) {
      const bad =
        t.firstBadLine !== undefined
          ? ` It wrote output to stdout that is not JSON-RPC (${t.firstBadLine}); MCP stdio servers must log to stderr only.`
          : '';
      return err(
        bad === '' ? 'UPSTREAM_TIMEOUT' : 'UPSTREAM_PROTOCOL',
        `Upstream \`${label}\` started but did not answer initialize within ${ctx.timeoutMs} ms.${bad} Check that it is an MCP stdio server, or raise connectTimeoutMs.${tail}`,
        error,
      );
    }
    if (t.exitInfo !== undefined) {
      const how = t.exitInfo.signal !== null ? `was killed by ${t.exitInfo.signal}` : `exited with code ${t.exitInfo.code ?? 'unknown'}`;
      const bad = t.firstBadLine !== undefined ? ` It wrote non-JSON-RPC output to stdout (${t.firstBadLine}).` : '';
      return err('UPSTREAM_UNAVAILABLE', `Upstream \`${label}\` ${how} before answering initialize.${bad}${tail}`, error);
    }
  }

  if (error instanceof McpError) {
    if (error.code === ErrorCode.RequestTimeout) {
      return err(
        'UPSTREAM_TIMEOUT',
        `Upstream ${label} accepted the connection but did not answer initialize within ${ctx.timeoutMs} ms. Check that it is a healthy MCP server, or raise connectTimeoutMs.`,
        error,
      );
    }
    if (error.code === ErrorCode.ConnectionClosed) {
      return err('UPSTREAM_UNAVAILABLE', `Upstream ${label} closed the connection before answering initialize.`, error);
    }
    return err('UPSTREAM_PROTOCOL', `Upstream ${label} refused initialize: ${error.message}`, error);
  }

  if (isSdkHttpError(error, 'UnauthorizedError')) {
    return err(
      'UPSTREAM_AUTH',
      `Upstream ${label} requires authorization (${error.message}). Complete the OAuth flow or pass an Authorization header.`,
      error,
    );
  }

  const status = httpStatusOf(error);
  if (status !== undefined) {
    const prefix = `Upstream ${label} answered ${describeHttpStatus(status)}`;
    if (status === 401 || status === 403) {
      return err(
        'UPSTREAM_AUTH',
        `${prefix}: authorization was ${status === 401 ? 'required and not accepted' : 'denied'}. Check the token or credentials (an Authorization header, or OAuth).`,
        error,
      );
    }
    if (status === 404 || status === 405) {
      const httpStatus = httpStatusOf(ctx.httpFailure);
      const both = httpStatus !== undefined ? ` (Streamable HTTP POST: ${httpStatus}; legacy SSE GET: ${status})` : '';
      const path = new URL(label).pathname;
      const hint =
        path === '/' || path === ''
          ? ' This looks like the server root: MCP endpoints usually live at /mcp (or /sse for legacy servers).'
          : ' Check the path: MCP endpoints usually live at /mcp (or /sse for legacy servers).';
      return err('UPSTREAM_UNAVAILABLE', `${prefix}: there is no MCP endpoint at this URL${both}.${hint}`, error);
    }
    if (status >= 500) {
      return err('UPSTREAM_UNAVAILABLE', `${prefix}: the server failed. ${detail}`, error);
    }
    return err('UPSTREAM_PROTOCOL', `${prefix} to initialize, which is not a valid MCP answer. ${detail}`, error);
  }

  const unexpectedContent =
    (isSdkHttpError(error, 'StreamableHTTPError') || (error as { code?: unknown } | null)?.code === 'CLIENT_HTTP_UNEXPECTED_CONTENT') &&
    /Unexpected content type/i.test((error as Error).message);
  if (unexpectedContent && error instanceof Error) {
    return err(
      'UPSTREAM_PROTOCOL',
      `Upstream ${label} is not an MCP server: it answered initialize with ${error.message.replace(/^.*Unexpected content type:\s*/i, 'content type ')} instead of JSON-RPC (application/json or text/event-stream).`,
      error,
    );
  }

  const net = networkFailureOf(error);
  if (net !== undefined) {
    return err('UPSTREAM_UNAVAILABLE', `Cannot reach upstream ${label}: ${net.text} (${net.code}). Is the server running?`, error);
  }

  // Zod (JSON-RPC schema) and JSON syntax errors come from a body that is not JSON-RPC.
  if (error instanceof SyntaxError || (error instanceof Error && (error.name === 'ZodError' || error.name === '$ZodError'))) {
    return err(
      'UPSTREAM_PROTOCOL',
      `Upstream ${label} is not an MCP server: its answer to initialize is not a JSON-RPC message (${detail.slice(0, 200)}).`,
      error,
    );
  }
  if (error instanceof Error && /protocol version is not supported/i.test(error.message)) {
    return err('UPSTREAM_PROTOCOL', `Upstream ${label}: ${error.message}.`, error);
  }
  if (error instanceof TypeError && /fetch failed/i.test(error.message)) {
    return err('UPSTREAM_UNAVAILABLE', `Cannot reach upstream ${label}: ${describeError(error.cause ?? error)}.`, error);
  }
  return err('UPSTREAM_UNAVAILABLE', `Connecting to upstream ${label} failed: ${detail}`, error);
}

/**
 * Describes a failure of an established upstream session while it handled `method` (a transport error,
 * not a JSON-RPC error answer): the same classes as `connectUpstream`, phrased for a running session.
 */
export function classifyRequestError(error: unknown, label: string, method: string): CodemodeError {
  if (error instanceof CodemodeError) return error;
  const status = httpStatusOf(error);
  if (status === 401 || status === 403) {
    return err(
      'UPSTREAM_AUTH',
      `Upstream ${label} ${status === 401 ? 'rejected the credentials' : 'denied access'} (HTTP ${status}) for ${method}. The token may have expired or lack a scope; renew it (or complete OAuth) and retry.`,
      error,
    );
  }
  if (status !== undefined && status >= 500) {
    return err('UPSTREAM_UNAVAILABLE', `Upstream ${label} failed with HTTP ${status} while handling ${method}.`, error);
  }
  if (status !== undefined) {
    return err('UPSTREAM_PROTOCOL', `Upstream ${label} answered ${method} with HTTP ${status}: ${describeError(error).slice(0, 300)}`, error);
  }
  const net = networkFailureOf(error);
  if (net !== undefined) {
    return err('UPSTREAM_UNAVAILABLE', `Upstream ${label} became unreachable during ${method}: ${net.text} (${net.code}).`, error);
  }
  if (error instanceof TypeError && /fetch failed/i.test(error.message)) {
    return err('UPSTREAM_UNAVAILABLE', `Upstream ${label} became unreachable during ${method}: ${describeError(error.cause ?? error)}.`, error);
  }
  return err('UPSTREAM_UNAVAILABLE', `Forwarding ${method} to upstream ${label} failed: ${describeError(error)}`, error);
}

/** The 2026-07-28 error code for an unsupported protocol version. */
const UNSUPPORTED_PROTOCOL_VERSION = -32022;

/**
 * Whether a failed 2025 `initialize` is a 2026-07-28-only server's refusal: the unsupported-version error
 * (-32022), as a JSON-RPC answer or in the body of an HTTP 400.
 */
export function isModernOnlyRefusal(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof McpError && e.code === UNSUPPORTED_PROTOCOL_VERSION) return true;
    if (e.message.includes(`"code":${UNSUPPORTED_PROTOCOL_VERSION}`)) return true;
  }
  return false;
}

/**
 * Whether a failed 2025 `initialize` may come from a 2026-07-28-only server: its unsupported-version refusal
 * (`isModernOnlyRefusal`), or "method not found" as the JSON-RPC answer, which no 2025 server gives to
 * `initialize` and some 2026-07-28-only servers do. Either way the caller asks `server/discover` next.
 */
export function mayBeModernOnly(error: unknown): boolean {
  if (isModernOnlyRefusal(error)) return true;
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof McpError && e.code === ErrorCode.MethodNotFound) return true;
  }
  return false;
}

/**
 * True for an error that says the upstream's HTTP session is gone (404, or 400 from servers that say so),
 * after which a client should connect again; the request was refused, not run, so retrying it is safe.
 *
 * @example
 * ```ts
 * try { return await up.client.callTool(call); }
 * catch (err) { if (!isSessionExpiredError(err)) throw err; up = await connectUpstream(config); return up.client.callTool(call); }
 * ```
 */
export function isSessionExpiredError(error: unknown): boolean {
  const status = httpStatusOf(error);
  if (status === 404) return true;
  // server-everything and other SDK-based servers answer 400 "No valid session ID" for a session they
  // don't know (for example after a restart), where the spec says 404.
  if (status === 400) return /session/i.test(describeError(error));
  return false;
}

async function attemptConnect(
  attempt: Attempt,
  options: ConnectUpstreamOptions,
  timeoutMs: number,
): Promise<{ client: Client; tap: InitializeTap }> {
  const init = options.initialize;
  const { Client } = await loadV1Client();
  const client = new Client(init?.clientInfo ?? options.clientInfo ?? DEFAULT_CLIENT_INFO, {
    capabilities: init?.capabilities ?? options.capabilities ?? {},
  });
  options.configure?.(client);
  const tap = new InitializeTap(attempt.transport, init);
  tap.hold = options.holdInitialized ?? false;
  await client.connect(tap, {
    timeout: timeoutMs,
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  });
  return { client, tap };
}

function withDeadline<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/**
 * Connects to an upstream MCP server and completes `initialize`.
 *
 * Rejects with `CodemodeError` (`UPSTREAM_UNAVAILABLE`, `UPSTREAM_TIMEOUT`, `UPSTREAM_AUTH`,
 * `UPSTREAM_PROTOCOL`, `INVALID_CONFIG` or `ABORTED`) whose message names the cause; `cause` holds the
 * original error (an upstream `McpError`, the SDK's `UnauthorizedError`, a spawn error, ...).
 *
 * @example
 * ```ts
 * const up = await connectUpstream({ url: 'http://127.0.0.1:3000/mcp' });
 * try {
 *   const { tools } = await up.client.listTools();
 * } finally {
 *   await up.close();
 * }
 * ```
 */
export async function connectUpstream(config: UpstreamConfig | unknown, options: NegotiatedConnectOptions): Promise<UpstreamConnection<UpstreamClient>>;
export async function connectUpstream(config: UpstreamConfig | unknown, options?: ConnectUpstreamOptions): Promise<UpstreamConnection>;
export async function connectUpstream(
  config: UpstreamConfig | unknown,
  anyOptions: ConnectUpstreamOptions | NegotiatedConnectOptions = {},
): Promise<UpstreamConnection<UpstreamClient>> {
  const options = anyOptions;
  const negotiated = options.protocol === 'auto';
  const cfg = parseUpstreamConfig(config);
  const label = describeUpstream(cfg);
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new CodemodeError('INVALID_ARGUMENT', `connectTimeoutMs must be a positive number of milliseconds, got ${String(timeoutMs)}`);
  }
  if (options.maxMessageBytes !== undefined && !(Number.isSafeInteger(options.maxMessageBytes) && options.maxMessageBytes > 0)) {
    throw new CodemodeError('INVALID_ARGUMENT', `maxMessageBytes must be a positive whole number of bytes, got ${String(options.maxMessageBytes)}`);
  }
  if (options.signal?.aborted) throw new CodemodeError('ABORTED', `Connecting to upstream ${label} was aborted.`);
  const started = Date.now();

  const run = async (attempt: Attempt, budgetMs: number, httpFailure?: unknown): Promise<UpstreamConnection<UpstreamClient>> => {
    try {
      // The client's own request timeout covers a silent upstream; the outer deadline also covers a fetch
      // or spawn that never settles, so no attempt outlives its budget.
      return await withDeadline<UpstreamConnection<UpstreamClient>>(
        negotiated
          ? connectNegotiatedAttempt(cfg, attempt, options as NegotiatedConnectOptions, budgetMs)
          : connectLegacyAttempt(cfg, label, attempt, options as ConnectUpstreamOptions, budgetMs),
        budgetMs + 250,
        () => new McpError(ErrorCode.RequestTimeout, 'Request timed out'),
      );
    } catch (error) {
      // Classify first: closing the transport changes what it reports (a timed-out child then "exits").
      const classified = classifyConnectError(toV1Error(error), { label, kind: attempt.kind, timeoutMs, stdio: attempt.stdio, httpFailure });
      attempt.stdio?.kill();
      await attempt.transport.close().catch(() => undefined);
      if (options.signal?.aborted) throw new CodemodeError('ABORTED', `Connecting to upstream ${label} was aborted.`, { cause: error });
      throw classified;
    }
  };

  if (isStdioConfig(cfg)) {
    const stdio = await stdioTransport(cfg, options);
    return run({ kind: 'stdio', transport: stdio, stdio }, timeoutMs);
  }

  const choice = httpTransportOf(cfg);
  const transport = (kind: 'http' | 'sse') => makeHttpTransport(cfg, kind, options, negotiated ? 'v2' : 'v1');
  if (choice === 'sse') return run({ kind: 'sse', transport: await transport('sse') }, timeoutMs);
  try {
    return await run({ kind: 'http', transport: await transport('http') }, timeoutMs);
  } catch (error) {
    const status = httpStatusOf((error as CodemodeError).cause);
    if (choice !== 'auto' || (status !== 404 && status !== 405)) throw error;
    const remaining = Math.max(1, timeoutMs - (Date.now() - started));
    log.debug('Streamable HTTP refused, trying legacy SSE', { url: cfg.url, status });
    return run({ kind: 'sse', transport: await transport('sse') }, remaining, (error as CodemodeError).cause);
  }
}

/** One `initialize` with the v1 client (the proxy's path): the raw answer is kept and validated. */
async function connectLegacyAttempt(cfg: UpstreamConfig, label: string, attempt: Attempt, options: ConnectUpstreamOptions, budgetMs: number): Promise<UpstreamConnection> {
  const connected = await attemptConnect(attempt, options, budgetMs);
  const raw = connected.tap.rawResult;
  const parsed = InitializeResultSchema.safeParse(raw);
  if (!parsed.success) {
    throw new CodemodeError('UPSTREAM_PROTOCOL', `Upstream ${label} sent an invalid initialize result: ${parsed.error.message.slice(0, 300)}`);
  }
  return makeConnection(cfg, attempt, connected.client, connected.tap, { ...(raw as InitializeResult) });
}

/**
 * The v1 SDK client (about 60 ms of loading, on top of the protocol types), loaded on the first legacy
 * connection: `codemode serve` and `codemode run` connect with the v2 client and never pay it.
 */
let v1Client: typeof V1ClientSdk | undefined;
async function loadV1Client(): Promise<typeof V1ClientSdk> {
  v1Client ??= await import('@modelcontextprotocol/sdk/client/index.js');
  return v1Client;
}

/** The v2 SDK client, loaded on the first negotiated connection (the proxy, which stays on v1, never pays it). */
type V2Sdk = typeof V2ClientSdk;
let v2Sdk: V2Sdk | undefined;
let clientSchemasBuilt = false;
async function loadV2Client(): Promise<V2Sdk> {
  v2Sdk ??= await import('@modelcontextprotocol/client');
  return v2Sdk;
}

/** The options both SDK lines' HTTP transports take (their types differ only in optional auth members). */
interface HttpTransportOptions {
  requestInit: RequestInit;
  fetch?: FetchLike;
  authProvider?: OAuthClientProvider;
  eventSourceInit?: { fetch: FetchLike };
}
type HttpTransportClass = new (url: URL, options: HttpTransportOptions) => Transport;

/**
 * An upstream HTTP transport with the config's headers, the caller's auth and a metered fetch: the v1 SDK's
 * (the proxy's legacy connections) or the v2 SDK's (negotiated ones: they send the 2026-07-28 headers).
 */
async function makeHttpTransport(config: HttpUpstreamConfig, kind: 'http' | 'sse', options: ConnectUpstreamOptions | NegotiatedConnectOptions, sdk: 'v1' | 'v2'): Promise<Transport> {
  const classes = sdk === 'v1' ? await loadHttpSdk() : await loadV2Client();
  const TransportClass = (kind === 'http' ? classes.StreamableHTTPClientTransport : classes.SSEClientTransport) as unknown as HttpTransportClass;
  const headers = { ...(config.headers ?? {}), ...(options.headers ?? {}) };
  const auth = options.authProvider !== undefined ? { authProvider: options.authProvider } : {};
  // Every body is metered: no single upstream message over the cap is buffered whole.
  const fetchFn = meteredFetch(options.fetch, options.maxMessageBytes ?? DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES);
  if (kind === 'http') return new TransportClass(new URL(config.url), { requestInit: { headers }, fetch: fetchFn, ...auth });
  return new TransportClass(new URL(config.url), {
    requestInit: { headers },
    // EventSource does its own GET; it needs the headers (and fetch) too, or an auth header is lost.
    eventSourceInit: {
      fetch: (input, init) => fetchFn(input, { ...init, headers: { ...(init?.headers as Record<string, string> | undefined), ...headers } }),
    },
    ...auth,
    ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
  });
}

/** One negotiation with the v2 client: `server/discover` first, `initialize` when the server has no 2026-07-28. */
async function connectNegotiatedAttempt(cfg: UpstreamConfig, attempt: Attempt, options: NegotiatedConnectOptions, budgetMs: number): Promise<UpstreamConnection<NegotiatedClient>> {
  // The child boots (a few hundred ms) while the client code loads (about 50 ms, the first time).
  if (attempt.stdio !== undefined) {
    void attempt.stdio.prestart();
    options.onSpawn?.();
  }
  const sdk = await loadV2Client();
  if (attempt.stdio !== undefined) {
    // The client's wire schemas are built on first use, which is parsing the child's first answer: build
    // them now, while the child boots, off the path from its answer to a connection. Once per process.
    if (!clientSchemasBuilt) {
      clientSchemasBuilt = true;
      sdk.preloadSchemas();
    }
    options.whileBooting?.();
  }
  const inner = new sdk.Client(options.clientInfo ?? DEFAULT_CLIENT_INFO, {
    capabilities: (options.capabilities ?? {}) as V2ClientSdk.ClientCapabilities,
    versionNegotiation: { mode: 'auto', probe: { timeoutMs: budgetMs } },
  });
  const client = new NegotiatedClient(inner);
  options.configure?.(client);
  // The v2 client's probe does not watch the connect signal: an abort closes the transport, which ends it.
  const onAbort = () => void attempt.transport.close().catch(() => undefined);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await inner.connect(attempt.transport as unknown as V2ClientSdk.Transport, {
      timeout: budgetMs,
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    });
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  if (inner.getProtocolEra() === 'modern' && inner.getServerCapabilities()?.tools?.listChanged === true) {
    // 2026-07-28 has no unsolicited notifications: tool-list changes come on a subscriptions/listen stream,
    // and reach the same notification handlers a 2025 connection's would.
    await inner.listen({ toolsListChanged: true }, { timeout: budgetMs }).catch((error: unknown) => {
      log.warn('upstream offers tools.listChanged but refused subscriptions/listen; its tool changes will not be seen', {
        upstream: describeUpstream(cfg),
        error: describeError(error),
      });
    });
  }
  const serverInfo = inner.getServerVersion() ?? { name: 'unknown', version: '' };
  const instructions = inner.getInstructions();
  const initializeResult = {
    protocolVersion: inner.getNegotiatedProtocolVersion() ?? '',
    capabilities: (inner.getServerCapabilities() ?? {}) as InitializeResult['capabilities'],
    serverInfo,
    ...(instructions !== undefined ? { instructions } : {}),
  } as InitializeResult;
  let closing: Promise<void> | undefined;
  const transport = attempt.transport as Transport & { terminateSession?: () => Promise<void> };
  return {
    client,
    kind: attempt.kind,
    initializeResult,
    config: cfg,
    get sessionId() {
      return transport.sessionId;
    },
    releaseInitialized: () => Promise.resolve(),
    close() {
      closing ??= (async () => {
        try {
          if (typeof transport.terminateSession === 'function' && transport.sessionId !== undefined) {
            await withDeadline(transport.terminateSession(), 1000, () => new Error('terminate timed out')).catch(() => undefined);
          }
        } finally {
          await client.close().catch(() => undefined);
        }
      })();
      return closing;
    },
  };
}

function makeConnection(config: UpstreamConfig, attempt: Attempt, client: Client, tap: InitializeTap, initializeResult: InitializeResult): UpstreamConnection {
  let closing: Promise<void> | undefined;
  let released: Promise<void> | undefined;
  const transport = attempt.transport;
  return {
    client,
    kind: attempt.kind,
    initializeResult,
    config,
    get sessionId() {
      return transport.sessionId;
    },
    releaseInitialized() {
      released ??= (async () => {
        tap.hold = false;
        const held = tap.held;
        tap.held = undefined;
        if (held !== undefined) await tap.inner.send(held.message, held.options);
      })();
      return released;
    },
    close() {
      closing ??= (async () => {
        try {
          if (httpSdk !== undefined && transport instanceof httpSdk.StreamableHTTPClientTransport && transport.sessionId !== undefined) {
            // Tell the server the session is over so it frees it; never wait long for a dying upstream.
            await withDeadline(transport.terminateSession(), 1000, () => new Error('terminate timed out')).catch(() => undefined);
          }
        } finally {
          await client.close().catch(() => undefined);
        }
      })();
      return closing;
    },
  };
}
