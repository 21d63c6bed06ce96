/**
 * The mutable state of one `CodeMode.execute`: the tool-call cap, the bound on calls in flight, a record
 * per call, a CLIENT span per upstream call, and the seal that refuses calls once the run has settled.
 * Also maps a sandbox failure to the `ExecuteError` a caller sees, since that depends on what this
 * execution really did.
 *
 * @module
 */

import pLimit from 'p-limit';
import type { LimitFunction } from 'p-limit';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Context, Span } from '@opentelemetry/api';
import { createLogger } from '../log.js';
import type { HostCallContext, RunOutcome } from '../sandbox/types.js';
import { ATTR, ERROR_TYPE_TOOL_ERROR, getTracer, injectTraceContext } from '../telemetry/index.js';
import { capString, MAX_ERROR_MESSAGE_CHARS, MAX_ERROR_NAME_CHARS, MAX_TOOL_LABEL_CHARS } from './text-caps.js';
import { ToolCallLimitError, ToolError } from './tool-errors.js';
import type { ExecuteError, ToolCallRecord } from './types.js';

const log = createLogger('codemode');

/** Cap on per-call records kept for one execution (the count in stats stays exact). */
const MAX_CALL_RECORDS = 1_000;

export interface PendingCall {
  record: ToolCallRecord;
  started: number;
}

/** The mutable state of one execution. */
export class Execution {
  attempts = 0;
  settled = false;
  readonly records: ToolCallRecord[] = [];
  readonly pending = new Set<PendingCall>();
  /** Calls cancelled because the run ended while they were in flight. */
  readonly cancelled: PendingCall[] = [];
  droppedRecords = 0;
  completed = 0;
  /** `ExecuteOptions.onToolCall`. */
  onToolCall: ((record: Readonly<ToolCallRecord>, completed: number) => void) | undefined;

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

function errorType(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' || typeof code === 'string' ? String(code) : err.name || 'Error';
  }
  return 'Error';
}

/** Whether a guest's tool or prompt arguments have the one accepted shape: absent, or a plain object. */
export function isPlainArgs(value: unknown): value is Record<string, unknown> | undefined {
  return value === undefined || (typeof value === 'object' && value !== null && !Array.isArray(value));
}

/** The `ExecuteError` for a failed run: guest-chosen text capped, positions mapped to the user's code. */
export function mapRunError(
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
