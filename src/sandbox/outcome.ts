/**
 * Outcomes: reading what the guest's run resolved with (or reported after its task failed), and mapping it,
 * or the way the run failed, to a `RunOutcome` with errors in the user's own terms (positions in the user's
 * code, guest-only stack frames, messages that say what to do).
 *
 * @module
 */

import { describeError } from '../errors.js';
import { BOOTSTRAP_FILENAME, START_TAGS, USER_FILENAME } from './bootstrap.js';
import type { StartTag } from './bootstrap.js';
import { capText, jsonNestedDeeperThan, MAX_ERROR_NAME, MAX_RESULT_DEPTH } from './caps.js';
import { UNLIMITED_MEMORY_MB } from './prepared-isolate.js';
import type { PreparedIsolate } from './prepared-isolate.js';
import { bag, NO_LIMIT } from './run-state.js';
import type { RunState } from './run-state.js';
import type { LogEntry, RunOutcome, RunStats, SandboxError, SandboxLimits } from './types.js';

const USER_POSITION = new RegExp(`${USER_FILENAME.replace(/[.]/g, '\\.')}:(\\d+):(\\d+)`);

/** Splits the guest's "tag\ndropped\nlogsSent\npayload" string; undefined if it isn't one. */
export function parseRunResult(result: unknown): { tag: StartTag; guestDropped: number; logsSent: number; payload: string } | undefined {
  if (typeof result !== 'string') return undefined;
  const first = result.indexOf('\n');
  const second = result.indexOf('\n', first + 1);
  const third = result.indexOf('\n', second + 1);
  if (first < 0 || second < 0 || third < 0) return undefined;
  const tag = result.slice(0, first);
  if (!START_TAGS.has(tag)) return undefined;
  const count = (text: string): number => {
    const n = Number(text);
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  };
  return { tag: tag as StartTag, guestDropped: count(result.slice(first + 1, second)), logsSent: count(result.slice(second + 1, third)), payload: result.slice(third + 1) };
}

/**
 * How long the host waits, after the run's result arrived, for log messages the guest sent before it
 * returned. They are normally a few microseconds behind; the bound only matters if isolated-vm lost one.
 */
const LOG_DRAIN_MS = 1_000;

/** Waits until every log message the guest sent has arrived; counts any that never do as dropped. */
export async function drainLogs(state: RunState, sent: number): Promise<void> {
  if (state.logMessagesReceived >= sent) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, LOG_DRAIN_MS);
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    state.onLogMessage = () => {
      if (state.logMessagesReceived >= sent) done();
    };
    state.endDrain = done;
  });
  state.onLogMessage = undefined;
  state.endDrain = undefined;
  // Said in the logs themselves, so no line goes missing silently.
  const lost = sent - state.logMessagesReceived;
  if (lost > 0 && !state.logsClosed) {
    state.logs.push({
      level: 'warn',
      message: `[console output incomplete: ${lost} message(s) the code logged never arrived from the sandbox within ${LOG_DRAIN_MS} ms]`,
    });
  }
}

/**
 * What the guest's report() says after the script's task failed; undefined when it has nothing to add.
 * Asynchronous on purpose: a later task of the guest (a reply, a timer) may be running in the isolate by now,
 * and a synchronous call would block this thread, wall-clock timer included, for as long as it runs.
 */
export async function readReport(prepared: PreparedIsolate): Promise<{ kind: 'refused'; message?: string } | { kind: 'settled'; outcome: string } | undefined> {
  const report = prepared.report;
  if (report === undefined || prepared.disposed) return undefined;
  let text: unknown;
  try {
    text = await report.apply(undefined, [], bag({ result: bag({ copy: true }) }));
  } catch {
    return undefined;
  }
  if (typeof text !== 'string' || text === '') return undefined;
  // 'n': the script failed before its first expression (a declaration the global scope refused), so
  // nothing ran, as with a refused body.
  if (text === 'n') return { kind: 'refused' };
  if (text[0] === 's') return { kind: 'refused', message: text.slice(1) };
  if (text[0] === 'o') return { kind: 'settled', outcome: text.slice(1) };
  return undefined;
}

function cleanStack(stack: string): string {
  return stack
    .split('\n')
    // Keep the guest's frames only: not the bootstrap's, not isolated-vm's boundary, not the host's.
    .filter((line) => !line.includes(BOOTSTRAP_FILENAME) && !line.includes('<isolated-vm') && !/\(?(file|node):/.test(line))
    .join('\n');
}

interface GuestErrorInfo {
  name?: string;
  message?: string;
  stack?: string;
  data?: Record<string, unknown>;
  nonError?: boolean;
}

export function runtimeError(payload: string): SandboxError {
  let info: GuestErrorInfo;
  try {
    info = JSON.parse(payload) as GuestErrorInfo;
  } catch {
    info = { message: 'the guest threw a value that could not be described' };
  }
  const message = typeof info.message === 'string' ? capText(info.message) : '';
  if (info.name === 'RangeError' && message === 'Array buffer allocation failed') {
    // isolated-vm counts ArrayBuffer memory against the limit and refuses allocations past it.
    return { kind: 'memory', message: 'Out of memory: an ArrayBuffer/typed array allocation exceeded the memory limit.' };
  }
  const error: SandboxError = { kind: 'runtime', message };
  if (typeof info.name === 'string') error.name = capText(info.name, MAX_ERROR_NAME);
  if (typeof info.stack === 'string') {
    const stack = capText(info.stack);
    error.stack = cleanStack(stack);
    // Only stack frames count: a message that mentions "codemode-user.js:99:1" is not where it was thrown.
    const frame = stack.split('\n').find((line) => /^\s+at /.test(line) && USER_POSITION.test(line));
    const pos = frame === undefined ? null : USER_POSITION.exec(frame);
    if (pos) {
      error.line = Number(pos[1]);
      error.column = Number(pos[2]);
    }
  }
  if (info.data !== undefined && typeof info.data === 'object' && info.data !== null) {
    // The guest's copier bounds size and depth; a forged outcome does not, and 3,000 levels of nesting here
    // overflowed the stack of whoever walked the error next.
    const text = JSON.stringify(info.data);
    if (text.length <= 64 * 1024 && !jsonNestedDeeperThan(text, MAX_RESULT_DEPTH)) error.data = info.data;
  }
  return error;
}

export function unhandledRejectionError(err: unknown): SandboxError {
  const text = capText(describeError(err)).replace(/\.+$/, '');
  if (text.endsWith('could not be cloned')) {
    // Only code that closed our function wrapper early ("})") makes the script's value something else.
    return { kind: 'runtime', name: 'SyntaxError', message: 'The code closed its enclosing function early (a stray "})" at top level?); write it as the body of one async function.' };
  }
  const error: SandboxError = {
    kind: 'runtime',
    message: `Unhandled promise rejection: ${text}. A promise rejected and nothing awaited or caught it; await every call (or add .catch).`,
  };
  if (err instanceof Error) {
    if (typeof err.name === 'string') error.name = capText(err.name, MAX_ERROR_NAME);
    if (typeof err.stack === 'string') {
      // Capped before it is split into lines: the guest chose its length.
      const stack = capText(err.stack);
      error.stack = cleanStack(stack);
      const pos = USER_POSITION.exec(stack);
      if (pos) {
        error.line = Number(pos[1]);
        error.column = Number(pos[2]);
      }
    }
  }
  return error;
}

export function limitMessage(kind: 'timeout' | 'memory' | 'aborted', limits: Readonly<SandboxLimits>): string {
  switch (kind) {
    case 'timeout':
      return `The code ran longer than the ${limits.timeoutMs} ms time limit and was stopped. Make it do less per run or raise timeoutMs.`;
    case 'memory':
      return `The code exceeded the ${limits.memoryMb ?? UNLIMITED_MEMORY_MB} MB memory limit and was stopped. Work with less data at once or raise memoryMb.`;
    case 'aborted':
      return 'The run was aborted by the caller.';
  }
}

export function isMemoryFailure(err: unknown, prepared: PreparedIsolate): boolean {
  const message = err instanceof Error ? err.message : String(err);
  if (message.includes('memory limit')) return true;
  // After an await, an out-of-memory disposal surfaces as an abandoned promise: the isolate is gone and we
  // did not dispose it.
  return prepared.isolate.isDisposed && !prepared.disposedByUs;
}

export function outputLimitError(maxBytes: number): SandboxError {
  return {
    kind: 'output_limit',
    message: `The return value is larger than the ${maxBytes}-byte limit (maxResultBytes). Return less data, for example a filtered or summarized subset.`,
  };
}

export function emptyStats(durationMs: number, queuedMs: number): RunStats {
  return { durationMs, queuedMs, hostCalls: 0, pendingHostCalls: 0, droppedLogLines: 0 };
}

/** Appends the truncation marker when the log caps dropped anything. */
export function finishLogs(logs: LogEntry[], stats: RunStats, guestTruncated: boolean, limits: Readonly<SandboxLimits>): LogEntry[] {
  if (stats.droppedLogLines > 0 || guestTruncated) {
    const what = stats.droppedLogLines > 0 ? `${stats.droppedLogLines} line(s) dropped` : 'the rest was cut off';
    logs.push({
      level: 'warn',
      message: `[console output truncated: ${what}; limits are ${limits.maxLogLines ?? 'unlimited'} lines and ${limits.maxLogBytes ?? 'unlimited'} bytes]`,
    });
  }
  return logs;
}

/**
 * The outcome of a run whose guest settled: `tag` and `payload` as parseRunResult split them. `stats` is
 * called as the outcome is made, so its duration covers the parsing.
 */
export function settledOutcome(tag: StartTag, payload: string, limits: Readonly<SandboxLimits>, logs: LogEntry[], stats: () => RunStats): RunOutcome {
  switch (tag) {
    case 'undefined':
      return { ok: true, value: undefined, logs, stats: stats() };
    case 'ok': {
      if (limits.maxResultBytes !== null && Buffer.byteLength(payload) > limits.maxResultBytes) {
        return { ok: false, error: outputLimitError(limits.maxResultBytes), logs, stats: stats() };
      }
      if (jsonNestedDeeperThan(payload, MAX_RESULT_DEPTH)) {
        // Only a forged outcome gets here (code that closed the wrapper early can make the script's value
        // any string): the guest's copier never nests deeper. A 400,000-deep array made host-side
        // JSON.stringify throw "Maximum call stack size exceeded" in whoever used the value next.
        return {
          ok: false,
          error: { kind: 'runtime', message: `The return value is nested more than ${MAX_RESULT_DEPTH} levels deep; return flatter data.` },
          logs,
          stats: stats(),
        };
      }
      return { ok: true, value: JSON.parse(payload) as unknown, logs, stats: stats() };
    }
    case 'output_limit':
      return { ok: false, error: outputLimitError(limits.maxResultBytes ?? NO_LIMIT), logs, stats: stats() };
    case 'unserializable': {
      const error = runtimeError(payload);
      error.message = `The return value cannot be copied out of the sandbox: ${error.message}`;
      delete error.stack;
      return { ok: false, error, logs, stats: stats() };
    }
    case 'error':
      return { ok: false, error: runtimeError(payload), logs, stats: stats() };
  }
}
