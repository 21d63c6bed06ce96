/**
 * The process pool's options, statistics and internal records (a run, a worker), with the option checks.
 *
 * @module
 */

import { availableParallelism } from 'node:os';
import { CodemodeError } from '../../errors.js';
import { DEFAULT_MEMORY_MB } from '../types.js';
import type { HostFunction, RunOutcome, RunStats, SandboxLimits } from '../types.js';
import { HEARTBEAT_MS } from './protocol.js';
import type { WorkerProcess } from './spawner.js';

/** Default extra time a worker gets past a run's `timeoutMs` (or after an abort) before it is killed. */
export const DEFAULT_KILL_GRACE_MS = 1_000;
/** Default silence (no message, not even a heartbeat) after which a busy worker counts as hung. */
export const DEFAULT_HANG_TIMEOUT_MS = 5_000;
/** Default number of runs after which a worker is replaced. */
export const DEFAULT_MAX_RUNS_PER_WORKER = 1_000;
/** Default RSS (MB) past which a worker is replaced after its current runs. */
export const DEFAULT_MAX_RSS_MB = 1_024;

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
  /**
   * Who starts the worker processes. `'launcher'` (the default on Linux): a small helper process, forked
   * once, starts them, so this process never forks after start-up; a `fork()` from a process of a few hundred
   * MB blocks its event loop for 15-35 ms, once per replaced worker. `'direct'` (the default elsewhere): this
   * process starts them itself.
   */
  spawnVia?: 'launcher' | 'direct';
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

/** @internal A submitted run and its state. */
export interface Job extends PoolJob {
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

/** @internal One worker process and its state. */
export interface WorkerHandle {
  readonly proc: WorkerProcess;
  /** -1 until the process exists. */
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

export function positiveInt(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) {
    throw new CodemodeError('INVALID_CONFIG', `${name} must be an integer >= ${min}; got ${String(value)}.`);
  }
  return value;
}

export function optionalPositive(name: string, value: number | null | undefined, fallback: number): number | null {
  if (value === undefined) return fallback;
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new CodemodeError('INVALID_CONFIG', `${name} must be a positive number or null; got ${String(value)}.`);
  }
  return value;
}

export function emptyStats(durationMs: number, queuedMs: number): RunStats {
  return { durationMs, queuedMs, hostCalls: 0, pendingHostCalls: 0, droppedLogLines: 0 };
}

/** The worker counts of a pool snapshot (see `ProcessPoolStats`). */
export function workerCounts(workers: Iterable<WorkerHandle>): Pick<ProcessPoolStats, 'ready' | 'starting' | 'standby' | 'running' | 'pids'> {
  let ready = 0;
  let starting = 0;
  let standby = 0;
  let running = 0;
  const pids: number[] = [];
  for (const w of workers) {
    running += w.jobs.size;
    if (w.doomed || w.dead || w.role === 'retiring') continue;
    if (!w.ready) starting++;
    else if (w.role === 'serving') ready++;
    else standby++;
    if (w.role === 'serving' && w.pid > 0) pids.push(w.pid);
  }
  return { ready, starting, standby, running, pids };
}

/** What a worker's last run left behind, and the pool's recycling limits. */
export interface AfterRun {
  rss: number;
  catastrophic: number;
  stopped: string | undefined;
  ghost: boolean;
  maxRunsPerWorker: number | null;
  maxRssMb: number | null;
}

/** Why a worker must be replaced after a run, or undefined to keep it. */
export function recycleReason(worker: WorkerHandle, after: AfterRun): string | undefined {
  // After a catastrophic error V8 keeps the isolate's thread parked and its heap allocated for good.
  if (after.catastrophic > 0) return `${after.catastrophic} catastrophic V8 error(s): their memory is never freed`;
  // V8 checks for termination only between JavaScript steps: a run stopped inside a long built-in
  // (lastIndexOf over 2^53 indices, fill of a 2^32 array) keeps its thread busy, and its memory growing,
  // after the run has returned. Nothing can stop that thread but the end of the process.
  if (after.stopped !== undefined) return `a run was stopped (${after.stopped}) and its isolate's thread may still be running`;
  // The same thread after a run that settled normally: microtasks after the return reached such a built-in.
  if (after.ghost) return 'an isolate thread kept running after its run settled';
  if (after.maxRunsPerWorker !== null && worker.runs >= after.maxRunsPerWorker) return `${worker.runs} runs`;
  if (after.maxRssMb !== null && after.rss > after.maxRssMb * 2 ** 20) return `RSS ${Math.round(after.rss / 2 ** 20)} MB`;
  return undefined;
}

/** A pool's settings, after defaults and checks. */
export type ResolvedPoolOptions = Required<Omit<ProcessPoolOptions, 'hardRssMb'>> & { hardRssMb: number | 'auto' | null };

/**
 * Applies the defaults to `ProcessPoolOptions` and checks them.
 *
 * @throws CodemodeError `INVALID_CONFIG` naming the option and the value.
 */
export function resolvePoolOptions(options: ProcessPoolOptions): ResolvedPoolOptions {
  const out = {} as ResolvedPoolOptions;
  out.size = positiveInt('size', options.size, Math.max(1, Math.min(availableParallelism(), 8)));
  out.concurrencyPerWorker = positiveInt('concurrencyPerWorker', options.concurrencyPerWorker, 1);
  out.standbyWorkers = positiveInt('standbyWorkers', options.standbyWorkers, 1, 0);
  const maxRuns = optionalPositive('maxRunsPerWorker', options.maxRunsPerWorker, DEFAULT_MAX_RUNS_PER_WORKER);
  if (maxRuns !== null && !Number.isInteger(maxRuns)) {
    throw new CodemodeError('INVALID_CONFIG', `maxRunsPerWorker must be an integer or null; got ${maxRuns}.`);
  }
  out.maxRunsPerWorker = maxRuns;
  out.maxRssMb = optionalPositive('maxRssMb', options.maxRssMb, DEFAULT_MAX_RSS_MB);
  out.hardRssMb =
    options.hardRssMb === undefined || options.hardRssMb === 'auto' ? 'auto' : optionalPositive('hardRssMb', options.hardRssMb, 0);
  out.killGraceMs = optionalPositive('killGraceMs', options.killGraceMs, DEFAULT_KILL_GRACE_MS) ?? DEFAULT_KILL_GRACE_MS;
  out.hangTimeoutMs = optionalPositive('hangTimeoutMs', options.hangTimeoutMs, DEFAULT_HANG_TIMEOUT_MS) ?? DEFAULT_HANG_TIMEOUT_MS;
  if (out.hangTimeoutMs < 2 * HEARTBEAT_MS) {
    throw new CodemodeError('INVALID_CONFIG', `hangTimeoutMs must be at least ${2 * HEARTBEAT_MS} ms (workers heartbeat every ${HEARTBEAT_MS} ms).`);
  }
  out.warmMemoryMb = options.warmMemoryMb === undefined ? DEFAULT_MEMORY_MB : options.warmMemoryMb;
  const nice = options.nice ?? null;
  if (nice !== null && (!Number.isInteger(nice) || nice < 0 || nice > 19)) {
    throw new CodemodeError('INVALID_CONFIG', `nice must be an integer from 0 to 19 (or null to leave the priority alone), got ${String(nice)}.`);
  }
  out.nice = nice;
  return out;
}

/** The outcome of a run the pool itself ended (its worker crashed or was killed, a timeout, an abort). */
export function failedOutcome(job: Job, kind: 'crashed' | 'timeout' | 'aborted' | 'memory', message: string): RunOutcome {
  const now = performance.now();
  const stats = emptyStats(job.startedAt !== undefined ? now - job.startedAt : 0, (job.startedAt ?? now) - job.enqueuedAt);
  stats.hostCalls = job.hostCalls;
  stats.pendingHostCalls = job.pending;
  return { ok: false, error: { kind, message }, logs: [], stats };
}

/** A job for `spec`, queued now and not yet dispatched. */
export function newJob(spec: PoolJob, id: number, resolve: (outcome: RunOutcome) => void, reject: (err: Error) => void): Job {
  return {
    ...spec,
    id,
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
}
