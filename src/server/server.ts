/**
 * The engine as an MCP server: `execute`, `search` and `get_schema` over the catalog of every upstream,
 * optionally the upstream tools themselves, with a bounded execution queue, graceful shutdown and a
 * SERVER span per `tools/call` that continues the caller's trace from `params._meta`.
 *
 * One `CodemodeServer` holds the shared parts (the `CodeMode`, the upstreams, the limiter); each MCP
 * session gets its own SDK `Server` through `connect(transport)`.
 *
 * @module
 */

import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { preloadSchemas, ProtocolError, ProtocolErrorCode, Server } from '@modelcontextprotocol/server';
import type {
  CallToolResult,
  Implementation,
  JsonSchemaType,
  JsonSchemaValidator,
  jsonSchemaValidator,
  McpRequestContext,
  Progress,
  ServerContext,
  Tool,
  Transport,
} from '@modelcontextprotocol/server';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/server/validators/ajv';
import { CallToolResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import { CodemodeError, describeError, isCodemodeError } from '../errors.js';
import { createLogger } from '../log.js';
import { CodeMode } from '../codemode/codemode.js';
import type { CodeModeOptions } from '../codemode/codemode.js';
import { createCodeModeTools } from '../codemode/mcp-tools.js';
import type { CodeModeTool, CodeModeToolsOptions } from '../codemode/mcp-tools.js';
import { mcpClientSource } from '../codemode/sources.js';
import type { CatalogWarning } from '../codemode/catalog-limits.js';
import type { ToolSource } from '../codemode/types.js';
import { ATTR, ERROR_TYPE_TOOL_ERROR, extractTraceContext, getTracer, injectTraceContext } from '../telemetry/index.js';
import type { ServersConfig } from './config.js';
import { ExecutionLimiter, OverloadedError } from './limiter.js';
import { principalOfAuth } from './sessions.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../proxy/upstream.js';
import { fetchCatalog, guarded, prefetched, startUpstreams } from './upstreams.js';
import { wireErrorMessage } from '../wire/jsonrpc.js';
import { MAX_TIMER_DELAY_MS as MAX_TIMER_MS } from '../wire/timers.js';
import type { StartingUpstreams, Upstreams, UpstreamStatus } from './upstreams.js';

const log = createLogger('server');

/** How long `close()` lets in-flight executes finish before aborting them, by default. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** An execute called with a `progressToken` sends `notifications/progress` this often (elapsed ms as progress). */
export const DEFAULT_PROGRESS_INTERVAL_MS = 5_000;
/** Separator between server and tool name for `--expose-tools` (dots are not allowed by some hosts). */
export const EXPOSED_TOOL_SEPARATOR = '__';

export interface CodemodeServerOptions {
  /** The engine. */
  mode: CodeMode;
  /** The upstreams behind `mode`'s sources: used by `exposeTools`, the status report and `close()`. */
  upstreams?: Upstreams;
  /** Also list every upstream tool as `<server>__<tool>` and forward calls to it. Default false. */
  exposeTools?: boolean;
  /** Executes running at once. Default `DEFAULT_MAX_CONCURRENT_EXECUTIONS`. */
  maxConcurrentExecutions?: number;
  /** Executes waiting for a slot; past it callers get an `isError` "busy, retry" result. Default 4x concurrency. */
  maxQueuedExecutions?: number;
  /** Options of the `execute`/`search`/`get_schema` tools (result text caps, names). */
  tools?: CodeModeToolsOptions;
  /** The `serverInfo` sent in `initialize`. */
  serverInfo?: Implementation;
  /** `close()` also closes `mode` and `upstreams`. Default true. */
  closeResources?: boolean;
  /** `network.transport` for spans: `pipe` (stdio) or `tcp` (HTTP). */
  transport?: 'pipe' | 'tcp';
  /** How often an execute called with a `progressToken` reports progress. Default `DEFAULT_PROGRESS_INTERVAL_MS`. */
  progressIntervalMs?: number;
}

type ProgressSink = (elapsedMs: number, message: string) => void;

/** One MCP session. */
export interface CodemodeSession {
  readonly server: Server;
  /** Closes the session. Idempotent. */
  close(): Promise<void>;
  readonly closed: Promise<void>;
}

/** Counters for `/healthz` and logs. */
export interface CodemodeServerStats {
  sessions: number;
  activeExecutions: number;
  queuedExecutions: number;
  tools: number;
  /** Each upstream's state, with how many of its tools the catalog caps trimmed or left out. */
  upstreams: Array<UpstreamStatus & { trimmed?: number }>;
  closing: boolean;
}

export interface CloseOptions {
  /** How long in-flight executes may run before they are aborted. Default `DEFAULT_SHUTDOWN_GRACE_MS`. */
  graceMs?: number;
  /**
   * Called once every execute settled and before sessions close, to let the transport deliver the last
   * results (the HTTP host waits for open responses to end). Default: a short pause.
   */
  drain?: () => Promise<void>;
}

/** The engine served over MCP. */
export interface CodemodeServer {
  /** Serves one MCP session of the 2025 era (initialize, then requests) over `transport`. */
  connect(transport: Transport): Promise<CodemodeSession>;
  /**
   * Builds the MCP server for one 2026-07-28 request (HTTP), or for one connection of either era (the v2 SDK's
   * `serveStdio`): the factory that `createMcpHandler` and `serveStdio` take. With `track`, the server gets
   * `tools/list_changed` on catalog changes and is closed with this server.
   */
  createServer(context?: McpRequestContext, options?: { track?: boolean }): Server;
  /** Calls `listener` after each catalog change (after the tracked servers were told). Returns an unsubscribe. */
  onToolsChanged(listener: () => void): () => void;
  readonly mode: CodeMode;
  readonly limiter: ExecutionLimiter;
  stats(): CodemodeServerStats;
  /**
   * Graceful shutdown: new executes are refused, in-flight ones get `graceMs` to finish and are then aborted
   * (their callers get `kind: "aborted"`), sessions close, then the engine and upstreams. Idempotent.
   */
  close(options?: CloseOptions): Promise<void>;
  /** True once `close()` started. */
  readonly closing: boolean;
}

/**
 * The cache hint on 2026-07-28 `tools/list` results: a minute, private to the client. The list changes only
 * when an upstream's does, and clients that listen (`subscriptions/listen`) hear of that at once.
 */
export const TOOLS_LIST_CACHE_HINT = { ttlMs: 60_000, cacheScope: 'private' } as const;

function errorResult(kind: string, message: string, extra: Record<string, unknown> = {}): CallToolResult {
  return { content: [{ type: 'text', text: `Error (${kind}): ${message}` }], isError: true, structuredContent: { error: { kind, message, ...extra }, logs: [], toolCalls: [] } };
}

/** Catalog warnings (tools whose descriptions or schemas the caps trimmed, or left out) per source. */
function warningsBySource(mode: CodeMode): Map<string, { count: number; first: CatalogWarning }> {
  const out = new Map<string, { count: number; first: CatalogWarning }>();
  for (const w of mode.catalog.warnings) {
    const seen = out.get(w.source);
    if (seen === undefined) out.set(w.source, { count: 1, first: w });
    else seen.count++;
  }
  return out;
}

function describeUpstreams(statuses: readonly UpstreamStatus[], mode: CodeMode): string {
  const counts = new Map<string, number>();
  for (const e of mode.catalog.entries) counts.set(e.namespace, (counts.get(e.namespace) ?? 0) + 1);
  const trimmed = warningsBySource(mode);
  return statuses
    .map((s) => {
      if (s.state !== 'connected') return `- ${s.name}: UNAVAILABLE (${s.error ?? s.state}); its tools cannot be called`;
      const t = trimmed.get(s.name);
      const note = t === undefined ? '' : ` (its catalog exceeded codemode's caps: ${t.count} change${t.count === 1 ? '' : 's'}, e.g. ${t.first.message})`;
      return `- ${s.name}: ${counts.get(s.name) ?? 0} tools${note}`;
    })
    .join('\n');
}

/** Logs, once per catalog load, which sources the caps trimmed: one line per source, not one per tool. */
function logCatalogWarnings(mode: CodeMode): void {
  for (const [source, { count, first }] of warningsBySource(mode)) {
    log.warn('an upstream catalog exceeded the caps and was trimmed', { upstream: source, changes: count, first: first.message });
  }
}

/**
 * A session's JSON Schema validator, built on first use. The SDK's `Server` otherwise builds a full Ajv
 * instance (with its formats) in its constructor, about 0.3 ms of main-thread work per session, for the
 * validation of elicitation answers, which this server never requests. A flood of `initialize` requests paid
 * that for nothing. Not shared between sessions: Ajv caches each compiled schema (by object, and by `$id`),
 * so one instance for everyone would grow with every schema and let one session's `$id` clash with
 * another's.
 */
class LazyValidator implements jsonSchemaValidator {
  #inner: AjvJsonSchemaValidator | undefined;

  getValidator<T>(schema: JsonSchemaType): JsonSchemaValidator<T> {
    this.#inner ??= new AjvJsonSchemaValidator();
    return this.#inner.getValidator<T>(schema);
  }
}

class CodemodeServerImpl implements CodemodeServer {
  readonly mode: CodeMode;
  readonly limiter: ExecutionLimiter;
  readonly #options: CodemodeServerOptions;
  /** 2025 sessions and stdio connections: they get `list_changed` and close with the server. */
  readonly #sessions = new Set<Server>();
  /** Told of each catalog change (the HTTP host's 2026-07-28 subscriptions). */
  readonly #changeListeners = new Set<() => void>();
  readonly #inflight = new Map<AbortController, Promise<unknown>>();
  #tools: CodeModeTool[];
  #exposed: Map<string, { namespace: string; tool: Tool }> = new Map();
  #closing: Promise<void> | undefined;
  /** Bumped on every catalog (re)build: the instructions cache's key. */
  #catalogGeneration = 0;
  #instructionsCache: { key: string; text: string } | undefined;
  #refreshing: Promise<void> | undefined;
  #refreshAgain = false;

  constructor(options: CodemodeServerOptions) {
    this.#options = options;
    this.mode = options.mode;
    this.limiter = new ExecutionLimiter(options.maxConcurrentExecutions, options.maxQueuedExecutions);
    this.#tools = createCodeModeTools(this.mode, options.tools);
    this.#buildExposed();
    logCatalogWarnings(this.mode);
  }

  get closing(): boolean {
    return this.#closing !== undefined;
  }

  #buildExposed(): void {
    this.#catalogGeneration++;
    this.#exposed = new Map();
    if (!this.#options.exposeTools) return;
    for (const entry of this.mode.catalog.entries) {
      const name = `${entry.namespace}${EXPOSED_TOOL_SEPARATOR}${entry.tool.name}`;
      if (this.#tools.some((t) => t.name === name)) continue;
      const { name: _n, ...rest } = entry.tool;
      this.#exposed.set(name, { namespace: entry.namespace, tool: { ...rest, name, inputSchema: entry.tool.inputSchema as Tool['inputSchema'] } as Tool });
    }
  }

  /** Re-lists the upstream tools (after a `tools/list_changed`) and tells every session. */
  refresh(): Promise<void> {
    if (this.#refreshing !== undefined) {
      // A change announced while we were listing may not be in that listing: list once more afterwards.
      this.#refreshAgain = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      try {
        do {
          this.#refreshAgain = false;
          if (this.closing) return;
          try {
            await this.mode.refresh();
            logCatalogWarnings(this.mode);
            this.#tools = createCodeModeTools(this.mode, this.#options.tools);
            this.#buildExposed();
            await Promise.allSettled([...this.#sessions].map((s) => s.sendToolListChanged()));
            for (const listener of this.#changeListeners) {
              try {
                listener();
              } catch (err) {
                log.debug('a tools-changed listener failed', { error: describeError(err) });
              }
            }
          } catch (err) {
            log.warn('could not refresh the tool catalog; keeping the previous one', { error: describeError(err) });
          }
        } while (this.#refreshAgain);
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  stats(): CodemodeServerStats {
    return {
      sessions: this.#sessions.size,
      activeExecutions: this.limiter.active,
      queuedExecutions: this.limiter.queued,
      tools: this.mode.catalog.entries.length,
      upstreams: (() => {
        const trimmed = warningsBySource(this.mode);
        return (this.#options.upstreams?.status() ?? []).map((u) => {
          const t = trimmed.get(u.name);
          return t === undefined ? u : { ...u, trimmed: t.count };
        });
      })(),
      closing: this.closing,
    };
  }

  /**
   * The instructions for a new session or 2026-07-28 request, cached: counting tools per upstream walks the
   * whole catalog (up to 50,000 entries), and a 2026-07-28 request builds its server from scratch. Rebuilt
   * when the catalog was refreshed or an upstream's state changed.
   */
  #instructions(): string {
    const statuses = this.#options.upstreams?.status() ?? [];
    const key = `${this.#catalogGeneration}|${statuses.map((s) => `${s.name}:${s.state}:${s.error ?? ''}`).join('|')}`;
    if (this.#instructionsCache?.key !== key) this.#instructionsCache = { key, text: this.#buildInstructions(statuses) };
    return this.#instructionsCache.text;
  }

  #buildInstructions(statuses: readonly UpstreamStatus[]): string {
    const lines = [
      'codemode: do a whole task in one `execute` call. Write JavaScript where every upstream tool is an async function (`await tools.<server>.<tool>(args)`), combine and filter results in code, and return only what you need.',
      'Use `search` to find tools and `get_schema` for their exact TypeScript signatures when the `execute` description does not list them.',
    ];
    if (statuses.length > 0) lines.push('', 'Upstream servers:', describeUpstreams(statuses, this.mode));
    return lines.join('\n');
  }

  /** The `tools/list` answer: codemode's tools, then the exposed upstream tools sorted by name (a stable order for caches). */
  #listTools(): { tools: Tool[] } {
    return {
      tools: [
        ...this.#tools.map(({ name, title, description, inputSchema, annotations }) => ({ name, title, description, inputSchema, annotations }) as Tool),
        ...[...this.#exposed.values()].map((e) => e.tool).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      ],
    };
  }

  createServer(requestContext: McpRequestContext = { era: 'legacy' }, options: { track?: boolean } = {}): Server {
    const server = new Server(this.#options.serverInfo ?? { name: 'codemode', version: '0.1.0' }, {
      capabilities: { tools: { listChanged: true }, logging: {} },
      instructions: this.#instructions(),
      jsonSchemaValidator: new LazyValidator(),
      cacheHints: { 'tools/list': TOOLS_LIST_CACHE_HINT },
    });
    server.setRequestHandler('tools/list', () => this.#listTools());
    server.setRequestHandler('tools/call', (request, ctx: ServerContext) => this.#handleCall(server, request.params, ctx, requestContext));
    if (options.track) {
      this.#sessions.add(server);
      const previous = server.onclose;
      server.onclose = () => {
        this.#sessions.delete(server);
        previous?.();
      };
    }
    return server;
  }

  onToolsChanged(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  #handleCall(
    server: Server,
    params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> },
    ctx: ServerContext,
    requestContext: McpRequestContext,
  ): Promise<CallToolResult> {
    const { name } = params;
    const meta = ctx.mcpReq._meta ?? params._meta;
    const parent = extractTraceContext(meta, context.active());
    const authInfo = ctx.http?.authInfo ?? requestContext.authInfo;
    const span = getTracer().startSpan(
      `tools/call ${name}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          [ATTR.MCP_METHOD]: 'tools/call',
          [ATTR.TOOL_NAME]: name,
          [ATTR.JSONRPC_REQUEST_ID]: String(ctx.mcpReq.id),
          [ATTR.NETWORK_TRANSPORT]: this.#options.transport ?? (ctx.sessionId !== undefined || ctx.http !== undefined ? 'tcp' : 'pipe'),
          ...(ctx.sessionId !== undefined ? { [ATTR.MCP_SESSION_ID]: ctx.sessionId } : {}),
        },
      },
      parent,
    );
    return context.with(trace.setSpan(parent, span), async () => {
      try {
        const progressToken = meta?.progressToken as string | number | undefined;
        const notify = (progress: Progress) => void ctx.mcpReq.notify({ method: 'notifications/progress', params: { ...progress, progressToken: progressToken! } }).catch(() => undefined);
        const progress =
          progressToken === undefined ? undefined : (elapsedMs: number, message: string) => notify({ progress: Math.round(elapsedMs), message } as Progress);
        const forwardProgress = progressToken === undefined ? undefined : (p: Progress) => notify(p);
        // Fairness between tenants: the authenticated principal, else the session (anonymous servers are
        // loopback-only, where each session is its own client); anonymous 2026-07-28 requests have no
        // session and share one tenant.
        const tenant =
          authInfo !== undefined
            ? `principal:${principalOfAuth(authInfo)}`
            : ctx.sessionId !== undefined
              ? `session:${ctx.sessionId}`
              : requestContext.era === 'modern' && ctx.http !== undefined
                ? 'stateless'
                : 'stdio';
        const result = await this.#callTool(name, params.arguments, ctx.mcpReq.signal, tenant, progress, forwardProgress);
        if (result.isError) {
          span.setAttribute(ATTR.ERROR_TYPE, ERROR_TYPE_TOOL_ERROR);
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        return server.projectCallToolResult(result, undefined) as CallToolResult;
      } catch (err) {
        span.setAttribute(ATTR.ERROR_TYPE, err instanceof ProtocolError ? String(err.code) : 'internal');
        span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(err) });
        throw err;
      } finally {
        span.end();
      }
    });
  }

  async connect(transport: Transport): Promise<CodemodeSession> {
    if (this.closing) throw new CodemodeError('CLOSED', 'The codemode server is shutting down and accepts no new sessions.');
    const server = this.createServer({ era: 'legacy' }, { track: true });
    let resolveClosed!: () => void;
    const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
    const tracked = server.onclose;
    server.onclose = () => {
      tracked?.();
      resolveClosed();
    };
    server.onerror = (error) => log.debug('session transport error', { error: describeError(error) });
    await server.connect(transport);
    let closing: Promise<void> | undefined;
    return {
      server,
      closed,
      close: () => {
        closing ??= server.close().catch(() => undefined);
        return closing;
      },
    };
  }

  async #callTool(
    name: string,
    args: Record<string, unknown> | undefined,
    signal: AbortSignal,
    tenant: string,
    progress?: ProgressSink,
    forwardProgress?: (p: Progress) => void,
  ): Promise<CallToolResult> {
    const tool = this.#tools.find((t) => t.name === name);
    if (tool !== undefined) {
      if (tool.name === (this.#options.tools?.names?.execute ?? 'execute')) return this.#execute(tool, args, signal, tenant, progress);
      return tool.handler(args, { signal });
    }
    const exposed = this.#exposed.get(name);
    if (exposed !== undefined) {
      return this.#forward(exposed.namespace, exposed.tool.name.slice(exposed.namespace.length + EXPOSED_TOOL_SEPARATOR.length), args, signal, forwardProgress);
    }
    throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool "${name}". Available: ${[...this.#tools.map((t) => t.name), ...this.#exposed.keys()].slice(0, 20).join(', ')}.`);
  }

  async #execute(tool: CodeModeTool, args: Record<string, unknown> | undefined, signal: AbortSignal, tenant: string, progress?: ProgressSink): Promise<CallToolResult> {
    if (typeof args?.code !== 'string') throw new ProtocolError(ProtocolErrorCode.InvalidParams, '"code" must be a string holding the code to run.');
    if (this.closing) return errorResult('unavailable', 'The server is shutting down and accepts no new executions. Retry in a moment (or on another instance).', { retryAfterMs: 1_000 });
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal.reason);
    if (signal.aborted) controller.abort(signal.reason);
    else signal.addEventListener('abort', onAbort, { once: true });
    // With a progressToken, report progress while queued and running: it tells the caller what is
    // happening, and keeps clients that reset their request timeout on progress from giving up.
    const started = performance.now();
    let running = false;
    const ticker =
      progress === undefined
        ? undefined
        : setInterval(() => progress(performance.now() - started, running ? 'running' : 'waiting for a free execution slot'), this.#options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS);
    ticker?.unref();
    const run = this.limiter.run(() => {
      running = true;
      return tool.handler(args, { signal: controller.signal });
    }, controller.signal, tenant);
    this.#inflight.set(controller, run.catch(() => undefined));
    try {
      const result = await run;
      log.debug('execute finished', {
        ms: Math.round(performance.now() - started),
        outcome: result.isError ? ((result.structuredContent as { error?: { kind?: string } } | undefined)?.error?.kind ?? 'error') : 'ok',
        toolCalls: (result.structuredContent as { toolCalls?: unknown[] } | undefined)?.toolCalls?.length ?? 0,
      });
      return result;
    } catch (err) {
      if (err instanceof OverloadedError) return errorResult('overloaded', err.message, { retryAfterMs: err.retryAfterMs });
      if (isCodemodeError(err, 'ABORTED')) return errorResult('aborted', err.message);
      throw err;
    } finally {
      clearInterval(ticker);
      signal.removeEventListener('abort', onAbort);
      this.#inflight.delete(controller);
    }
  }

  async #forward(
    namespace: string,
    toolName: string,
    args: Record<string, unknown> | undefined,
    signal: AbortSignal,
    onprogress?: (p: Progress) => void,
  ): Promise<CallToolResult> {
    const connection = this.#options.upstreams?.connections.get(namespace);
    if (connection === undefined) {
      return errorResult('upstream_unavailable', `The upstream server "${namespace}" is not connected.`);
    }
    const meta = trace.getSpanContext(context.active()) !== undefined ? injectTraceContext() : {};
    try {
      const result = await connection.client.request(
        { method: 'tools/call', params: { name: toolName, arguments: args ?? {}, ...(Object.keys(meta).length > 0 ? { _meta: meta } : {}) } },
        CallToolResultSchema,
        // No timeout of our own (the caller's cancellation ends the call); upstream progress is passed on.
        { signal, timeout: MAX_TIMER_MS, maxTotalTimeout: MAX_TIMER_MS, ...(onprogress !== undefined ? { onprogress } : {}) },
      );
      return { ...result, content: result.content ?? [] } as CallToolResult;
    } catch (err) {
      if (err instanceof McpError) {
        // The upstream's protocol error, passed on with its code and data (without the v1 SDK's message prefix).
        throw new ProtocolError(err.code, wireErrorMessage(err), err.data);
      }
      return errorResult('upstream_error', `Calling ${namespace}.${toolName} failed: ${describeError(err)}`);
    }
  }

  close(options: CloseOptions = {}): Promise<void> {
    this.#closing ??= (async () => {
      const graceMs = options.graceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
      if (this.#inflight.size > 0) {
        log.info(`waiting up to ${graceMs} ms for ${this.#inflight.size} execution(s) to finish`);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(this.#inflight.values()), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
        clearTimeout(timer);
      }
      if (this.#inflight.size > 0) {
        log.warn(`aborting ${this.#inflight.size} execution(s) still running after the grace period`);
        for (const controller of this.#inflight.keys()) controller.abort(new CodemodeError('ABORTED', 'The server is shutting down.'));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(this.#inflight.values()), new Promise<void>((resolve) => (timer = setTimeout(resolve, 5_000)))]);
        clearTimeout(timer);
      }
      // A handler's result is sent after its promise settles: give the transports a moment to send it.
      await (options.drain ?? (() => new Promise<void>((resolve) => setTimeout(resolve, 25))))();
      await Promise.allSettled([...this.#sessions].map((s) => s.close()));
      if (this.#options.closeResources ?? true) {
        try {
          await this.mode.close();
        } finally {
          await this.#options.upstreams?.close();
        }
      }
    })();
    return this.#closing;
  }
}

/**
 * Serves a `CodeMode` over MCP.
 *
 * @example
 * ```ts
 * const server = createCodemodeServer({ mode });
 * await server.connect(new StdioServerTransport());
 * process.on('SIGTERM', () => void server.close({ graceMs: 10_000 }));
 * ```
 */
export function createCodemodeServer(options: CodemodeServerOptions): CodemodeServer & { refresh(): Promise<void> } {
  return new CodemodeServerImpl(options);
}

export interface CodemodeServerFromConfigOptions extends Omit<CodemodeServerOptions, 'mode' | 'upstreams' | 'closeResources'> {
  /** Refuse to start when any upstream fails. Default false: report it and serve the others. */
  strict?: boolean;
  /** Per-upstream connect timeout in ms. */
  connectTimeoutMs?: number;
  /**
   * Largest single message accepted from an upstream, in bytes (default 32 MiB). A bigger tool result
   * fails its call with a clear error as it streams in; the upstream stays connected.
   */
  maxUpstreamMessageBytes?: number;
  /** Options of the `CodeMode` (limits, sandbox, maxToolCalls); the config's `codemode` section fills gaps. */
  codeMode?: Omit<CodeModeOptions, 'sources'>;
  /** Receives upstream children's stderr lines. */
  onStderr?: (line: string) => void;
  /**
   * Upstream connections the caller started already (`startUpstreams`, with this config and the same
   * `strict`, `connectTimeoutMs`, `maxUpstreamMessageBytes` and `onStderr`). The server takes them over:
   * it closes them when it closes, or when it fails to start.
   */
  upstreams?: StartingUpstreams;
}

/**
 * The options of `CodeMode` that a config file's `codemode` section sets (explicit options win).
 *
 * @example
 * ```ts
 * const mode = await CodeMode.create({ ...codeModeOptionsFromConfig(config, { maxToolCalls: 10 }), sources });
 * ```
 */
export function codeModeOptionsFromConfig(config: ServersConfig, explicit: Omit<CodeModeOptions, 'sources'> = {}): Omit<CodeModeOptions, 'sources'> {
  const s = config.settings;
  const out: Omit<CodeModeOptions, 'sources'> = { ...explicit };
  if (out.maxToolCalls === undefined && s.maxToolCalls !== undefined) out.maxToolCalls = s.maxToolCalls;
  if (out.sandbox === undefined && out.limits === undefined && (s.timeoutSeconds !== undefined || s.memoryMb !== undefined || s.maxResultKb !== undefined)) {
    out.limits = {
      ...(s.timeoutSeconds !== undefined ? { timeoutMs: s.timeoutSeconds === null ? null : Math.round(s.timeoutSeconds * 1000) } : {}),
      ...(s.memoryMb !== undefined ? { memoryMb: s.memoryMb } : {}),
      ...(s.maxResultKb !== undefined ? { maxResultBytes: s.maxResultKb === null ? null : Math.round(s.maxResultKb * 1024) } : {}),
    };
  }
  return out;
}

let serverSchemasBuilt = false;
/** Builds the v2 server's wire schemas now rather than on the first request. Once per process. */
function buildServerSchemas(): void {
  if (serverSchemasBuilt) return;
  serverSchemasBuilt = true;
  preloadSchemas();
}

/**
 * Connects every upstream of a config, builds the `CodeMode` over the ones that answer, and serves it. An
 * upstream that fails to connect or to list its tools is reported (logs, `initialize` instructions,
 * `/healthz`) and left out, unless `strict`.
 *
 * @throws CodemodeError `UPSTREAM_UNAVAILABLE` in strict mode; `TOOL_NAME_COLLISION` / `INVALID_CONFIG`.
 *
 * @example
 * ```ts
 * const server = await createCodemodeServerFromConfig(await loadServersConfig('mcp.json'));
 * const http = await serveHttp(server, { port: 3000 });
 * ```
 */
export async function createCodemodeServerFromConfig(config: ServersConfig, options: CodemodeServerFromConfigOptions = {}): Promise<CodemodeServer> {
  let target: (CodemodeServer & { refresh(): Promise<void> }) | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  const starting =
    options.upstreams ??
    startUpstreams(config.servers, {
      ...(options.strict !== undefined ? { strict: options.strict } : {}),
      ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
      ...(options.onStderr !== undefined ? { onStderr: options.onStderr } : {}),
      ...(options.maxUpstreamMessageBytes !== undefined ? { maxMessageBytes: options.maxUpstreamMessageBytes } : {}),
      // The server's wire schemas are built on first use, which is the first client request after start-up;
      // a stdio upstream's boot is idle time on this thread to build them in (about 40 ms).
      whileBooting: buildServerSchemas,
    });
  // Upstreams started by the caller may still be booting: the same idle time.
  if (options.upstreams !== undefined && !starting.settled && Object.keys(config.servers).length > 0) buildServerSchemas();
  // connectUpstreams coalesces a burst (and a storm) of announcements into one call, and logs it once.
  starting.onToolsChanged = () => {
    // Several upstreams may announce at once; list once.
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => void target?.refresh(), 100);
    refreshTimer.unref();
  };
  const upstreams = await starting.ready;
  try {
    const sources: ToolSource[] = [];
    await Promise.all(
      [...upstreams.connections].map(async ([name, connection]) => {
        const source = mcpClientSource(name, connection.client, { transport: connection.kind === 'stdio' ? 'pipe' : 'tcp' });
        try {
          // Within the same connect budget and under the catalog caps: a slow or huge catalog is a failed upstream.
          const tools = await fetchCatalog(name, (signal) => source.listTools({ signal }), { deadlineAt: upstreams.deadlineOf(name) });
          sources.push(guarded(prefetched(name, source, tools, options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS), upstreams));
        } catch (err) {
          log.error(`upstream "${name}" connected but listing its tools failed: ${describeError(err)}`);
          await upstreams.drop(name, isCodemodeError(err) ? err : new CodemodeError('UPSTREAM_PROTOCOL', `listing tools failed: ${describeError(err)}`, { cause: err }));
        }
      }),
    );
    if (options.strict && upstreams.failures().length > 0) {
      throw new CodemodeError('UPSTREAM_UNAVAILABLE', `Upstream(s) failed (strict mode): ${upstreams.failures().map((f) => `"${f.name}": ${f.error ?? ''}`).join('; ')}`);
    }
    // Keep config order, whatever order the listings finished in.
    const order = Object.keys(config.servers);
    sources.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    const mode = await CodeMode.create({ ...codeModeOptionsFromConfig(config, options.codeMode), sources });
    const s = config.settings;
    target = createCodemodeServer({
      ...options,
      mode,
      upstreams,
      ...(options.maxConcurrentExecutions === undefined && s.maxConcurrentExecutions !== undefined ? { maxConcurrentExecutions: s.maxConcurrentExecutions } : {}),
      ...(options.maxQueuedExecutions === undefined && s.maxQueuedExecutions !== undefined ? { maxQueuedExecutions: s.maxQueuedExecutions } : {}),
    });
    const server = target;
    const close = server.close.bind(server);
    return Object.assign(server, {
      close: (opts?: CloseOptions) => {
        clearTimeout(refreshTimer);
        return close(opts);
      },
    });
  } catch (err) {
    clearTimeout(refreshTimer);
    await upstreams.close();
    throw err;
  }
}
