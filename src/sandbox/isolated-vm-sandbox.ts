/**
 * `IsolatedVmSandbox`: runs untrusted JavaScript in a fresh V8 isolate per run (isolated-vm), with host
 * functions, captured console output and hard limits. See docs/sandbox.md for the guest's view.
 *
 * Design (ARCHITECTURE §4; every point is a measured pitfall):
 * - One isolate per run, disposed when the run settles. A host timer disposes it at the wall-clock limit,
 *   because isolated-vm's own `timeout` does not cover code that resumes after an awaited host call.
 * - The guest reaches the host only through two References held in the bootstrap's closure
 *   (see bootstrap.ts); nothing isolated-vm is reachable from `globalThis`.
 * - Host calls answer with JSON envelope strings and never reject across the boundary.
 * - Isolate creation + bootstrap (`prepareIsolate`) is a separate step from running code, so callers
 *   (and this class's warm spares) can pay for it ahead of time.
 *
 * @module
 */

import { availableParallelism } from 'node:os';
import ivm from 'isolated-vm';
import pLimit from 'p-limit';
import type { LimitFunction } from 'p-limit';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { BOOTSTRAP_FILENAME, BOOTSTRAP_SOURCE, START_TAGS, USER_FILENAME } from './bootstrap.js';
import { refusedCodeError, runGlobalName, syntaxError, wrapUserCode } from './code-check.js';
import type { StartTag } from './bootstrap.js';
import { describeHostError, flattenHostFunctions, hostResultJson, validateErrorClasses } from './host-functions.js';
import type { FlatFunctions } from './host-functions.js';
import { coolEventLoop, keepEventLoopHot } from './hot-poll.js';
import { capText, jsonNestedDeeperThan, MAX_ERROR_NAME, MAX_RESULT_DEPTH, truncateUtf8 } from './caps.js';
import { resolveLimits } from './limits.js';
import { watchRelease } from './threads.js';
import type {
  HostCallContext,
  HostFunction,
  LogEntry,
  LogLevel,
  RunOptions,
  RunOutcome,
  RunStats,
  SandboxError,
  SandboxLimits,
  SandboxLimitsInput,
  SandboxProvider,
} from './types.js';

const log = createLogger('sandbox');

/**
 * Heap size used when `memoryMb` is `null`. isolated-vm always needs some limit; this one is far above
 * anything a code-mode script needs, so in practice it means "no sandbox-imposed cap".
 */
export const UNLIMITED_MEMORY_MB = 4096;
/** Stand-in for "no limit" in numbers sent to the guest (JSON has no Infinity). */
const NO_LIMIT = Number.MAX_SAFE_INTEGER;
/** How deep `hostFunctions` namespaces may nest. */
const LOG_LEVELS: ReadonlySet<string> = new Set<LogLevel>(['log', 'info', 'warn', 'error', 'debug']);

/** Null-prototype copy of an option bag: isolated-vm reads options through the prototype chain. */
function bag<const T extends object>(fields: T): T {
  return Object.assign(Object.create(null) as T, fields);
}

// ---------------------------------------------------------------------------------------------------------
// Live isolate accounting (hygiene tests assert on it)

/** Every isolate not yet disposed: counted by liveIsolateCount, disposed by disposeAllAtExit. */
const liveSet = new Set<PreparedIsolate>();
let exitHookInstalled = false;
let catastrophicErrors = 0;

/** The isolate class; replaceable only so hygiene tests can count real `dispose()` calls (isolated-vm's prototype is frozen). */
let IsolateClass: typeof ivm.Isolate = ivm.Isolate;

/** @internal Test seam: swap in a subclass of `ivm.Isolate`. Returns a function that restores the original. */
export function setIsolateClassForTesting(cls: typeof ivm.Isolate): () => void {
  const previous = IsolateClass;
  IsolateClass = cls;
  return () => {
    IsolateClass = previous;
  };
}

/**
 * Isolates created by this module and not yet disposed, across all sandboxes in this process (warm spares
 * included). Useful for leak checks and health metrics.
 */
export function liveIsolateCount(): number {
  return liveSet.size;
}

/**
 * Catastrophic errors (V8 out-of-memory failures isolated-vm could not contain) in this process so far. Each
 * one leaves a parked thread and its heap behind, so a health check may restart the process when it is above 0.
 *
 * @example
 * ```ts
 * if (catastrophicErrorCount() > 0) log.warn('sandbox memory was lost; consider restarting');
 * ```
 */
export function catastrophicErrorCount(): number {
  return catastrophicErrors;
}

// ---------------------------------------------------------------------------------------------------------
// Per-run host state

interface RunState {
  readonly functions: readonly HostFunction[];
  /** Where each function appears in the guest (`tools.fx.echo`), for messages: never read off the function. */
  readonly paths: readonly (readonly string[])[];
  readonly limits: Readonly<SandboxLimits>;
  settled: boolean;
  hostCalls: number;
  pending: number;
  controller: AbortController | undefined;
  /** Shared by the run's host calls (created with the controller on the first call). */
  context: HostCallContext | undefined;
  /** Pending guest timers by guest id. */
  readonly timers: Map<number, NodeJS.Timeout>;
  readonly logs: LogEntry[];
  logBytes: number;
  hostDroppedLogLines: number;
  guestTruncatedLogs: boolean;
  /** Log-bridge messages received; the guest's outcome says how many it sent. */
  logMessagesReceived: number;
  /** Set while the host waits for log messages still in transit after the run's result arrived. */
  onLogMessage: (() => void) | undefined;
  /** Ends that wait at once (the wall clock, an abort or close() came first); set while it lasts. */
  endDrain: (() => void) | undefined;
  /** Closed once the outcome is final: later messages would change a result already handed out. */
  logsClosed: boolean;
  /** The sandbox's `hotPollMs`: how long the event loop stays hot after a fast host-function answer. */
  readonly hotPollMs: number;
}

function okEnvelope(value: unknown, state: RunState, index: number): string {
  if (value === undefined) return 'u';
  let json: string | undefined;
  try {
    json = hostResultJson(value);
  } catch (err) {
    const label = state.paths[index]?.join('.') ?? 'host function';
    return errorEnvelope(new Error(`${label} returned a value that cannot be copied into the sandbox: ${describeError(err)}`));
  }
  return json === undefined ? 'u' : `v${json}`;
}

/** Describes a host error for the guest. Never throws, whatever getters or proxies `err` carries. */
function errorEnvelope(err: unknown): string {
  try {
    return `e${JSON.stringify(describeHostError(err))}`;
  } catch {
    return 'e{"name":"Error","message":"host function failed"}';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Prepared isolates

type InstallFn = (configJson: string, code: string) => void;
type SettleFn = (id: number, envelope: string) => void;
type FireFn = (id: number) => void;
type ReportFn = () => string;

/**
 * When the process exits (process.exit, an uncaught exception) while a guest thread is blocked on a host call
 * (applySyncPromise, see answerGuestCall), the promise it waits for can no longer settle, and isolated-vm's
 * thread pool joins that thread at exit: the process hung for good. Disposing the isolate releases the thread.
 */
function disposeAllAtExit(): void {
  for (const prepared of [...liveSet]) prepared.dispose();
}

/**
 * A fresh isolate with its context bootstrapped: the guest globals are in place and the host bridges are
 * wired, but no user code has run. Use it for exactly one run; dispose it if unused.
 */
export class PreparedIsolate {
  /** @internal */ readonly isolate: ivm.Isolate;
  /** @internal */ context: ivm.Context | undefined;
  /** @internal */ install: ivm.Reference<InstallFn> | undefined;
  /** @internal */ settle: ivm.Reference<SettleFn> | undefined;
  /** @internal */ fire: ivm.Reference<FireFn> | undefined;
  /** @internal */ report: ivm.Reference<ReportFn> | undefined;
  /** @internal */ state: RunState | undefined;
  /** @internal */ used = false;
  /** @internal */ disposedByUs = false;
  /** @internal Set by a run on this isolate: called if V8 hits a catastrophic out-of-memory error in it. */
  onCatastrophe: (() => void) | undefined;
  readonly memoryMb: number | null;
  #disposed = false;
  readonly #refs: ivm.Reference<unknown>[] = [];

  /** @internal */
  constructor(memoryMb: number | null) {
    this.memoryMb = memoryMb;
    // Some allocations (a dictionary object's hash table doubling past the heap limit, e.g. 4 million keys
    // with a 64 MB limit) fail inside V8 where isolated-vm's memory limit can't catch them. Without this
    // handler V8 aborts the whole Node process; with it, isolated-vm parks the isolate's thread and calls us,
    // and the run fails with kind `memory`. The parked thread and its heap are not reclaimed (isolated-vm
    // advises restarting the process), so this is logged as an error.
    this.isolate = new IsolateClass(
      bag({
        memoryLimit: memoryMb ?? UNLIMITED_MEMORY_MB,
        onCatastrophicError: (message: string): void => {
          catastrophicErrors++;
          log.error('isolate hit a catastrophic error; its thread and memory are lost until the process restarts', {
            error: String(message),
            catastrophicErrors,
          });
          const notify = this.onCatastrophe;
          this.onCatastrophe = undefined;
          notify?.();
        },
      }),
    );
    liveSet.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', disposeAllAtExit);
    }
  }

  /** True once disposed, by us or by isolated-vm (out of memory). */
  get disposed(): boolean {
    return this.#disposed || this.isolate.isDisposed;
  }

  /** @internal */
  track<T>(ref: ivm.Reference<T>): ivm.Reference<T> {
    this.#refs.push(ref as ivm.Reference<unknown>);
    return ref;
  }

  /** Disposes the isolate. Idempotent; never calls isolated-vm's dispose twice, nor after it disposed itself. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    liveSet.delete(this);
    if (!this.isolate.isDisposed) {
      this.disposedByUs = true;
      // A no-op queued behind whatever the isolate's thread is still doing: it settles once the thread has let
      // go, which tells a thread stuck in a long built-in after its run settled (threads.ts).
      let probe: Promise<unknown> | undefined;
      if (this.used && this.settle !== undefined) {
        try {
          probe = this.settle.apply(undefined, [-1, ''], bag({}));
        } catch {
          /* no probe: nothing to watch */
        }
      }
      try {
        this.isolate.dispose();
      } catch (err) {
        log.warn('isolate dispose failed', { error: describeError(err) });
      }
      if (probe !== undefined) watchRelease(probe);
    }
    for (const ref of this.#refs) {
      try {
        ref.release();
      } catch {
        /* already released with the isolate */
      }
    }
    this.#refs.length = 0;
  }
}

let bootstrapCache: ivm.ExternalCopy<ArrayBuffer> | undefined;

/**
 * Creates an isolate and context and runs the bootstrap, ready for one `run`. This is the expensive part
 * of a run (about 1-2 ms); a process pool can call it ahead of time and pass the result to
 * `IsolatedVmSandbox.run` via `RunWithPreparedOptions.prepared`.
 *
 * @example
 * ```ts
 * const prepared = await prepareIsolate(resolveLimits({ memoryMb: 64 }));
 * const outcome = await sandbox.run('return 1', { prepared });
 * ```
 */
export async function prepareIsolate(limits: Readonly<SandboxLimits>): Promise<PreparedIsolate> {
  const prepared = new PreparedIsolate(limits.memoryMb);
  try {
    // Synchronous calls throughout: this is trusted bootstrap code, and sync calls skip the thread hop
    // each async isolated-vm call costs (measured ~0.1-0.3 ms apiece on a loaded 2-vCPU machine).
    const { isolate } = prepared;
    const context = isolate.createContextSync();
    prepared.context = context;
    const cached = bootstrapCache;
    const script = isolate.compileScriptSync(
      BOOTSTRAP_SOURCE,
      cached !== undefined
        ? bag({ filename: BOOTSTRAP_FILENAME, cachedData: cached })
        : bag({ filename: BOOTSTRAP_FILENAME, produceCachedData: true }),
    );
    if (cached === undefined) {
      const produced = (script as unknown as { cachedData?: ivm.ExternalCopy<ArrayBuffer> }).cachedData;
      if (produced !== undefined) bootstrapCache = produced;
    }
    const factory = script.runSync(context, bag({ reference: true, release: true })) as unknown as ivm.Reference<
      (hostCall: unknown, log: unknown, timer: unknown) => [InstallFn, SettleFn, FireFn, ReportFn]
    >;
    const hostCall = prepared.track(
      new ivm.Reference((id: number, index: number, argsJson: string): string | Promise<string> => answerGuestCall(prepared, id, index, argsJson)),
    );
    const logRef = prepared.track(
      new ivm.Reference((level: unknown, message: unknown): void => logFromGuest(prepared, level, message)),
    );
    const timerRef = prepared.track(
      new ivm.Reference((id: unknown, delayMs: unknown): void => timerFromGuest(prepared, id, delayMs)),
    );
    const parts = factory.applySync(undefined, [hostCall, logRef, timerRef], bag({ result: bag({ reference: true }) })) as unknown as ivm.Reference<
      [InstallFn, SettleFn, FireFn, ReportFn]
    >;
    factory.release();
    prepared.install = prepared.track(parts.getSync(0, bag({ reference: true })) as unknown as ivm.Reference<InstallFn>);
    prepared.settle = prepared.track(parts.getSync(1, bag({ reference: true })) as unknown as ivm.Reference<SettleFn>);
    prepared.fire = prepared.track(parts.getSync(2, bag({ reference: true })) as unknown as ivm.Reference<FireFn>);
    prepared.report = prepared.track(parts.getSync(3, bag({ reference: true })) as unknown as ivm.Reference<ReportFn>);
    parts.release();
    return prepared;
  } catch (err) {
    prepared.dispose();
    throw new CodemodeError('SANDBOX_INTERNAL', `Could not prepare a sandbox isolate: ${describeError(err)}`, { cause: err });
  }
}

/** Answers a guest call. Never throws: the guest is waiting on `id` and gets an envelope either way. */
function reply(prepared: PreparedIsolate, id: number, envelope: string): void {
  const settle = prepared.settle;
  if (settle === undefined || prepared.disposed) return;
  try {
    settle.applyIgnored(undefined, [id, envelope]);
  } catch {
    /* the isolate went away meanwhile */
  }
}

/** An async host function that settles within this is "fast", and the event loop stays hot after it. */
const FAST_ANSWER_MS = 0.05;

/**
 * The guest waits (applySyncPromise) for this promise, which resolves with the envelope if the host function
 * settles within the current turn of the event loop (sync functions, cached answers: one round trip), or
 * with '' at the next turn, in which case the envelope follows through `reply` when the function settles.
 * So the guest is blocked for one host turn at most and `Promise.all` calls still run concurrently.
 * It never rejects: a rejection here would cross the boundary.
 */
function answerGuestCall(prepared: PreparedIsolate, id: number, index: number, argsJson: string): string | Promise<string> {
  const startedAt = performance.now();
  const started = startHostCall(prepared, index, argsJson);
  const state = prepared.state;
  const hotPollMs = state?.hotPollMs ?? 0;
  // A synchronous answer goes straight back (applySyncPromise accepts a plain value). After a fast one, the
  // guest resumes and code that calls in a loop calls again within microseconds: keep the loop hot for that
  // (hot-poll.ts).
  if (typeof started === 'string') {
    if (state !== undefined) {
      if (performance.now() - startedAt < FAST_ANSWER_MS) keepEventLoopHot(state, hotPollMs);
      else coolEventLoop(state);
    }
    return started;
  }
  // The host function is working (I/O, timers): spinning meanwhile would only take CPU from it.
  if (state !== undefined) coolEventLoop(state);
  return new Promise<string>((resolve) => {
    let answered = false;
    const immediate = setImmediate(() => {
      answered = true;
      resolve('');
    });
    void started.then((envelope) => {
      if (answered) {
        reply(prepared, id, envelope);
      } else {
        answered = true;
        clearImmediate(immediate);
        // Only after a fast function: after one that waited on I/O, other threads and processes are being
        // woken, and a spinning main thread delayed them (measured with a stdio echo tool).
        if (state !== undefined && performance.now() - startedAt < FAST_ANSWER_MS) keepEventLoopHot(state, hotPollMs);
        resolve(envelope);
      }
    });
  });
}

/**
 * Starts one host call: the envelope itself when the host function returned synchronously (or the call was
 * refused), else a promise of it. Never throws, and the promise never rejects.
 */
function startHostCall(prepared: PreparedIsolate, index: number, argsJson: string): string | Promise<string> {
  const state = prepared.state;
  if (state === undefined || state.settled) return errorEnvelope(new Error('The sandbox run has ended; host calls after that are refused.'));
  const fn = state.functions[index];
  if (typeof fn !== 'function' || typeof argsJson !== 'string') return errorEnvelope(new Error('Unknown host function.'));
  const maxPending = state.limits.maxPendingHostCalls;
  if (maxPending !== null && state.pending >= maxPending) {
    return errorEnvelope(new Error(`Too many host calls pending at once (limit ${maxPending}); await some before starting more.`));
  }
  state.hostCalls++;
  let result: unknown;
  try {
    const args: unknown = JSON.parse(argsJson);
    state.context ??= { signal: (state.controller = new AbortController()).signal };
    result = fn(Array.isArray(args) ? args : [], state.context);
  } catch (err) {
    return errorEnvelope(err);
  }
  if (!isThenable(result)) return okEnvelope(result, state, index);
  state.pending++;
  return settleHostCall(state, result, index);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  try {
    return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
  } catch {
    return false;
  }
}

async function settleHostCall(state: RunState, pending: PromiseLike<unknown>, index: number): Promise<string> {
  try {
    // Awaited inside try: a rejection and a rejected non-Error both become error envelopes.
    return okEnvelope(await pending, state, index);
  } catch (err) {
    return errorEnvelope(err);
  } finally {
    state.pending--;
  }
}

/** Guest timers are host timers owned by the run: capped in number and all cleared when the run settles. */
const MAX_TIMERS = 1000;
function timerFromGuest(prepared: PreparedIsolate, id: unknown, delayMs: unknown): void {
  const state = prepared.state;
  if (state === undefined || state.settled || typeof id !== 'number' || typeof delayMs !== 'number') return;
  if (delayMs < 0) {
    const existing = state.timers.get(id);
    if (existing !== undefined) clearTimeout(existing);
    state.timers.delete(id);
    return;
  }
  if (state.timers.size >= MAX_TIMERS) return;
  const handle = setTimeout(() => {
    state.timers.delete(id);
    if (state.settled || prepared.disposed) return;
    try {
      prepared.fire?.applyIgnored(undefined, [id]);
    } catch {
      /* the isolate went away meanwhile */
    }
  }, Math.min(delayMs, 2_147_483_647));
  state.timers.set(id, handle);
}

function logFromGuest(prepared: PreparedIsolate, level: unknown, message: unknown): void {
  const state = prepared.state;
  if (state === undefined || state.logsClosed) return;
  state.logMessagesReceived++;
  state.onLogMessage?.();
  if (level === '') {
    // The guest's own cap dropped a line (it sends this marker once).
    state.guestTruncatedLogs = true;
    return;
  }
  if (typeof level !== 'string' || !LOG_LEVELS.has(level) || typeof message !== 'string') return;
  const { maxLogLines, maxLogBytes } = state.limits;
  if (maxLogLines !== null && state.logs.length >= maxLogLines) {
    state.hostDroppedLogLines++;
    return;
  }
  // The guest cuts lines by characters (all it can count cheaply); the cap is in UTF-8 bytes, which a line of
  // "€" takes three times over: cut it here to the bytes left (work bounded by the guest's character cap).
  let text = message;
  let bytes = Buffer.byteLength(text);
  const left = maxLogBytes === null ? Number.POSITIVE_INFINITY : maxLogBytes - state.logBytes;
  if (bytes > left) {
    if (left <= 0) {
      state.hostDroppedLogLines++;
      return;
    }
    text = truncateUtf8(text, left);
    bytes = Buffer.byteLength(text);
    state.guestTruncatedLogs = true;
  }
  state.logBytes += bytes;
  state.logs.push({ level: level as LogLevel, message: text });
}

// ---------------------------------------------------------------------------------------------------------
// Host function tree

// ---------------------------------------------------------------------------------------------------------
// Outcomes

const USER_POSITION = new RegExp(`${USER_FILENAME.replace(/[.]/g, '\\.')}:(\\d+):(\\d+)`);

/** Splits the guest's "tag\ndropped\nlogsSent\npayload" string; undefined if it isn't one. */
function parseRunResult(result: unknown): { tag: StartTag; guestDropped: number; logsSent: number; payload: string } | undefined {
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
async function drainLogs(state: RunState, sent: number): Promise<void> {
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
async function readReport(prepared: PreparedIsolate): Promise<{ kind: 'refused'; message?: string } | { kind: 'settled'; outcome: string } | undefined> {
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

function runtimeError(payload: string): SandboxError {
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

function unhandledRejectionError(err: unknown): SandboxError {
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

function limitMessage(kind: 'timeout' | 'memory' | 'aborted', limits: Readonly<SandboxLimits>): string {
  switch (kind) {
    case 'timeout':
      return `The code ran longer than the ${limits.timeoutMs} ms time limit and was stopped. Make it do less per run or raise timeoutMs.`;
    case 'memory':
      return `The code exceeded the ${limits.memoryMb ?? UNLIMITED_MEMORY_MB} MB memory limit and was stopped. Work with less data at once or raise memoryMb.`;
    case 'aborted':
      return 'The run was aborted by the caller.';
  }
}

function isMemoryFailure(err: unknown, prepared: PreparedIsolate): boolean {
  const message = err instanceof Error ? err.message : String(err);
  if (message.includes('memory limit')) return true;
  // After an await, an out-of-memory disposal surfaces as an abandoned promise: the isolate is gone and we
  // did not dispose it.
  return prepared.isolate.isDisposed && !prepared.disposedByUs;
}

// ---------------------------------------------------------------------------------------------------------
// The provider

/** Options of `IsolatedVmSandbox`. */
export interface IsolatedVmSandboxOptions {
  /** Limits of every run (see `SandboxLimitsInput`). Copied and frozen at construction. */
  limits?: SandboxLimitsInput;
  /** How many isolates may run at once; further runs queue. Default: `os.availableParallelism()`. */
  maxConcurrency?: number;
  /**
   * Isolates prepared ahead of time, so a run skips isolate creation and bootstrap. Default 1; 0 turns it
   * off. Each spare holds about 1-2 MB.
   */
  warmIsolates?: number;
  /**
   * How many runs may wait for a slot; a run past it rejects at once with `CodemodeError` code `OVERLOADED`.
   * Default: no cap (callers such as the server usually bound concurrency themselves).
   */
  maxQueuedRuns?: number | null;
  /**
   * Stop runs when this process's RSS grows past a budget while they are in flight (default true). V8 lets a
   * heap overshoot its limit while isolated-vm stops the isolate, and builtins such as `Array.from` keep
   * allocating meanwhile (measured: +0.5 to +1.7 GB past a 64 MB limit). The guard samples RSS every
   * 25 ms while runs are in flight; past `base + 128 MB + 3 x memoryMb of every run in flight` it stops every
   * run in flight with kind `memory` (RSS is per process, so it cannot tell which run grew). It is sampled,
   * not enforced by the kernel: for hard containment use the process pool (`ProcessSandbox`).
   */
  rssGuard?: boolean;
  /**
   * Milliseconds the event loop keeps polling (instead of sleeping in epoll) after a host function answered
   * the guest fast (synchronously, or within 50 µs), so the guest's next call is picked up without waking a
   * sleeping main thread. Default 0.5; 0 turns it off. It trades CPU for latency: on a 2-vCPU VM a loop of
   * awaited calls to a fast host function went from ~50 to ~25 µs per call, and used less CPU, because
   * sleeping and waking cost more than the spin. The loop never spins while a host function waits on I/O or
   * timers (that made a stdio tool slower), and a run's window closes when the run ends. See hot-poll.ts.
   */
  hotPollMs?: number;
}

/** `RunOptions` plus an isolate prepared ahead of time (for process pools). */
export interface RunWithPreparedOptions extends RunOptions {
  /** An unused isolate from `prepareIsolate()` or `IsolatedVmSandbox.prepare()`; the run takes ownership. */
  prepared?: PreparedIsolate;
}

type Interrupt = 'timeout' | 'aborted';

/** Default `hotPollMs`. */
export const DEFAULT_HOT_POLL_MS = 0.5;

// ---------------------------------------------------------------------------------------------------------
// Host RSS guard (shared by every sandbox of this process: RSS is per process)

const RSS_SAMPLE_MS = 25;
const RSS_FLOOR_BYTES = 128 * 2 ** 20;
const RSS_FACTOR = 3;

interface RssWatch {
  /** Bytes this run may add to the process's RSS; Infinity for a run without a memory limit. */
  budget: number;
  stop(): void;
}

const rssWatches = new Set<RssWatch>();
let rssBase = 0;
let rssTimer: NodeJS.Timeout | undefined;

function sampleRss(): void {
  let budget = RSS_FLOOR_BYTES;
  for (const w of rssWatches) budget += w.budget;
  const rss = process.memoryUsage.rss();
  if (rss - rssBase <= budget) return;
  log.warn('host RSS grew past the budget of the runs in flight; stopping them', {
    rssMb: Math.round(rss / 2 ** 20),
    baseMb: Math.round(rssBase / 2 ** 20),
    budgetMb: Math.round(budget / 2 ** 20),
    runs: rssWatches.size,
  });
  for (const w of [...rssWatches]) w.stop();
}

/** Watches host RSS while the run is in flight; returns the function that ends the watch. */
function watchRss(memoryMb: number | null, stop: () => void): () => void {
  const watch: RssWatch = { budget: memoryMb === null ? Number.POSITIVE_INFINITY : RSS_FACTOR * memoryMb * 2 ** 20, stop };
  if (rssWatches.size === 0) {
    rssBase = process.memoryUsage.rss();
    rssTimer = setInterval(sampleRss, RSS_SAMPLE_MS);
    rssTimer.unref();
  }
  rssWatches.add(watch);
  return () => {
    rssWatches.delete(watch);
    if (rssWatches.size === 0 && rssTimer !== undefined) {
      clearInterval(rssTimer);
      rssTimer = undefined;
    }
  };
}

/**
 * The in-process sandbox: each run gets a fresh V8 isolate with its own heap limit, wall-clock limit,
 * console capture and host functions.
 *
 * @example
 * ```ts
 * const sandbox = new IsolatedVmSandbox({ limits: { timeoutMs: 5_000 }, maxConcurrency: 2 });
 * const outcome = await sandbox.run('const r = await lookup("x"); console.log(r); return r.n + 1', {
 *   hostFunctions: { lookup: async ([key]) => ({ key, n: 41 }) },
 * });
 * if (outcome.ok) console.log(outcome.value); // 42
 * else console.error(outcome.error.kind, outcome.error.message);
 * await sandbox.close();
 * ```
 */
export class IsolatedVmSandbox implements SandboxProvider {
  /** This instance's own frozen copy of its limits. */
  readonly limits: Readonly<SandboxLimits>;
  readonly maxConcurrency: number;
  readonly #limit: LimitFunction;
  readonly #warm: number;
  readonly #maxQueued: number;
  readonly #rssGuard: boolean;
  readonly #hotPollMs: number;
  #running = 0;
  #waiting = 0;
  readonly #spares: PreparedIsolate[] = [];
  #refilling = 0;
  #closed = false;
  readonly #cancels = new Set<(kind: Interrupt) => void>();
  readonly #inflight = new Set<Promise<unknown>>();

  constructor(options: IsolatedVmSandboxOptions = {}) {
    this.limits = resolveLimits(options.limits);
    const concurrency = options.maxConcurrency ?? availableParallelism();
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new CodemodeError('INVALID_CONFIG', `maxConcurrency must be a positive integer; got ${String(options.maxConcurrency)}.`);
    }
    this.maxConcurrency = concurrency;
    this.#limit = pLimit(concurrency);
    const warm = options.warmIsolates ?? 1;
    if (!Number.isInteger(warm) || warm < 0) {
      throw new CodemodeError('INVALID_CONFIG', `warmIsolates must be a non-negative integer; got ${String(options.warmIsolates)}.`);
    }
    this.#warm = warm;
    const maxQueued = options.maxQueuedRuns ?? null;
    if (maxQueued !== null && (!Number.isInteger(maxQueued) || maxQueued < 0)) {
      throw new CodemodeError('INVALID_CONFIG', `maxQueuedRuns must be a non-negative integer or null; got ${String(maxQueued)}.`);
    }
    this.#maxQueued = maxQueued ?? Number.POSITIVE_INFINITY;
    this.#rssGuard = options.rssGuard ?? true;
    const hotPollMs = options.hotPollMs ?? DEFAULT_HOT_POLL_MS;
    if (typeof hotPollMs !== 'number' || !Number.isFinite(hotPollMs) || hotPollMs < 0 || hotPollMs > 1000) {
      throw new CodemodeError('INVALID_CONFIG', `hotPollMs must be a number of milliseconds from 0 to 1000; got ${String(options.hotPollMs)}.`);
    }
    this.#hotPollMs = hotPollMs;
    this.#refill();
  }

  /** Prepares an isolate with this sandbox's limits, for a later `run(code, { prepared })`. */
  prepare(): Promise<PreparedIsolate> {
    if (this.#closed) return Promise.reject(new CodemodeError('CLOSED', 'The sandbox is closed.'));
    return prepareIsolate(this.limits);
  }

  /** Runs `code` as the body of an async function. Resolves for every guest outcome. */
  run(code: string, options: RunWithPreparedOptions = {}): Promise<RunOutcome> {
    if (this.#closed) {
      options.prepared?.dispose();
      return Promise.reject(new CodemodeError('CLOSED', 'The sandbox is closed; create a new one to run code.'));
    }
    if (typeof code !== 'string') {
      options.prepared?.dispose();
      return Promise.reject(new CodemodeError('INVALID_ARGUMENT', 'Sandbox code must be a string.'));
    }
    let flat: FlatFunctions;
    let errorClasses: string[];
    try {
      flat = flattenHostFunctions(options.hostFunctions);
      errorClasses = validateErrorClasses(options.errorClasses, true);
    } catch (err) {
      options.prepared?.dispose();
      return Promise.reject(err as Error);
    }
    const { signal, prepared } = options;
    // Own counters rather than p-limit's: a run aborted while queued leaves a no-op placeholder in p-limit's
    // queue, which must not count against the cap.
    if (this.#running + this.#waiting >= this.maxConcurrency + this.#maxQueued) {
      prepared?.dispose();
      return Promise.reject(
        new CodemodeError('OVERLOADED', `The sandbox queue is full (${this.#waiting} runs waiting, maxQueuedRuns ${this.#maxQueued}); retry later.`),
      );
    }
    const enqueued = performance.now();
    if (signal?.aborted === true) {
      prepared?.dispose();
      return Promise.resolve(this.#interruptedOutcome('aborted', [], emptyStats(0, 0)));
    }
    const promise = new Promise<RunOutcome>((resolve, reject) => {
      let started = false;
      let cancelledWhileQueued = false;
      this.#waiting++;
      const cancelQueued = (): void => {
        if (started || cancelledWhileQueued) return;
        cancelledWhileQueued = true;
        this.#waiting--;
        this.#cancels.delete(cancelQueued);
        signal?.removeEventListener('abort', cancelQueued);
        prepared?.dispose();
        resolve(this.#interruptedOutcome('aborted', [], emptyStats(0, performance.now() - enqueued)));
      };
      this.#cancels.add(cancelQueued);
      signal?.addEventListener('abort', cancelQueued, { once: true });
      this.#limit(async () => {
        if (cancelledWhileQueued) return; // frees the slot at once
        started = true;
        this.#waiting--;
        this.#running++;
        this.#cancels.delete(cancelQueued);
        signal?.removeEventListener('abort', cancelQueued);
        const queuedMs = performance.now() - enqueued;
        try {
          resolve(await this.#execute(code, flat, errorClasses, signal, queuedMs, prepared));
        } catch (err) {
          reject(err as Error);
        } finally {
          this.#running--;
        }
      }).catch(reject);
    });
    this.#inflight.add(promise);
    const forget = (): void => {
      this.#inflight.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }

  /** Aborts queued and running runs, disposes warm isolates, and waits for runs to settle. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) {
      await Promise.allSettled([...this.#inflight]);
      return;
    }
    this.#closed = true;
    try {
      for (const cancel of [...this.#cancels]) cancel('aborted');
    } finally {
      for (const spare of this.#spares.splice(0)) spare.dispose();
    }
    await Promise.allSettled([...this.#inflight]);
  }

  /**
   * Tops up the warm spares, one isolate per event-loop turn: creating one blocks this thread for a
   * millisecond or two, which should not land on a run (or on the constructor's caller).
   */
  #refill(): void {
    if (this.#closed || this.#refilling > 0 || this.#spares.length >= this.#warm) return;
    this.#refilling++;
    setImmediate(() => {
      if (this.#closed) {
        this.#refilling--;
        return;
      }
      prepareIsolate(this.limits).then(
        (prepared) => {
          this.#refilling--;
          if (this.#closed) {
            prepared.dispose();
            return;
          }
          this.#spares.push(prepared);
          this.#refill();
        },
        (err: unknown) => {
          this.#refilling--;
          log.warn('could not prepare a warm isolate', { error: describeError(err) });
        },
      );
    });
  }

  async #take(prepared: PreparedIsolate | undefined): Promise<PreparedIsolate> {
    if (prepared !== undefined) {
      if (prepared.used || prepared.disposed || prepared.install === undefined) {
        throw new CodemodeError('INVALID_ARGUMENT', 'The prepared isolate was already used or disposed; prepare a new one per run.');
      }
      if (prepared.memoryMb !== this.limits.memoryMb) {
        prepared.dispose();
        throw new CodemodeError('INVALID_ARGUMENT', 'The prepared isolate was made with a different memory limit than this sandbox.');
      }
      return prepared;
    }
    // Refilling is left to the end of the run: creating an isolate blocks this thread for about a
    // millisecond, which would land on the run that just took the spare.
    return this.#spares.pop() ?? prepareIsolate(this.limits);
  }

  #interruptedOutcome(kind: Interrupt | 'memory', logs: LogEntry[], stats: RunStats): RunOutcome {
    return { ok: false, error: { kind, message: limitMessage(kind, this.limits) }, logs, stats };
  }

  async #execute(
    code: string,
    flat: FlatFunctions,
    errorClasses: string[],
    signal: AbortSignal | undefined,
    queuedMs: number,
    given: PreparedIsolate | undefined,
  ): Promise<RunOutcome> {
    const startedAt = performance.now();
    const limits = this.limits;
    const state: RunState = {
      functions: flat.functions,
      paths: flat.paths,
      limits,
      settled: false,
      hostCalls: 0,
      pending: 0,
      controller: undefined,
      context: undefined,
      timers: new Map(),
      logs: [],
      logBytes: 0,
      hostDroppedLogLines: 0,
      guestTruncatedLogs: false,
      logMessagesReceived: 0,
      onLogMessage: undefined,
      endDrain: undefined,
      logsClosed: false,
      hotPollMs: this.#hotPollMs,
    };

    let interrupted: Interrupt | 'memory' | undefined;
    let wake: ((kind: Interrupt | 'memory') => void) | undefined;
    const interruptPromise = new Promise<Interrupt | 'memory'>((resolve) => {
      wake = resolve;
    });
    let prepared: PreparedIsolate | undefined;
    const interrupt = (kind: Interrupt | 'memory'): void => {
      if (interrupted !== undefined || state.logsClosed) return;
      // The result is already in and the host only waits for log lines in transit (a forged result can claim
      // lines that never come): stop waiting and return that result now, with the missing lines said.
      if (state.endDrain !== undefined) {
        state.endDrain();
        return;
      }
      if (state.settled) return;
      interrupted = kind;
      // Dispose at once: it stops synchronous loops, pending awaits and Atomics-style waits alike.
      prepared?.dispose();
      wake?.(kind);
    };
    const onAbort = (): void => interrupt('aborted');
    // The wall clock runs from the moment the run leaves the queue, isolate creation included.
    // libuv measures timers against a loop time cached at the start of the iteration, so under load a plain
    // setTimeout can fire a few ms before the limit has really passed; re-arm until the deadline is real.
    let timer: NodeJS.Timeout | undefined;
    if (limits.timeoutMs !== null) {
      const deadline = startedAt + limits.timeoutMs;
      const onTimer = (): void => {
        const left = deadline - performance.now();
        if (left > 0) timer = setTimeout(onTimer, Math.ceil(left));
        else interrupt('timeout');
      };
      timer = setTimeout(onTimer, limits.timeoutMs);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#cancels.add(interrupt);
    const unwatchRss = this.#rssGuard ? watchRss(limits.memoryMb, () => interrupt('memory')) : undefined;

    const stats = (): RunStats => ({
      durationMs: performance.now() - startedAt,
      queuedMs,
      hostCalls: state.hostCalls,
      pendingHostCalls: state.pending,
      droppedLogLines: state.hostDroppedLogLines,
    });

    let inGuest = false;
    // An interrupt that arrives while the isolate is still being created waits for it (a few ms at
    // most), so that no run ever resolves while an isolate it created is still alive.
    const taking = this.#take(given).then((p) => {
      prepared = p;
      p.used = true;
      p.onCatastrophe = () => interrupt('memory');
      if (interrupted !== undefined) p.dispose();
      return p;
    });
    const work = async (): Promise<RunOutcome> => {
      const prepared = await taking;
      if (interrupted !== undefined) return this.#interruptedOutcome(interrupted, state.logs, stats());
      prepared.state = state;
      const { isolate, context, install } = prepared;
      if (context === undefined || install === undefined) throw new CodemodeError('SANDBOX_INTERNAL', 'Prepared isolate is incomplete.');
      let script: ivm.Script;
      const runGlobal = runGlobalName();
      try {
        // Compiling runs no guest code, so it may be synchronous; cost grows with the code's size only.
        script = isolate.compileScriptSync(wrapUserCode(code, runGlobal), bag({ filename: USER_FILENAME, lineOffset: -1 }));
      } catch (err) {
        if (isolate.isDisposed) throw err;
        return { ok: false, error: syntaxError(err, code), logs: state.logs, stats: stats() };
      }
      install.applySync(
        undefined,
        [
          JSON.stringify({
            runGlobal,
            functions: flat.paths,
            errorClasses,
            maxPending: limits.maxPendingHostCalls ?? NO_LIMIT,
            maxResultChars: limits.maxResultBytes ?? NO_LIMIT,
            maxLogLines: limits.maxLogLines ?? NO_LIMIT,
            maxLogChars: limits.maxLogBytes ?? NO_LIMIT,
          }),
          code,
        ],
        bag({}),
      );
      // From here on, a rejection that is not a limit is the guest's doing: isolated-vm rejects the call
      // when guest code leaves a promise rejection unhandled. The script runs asynchronously (on
      // isolated-vm's thread), so the host timer and abort can interrupt it.
      inGuest = true;
      let result: unknown;
      try {
        result = (await script.run(context, bag({ promise: true, copy: true, release: true }))) as unknown;
      } catch (err) {
        // The script's task failed. Ask the guest why before blaming the code: it may have refused the code
        // before any of it ran, or have settled already (a rejection left unhandled after the return then
        // must not change the outcome, whether the host functions before it answered at once or later).
        const report = await readReport(prepared);
        if (report === undefined) throw err;
        if (report.kind === 'refused') {
          state.settled = true;
          return { ok: false, error: refusedCodeError(report.message ?? describeError(err), code, limits.memoryMb ?? UNLIMITED_MEMORY_MB), logs: state.logs, stats: stats() };
        }
        result = report.outcome;
      }
      state.settled = true;
      const parsed = parseRunResult(result);
      if (parsed === undefined) {
        return { ok: false, error: { kind: 'runtime', message: 'The code ended the run in an unexpected way (did it close the function wrapper with "})"?).' }, logs: state.logs, stats: stats() };
      }
      const { tag, guestDropped, logsSent, payload } = parsed;
      // Host calls are refused from here on (settled); the wall clock, an abort or close() end the wait.
      await drainLogs(state, logsSent);
      state.hostDroppedLogLines += guestDropped;
      switch (tag) {
        case 'undefined':
          return { ok: true, value: undefined, logs: state.logs, stats: stats() };
        case 'ok': {
          if (limits.maxResultBytes !== null && Buffer.byteLength(payload) > limits.maxResultBytes) {
            return { ok: false, error: outputLimitError(limits.maxResultBytes), logs: state.logs, stats: stats() };
          }
          if (jsonNestedDeeperThan(payload, MAX_RESULT_DEPTH)) {
            // Only a forged outcome gets here (code that closed the wrapper early can make the script's value
            // any string): the guest's copier never nests deeper. A 400,000-deep array made host-side
            // JSON.stringify throw "Maximum call stack size exceeded" in whoever used the value next.
            return {
              ok: false,
              error: { kind: 'runtime', message: `The return value is nested more than ${MAX_RESULT_DEPTH} levels deep; return flatter data.` },
              logs: state.logs,
              stats: stats(),
            };
          }
          return { ok: true, value: JSON.parse(payload) as unknown, logs: state.logs, stats: stats() };
        }
        case 'output_limit':
          return { ok: false, error: outputLimitError(limits.maxResultBytes ?? NO_LIMIT), logs: state.logs, stats: stats() };
        case 'unserializable': {
          const error = runtimeError(payload);
          error.message = `The return value cannot be copied out of the sandbox: ${error.message}`;
          delete error.stack;
          return { ok: false, error, logs: state.logs, stats: stats() };
        }
        case 'error':
          return { ok: false, error: runtimeError(payload), logs: state.logs, stats: stats() };
      }
    };

    const guarded = work().catch((err: unknown): RunOutcome => {
      if (interrupted !== undefined) return this.#interruptedOutcome(interrupted, state.logs, stats());
      // A misused prepared isolate is the caller's bug; failing to create an isolate is reported as data.
      if (err instanceof CodemodeError && err.code !== 'SANDBOX_INTERNAL') throw err;
      if (prepared !== undefined && isMemoryFailure(err, prepared)) {
        return this.#interruptedOutcome('memory', state.logs, stats());
      }
      if (inGuest && !(prepared?.disposed ?? true)) {
        return { ok: false, error: unhandledRejectionError(err), logs: state.logs, stats: stats() };
      }
      return {
        ok: false,
        error: { kind: 'internal', message: `The sandbox failed: ${describeError(err)}` },
        logs: state.logs,
        stats: stats(),
      };
    });

    try {
      const outcome = await Promise.race([
        guarded,
        interruptPromise.then(async (kind) => {
          await taking.catch(() => undefined);
          return this.#interruptedOutcome(kind, state.logs, stats());
        }),
      ]);
      state.settled = true;
      state.logsClosed = true;
      outcome.stats.pendingHostCalls = state.pending;
      outcome.logs = finishLogs(outcome.logs, outcome.stats, state.guestTruncatedLogs, limits);
      return outcome;
    } finally {
      state.settled = true;
      state.logsClosed = true;
      if (timer !== undefined) clearTimeout(timer);
      unwatchRss?.();
      coolEventLoop(state);
      signal?.removeEventListener('abort', onAbort);
      this.#cancels.delete(interrupt);
      state.controller?.abort(new CodemodeError('ABORTED', 'The sandbox run ended while this host call was in flight.'));
      for (const handle of state.timers.values()) clearTimeout(handle);
      state.timers.clear();
      prepared?.dispose();
      this.#refill();
      // The losing side of the race settles later; it must not become an unhandled rejection.
      guarded.catch(() => undefined);
    }
  }
}

function outputLimitError(maxBytes: number): SandboxError {
  return {
    kind: 'output_limit',
    message: `The return value is larger than the ${maxBytes}-byte limit (maxResultBytes). Return less data, for example a filtered or summarized subset.`,
  };
}

function emptyStats(durationMs: number, queuedMs: number): RunStats {
  return { durationMs, queuedMs, hostCalls: 0, pendingHostCalls: 0, droppedLogLines: 0 };
}

/** Appends the truncation marker when the log caps dropped anything. */
function finishLogs(logs: LogEntry[], stats: RunStats, guestTruncated: boolean, limits: Readonly<SandboxLimits>): LogEntry[] {
  if (stats.droppedLogLines > 0 || guestTruncated) {
    const what = stats.droppedLogLines > 0 ? `${stats.droppedLogLines} line(s) dropped` : 'the rest was cut off';
    logs.push({
      level: 'warn',
      message: `[console output truncated: ${what}; limits are ${limits.maxLogLines ?? 'unlimited'} lines and ${limits.maxLogBytes ?? 'unlimited'} bytes]`,
    });
  }
  return logs;
}
