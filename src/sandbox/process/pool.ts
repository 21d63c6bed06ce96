/**
 * `ProcessPool`: sandbox worker processes (child_process, `--no-node-snapshot`, each hosting isolated-vm)
 * with crash containment, outside wall-clock enforcement, recycling and warm starts. `ProcessSandbox`
 * runs code on it; several sandboxes (for example one per session) may share one pool.
 *
 * This module never loads isolated-vm: the parent needs neither the native addon nor
 * `--no-node-snapshot`. Host functions stay here and are called on the worker's behalf.
 *
 * @module
 */

import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CodemodeError, describeError } from '../../errors.js';
import type { CodemodeErrorCode } from '../../errors.js';
import { createLogger } from '../../log.js';
import { MAX_TIMEOUT_MS } from '../limits.js';
import { DEFAULT_MEMORY_MB } from '../types.js';
import type { HostFunction, RunOutcome, RunStats, SandboxLimits } from '../types.js';
import { describeHostError, hostResultJson, isPlainHostResult } from '../host-functions.js';
import { HEARTBEAT_MS } from './protocol.js';
import type { FromWorker, ToWorker, WorkerConfig } from './protocol.js';

const log = createLogger('sandbox-pool');

/** Outcomes of runs the sandbox had to stop: the worker that ran one is replaced (see #afterRun). */
const STOPPED_KINDS: ReadonlySet<string> = new Set(['timeout', 'aborted', 'memory']);

/** Default extra time a worker gets past a run's `timeoutMs` (or after an abort) before it is killed. */
export const DEFAULT_KILL_GRACE_MS = 1_000;
/** Default silence (no message, not even a heartbeat) after which a busy worker counts as hung. */
export const DEFAULT_HANG_TIMEOUT_MS = 5_000;
/** Default number of runs after which a worker is replaced. */
export const DEFAULT_MAX_RUNS_PER_WORKER = 1_000;
/** Default RSS (MB) past which a worker is replaced after its current runs. */
export const DEFAULT_MAX_RSS_MB = 1_024;
/**
 * With `hardRssMb: 'auto'`, a busy worker may use its idle RSS plus this many times the largest `memoryMb`
 * of its runs in flight, per run slot (`concurrencyPerWorker`), before the parent SIGKILLs it.
 */
export const HARD_RSS_FACTOR = 3;
/** With `hardRssMb: 'auto'`, the ceiling is never below this many MB. */
export const HARD_RSS_FLOOR_MB = 256;
/** How often the parent samples the RSS of busy workers (only while runs are in flight). */
export const RSS_SAMPLE_MS = 25;
const MB = 2 ** 20;
/** Linux: a worker's RSS is read from /proc/<pid>/statm (no cooperation from the worker needed). */
const STATM = process.platform === 'linux';
/** Bytes per page, for statm's page counts: measured against our own RSS once (4 KiB, 16 KiB, 64 KiB). */
const PAGE_SIZE = ((): number => {
  if (!STATM) return 4096;
  try {
    const pages = Number(readFileSync('/proc/self/statm', 'latin1').split(' ')[1]);
    const ratio = process.memoryUsage.rss() / pages;
    return [4096, 16_384, 65_536].reduce((best, size) => (Math.abs(size - ratio) < Math.abs(best - ratio) ? size : best));
  } catch {
    return 4096;
  }
})();

/** A process's resident set size in bytes from /proc, or undefined when it cannot be read (gone, not Linux). */
function statmRss(pid: number): number | undefined {
  if (!STATM || pid <= 0) return undefined;
  try {
    const pages = Number(readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ')[1]);
    return Number.isFinite(pages) ? pages * PAGE_SIZE : undefined;
  } catch {
    return undefined;
  }
}
/**
 * Consecutive worker start failures after which runs fail fast (instead of queueing behind workers that
 * never come). The pool keeps retrying with backoff and serves again once a worker starts.
 */
const MAX_START_FAILURES = 3;
/** Longest wait between start attempts after repeated failures. */
const MAX_START_BACKOFF_MS = 5_000;
/** How long a worker may take to start before it counts as a failed start. */
const START_TIMEOUT_MS = 30_000;

/**
 * When this module runs from TypeScript sources (tests, `--experimental-strip-types`), the worker is a
 * `.ts` file whose imports say `.js` (the `nodenext` convention). Node's type stripping does not map
 * those, so the worker gets this resolve hook: a relative `.js` import that does not exist is retried as
 * `.ts`. The built package (dist/) never needs it.
 */
const TS_RESOLVE_HOOK = `data:text/javascript,${encodeURIComponent(
  'import { registerHooks } from "node:module";' +
    'registerHooks({ resolve(specifier, context, next) {' +
    '  try { return next(specifier, context); } catch (err) {' +
    '    if (err && err.code === "ERR_MODULE_NOT_FOUND" && /^\\.\\.?\\//.test(specifier) && specifier.endsWith(".js"))' +
    '      return next(specifier.slice(0, -3) + ".ts", context);' +
    '    throw err;' +
    '  }' +
    '} });',
)}`;

const FROM_SOURCES = import.meta.url.endsWith('.ts');
const WORKER_PATH = fileURLToPath(new URL(FROM_SOURCES ? './worker.ts' : './worker.js', import.meta.url));
const WORKER_EXEC_ARGV = [
  '--no-node-snapshot',
  ...(FROM_SOURCES ? ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--import', TS_RESOLVE_HOOK] : []),
];
/** What a worker inherits from our environment: nothing that could be a credential. */
const WORKER_ENV_KEYS = ['PATH', 'TZ', 'LANG', 'LC_ALL', 'TMPDIR', 'SYSTEMROOT', 'CODEMODE_LOG_LEVEL'];

/** @internal Exposed for tests that start a TypeScript parent process the same way. */
export const SOURCE_EXEC_ARGV: readonly string[] = WORKER_EXEC_ARGV;

/** Options of `ProcessPool`. */
export interface ProcessPoolOptions {
  /** Worker processes serving runs. Default: the core count (`os.availableParallelism()`), at most 8. */
  size?: number;
  /**
   * Runs one worker serves at once. Default 1: a crash then fails exactly one run. Raise it when runs mostly
   * wait on tool calls; a worker killed for one overrunning run takes its siblings down (kind `crashed`).
   */
  concurrencyPerWorker?: number;
  /**
   * Started, idle workers kept beside the pool, promoted at once when a worker dies or is recycled, so a
   * crash costs no process start on anyone's critical path. Default 1; 0 turns it off.
   */
  standbyWorkers?: number;
  /** Replace a worker after this many runs. Default 1000; `null`: never. */
  maxRunsPerWorker?: number | null;
  /** Replace a worker, after its current runs, once its RSS passes this many MB. Default 1024; `null`: never. */
  maxRssMb?: number | null;
  /**
   * Hard RSS ceiling (MB) of a busy worker, enforced from this process: while runs are in flight it samples
   * each busy worker's RSS every 25 ms (Linux: /proc/<pid>/statm; elsewhere the 250 ms heartbeat) and
   * SIGKILLs a worker past the ceiling; its runs end with kind `memory` and the worker is replaced.
   * This bounds what V8's own heap limit does not: the heap overshooting while the isolate is stopped,
   * and memory outside the heap. Default `'auto'`: the worker's idle RSS + 3 x the largest `memoryMb` of its
   * runs in flight x `concurrencyPerWorker`, at least 256 MB (no ceiling for runs with `memoryMb: null`).
   * A number: that many MB whatever the runs' limits. `null`: off.
   */
  hardRssMb?: number | 'auto' | null;
  /**
   * Extra time past a run's `timeoutMs` (and after an abort) before the parent SIGKILLs an unresponsive
   * worker. Default 1000 ms.
   */
  killGraceMs?: number;
  /**
   * A worker running something that sends nothing for this long (it heartbeats every 250 ms; guest code runs
   * on other threads) is hung in native code: it is SIGKILLed and its runs fail as `crashed`, whatever their
   * `timeoutMs` (also with no time limit). Default 5000 ms.
   */
  hangTimeoutMs?: number;
  /** Memory limit of the isolate a fresh worker prepares before its first run. Default 100 (MB). */
  warmMemoryMb?: number | null;
  /**
   * CPU priority of the workers, as a nice value (0-19; higher is lower priority). With 10, say, guest code
   * yields the CPU to this process's event loop and to the upstream servers when the machine is busy, and
   * runs at full speed when it is not; but on a busy machine a CPU-bound guest then gets a tenth of a core
   * and meets its wall clock before its memory limit. Default `null`: workers run at this process's priority.
   */
  nice?: number | null;
}

/** A snapshot of the pool, for health checks and tests. */
export interface ProcessPoolStats {
  /** Serving workers that are ready. */
  ready: number;
  /** Workers starting (serving or standby). */
  starting: number;
  /** Ready standby workers. */
  standby: number;
  /** Runs on workers right now. */
  running: number;
  /** Runs waiting for a worker. */
  queued: number;
  /** Process ids of the serving workers (ready or starting). */
  pids: number[];
  /** Workers that died without being asked to (crash, signal, kill for an overrun). */
  crashed: number;
  /** Workers replaced by the recycling policy (run count, RSS). */
  recycled: number;
  /** Milliseconds from the last worker loss to the pool being back at full strength. */
  lastRecoveryMs: number | undefined;
  /** Runs that got an isolate prepared ahead of time. */
  warmRuns: number;
  /** Runs that had to create their isolate (no matching warm one was ready yet). */
  coldRuns: number;
  /** Workers SIGKILLed for passing their hard RSS ceiling (`hardRssMb`); also counted in `crashed`. */
  memoryKills: number;
  /** True while the hard-RSS sampler runs (only while runs are in flight). */
  rssSampling: boolean;
}

/** @internal One run as the pool sees it. */
export interface PoolJob {
  code: string;
  limits: Readonly<SandboxLimits>;
  functions: readonly HostFunction[];
  paths: string[][];
  errorClasses: string[];
  signal: AbortSignal | undefined;
}

interface Job extends PoolJob {
  readonly id: number;
  readonly enqueuedAt: number;
  startedAt: number | undefined;
  worker: WorkerHandle | undefined;
  settled: boolean;
  hostCalls: number;
  pending: number;
  controller: AbortController | undefined;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
  resolve(outcome: RunOutcome): void;
  reject(err: Error): void;
}

interface WorkerHandle {
  readonly child: ChildProcess;
  readonly pid: number;
  role: 'serving' | 'standby' | 'retiring';
  ready: boolean;
  /** We are stopping or killing it: no new runs, not counted as capacity. */
  doomed: boolean;
  /** A run in it was stopped (timeout, abort, memory): retire it with SIGKILL once its other runs end. */
  mustDie?: boolean;
  /** Why we killed it, if we did: decides the message its other runs get. */
  killedFor: string | undefined;
  /** What its unfinished runs are told when we killed it (set with `killedFor`). */
  killedMessage: string | undefined;
  dead: boolean;
  readonly jobs: Map<number, Job>;
  runs: number;
  readonly exited: Promise<void>;
  startTimer: NodeJS.Timeout | undefined;
  /** When we last heard from it (any message). */
  lastSeen: number;
  /** When it last got a run: ties go to the worker idle longest, whose next isolate is surely prepared. */
  lastDispatch: number;
  /** RSS (bytes) it reported when ready: the base of the `'auto'` hard ceiling. */
  baseRss: number;
  /** RSS (bytes) of its last heartbeat: the hard ceiling's fallback where /proc cannot be read. */
  beatRss: number;
}

function positiveInt(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) {
    throw new CodemodeError('INVALID_CONFIG', `${name} must be an integer >= ${min}; got ${String(value)}.`);
  }
  return value;
}

function optionalPositive(name: string, value: number | null | undefined, fallback: number): number | null {
  if (value === undefined) return fallback;
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new CodemodeError('INVALID_CONFIG', `${name} must be a positive number or null; got ${String(value)}.`);
  }
  return value;
}

function emptyStats(durationMs: number, queuedMs: number): RunStats {
  return { durationMs, queuedMs, hostCalls: 0, pendingHostCalls: 0, droppedLogLines: 0 };
}

function replyFor(call: number, value: unknown, label: string): ToWorker {
  if (value === undefined) return { t: 'reply', call, ok: true };
  // Plain data goes as itself: the IPC channel stringifies the message anyway, and JSON text inside it would
  // be stringified twice (once to text, once escaped into the message). On this thread, which every session
  // shares, a 2 MB tool result cost about 14 ms less this way; the worker makes the guest's copy.
  if (isPlainHostResult(value)) return { t: 'reply', call, ok: true, value };
  let json: string | undefined;
  try {
    json = hostResultJson(value);
  } catch (err) {
    let reason: string;
    try {
      reason = describeError(err);
    } catch {
      reason = 'it could not be serialized';
    }
    return {
      t: 'reply',
      call,
      ok: false,
      error: describeHostError(new Error(`${label} returned a value that cannot be copied into the sandbox: ${reason}`)),
    };
  }
  return json === undefined ? { t: 'reply', call, ok: true } : { t: 'reply', call, ok: true, json };
}

/**
 * A pool of sandbox worker processes. Each worker hosts isolated-vm; host functions stay in this process
 * and are relayed over IPC, so workers hold no credentials or connections.
 *
 * - A worker that dies mid-run (SIGKILL, SIGSEGV, V8 fatal error, `abort()`) fails only its own runs, with
 *   kind `crashed`; a standby worker takes its place at once and a new standby starts in the background.
 * - The parent enforces the wall clock too: a worker that has not reported `timeoutMs + killGraceMs` after
 *   a run started is SIGKILLed and replaced.
 * - Workers are recycled after `maxRunsPerWorker` runs, or when their RSS passes `maxRssMb`.
 * - Each worker keeps a fresh isolate prepared before a run arrives (an isolate is never reused).
 * - Workers exit on their own when this process goes away (their IPC channel closes).
 *
 * @example
 * ```ts
 * const pool = new ProcessPool({ size: 2 });
 * const a = new ProcessSandbox({ pool, limits: { timeoutMs: 5_000 } });
 * const b = new ProcessSandbox({ pool, limits: { memoryMb: 64 } });
 * await pool.ready();
 * console.log(await a.run('return 1 + 1'));
 * await Promise.all([a.close(), b.close()]);
 * await pool.close();
 * ```
 */
export class ProcessPool {
  readonly size: number;
  readonly concurrencyPerWorker: number;
  readonly standbyWorkers: number;
  readonly maxRunsPerWorker: number | null;
  readonly maxRssMb: number | null;
  readonly hardRssMb: number | 'auto' | null;
  readonly killGraceMs: number;
  readonly hangTimeoutMs: number;
  readonly warmMemoryMb: number | null;
  readonly nice: number | null;
  readonly #workers = new Set<WorkerHandle>();
  readonly #queue: Job[] = [];
  readonly #readyWaiters: { resolve(): void; reject(err: Error): void }[] = [];
  #nextJob = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #broken: CodemodeError | undefined;
  #startFailures = 0;
  #spawnAfter = 0;
  #spawnTimer: NodeJS.Timeout | undefined;
  #crashed = 0;
  #recycled = 0;
  #lostAt: number | undefined;
  #lastRecoveryMs: number | undefined;
  #warmRuns = 0;
  #coldRuns = 0;
  readonly #watchdog: NodeJS.Timeout;
  /** Samples busy workers' RSS; runs only while some run is in flight. */
  #sampler: NodeJS.Timeout | undefined;
  #memoryKills = 0;

  constructor(options: ProcessPoolOptions = {}) {
    this.size = positiveInt('size', options.size, Math.max(1, Math.min(availableParallelism(), 8)));
    this.concurrencyPerWorker = positiveInt('concurrencyPerWorker', options.concurrencyPerWorker, 1);
    this.standbyWorkers = positiveInt('standbyWorkers', options.standbyWorkers, 1, 0);
    const maxRuns = optionalPositive('maxRunsPerWorker', options.maxRunsPerWorker, DEFAULT_MAX_RUNS_PER_WORKER);
    if (maxRuns !== null && !Number.isInteger(maxRuns)) {
      throw new CodemodeError('INVALID_CONFIG', `maxRunsPerWorker must be an integer or null; got ${maxRuns}.`);
    }
    this.maxRunsPerWorker = maxRuns;
    this.maxRssMb = optionalPositive('maxRssMb', options.maxRssMb, DEFAULT_MAX_RSS_MB);
    this.hardRssMb =
      options.hardRssMb === undefined || options.hardRssMb === 'auto' ? 'auto' : optionalPositive('hardRssMb', options.hardRssMb, 0);
    this.killGraceMs = optionalPositive('killGraceMs', options.killGraceMs, DEFAULT_KILL_GRACE_MS) ?? DEFAULT_KILL_GRACE_MS;
    this.hangTimeoutMs = optionalPositive('hangTimeoutMs', options.hangTimeoutMs, DEFAULT_HANG_TIMEOUT_MS) ?? DEFAULT_HANG_TIMEOUT_MS;
    if (this.hangTimeoutMs < 2 * HEARTBEAT_MS) {
      throw new CodemodeError('INVALID_CONFIG', `hangTimeoutMs must be at least ${2 * HEARTBEAT_MS} ms (workers heartbeat every ${HEARTBEAT_MS} ms).`);
    }
    this.warmMemoryMb = options.warmMemoryMb === undefined ? DEFAULT_MEMORY_MB : options.warmMemoryMb;
    const nice = options.nice ?? null;
    if (nice !== null && (!Number.isInteger(nice) || nice < 0 || nice > 19)) {
      throw new CodemodeError('INVALID_CONFIG', `nice must be an integer from 0 to 19 (or null to leave the priority alone), got ${String(nice)}.`);
    }
    this.nice = nice;
    this.#watchdog = setInterval(() => this.#checkHung(), HEARTBEAT_MS);
    this.#watchdog.unref();
    this.#balance();
  }

  /** Kills busy workers that went silent: their main thread is blocked in native code. */
  #checkHung(): void {
    const now = performance.now();
    for (const w of this.#workers) {
      if (w.dead || w.doomed || w.jobs.size === 0) continue;
      const silentMs = now - w.lastSeen;
      if (silentMs <= this.hangTimeoutMs) continue;
      const ms = Math.round(silentMs);
      this.#kill(
        w,
        `no sign of life for ${ms} ms`,
        `The sandbox process running this code stopped responding (no sign of life for ${ms} ms: stuck in native code) and was killed and replaced. Run the code again.`,
      );
    }
  }

  /** The hard RSS ceiling (bytes) of a busy worker right now, or undefined for none. */
  #ceiling(worker: WorkerHandle): number | undefined {
    if (this.hardRssMb === null) return undefined;
    if (this.hardRssMb !== 'auto') return this.hardRssMb * MB;
    let memoryMb = 0;
    for (const job of worker.jobs.values()) {
      if (job.settled) continue;
      // A run without a heap limit has no derived ceiling (set hardRssMb to bound it anyway).
      if (job.limits.memoryMb === null) return undefined;
      memoryMb = Math.max(memoryMb, job.limits.memoryMb);
    }
    if (memoryMb === 0) return undefined;
    return Math.max(HARD_RSS_FLOOR_MB * MB, worker.baseRss + HARD_RSS_FACTOR * memoryMb * this.concurrencyPerWorker * MB);
  }

  /** Starts the RSS sampler if it is not running (a run was just dispatched). */
  #startSampler(): void {
    if (this.#sampler !== undefined || this.hardRssMb === null || this.#closed) return;
    this.#sampler = setInterval(() => this.#sampleRss(), RSS_SAMPLE_MS);
    this.#sampler.unref();
  }

  /**
   * Kills busy workers past their hard RSS ceiling. V8's heap limit alone does not bound a process: the
   * heap overshoots while isolated-vm stops the isolate and long builtins (Array.from, fill, string
   * flattening, regex) keep allocating; measured +0.5 to +1.7 GB past a 64 MB limit.
   */
  #sampleRss(): void {
    let busy = false;
    for (const w of this.#workers) {
      if (w.dead || w.doomed || w.jobs.size === 0) continue;
      busy = true;
      const ceiling = this.#ceiling(w);
      if (ceiling === undefined) continue;
      const rss = statmRss(w.pid) ?? w.beatRss;
      if (rss <= ceiling) continue;
      const used = Math.round(rss / MB);
      const limit = Math.round(ceiling / MB);
      const live = [...w.jobs.values()].filter((job) => !job.settled);
      const whose = live.length > 1 ? `one of the ${live.length} runs on it` : 'the run';
      const message =
        `The sandbox process used ${used} MB, past its ${limit} MB ceiling (hardRssMb); the run was stopped and the process replaced. ` +
        `The code allocates far more than its memory limit allows (${whose} kept allocating while the isolate was being stopped, or outside the JavaScript heap); make it work on less data at once.`;
      log.warn('a sandbox worker passed its hard RSS ceiling', { pid: w.pid, rssMb: used, ceilingMb: limit, runs: live.length });
      this.#memoryKills++;
      for (const job of live) this.#settle(job, this.#failedOutcome(job, 'memory', message));
      this.#kill(w, `RSS ${used} MB past the ${limit} MB ceiling`, message);
    }
    if (!busy) {
      clearInterval(this.#sampler);
      this.#sampler = undefined;
    }
  }

  /**
   * Resolves once `size` serving workers and the standby workers are started and ready (runs submitted
   * before that simply queue). Rejects if workers fail to start or the pool closes.
   */
  ready(): Promise<void> {
    if (this.#broken) return Promise.reject(this.#broken);
    if (this.#closed) return Promise.reject(new CodemodeError('CLOSED', 'The process pool is closed.'));
    if (this.#full() && this.#standbysReady()) return Promise.resolve();
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
  }

  /** A snapshot of the pool's workers and runs. */
  stats(): ProcessPoolStats {
    let ready = 0;
    let starting = 0;
    let standby = 0;
    let running = 0;
    const pids: number[] = [];
    for (const w of this.#workers) {
      running += w.jobs.size;
      if (w.doomed || w.dead || w.role === 'retiring') continue;
      if (!w.ready) starting++;
      else if (w.role === 'serving') ready++;
      else standby++;
      if (w.role === 'serving') pids.push(w.pid);
    }
    return {
      ready,
      starting,
      standby,
      running,
      queued: this.#queue.length,
      pids,
      crashed: this.#crashed,
      recycled: this.#recycled,
      lastRecoveryMs: this.#lastRecoveryMs,
      warmRuns: this.#warmRuns,
      coldRuns: this.#coldRuns,
      memoryKills: this.#memoryKills,
      rssSampling: this.#sampler !== undefined,
    };
  }

  /** Process ids of every live worker (serving, standby, starting or retiring); for leak checks. */
  allPids(): number[] {
    return [...this.#workers].filter((w) => !w.dead).map((w) => w.pid);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * @internal Runs one job on a worker (queued until one is free). Resolves with the outcome; rejects
   * with a CodemodeError for host-side failures.
   */
  submit(spec: PoolJob): Promise<RunOutcome> {
    if (this.#closed) return Promise.reject(new CodemodeError('CLOSED', 'The process pool is closed; create a new one to run code.'));
    if (this.#broken) return Promise.reject(this.#broken);
    return new Promise<RunOutcome>((resolve, reject) => {
      const job: Job = {
        ...spec,
        id: ++this.#nextJob,
        enqueuedAt: performance.now(),
        startedAt: undefined,
        worker: undefined,
        settled: false,
        hostCalls: 0,
        pending: 0,
        controller: undefined,
        timer: undefined,
        onAbort: undefined,
        resolve,
        reject,
      };
      if (spec.signal?.aborted === true) {
        // Never started: nothing to undo.
        job.settled = true;
        resolve({ ok: false, error: { kind: 'aborted', message: 'The run was aborted by the caller.' }, logs: [], stats: emptyStats(0, 0) });
        return;
      }
      if (spec.signal !== undefined) {
        job.onAbort = () => this.#abortJob(job, 'The run was aborted by the caller.');
        spec.signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.#queue.push(job);
      this.#pump();
    });
  }

  /** Aborts queued and running runs, then stops every worker (SIGKILL after `killGraceMs`). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#spawnTimer);
    clearInterval(this.#watchdog);
    clearInterval(this.#sampler);
    this.#sampler = undefined;
    const closedError = new CodemodeError('CLOSED', 'The process pool was closed.');
    for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(closedError);
    const running: Promise<unknown>[] = [];
    for (const job of [...this.#queue]) this.#abortJob(job, 'The sandbox was closed before this run started.');
    for (const w of this.#workers) {
      for (const job of w.jobs.values()) {
        // Already settled (timed out, its worker being killed): nothing to wait for.
        if (job.settled) continue;
        running.push(
          new Promise<void>((r) => {
            const { resolve, reject } = job;
            job.resolve = (o) => (resolve(o), r());
            job.reject = (e) => (reject(e), r());
          }),
        );
        this.#abortJob(job, 'The sandbox was closed while this run was in progress.');
      }
    }
    // Runs settle within killGraceMs: the worker answers the abort, or is killed (which settles them too).
    await Promise.allSettled(running);
    await Promise.allSettled([...this.#workers].map((w) => this.#stop(w)));
  }

  // -------------------------------------------------------------------------------------------------------
  // Workers

  #full(): boolean {
    let ready = 0;
    for (const w of this.#workers) if (w.role === 'serving' && w.ready && !w.doomed) ready++;
    return ready >= this.size;
  }

  /** Keeps `size` serving workers (promoting standbys first) and `standbyWorkers` standbys. */
  #balance(): void {
    if (this.#closed) return;
    const { serving, standby } = this.#promote();
    if (this.#full()) {
      if (this.#lostAt !== undefined) {
        this.#lastRecoveryMs = performance.now() - this.#lostAt;
        this.#lostAt = undefined;
      }
      if (this.#standbysReady()) for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve();
    }
    if (serving < this.size || standby < this.standbyWorkers) this.#scheduleSpawn();
  }

  /** Counts serving and standby workers, promoting ready standbys while serving ones are missing. */
  #promote(): { serving: number; standby: number } {
    let serving = 0;
    let standby = 0;
    for (const w of this.#workers) {
      if (w.doomed || w.dead) continue;
      if (w.role === 'serving') serving++;
      else if (w.role === 'standby') standby++;
    }
    // Ready standbys are the zero-wait replacement.
    for (const w of this.#workers) {
      if (serving >= this.size) break;
      if (w.role === 'standby' && w.ready && !w.doomed && !w.dead) {
        w.role = 'serving';
        serving++;
        standby--;
      }
    }
    return { serving, standby };
  }

  /**
   * Spawns missing workers off the current tick: `fork()` blocks this thread for milliseconds, and a just
   * promoted standby should take the queued runs first. After failed starts it backs off.
   */
  #scheduleSpawn(): void {
    if (this.#spawnTimer !== undefined) return;
    const wait = Math.max(0, this.#spawnAfter - performance.now());
    this.#spawnTimer = setTimeout(() => {
      this.#spawnTimer = undefined;
      if (this.#closed) return;
      let { serving, standby } = this.#promote();
      while (serving < this.size) {
        this.#spawn('serving');
        serving++;
      }
      while (standby < this.standbyWorkers) {
        this.#spawn('standby');
        standby++;
      }
    }, wait);
  }

  #standbysReady(): boolean {
    let ready = 0;
    for (const w of this.#workers) if (w.role === 'standby' && w.ready && !w.doomed) ready++;
    return ready >= this.standbyWorkers;
  }

  #spawn(role: 'serving' | 'standby'): void {
    const env: Record<string, string> = {};
    for (const key of WORKER_ENV_KEYS) {
      const value = process.env[key];
      if (value !== undefined) env[key] = value;
    }
    const config: WorkerConfig = { warmMemoryMb: this.warmMemoryMb, nice: this.nice };
    let child: ChildProcess;
    try {
      child = fork(WORKER_PATH, [JSON.stringify(config)], {
        execArgv: WORKER_EXEC_ARGV,
        env,
        // stdout is the protocol in stdio modes: a worker never gets it. stderr carries its logs.
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        serialization: 'json',
      });
    } catch (err) {
      this.#startFailed(`could not spawn a worker: ${describeError(err)}`);
      this.#scheduleSpawn();
      return;
    }
    let exited!: () => void;
    const worker: WorkerHandle = {
      child,
      pid: child.pid ?? -1,
      role,
      ready: false,
      doomed: false,
      killedFor: undefined,
      killedMessage: undefined,
      dead: false,
      jobs: new Map(),
      runs: 0,
      exited: new Promise<void>((r) => (exited = r)),
      startTimer: undefined,
      lastDispatch: 0,
      lastSeen: performance.now(),
      baseRss: 0,
      beatRss: 0,
    };
    this.#workers.add(worker);
    worker.startTimer = setTimeout(() => {
      if (!worker.ready) this.#kill(worker, 'start timeout');
    }, START_TIMEOUT_MS);
    worker.startTimer.unref();
    child.on('message', (message: FromWorker) => {
      try {
        this.#onMessage(worker, message);
      } catch (err) {
        log.error('handling a worker message failed', { pid: worker.pid, error: describeError(err) });
      }
    });
    let gone = false;
    const onGone = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (gone) return;
      gone = true;
      try {
        this.#onExit(worker, code, signal);
      } finally {
        exited();
      }
    };
    child.on('error', (err) => {
      log.debug('worker process error', { pid: worker.pid, error: describeError(err) });
      // A process that never started emits 'error' and may never emit 'exit'.
      if (child.pid === undefined) onGone(null, null);
    });
    child.once('exit', onGone);
    child.unref();
  }

  #send(worker: WorkerHandle, message: ToWorker): void {
    if (worker.dead || !worker.child.connected) return;
    try {
      worker.child.send(message, undefined, undefined, (err) => {
        if (err) log.debug('sending to a worker failed', { pid: worker.pid, error: describeError(err) });
      });
    } catch (err) {
      log.debug('sending to a worker failed', { pid: worker.pid, error: describeError(err) });
    }
  }

  /** Keeps this process alive only while a worker starts or runs something for us. */
  #updateRef(worker: WorkerHandle): void {
    const channel = worker.child.channel;
    if (channel == null) return;
    if (!worker.ready || worker.jobs.size > 0) channel.ref();
    else channel.unref();
  }

  #onMessage(worker: WorkerHandle, message: FromWorker): void {
    worker.lastSeen = performance.now();
    switch (message.t) {
      case 'beat':
        worker.beatRss = typeof message.rss === 'number' ? message.rss : 0;
        return;
      case 'ready':
        worker.ready = true;
        worker.baseRss = typeof message.rss === 'number' ? message.rss : 0;
        worker.beatRss = worker.baseRss;
        clearTimeout(worker.startTimer);
        this.#startFailures = 0;
        this.#spawnAfter = 0;
        this.#broken = undefined;
        this.#updateRef(worker);
        if (this.#closed || worker.doomed) {
          void this.#stop(worker);
          return;
        }
        this.#balance();
        this.#pump();
        return;
      case 'call':
        this.#onCall(worker, message);
        return;
      case 'done':
      case 'failed': {
        const job = worker.jobs.get(message.id);
        worker.jobs.delete(message.id);
        worker.runs++;
        if (job !== undefined) {
          clearTimeout(job.timer);
          let result: RunOutcome | Error;
          if (message.t === 'done') {
            if (message.warm) this.#warmRuns++;
            else this.#coldRuns++;
            result = message.outcome;
            result.stats.queuedMs += (job.startedAt ?? job.enqueuedAt) - job.enqueuedAt;
          } else {
            result = new CodemodeError(message.code as CodemodeErrorCode, message.message);
          }
          // Host calls the guest made just before returning can arrive in the same read as this result.
          // In-process they would have started before the run settled; one turn of the event loop lets
          // their host functions (and any queue in front of them) start here too, before their signal aborts.
          setImmediate(() => this.#settle(job, result));
        }
        const stopped = message.t === 'done' && !message.outcome.ok && STOPPED_KINDS.has(message.outcome.error.kind) ? message.outcome.error.kind : undefined;
        this.#afterRun(worker, message.rss, message.catastrophic, stopped);
        this.#pump();
        return;
      }
      case 'ghost':
        if (worker.mustDie !== true) log.warn('a sandbox worker has an isolate thread still running after its run settled; retiring it', { pid: worker.pid, threads: message.threads });
        this.#afterRun(worker, worker.beatRss, 0, undefined, true);
        this.#pump();
        return;
    }
  }

  #afterRun(worker: WorkerHandle, rss: number, catastrophic: number, stopped?: string, ghost = false): void {
    // Exiting can crash or hang on a thread still inside a built-in, or parked after a catastrophic error.
    if (stopped !== undefined || catastrophic > 0 || ghost) worker.mustDie = true;
    if (worker.role !== 'retiring' && !worker.doomed) {
      let reason: string | undefined;
      // After a catastrophic error V8 keeps the isolate's thread parked and its heap allocated for good.
      if (catastrophic > 0) reason = `${catastrophic} catastrophic V8 error(s): their memory is never freed`;
      // V8 checks for termination only between JavaScript steps: a run stopped inside a long built-in
      // (lastIndexOf over 2^53 indices, fill of a 2^32 array) keeps its thread busy, and its memory growing,
      // after the run has returned. Nothing can stop that thread but the end of the process.
      else if (stopped !== undefined) reason = `a run was stopped (${stopped}) and its isolate's thread may still be running`;
      // The same thread after a run that settled normally: microtasks after the return reached such a built-in.
      else if (ghost) reason = 'an isolate thread kept running after its run settled';
      else if (this.maxRunsPerWorker !== null && worker.runs >= this.maxRunsPerWorker) reason = `${worker.runs} runs`;
      else if (this.maxRssMb !== null && rss > this.maxRssMb * 2 ** 20) reason = `RSS ${Math.round(rss / 2 ** 20)} MB`;
      if (reason !== undefined) {
        log.debug('recycling a sandbox worker', { pid: worker.pid, reason });
        this.#recycled++;
        worker.role = 'retiring';
        this.#lostAt ??= performance.now();
        this.#balance();
      }
    }
    if (worker.role === 'retiring' && worker.jobs.size === 0) {
      // A worker that may have a runaway thread gets no grace: exiting could hang or crash on that thread.
      if (worker.mustDie) this.#kill(worker, undefined);
      else void this.#stop(worker);
    } else this.#updateRef(worker);
  }

  #onCall(worker: WorkerHandle, message: Extract<FromWorker, { t: 'call' }>): void {
    const job = worker.jobs.get(message.id);
    if (job === undefined || job.settled) {
      this.#send(worker, {
        t: 'reply',
        call: message.call,
        ok: false,
        error: { name: 'Error', message: 'The sandbox run has ended; host calls after that are refused.' },
      });
      return;
    }
    const fn = job.functions[message.fn];
    if (typeof fn !== 'function' || !Array.isArray(message.args)) {
      this.#send(worker, { t: 'reply', call: message.call, ok: false, error: { name: 'Error', message: 'Unknown host function.' } });
      return;
    }
    job.controller ??= new AbortController();
    const context = { signal: job.controller.signal };
    job.hostCalls++;
    job.pending++;
    void (async () => {
      let reply: ToWorker;
      try {
        // `await` inside try: a sync throw, a rejection and a thrown non-Error all become error replies.
        const value: unknown = await fn(message.args, context);
        reply = replyFor(message.call, value, job.paths[message.fn]?.join('.') ?? 'host function');
      } catch (err) {
        reply = { t: 'reply', call: message.call, ok: false, error: describeHostError(err) };
      } finally {
        job.pending--;
      }
      // A late answer to a settled run or a dead worker goes nowhere; the worker forgets such calls too.
      if (!job.settled) this.#send(worker, reply);
    })();
  }

  #onExit(worker: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
    worker.dead = true;
    clearTimeout(worker.startTimer);
    this.#workers.delete(worker);
    const how = signal !== null ? `signal ${signal}` : `exit code ${String(code)}`;
    const expected = worker.doomed && worker.killedFor === undefined;
    if (!expected) {
      this.#crashed++;
      if (worker.role === 'serving') this.#lostAt ??= performance.now();
      log.warn('a sandbox worker process died', { pid: worker.pid, how, reason: worker.killedFor, runs: worker.jobs.size });
    }
    for (const job of worker.jobs.values()) {
      const message =
        worker.killedFor !== undefined
          ? (worker.killedMessage ??
            `The sandbox process running this code was killed (${worker.killedFor}, another run on the same process) before the run finished. This run did nothing wrong; run it again.`)
          : `The sandbox process running this code died (${how}) before the run finished. Other runs were not affected and a fresh process replaced it; run the code again if it should have succeeded.`;
      this.#settle(job, this.#failedOutcome(job, 'crashed', message));
    }
    worker.jobs.clear();
    if (!worker.ready && !worker.doomed && !this.#closed) this.#startFailed(`a worker exited during start-up (${how})`);
    this.#balance();
    this.#pump();
  }

  #startFailed(reason: string): void {
    this.#startFailures++;
    log.warn('a sandbox worker failed to start', { reason, failures: this.#startFailures });
    this.#spawnAfter = performance.now() + Math.min(MAX_START_BACKOFF_MS, 50 * 2 ** (this.#startFailures - 1));
    if (this.#startFailures < MAX_START_FAILURES) return;
    this.#broken = new CodemodeError(
      'SANDBOX_INTERNAL',
      `Sandbox worker processes keep failing to start (${reason}). Check that isolated-vm loads under this Node (node --no-node-snapshot) and see the worker's stderr. The pool keeps retrying; runs are refused until a worker starts.`,
    );
    for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(this.#broken);
    for (const job of this.#queue.splice(0)) this.#settle(job, this.#broken);
  }

  /** Stops a worker politely (closing its channel makes it exit), then with SIGKILL after the grace. */
  async #stop(worker: WorkerHandle): Promise<void> {
    if (worker.dead) return;
    worker.doomed = true;
    // Whoever awaits this (close()) is waiting for the exit: keep the process alive until it comes.
    worker.child.ref();
    try {
      if (worker.child.connected) worker.child.disconnect();
    } catch {
      /* already disconnected */
    }
    const timer = setTimeout(() => this.#kill(worker, undefined), this.killGraceMs);
    timer.unref();
    await worker.exited;
    clearTimeout(timer);
  }

  /**
   * SIGKILLs a worker; its runs settle when the exit is seen. `reason` set means it misbehaved;
   * `runMessage` is what its unfinished runs are told (default: killed because of another run).
   */
  #kill(worker: WorkerHandle, reason: string | undefined, runMessage?: string): void {
    if (worker.dead) return;
    worker.doomed = true;
    if (reason !== undefined && worker.killedFor === undefined) {
      worker.killedFor = reason;
      worker.killedMessage = runMessage;
    }
    try {
      worker.child.kill('SIGKILL');
    } catch (err) {
      log.warn('could not kill a sandbox worker', { pid: worker.pid, error: describeError(err) });
    }
    // Capacity comes back now, not when the exit event arrives.
    this.#balance();
  }

  // -------------------------------------------------------------------------------------------------------
  // Runs

  #pump(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      let best: WorkerHandle | undefined;
      for (const w of this.#workers) {
        if (w.role !== 'serving' || !w.ready || w.doomed || w.dead) continue;
        if (w.jobs.size >= this.concurrencyPerWorker) continue;
        if (best === undefined || w.jobs.size < best.jobs.size || (w.jobs.size === best.jobs.size && w.lastDispatch < best.lastDispatch)) best = w;
      }
      if (best === undefined) return;
      const job = this.#queue.shift()!;
      this.#dispatch(job, best);
    }
  }

  #dispatch(job: Job, worker: WorkerHandle): void {
    job.worker = worker;
    job.startedAt = performance.now();
    worker.lastDispatch = job.startedAt;
    worker.jobs.set(job.id, job);
    this.#updateRef(worker);
    this.#startSampler();
    const { timeoutMs } = job.limits;
    if (timeoutMs !== null) {
      job.timer = setTimeout(() => {
        if (job.settled) return;
        // Not necessarily the code's fault: the worker's own timer should have ended the run at the limit.
        // A worker silent past the grace is stuck (native code, a deadlock, a stopped process) or starved.
        const message = `The run did not finish within the ${timeoutMs} ms time limit and its sandbox process stopped responding for ${this.killGraceMs} ms more, so the process was killed and replaced. If the code is quick, run it again; otherwise make it do less per run or raise timeoutMs.`;
        this.#settle(job, this.#failedOutcome(job, 'timeout', message));
        this.#kill(worker, `a run overran its ${timeoutMs} ms time limit`);
      }, Math.min(timeoutMs + this.killGraceMs, MAX_TIMEOUT_MS));
    }
    this.#send(worker, {
      t: 'run',
      id: job.id,
      code: job.code,
      limits: job.limits,
      paths: job.paths,
      errorClasses: job.errorClasses,
    });
  }

  #abortJob(job: Job, message: string): void {
    if (job.settled) return;
    const worker = job.worker;
    if (worker === undefined) {
      const index = this.#queue.indexOf(job);
      if (index >= 0) this.#queue.splice(index, 1);
      this.#settle(job, this.#failedOutcome(job, 'aborted', message));
      return;
    }
    this.#send(worker, { t: 'abort', id: job.id });
    // The worker answers within milliseconds; one that doesn't is hung and gets killed.
    clearTimeout(job.timer);
    job.timer = setTimeout(() => {
      if (job.settled) return;
      this.#settle(job, this.#failedOutcome(job, 'aborted', message));
      this.#kill(worker, 'a run did not stop when aborted');
    }, this.killGraceMs);
  }

  #failedOutcome(job: Job, kind: 'crashed' | 'timeout' | 'aborted' | 'memory', message: string): RunOutcome {
    const now = performance.now();
    const stats = emptyStats(job.startedAt !== undefined ? now - job.startedAt : 0, (job.startedAt ?? now) - job.enqueuedAt);
    stats.hostCalls = job.hostCalls;
    stats.pendingHostCalls = job.pending;
    return { ok: false, error: { kind, message }, logs: [], stats };
  }

  #settle(job: Job, result: RunOutcome | Error): void {
    if (job.settled) return;
    job.settled = true;
    clearTimeout(job.timer);
    if (job.onAbort !== undefined) job.signal?.removeEventListener('abort', job.onAbort);
    // In-flight host calls learn that their run is over (as in-process), before the caller hears of it.
    job.controller?.abort(new CodemodeError('ABORTED', 'The sandbox run ended while this host call was in flight.'));
    if (result instanceof Error) job.reject(result);
    else job.resolve(result);
  }
}
