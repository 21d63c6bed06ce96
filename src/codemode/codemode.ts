/**
 * `CodeMode`: runs one block of model-written JavaScript in a sandbox where tools are async functions,
 * with a cap on tool calls, bounded concurrency, cancellation that reaches upstream servers, tracing, and
 * results shaped for a model to read.
 *
 * @module
 */

import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Span } from '@opentelemetry/api';
import { CodemodeError } from '../errors.js';
import { createLogger } from '../log.js';
import { resolveLimits } from '../sandbox/limits.js';
import type { RunOutcome, SandboxLimits, SandboxLimitsInput, SandboxProvider } from '../sandbox/types.js';
import { ATTR, getTracer } from '../telemetry/index.js';
import { Catalog } from './catalog.js';
import { generateDeclarations } from './declarations.js';
import { Execution, mapRunError } from './execution.js';
import type { PendingCall } from './execution.js';
import { buildHostFunctions } from './host-calls.js';
import type { NormalizedCode } from './normalize.js';
import { NormalizeError, normalizeCodeOffThread } from './normalize-off-thread.js';
import { MAX_SCHEMA_NAMES, SearchIndex, summarize } from './search.js';
import type { SearchDetail, SearchOptions, ToolSummary } from './search.js';
import { GUEST_ERROR_CLASSES } from './tool-errors.js';
import type { ExecuteError, ExecuteResult, ToolCallRecord, ToolSource } from './types.js';

const log = createLogger('codemode');

/** Default cap on tool calls per execution (FastMCP's default; every attempt counts). */
export const DEFAULT_MAX_TOOL_CALLS = 50;
/** Default cap on tool calls in flight at once within one execution. */
export const DEFAULT_MAX_CONCURRENT_TOOL_CALLS = 10;
/**
 * Longest code an execute accepts. Parsing and TypeScript stripping run on the host's main thread, before the
 * sandbox's wall clock applies; a model's block is a few KB.
 */
export const MAX_CODE_CHARS = 200_000;

export interface CodeModeOptions {
  /** Where tools come from: `mcpClientSource(...)`, `localTools(...)`, or your own `ToolSource`. */
  sources: readonly ToolSource[];
  /** The sandbox. Defaults to an `IsolatedVmSandbox` with `limits`; a given sandbox is not closed by `close()`. */
  sandbox?: SandboxProvider;
  /** Limits of the default sandbox (`undefined`: 30 s and 100 MB; `null`: none). Ignored with `sandbox`. */
  limits?: SandboxLimitsInput;
  /** Tool calls per execution, counting every attempt (failed and unknown ones too). Default 50; `null`: no cap. */
  maxToolCalls?: number | null;
  /** Tool calls in flight at once per execution. Default 10; `null`: no bound beyond the sandbox's. */
  maxConcurrentToolCalls?: number | null;
  /**
   * Timeout of one upstream call in ms. Default: none of its own; the execution's wall-clock limit ends
   * it (and cancels it upstream).
   */
  toolCallTimeoutMs?: number | null;
}

export interface ExecuteOptions {
  /** Aborting disposes the isolate, cancels in-flight upstream calls, and resolves with kind `aborted`. */
  signal?: AbortSignal;
  /**
   * Called after each upstream call ends (not for calls refused before reaching a tool). Use it to send
   * progress to a caller; it must not throw (a throw is logged and ignored).
   */
  onToolCall?: (record: Readonly<ToolCallRecord>, completed: number) => void;
}

function assertDetail(where: string, detail: unknown): void {
  if (detail !== 'brief' && detail !== 'detailed' && detail !== 'full') {
    throw new CodemodeError('INVALID_ARGUMENT', `${where}: detail must be "brief", "detailed" or "full", got ${JSON.stringify(detail) ?? String(detail)}.`);
  }
}

function validateCount(name: string, value: number | null | undefined, fallback: number | null): number | null {
  if (value === undefined) return fallback;
  if (value === null) return null;
  if (!Number.isInteger(value) || value < 1) {
    throw new CodemodeError('INVALID_CONFIG', `${name} must be a positive integer or null (no limit), got ${String(value)}.`);
  }
  return value;
}

/** A provider's `limits` property, when it has one of the right shape (IsolatedVmSandbox does). */
function limitsOf(sandbox: SandboxProvider): Readonly<SandboxLimits> | undefined {
  const limits = (sandbox as { limits?: unknown }).limits;
  if (typeof limits !== 'object' || limits === null) return undefined;
  const { timeoutMs, memoryMb } = limits as Partial<SandboxLimits>;
  const ok = (v: unknown) => v === null || typeof v === 'number';
  return ok(timeoutMs) && ok(memoryMb) ? (limits as Readonly<SandboxLimits>) : undefined;
}

/** The result for code refused before it reached the sandbox (too long, or nested too deep to strip). */
function refusedBeforeRun(span: Span, error: ExecuteError): ExecuteResult {
  span.setAttributes({ 'codemode.outcome': error.kind, [ATTR.ERROR_TYPE]: error.kind });
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  const stats = { durationMs: 0, queuedMs: 0, toolCalls: 0, droppedLogLines: 0 };
  return { ok: false, error, logs: [], toolCalls: [], warnings: [], stats };
}

/**
 * The code-mode engine. Build it with `CodeMode.create`, which lists every source's tools and rejects
 * identifier collisions.
 *
 * @example
 * ```ts
 * const mode = await CodeMode.create({ sources: [mcpClientSource('everything', client)] });
 * const result = await mode.execute(`
 *   const a = await tools.everything.get_sum({ a: 1, b: 2 });
 *   return a;
 * `);
 * if (result.ok) console.log(result.value);
 * await mode.close();
 * ```
 */
export class CodeMode {
  readonly maxToolCalls: number | null;
  readonly maxConcurrentToolCalls: number | null;
  private readonly options: CodeModeOptions;
  private catalogState: Catalog;
  private index: SearchIndex;
  private sandbox: SandboxProvider | undefined;
  private sandboxPromise: Promise<SandboxProvider> | undefined;
  private readonly ownsSandbox: boolean;
  private closed = false;
  private readonly toolCallTimeoutMs: number | undefined;
  /** The sandbox's limits when known (the default sandbox's, or a given sandbox's `limits` property). */
  readonly limits: Readonly<SandboxLimits> | undefined;

  private constructor(options: CodeModeOptions, catalog: Catalog) {
    this.options = options;
    this.maxToolCalls = validateCount('maxToolCalls', options.maxToolCalls, DEFAULT_MAX_TOOL_CALLS);
    this.maxConcurrentToolCalls = validateCount('maxConcurrentToolCalls', options.maxConcurrentToolCalls, DEFAULT_MAX_CONCURRENT_TOOL_CALLS);
    const timeout = options.toolCallTimeoutMs;
    if (timeout !== undefined && timeout !== null && (!Number.isFinite(timeout) || timeout <= 0)) {
      throw new CodemodeError('INVALID_CONFIG', `toolCallTimeoutMs must be a positive number of milliseconds or null, got ${String(timeout)}.`);
    }
    this.toolCallTimeoutMs = timeout ?? undefined;
    this.catalogState = catalog;
    this.index = new SearchIndex(catalog.entries);
    this.sandbox = options.sandbox;
    this.ownsSandbox = options.sandbox === undefined;
    this.limits = options.sandbox === undefined ? resolveLimits(options.limits) : limitsOf(options.sandbox);
  }

  /**
   * Lists the sources' tools and builds the engine.
   *
   * @throws CodemodeError `TOOL_NAME_COLLISION`, `INVALID_CONFIG`, or `UPSTREAM_UNAVAILABLE` when a source
   * cannot list its tools.
   */
  static async create(options: CodeModeOptions): Promise<CodeMode> {
    if (options === null || typeof options !== 'object' || !Array.isArray(options.sources)) {
      throw new CodemodeError('INVALID_CONFIG', 'CodeMode.create needs { sources: ToolSource[] }.');
    }
    // Validate the numeric options before contacting any source.
    validateCount('maxToolCalls', options.maxToolCalls, DEFAULT_MAX_TOOL_CALLS);
    validateCount('maxConcurrentToolCalls', options.maxConcurrentToolCalls, DEFAULT_MAX_CONCURRENT_TOOL_CALLS);
    if (options.sandbox === undefined) resolveLimits(options.limits);
    const catalog = await Catalog.load(options.sources);
    return new CodeMode(options, catalog);
  }

  /** The current catalog (read-only). */
  get catalog(): Catalog {
    return this.catalogState;
  }

  /** Lists every source's tools again (after a `tools/list_changed`). Collisions throw and keep the old catalog. */
  async refresh(): Promise<void> {
    this.assertOpen();
    const catalog = await Catalog.load(this.options.sources);
    this.catalogState = catalog;
    this.index = new SearchIndex(catalog.entries);
  }

  /** True when some source serves resources / prompts. */
  get hasResources(): boolean {
    return this.catalogState.sources.some((s) => typeof s.readResource === 'function');
  }

  get hasPrompts(): boolean {
    return this.catalogState.sources.some((s) => typeof s.getPrompt === 'function');
  }

  /**
   * TypeScript declarations of the in-sandbox API: the preamble (`ToolError`, `callTool`, ...) and
   * `tools`, for all tools or the named ones.
   */
  declarations(toolNames?: readonly string[]): string {
    const entries = toolNames === undefined ? this.catalogState.entries : this.catalogState.lookup(toolNames).found;
    return generateDeclarations(entries, { resources: this.hasResources, prompts: this.hasPrompts });
  }

  /** Ranks tools for a query (BM25 over names, descriptions and parameter names). */
  search(query: string, options?: SearchOptions): ToolSummary[] {
    if (typeof query !== 'string') throw new CodemodeError('INVALID_ARGUMENT', 'search(query) needs a string query.');
    const limit = options?.limit;
    if (limit !== undefined && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1)) {
      throw new CodemodeError('INVALID_ARGUMENT', `search(query, { limit }) needs a positive whole number of results, got ${String(limit)}.`);
    }
    if (options?.detail !== undefined) assertDetail('search(query, { detail })', options.detail);
    return this.index.search(query, options);
  }

  /**
   * Declarations and summaries of the named tools, plus the names that matched nothing.
   *
   * @example
   * ```ts
   * const { declarations, notFound } = mode.getSchema(['everything.echo', 'nope']);
   * ```
   */
  getSchema(names: readonly string[], detail: SearchDetail = 'detailed'): { declarations: string; tools: ToolSummary[]; notFound: string[] } {
    if (!Array.isArray(names) || names.some((n) => typeof n !== 'string')) {
      throw new CodemodeError('INVALID_ARGUMENT', 'getSchema(names) needs an array of tool names.');
    }
    if (names.length > MAX_SCHEMA_NAMES) {
      throw new CodemodeError('INVALID_ARGUMENT', `getSchema(names) was given ${names.length} names; ask for at most ${MAX_SCHEMA_NAMES} at a time.`);
    }
    assertDetail('getSchema(names, detail)', detail);
    const { found, notFound } = this.catalogState.lookup(names);
    return {
      declarations: found.length > 0 ? generateDeclarations(found, { preamble: false }) : '',
      tools: found.map((e) => summarize(e, detail)),
      notFound,
    };
  }

  /**
   * Runs a block of code. The code is the body of an async function (or `async () => {...}`, a fenced
   * block, or TypeScript); `return` gives the value. Guest failures resolve with `ok: false`.
   */
  async execute(code: string, options: ExecuteOptions = {}): Promise<ExecuteResult> {
    this.assertOpen();
    if (typeof code !== 'string') throw new CodemodeError('INVALID_ARGUMENT', 'execute(code) needs the code as a string.');
    // Captured before the first await: the caller's span is the parent even without an async context manager.
    const parentContext = context.active();
    const sandbox = await this.getSandbox();
    const catalog = this.catalogState;
    const span = getTracer().startSpan('codemode.execute', { attributes: { 'codemode.code.length': code.length } }, parentContext);
    const execution = new Execution(span, parentContext, this.maxToolCalls, this.maxConcurrentToolCalls);
    execution.onToolCall = options.onToolCall;
    try {
      if (code.length > MAX_CODE_CHARS) {
        // The model's doing, so a result it can read and act on, not an exception.
        const message = `The code is ${code.length} characters long; at most ${MAX_CODE_CHARS} are accepted. Send less code: loop over data instead of writing it out, and keep large inputs in tools.`;
        return refusedBeforeRun(span, { kind: 'syntax', message });
      }
      let normalized: NormalizedCode;
      try {
        normalized = await normalizeCodeOffThread(code);
      } catch (err) {
        if (err instanceof NormalizeError) return refusedBeforeRun(span, { kind: err.kind, message: err.message });
        throw err;
      }
      if (normalized.syntaxError) return refusedBeforeRun(span, { kind: 'syntax', ...normalized.syntaxError });
      if (normalized.typescript) span.setAttribute('codemode.code.typescript', true);
      const hostFunctions = buildHostFunctions(catalog, execution, this.toolCallTimeoutMs);
      let outcome: RunOutcome;
      let leftover: PendingCall[] = [];
      try {
        const runOptions = { hostFunctions, errorClasses: [...GUEST_ERROR_CLASSES], ...(options.signal ? { signal: options.signal } : {}) };
        outcome = await context.with(trace.setSpan(parentContext, span), () => sandbox.run(normalized.code, runOptions));
      } finally {
        // Calls still in flight are recorded as cancelled even if the sandbox failed as a host bug.
        leftover = execution.settle();
      }
      const warnings: string[] = [];
      if (leftover.length > 0) {
        const names = [...new Set(leftover.map((c) => c.record.tool))].slice(0, 5).join(', ');
        const one = leftover.length === 1;
        warnings.push(
          outcome.ok
            ? `${leftover.length} tool call${one ? ' was' : 's were'} still running when the code returned and ${one ? 'was' : 'were'} cancelled (${names}). ` +
                `Did you forget an \`await\`? Use \`await\` or \`await Promise.all([...])\` on every tool call whose result you need.`
            : `${leftover.length} tool call${one ? ' was' : 's were'} still running when the execution ended and ${one ? 'was' : 'were'} cancelled (${names}).`,
        );
      }
      if (execution.droppedRecords > 0) warnings.push(`${execution.droppedRecords} further tool calls are not listed in toolCalls.`);
      const stats = {
        durationMs: Math.round(outcome.stats.durationMs * 100) / 100,
        queuedMs: Math.round(outcome.stats.queuedMs * 100) / 100,
        toolCalls: execution.attempts,
        droppedLogLines: outcome.stats.droppedLogLines,
      };
      span.setAttributes({ 'codemode.tool_calls': execution.attempts, 'codemode.duration_ms': stats.durationMs });
      if (outcome.ok) {
        span.setAttribute('codemode.outcome', 'ok');
        return { ok: true, value: outcome.value, logs: outcome.logs, toolCalls: execution.records, warnings, stats };
      }
      const error = mapRunError(outcome.error, normalized.mapPosition, execution);
      if (error.kind === 'syntax' && normalized.typescriptHint !== undefined) {
        error.message += ` (${normalized.typescriptHint}: only type annotations can be used; write enums as objects and namespaces as plain code)`;
      }
      span.setAttributes({ 'codemode.outcome': error.kind, [ATTR.ERROR_TYPE]: error.kind });
      span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      return { ok: false, error, logs: outcome.logs, toolCalls: execution.records, warnings, stats };
    } catch (err) {
      span.setAttribute('codemode.outcome', 'internal');
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  }

  private async getSandbox(): Promise<SandboxProvider> {
    if (this.sandbox) return this.sandbox;
    // Loaded on first use: isolated-vm is a native module, and embedders with their own provider never need it.
    this.sandboxPromise ??= import('../sandbox/isolated-vm-sandbox.js').then(({ IsolatedVmSandbox }) => {
      const sandbox = new IsolatedVmSandbox(this.options.limits !== undefined ? { limits: this.options.limits } : {});
      if (this.closed) {
        void sandbox.close();
        throw new CodemodeError('CLOSED', 'This CodeMode was closed while its sandbox was starting.');
      }
      this.sandbox = sandbox;
      return sandbox;
    });
    return this.sandboxPromise;
  }

  private assertOpen(): void {
    if (this.closed) throw new CodemodeError('CLOSED', 'This CodeMode is closed; create a new one.');
  }

  /** Closes the default sandbox (a sandbox passed in stays open; sources are never closed here). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const sandbox = this.ownsSandbox ? this.sandbox : undefined;
    this.sandbox = undefined;
    try {
      await sandbox?.close?.();
    } catch (err) {
      log.warn('closing the sandbox failed', { error: err instanceof Error ? err.message : String(err) });
    }
  }
}
