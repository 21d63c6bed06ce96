/**
 * `CodeMode`: runs one block of model-written JavaScript in a sandbox where tools are async functions,
 * with a cap on tool calls, bounded concurrency, cancellation that reaches upstream servers, tracing, and
 * results shaped for a model to read.
 *
 * @module
 */

import pLimit from 'p-limit';
import type { LimitFunction } from 'p-limit';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Context, Span } from '@opentelemetry/api';
import { CodemodeError } from '../errors.js';
import { createLogger } from '../log.js';
import { assertHostResultCopyable } from '../sandbox/host-functions.js';
import { resolveLimits } from '../sandbox/limits.js';
import type { HostCallContext, HostFunctions, RunOutcome, SandboxLimits, SandboxLimitsInput, SandboxProvider } from '../sandbox/types.js';
import { ATTR, ERROR_TYPE_TOOL_ERROR, getTracer, injectTraceContext } from '../telemetry/index.js';
import { Catalog } from './catalog.js';
import type { CatalogEntry } from './catalog.js';
import { generateDeclarations } from './declarations.js';
import type { NormalizedCode } from './normalize.js';
import { NormalizeError, normalizeCodeOffThread } from './normalize-off-thread.js';
import { MAX_SCHEMA_NAMES, SearchIndex, summarize } from './search.js';
import { capString, MAX_ERROR_MESSAGE_CHARS, MAX_ERROR_NAME_CHARS, MAX_TOOL_LABEL_CHARS } from './text-caps.js';
import type { SearchDetail, SearchOptions, ToolSummary } from './search.js';
import {
  GUEST_ERROR_CLASSES,
  shapeToolResult,
  ToolCallLimitError,
  ToolError,
  toolErrorFromFailure,
  toolErrorFromResult,
} from './tool-errors.js';
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
/** Cap on per-call records kept for one execution (the count in stats stays exact). */
const MAX_CALL_RECORDS = 1_000;

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

interface PendingCall {
  record: ToolCallRecord;
  started: number;
}

/** The mutable state of one execution. */
class Execution {
  attempts = 0;
  settled = false;
  readonly records: ToolCallRecord[] = [];
  readonly pending = new Set<PendingCall>();
  /** Calls cancelled because the run ended while they were in flight. */
  readonly cancelled: PendingCall[] = [];
  droppedRecords = 0;
  completed = 0;
  onToolCall: ExecuteOptions['onToolCall'];

  readonly span: Span;
  readonly parentContext: Context;
  /** `parentContext` with the execution span set: the parent of every call's span (one per execution). */
  readonly spanContext: Context;
  readonly maxToolCalls: number | null;
  /** Bounds the calls upstream at once (`maxConcurrentToolCalls`; none when that is `null`). */
  readonly limit: LimitFunction | undefined;

  // Plain fields rather than parameter properties, so the source runs under Node's type stripping.
  constructor(span: Span, parentContext: Context, maxToolCalls: number | null, maxConcurrent: number | null) {
    this.span = span;
    this.parentContext = parentContext;
    this.spanContext = trace.setSpan(parentContext, span);
    this.maxToolCalls = maxToolCalls;
    this.limit = maxConcurrent === null ? undefined : pLimit(maxConcurrent);
  }

  record(entry: ToolCallRecord): ToolCallRecord {
    if (this.records.length < MAX_CALL_RECORDS) this.records.push(entry);
    else this.droppedRecords++;
    return entry;
  }

  /** Counts an attempt; past the cap the call is refused before it reaches any tool. */
  admit(label: string): void {
    if (this.settled) throw new Error('This execution has finished; tool calls after it returned are refused.');
    this.attempts++;
    if (this.maxToolCalls !== null && this.attempts > this.maxToolCalls) {
      this.record({ tool: label, ok: false, ms: 0, reason: 'limit' });
      throw new ToolCallLimitError(this.maxToolCalls, label);
    }
  }

  /**
   * Runs one upstream call with concurrency bound, a CLIENT span, trace context in `_meta`, and a record.
   * `invoke` gets the `_meta` to send; `isOk` tells a tool-error result from a good one.
   */
  async run<T>(
    label: string,
    spanName: string,
    attributes: Readonly<Record<string, string>>,
    ctx: HostCallContext,
    invoke: (meta: Record<string, unknown>) => Promise<T>,
    isOk: (value: T) => boolean,
  ): Promise<T> {
    const started = performance.now();
    // Recorded now, filled in when the call ends: records stay in call order even when calls overlap.
    const pendingCall: PendingCall = { record: this.record({ tool: label, ok: false, ms: 0 }), started };
    this.pending.add(pendingCall);
    let ok = false;
    const call = async (): Promise<T> => {
      // A call that waited for a slot while the execution ended never starts.
      if (ctx.signal.aborted) throw new Error('cancelled before it started');
      const span = getTracer().startSpan(spanName, { kind: SpanKind.CLIENT, attributes }, this.spanContext);
      try {
        const value = await invoke(injectTraceContext({}, trace.setSpan(this.spanContext, span)));
        ok = isOk(value);
        if (!ok) {
          span.setAttribute(ATTR.ERROR_TYPE, ERROR_TYPE_TOOL_ERROR);
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        return value;
      } catch (err) {
        const type = ctx.signal.aborted ? 'cancelled' : err instanceof ToolError ? ERROR_TYPE_TOOL_ERROR : errorType(err);
        span.setAttribute(ATTR.ERROR_TYPE, type);
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
        throw err;
      } finally {
        span.end();
      }
    };
    try {
      return await (this.limit === undefined ? call() : this.limit(call));
    } finally {
      this.pending.delete(pendingCall);
      // A call that outlives the execution was already recorded as cancelled at settle time.
      if (!this.settled) {
        pendingCall.record.ok = ok;
        pendingCall.record.ms = Math.round(performance.now() - started);
        if (!ok && ctx.signal.aborted) {
          // The sandbox aborts a call's signal as the run ends, possibly just before settle() runs.
          pendingCall.record.reason = 'cancelled';
          this.cancelled.push(pendingCall);
        }
        this.completed++;
        if (this.onToolCall) {
          try {
            this.onToolCall(pendingCall.record, this.completed);
          } catch (err) {
            log.warn('onToolCall threw', { error: err instanceof Error ? err.message : String(err) });
          }
        }
      }
    }
  }

  /** Marks the execution finished; calls still in flight are recorded as cancelled. */
  settle(): PendingCall[] {
    this.settled = true;
    const left = [...this.pending];
    this.cancelled.push(...left);
    for (const call of left) {
      call.record.ok = false;
      call.record.reason = 'cancelled';
      call.record.ms = Math.round(performance.now() - call.started);
    }
    this.pending.clear();
    return this.cancelled;
  }
}

function assertCopyable(label: string, value: unknown): void {
  try {
    assertHostResultCopyable(value);
  } catch (err) {
    throw new ToolError(`${label}: its result cannot be copied into the sandbox: ${err instanceof Error ? err.message : String(err)}`, { tool: label }, { cause: err });
  }
}

function errorType(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' || typeof code === 'string' ? String(code) : err.name || 'Error';
  }
  return 'Error';
}

const spanInfoCache = new WeakMap<CatalogEntry, { spanName: string; attributes: Readonly<Record<string, string>> }>();

/** The CLIENT span's name and fixed attributes for calls to one catalog entry, built once per entry. */
function callSpanInfo(entry: CatalogEntry): { spanName: string; attributes: Readonly<Record<string, string>> } {
  let info = spanInfoCache.get(entry);
  if (info === undefined) {
    const attributes: Record<string, string> = { [ATTR.MCP_METHOD]: 'tools/call', [ATTR.TOOL_NAME]: entry.tool.name };
    if (entry.source.transport) attributes[ATTR.NETWORK_TRANSPORT] = entry.source.transport;
    info = { spanName: `tools/call ${entry.tool.name}`, attributes: Object.freeze(attributes) };
    spanInfoCache.set(entry, info);
  }
  return info;
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

function isPlainArgs(value: unknown): value is Record<string, unknown> | undefined {
  return value === undefined || (typeof value === 'object' && value !== null && !Array.isArray(value));
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
      const hostFunctions = this.hostFunctions(catalog, execution);
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
      const error = this.mapError(outcome.error, normalized.mapPosition, execution);
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

  private mapError(
    raw: Extract<RunOutcome, { ok: false }>['error'],
    mapPosition: (line: number, column: number) => { line: number; column: number },
    execution: Execution,
  ): ExecuteError {
    // The guest chose the name and message of what it threw: both are capped before they reach a response.
    const error: ExecuteError = { kind: raw.kind, message: capString(raw.message, MAX_ERROR_MESSAGE_CHARS) };
    if (raw.name !== undefined) error.name = capString(raw.name, MAX_ERROR_NAME_CHARS);
    // The guest can throw anything under any name: the kind and the tool fields are taken from it only when
    // this execution really refused a call at the cap, or really had a failed call (a handler may name its
    // ToolError's tool itself, and records stop at MAX_CALL_RECORDS, so any failed call will do).
    if (raw.kind === 'runtime' && raw.name === 'ToolCallLimitError' && execution.maxToolCalls !== null && execution.attempts > execution.maxToolCalls) {
      error.kind = 'tool_call_limit';
    }
    if (raw.line !== undefined) {
      const pos = mapPosition(raw.line, raw.column ?? 1);
      error.line = pos.line;
      if (raw.column !== undefined) error.column = pos.column;
    }
    const tool = raw.data?.tool;
    if (raw.name === 'ToolError' && typeof tool === 'string' && (execution.droppedRecords > 0 || execution.records.some((r) => !r.ok))) {
      error.tool = capString(tool, MAX_TOOL_LABEL_CHARS);
      if (raw.data?.structuredContent !== undefined) error.structuredContent = raw.data.structuredContent;
    }
    return error;
  }

  private hostFunctions(catalog: Catalog, execution: Execution): HostFunctions {
    // Null prototypes: a tool or namespace called "toString" or "__proto__" must be a plain own key.
    const tools: HostFunctions = Object.create(null) as HostFunctions;
    for (const entry of catalog.entries) {
      const ns = (tools[entry.namespaceId] ??= Object.create(null) as HostFunctions) as HostFunctions;
      ns[entry.toolId] = (args, ctx) => this.callEntry(execution, entry.qualifiedName, entry, args[0], ctx);
    }
    // Upstream spellings work too (`tools.everything['get-sum']`), where they differ from and do not
    // shadow an identifier: models often write the name they saw in a tool list.
    for (const entry of catalog.entries) {
      if (!Object.hasOwn(tools, entry.namespace)) tools[entry.namespace] = tools[entry.namespaceId]!;
      const ns = tools[entry.namespaceId] as HostFunctions;
      if (!Object.hasOwn(ns, entry.tool.name)) ns[entry.tool.name] = ns[entry.toolId]!;
    }
    const fns: HostFunctions = {
      tools,
      callTool: (args, ctx) => {
        const name = args[0];
        // The name is the guest's: capped before it becomes a record, an error or a lookup key.
        const label = capString(name, MAX_TOOL_LABEL_CHARS);
        if (typeof name !== 'string') {
          execution.admit(label);
          execution.record({ tool: label, ok: false, ms: 0, reason: 'unknown_tool' });
          throw new ToolError(`callTool(name, args) needs the tool name as a string, got ${typeof name}.`, { tool: label });
        }
        const resolved = catalog.resolve(name);
        if ('error' in resolved) {
          execution.admit(label);
          execution.record({ tool: label, ok: false, ms: 0, reason: 'unknown_tool' });
          throw new ToolError(resolved.error, { tool: label });
        }
        return this.callEntry(execution, resolved.entry.qualifiedName, resolved.entry, args[1], ctx);
      },
    };
    const resourceSources = catalog.sources.filter((s) => typeof s.readResource === 'function');
    if (resourceSources.length > 0) {
      fns.resources = { read: (args, ctx) => this.readResource(execution, resourceSources, args[0], args[1], ctx) };
    }
    const promptSources = catalog.sources.filter((s) => typeof s.getPrompt === 'function');
    if (promptSources.length > 0) {
      fns.prompts = { get: (args, ctx) => this.getPrompt(execution, promptSources, args[0], args[1], ctx) };
    }
    return fns;
  }

  private async callEntry(execution: Execution, label: string, entry: CatalogEntry, rawArgs: unknown, ctx: HostCallContext): Promise<unknown> {
    execution.admit(label);
    if (!isPlainArgs(rawArgs)) {
      execution.record({ tool: label, ok: false, ms: 0, reason: 'invalid_arguments' });
      throw new ToolError(`${label}: arguments must be an object, got ${Array.isArray(rawArgs) ? 'an array' : rawArgs === null ? 'null' : typeof rawArgs}.`, { tool: label });
    }
    const args = rawArgs ?? {};
    const { spanName, attributes: base } = callSpanInfo(entry);
    // The session id can change (a reconnect); the rest is fixed per entry and built once.
    const sessionId = entry.source.sessionId;
    const attributes = sessionId ? { ...base, [ATTR.MCP_SESSION_ID]: sessionId } : base;
    const local = entry.source.local === true;
    const timeoutMs = this.toolCallTimeoutMs;
    try {
      const output = await execution.run(
        label,
        spanName,
        attributes,
        ctx,
        async (meta) => {
          const output = await entry.source.callTool(entry.tool.name, args, timeoutMs !== undefined ? { signal: ctx.signal, meta, timeoutMs } : { signal: ctx.signal, meta });
          // A handler's value (a Map, a BigInt, a cycle) that cannot cross into the sandbox fails the call here,
          // so the guest gets a ToolError and the record says failed, not a bare Error after an "ok" call.
          if ('value' in output) assertCopyable(label, output.value);
          return output;
        },
        (out) => !('mcp' in out && out.mcp.isError === true),
      );
      if ('value' in output) return output.value;
      if (output.mcp.isError === true) throw toolErrorFromResult(label, output.mcp);
      return shapeToolResult(output.mcp);
    } catch (err) {
      if (err instanceof ToolError) throw err;
      if (ctx.signal.aborted) throw new ToolError(`${label}: cancelled because the execution ended.`, { tool: label }, { cause: err });
      log.debug('tool call failed', { tool: label, error: err instanceof Error ? err.message : String(err) });
      throw toolErrorFromFailure(label, entry.namespace, err, local);
    }
  }

  private async readResource(execution: Execution, sources: ToolSource[], uri: unknown, server: unknown, ctx: HostCallContext): Promise<unknown> {
    const label = `resources/read ${capString(uri, MAX_TOOL_LABEL_CHARS)}`;
    execution.admit(label);
    if (typeof uri !== 'string' || uri === '') {
      execution.record({ tool: label, ok: false, ms: 0, reason: 'invalid_arguments' });
      throw new ToolError('resources.read(uri) needs the resource URI as a string.', { tool: label });
    }
    const candidates = this.pickSources(sources, server, 'resources.read', label, execution);
    const attributes = { [ATTR.MCP_METHOD]: 'resources/read', [ATTR.MCP_RESOURCE_URI]: capString(uri, MAX_TOOL_LABEL_CHARS) };
    const result = await this.askInTurn(execution, label, candidates, ctx, 'resources/read', attributes, (source, meta) =>
      source.readResource!(uri, { signal: ctx.signal, meta }),
    );
    return result.contents;
  }

  /**
   * Asks each candidate source in turn until one answers. Every source asked after the first counts as one
   * more call toward `maxToolCalls` (each is a request upstream); if all fail, the error names each
   * source's own failure.
   */
  private async askInTurn<T>(
    execution: Execution,
    label: string,
    candidates: readonly ToolSource[],
    ctx: HostCallContext,
    spanName: string,
    attributes: Readonly<Record<string, string>>,
    invoke: (source: ToolSource, meta: Record<string, unknown>) => Promise<T>,
  ): Promise<T> {
    const failures: { source: string; err: unknown }[] = [];
    for (const [i, source] of candidates.entries()) {
      if (i > 0) execution.admit(label);
      try {
        return await execution.run(label, spanName, attributes, ctx, (meta) => invoke(source, meta), () => true);
      } catch (err) {
        failures.push({ source: source.name, err });
        if (ctx.signal.aborted) break;
      }
    }
    const [only] = failures;
    if (failures.length === 1 && only !== undefined) throw toolErrorFromFailure(label, only.source, only.err, false);
    const each = failures.map(({ source, err }) => `"${source}": ${capString(err instanceof Error ? err.message || err.name : err, MAX_ERROR_MESSAGE_CHARS / 8)}`);
    throw new ToolError(`${label}: no server could answer (asked ${failures.length}): ${each.join('; ')}`, { tool: label }, { cause: failures.at(-1)?.err });
  }

  private async getPrompt(execution: Execution, sources: ToolSource[], name: unknown, rawArgs: unknown, ctx: HostCallContext): Promise<unknown> {
    const label = `prompts/get ${capString(name, MAX_TOOL_LABEL_CHARS)}`;
    execution.admit(label);
    if (typeof name !== 'string' || name === '' || !isPlainArgs(rawArgs)) {
      execution.record({ tool: label, ok: false, ms: 0, reason: 'invalid_arguments' });
      throw new ToolError('prompts.get(name, args) needs the prompt name as a string and args as an object of strings.', { tool: label });
    }
    const args: Record<string, string> = {};
    for (const [k, v] of Object.entries(rawArgs ?? {})) args[k] = typeof v === 'string' ? v : JSON.stringify(v);
    // "namespace.prompt" routes to that namespace; a bare name goes to every prompt source in turn.
    let candidates = sources;
    let promptName = name;
    const dot = sources.find((s) => name.startsWith(`${s.name}.`));
    if (dot) {
      candidates = [dot];
      promptName = name.slice(dot.name.length + 1);
    }
    const shownName = capString(promptName, MAX_TOOL_LABEL_CHARS);
    const attributes = { [ATTR.MCP_METHOD]: 'prompts/get', [ATTR.GEN_AI_PROMPT_NAME]: shownName };
    return this.askInTurn(execution, label, candidates, ctx, `prompts/get ${shownName}`, attributes, (source, meta) =>
      source.getPrompt!(promptName, args, { signal: ctx.signal, meta }),
    );
  }

  private pickSources(sources: ToolSource[], server: unknown, api: string, label: string, execution: Execution): ToolSource[] {
    if (server === undefined || server === null) return sources;
    const match = sources.find((s) => s.name === server);
    if (!match) {
      execution.record({ tool: label, ok: false, ms: 0, reason: 'unknown_tool' });
      throw new ToolError(`${api}: no source named ${JSON.stringify(capString(server, MAX_TOOL_LABEL_CHARS))} serves this. Sources that do: ${sources.map((s) => `"${s.name}"`).join(', ')}.`, { tool: label });
    }
    return [match];
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
