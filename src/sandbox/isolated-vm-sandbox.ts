/**
 * `IsolatedVmSandbox`: runs untrusted JavaScript in a fresh V8 isolate per run (isolated-vm), with host
 * functions, captured console output and hard limits. See docs/sandbox.md for the guest's view.
 *
 * Design (ARCHITECTURE §4; every point is a measured pitfall):
 * - One isolate per run, disposed when the run settles. A host timer disposes it at the wall-clock limit,
 *   because isolated-vm's own `timeout` does not cover code that resumes after an awaited host call.
 * - The guest reaches the host only through three References held in the bootstrap's closure
 *   (see bootstrap.ts); nothing isolated-vm is reachable from `globalThis`.
 * - Host calls answer with JSON envelope strings and never reject across the boundary (guest-bridge.ts).
 * - Isolate creation + bootstrap (`prepareIsolate`, prepared-isolate.ts) is a separate step from running
 *   code, so callers (and this class's warm spares) can pay for it ahead of time.
 *
 * This file holds the run lifecycle: queueing, limits, interrupts and clean-up. Outcome mapping is in
 * outcome.ts and the host RSS guard in rss-guard.ts.
 *
 * @module
 */

import { availableParallelism } from 'node:os';
import type ivm from 'isolated-vm';
import pLimit from 'p-limit';
import type { LimitFunction } from 'p-limit';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { USER_FILENAME } from './bootstrap.js';
import { refusedCodeError, runGlobalName, syntaxError, wrapUserCode } from './code-check.js';
import { flattenHostFunctions, validateErrorClasses } from './host-functions.js';
import type { FlatFunctions } from './host-functions.js';
import { coolEventLoop } from './hot-poll.js';
import { resolveLimits } from './limits.js';
import {
  drainLogs,
  emptyStats,
  finishLogs,
  isMemoryFailure,
  limitMessage,
  parseRunResult,
  readReport,
  settledOutcome,
  unhandledRejectionError,
} from './outcome.js';
import { prepareIsolate, UNLIMITED_MEMORY_MB } from './prepared-isolate.js';
import type { PreparedIsolate } from './prepared-isolate.js';
import { watchRss } from './rss-guard.js';
import { bag, createRunState, NO_LIMIT } from './run-state.js';
import type { RunState } from './run-state.js';
import type { LogEntry, RunOptions, RunOutcome, RunStats, SandboxLimits, SandboxLimitsInput, SandboxProvider } from './types.js';
import { MAX_TIMER_DELAY_MS } from '../wire/timers.js';

export {
  PreparedIsolate,
  prepareIsolate,
  liveIsolateCount,
  catastrophicErrorCount,
  setIsolateClassForTesting,
  UNLIMITED_MEMORY_MB,
} from './prepared-isolate.js';

const log = createLogger('sandbox');

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
    const state = createRunState(flat, limits, this.#hotPollMs);

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
    const stopWallClock = limits.timeoutMs !== null ? startWallClock(startedAt + limits.timeoutMs, limits.timeoutMs, () => interrupt('timeout')) : undefined;
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
      install.applySync(undefined, [installConfig(runGlobal, flat, errorClasses, limits), code], bag({}));
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
      // Host calls are refused from here on (settled); the wall clock, an abort or close() end the wait.
      await drainLogs(state, parsed.logsSent);
      state.hostDroppedLogLines += parsed.guestDropped;
      return settledOutcome(parsed.tag, parsed.payload, limits, state.logs, stats);
    };

    const guarded = work().catch((err: unknown): RunOutcome => this.#failureOutcome(err, interrupted, prepared, inGuest, state.logs, stats()));

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
      stopWallClock?.();
      unwatchRss?.();
      signal?.removeEventListener('abort', onAbort);
      this.#cancels.delete(interrupt);
      endRun(state);
      prepared?.dispose();
      this.#refill();
      // The losing side of the race settles later; it must not become an unhandled rejection.
      guarded.catch(() => undefined);
    }
  }

  /** The outcome of a run whose work failed: `err` is what it threw. Rethrows the caller's own mistakes. */
  #failureOutcome(
    err: unknown,
    interrupted: Interrupt | 'memory' | undefined,
    prepared: PreparedIsolate | undefined,
    inGuest: boolean,
    logs: LogEntry[],
    stats: RunStats,
  ): RunOutcome {
    if (interrupted !== undefined) return this.#interruptedOutcome(interrupted, logs, stats);
    // A misused prepared isolate is the caller's bug; failing to create an isolate is reported as data.
    if (err instanceof CodemodeError && err.code !== 'SANDBOX_INTERNAL') throw err;
    if (prepared !== undefined && isMemoryFailure(err, prepared)) return this.#interruptedOutcome('memory', logs, stats);
    if (inGuest && !(prepared?.disposed ?? true)) return { ok: false, error: unhandledRejectionError(err), logs, stats };
    return { ok: false, error: { kind: 'internal', message: `The sandbox failed: ${describeError(err)}` }, logs, stats };
  }
}

/**
 * Calls `onTimeout` once `deadline` (a `performance.now()` time) has passed; returns the function that stops
 * the clock. libuv measures timers against a loop time cached at the start of the iteration, so under load a
 * plain setTimeout can fire a few ms before the limit has really passed: it re-arms until the deadline is real.
 */
function startWallClock(deadline: number, timeoutMs: number, onTimeout: () => void): () => void {
  let timer: NodeJS.Timeout;
  const onTimer = (): void => {
    const left = deadline - performance.now();
    if (left > 0) timer = setTimeout(onTimer, Math.ceil(left));
    else onTimeout();
  };
  timer = setTimeout(onTimer, timeoutMs);
  return () => clearTimeout(timer);
}

/** The JSON the bootstrap's install() reads: the run's global, its host functions, error classes and caps. */
function installConfig(runGlobal: string, flat: FlatFunctions, errorClasses: string[], limits: Readonly<SandboxLimits>): string {
  return JSON.stringify({
    runGlobal,
    functions: flat.paths,
    errorClasses,
    maxPending: limits.maxPendingHostCalls ?? NO_LIMIT,
    maxResultChars: limits.maxResultBytes ?? NO_LIMIT,
    maxLogLines: limits.maxLogLines ?? NO_LIMIT,
    maxLogChars: limits.maxLogBytes ?? NO_LIMIT,
    // The host's timer ceiling (Node's), so the guest clamps delays to the same value the host would.
    maxTimerDelayMs: MAX_TIMER_DELAY_MS,
  });
}

/**
 * Seals a run's host state: no host call, log line or timer is accepted after this, in-flight host calls are
 * told to stop, and pending guest timers are cleared.
 */
function endRun(state: RunState): void {
  state.settled = true;
  state.logsClosed = true;
  coolEventLoop(state);
  state.controller?.abort(new CodemodeError('ABORTED', 'The sandbox run ended while this host call was in flight.'));
  for (const handle of state.timers.values()) clearTimeout(handle);
  state.timers.clear();
}
