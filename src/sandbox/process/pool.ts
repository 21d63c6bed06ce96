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

import { CodemodeError, describeError } from '../../errors.js';
import type { CodemodeErrorCode } from '../../errors.js';
import { createLogger } from '../../log.js';
import { MAX_TIMEOUT_MS } from '../limits.js';
import type { RunOutcome } from '../types.js';
import { relayHostCall } from './host-relay.js';
import { emptyStats, failedOutcome, newJob, recycleReason, resolvePoolOptions, workerCounts } from './pool-types.js';
import type { Job, PoolJob, ProcessPoolOptions, ProcessPoolStats, WorkerHandle } from './pool-types.js';
import { HEARTBEAT_MS } from './protocol.js';
import type { FromWorker, WorkerConfig } from './protocol.js';
import { hardRssCeiling, overCeilingMessage, RSS_SAMPLE_MS, statmRss } from './rss.js';
import { createSpawner, sendToWorker, startWorker, stopWorker, updateWorkerRef } from './worker-spawn.js';
import type { Spawner } from './spawner.js';

export type { PoolJob, ProcessPoolOptions, ProcessPoolStats } from './pool-types.js';
export { SOURCE_EXEC_ARGV } from './worker-spawn.js';
export { DEFAULT_HANG_TIMEOUT_MS, DEFAULT_KILL_GRACE_MS, DEFAULT_MAX_RSS_MB, DEFAULT_MAX_RUNS_PER_WORKER } from './pool-types.js';

const log = createLogger('sandbox-pool');

/** Outcomes of runs the sandbox had to stop: the worker that ran one is replaced (see #afterRun). */
const STOPPED_KINDS: ReadonlySet<string> = new Set(['timeout', 'aborted', 'memory']);

/**
 * Consecutive worker start failures after which runs fail fast (instead of queueing behind workers that
 * never come). The pool keeps retrying with backoff and serves again once a worker starts.
 */
const MAX_START_FAILURES = 3;
/** Longest wait between start attempts after repeated failures. */
const MAX_START_BACKOFF_MS = 5_000;


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
 * - Workers exit on their own when this process goes away (their channel closes).
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
  readonly #spawner: Spawner;
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
    ({
      size: this.size,
      concurrencyPerWorker: this.concurrencyPerWorker,
      standbyWorkers: this.standbyWorkers,
      maxRunsPerWorker: this.maxRunsPerWorker,
      maxRssMb: this.maxRssMb,
      hardRssMb: this.hardRssMb,
      killGraceMs: this.killGraceMs,
      hangTimeoutMs: this.hangTimeoutMs,
      warmMemoryMb: this.warmMemoryMb,
      nice: this.nice,
    } = resolvePoolOptions(options));
    if (options.spawnVia !== undefined && options.spawnVia !== 'launcher' && options.spawnVia !== 'direct') {
      throw new CodemodeError('INVALID_CONFIG', `spawnVia must be 'launcher' or 'direct'; got ${String(options.spawnVia)}.`);
    }
    this.#spawner = createSpawner(options.spawnVia);
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
    const live = [...worker.jobs.values()].filter((job) => !job.settled);
    return hardRssCeiling(this.hardRssMb, worker.baseRss, live.map((job) => job.limits.memoryMb), this.concurrencyPerWorker);
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
      const used = Math.round(rss / 2 ** 20);
      const limit = Math.round(ceiling / 2 ** 20);
      const live = [...w.jobs.values()].filter((job) => !job.settled);
      const message = overCeilingMessage(rss, ceiling, live.length);
      log.warn('a sandbox worker passed its hard RSS ceiling', { pid: w.pid, rssMb: used, ceilingMb: limit, runs: live.length });
      this.#memoryKills++;
      for (const job of live) this.#settle(job, failedOutcome(job, 'memory', message));
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
    return {
      ...workerCounts(this.#workers),
      queued: this.#queue.length,
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
    return [...this.#workers].filter((w) => !w.dead && w.pid > 0).map((w) => w.pid);
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
      const job = newJob(spec, ++this.#nextJob, resolve, reject);
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
    this.#spawner.close();
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
   * Spawns missing workers off the current tick: a direct `fork()` blocks this thread for milliseconds, and a just
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
    const config: WorkerConfig = { warmMemoryMb: this.warmMemoryMb, nice: this.nice };
    let worker: WorkerHandle;
    try {
      worker = startWorker(this.#spawner, role, config, {
        onMessage: (w, message) => this.#onMessage(w, message),
        onExit: (w, code, signal) => this.#onExit(w, code, signal),
        onStartTimeout: (w) => this.#kill(w, 'start timeout'),
      });
    } catch (err) {
      this.#startFailed(`could not spawn a worker: ${describeError(err)}`);
      this.#scheduleSpawn();
      return;
    }
    this.#workers.add(worker);
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
        updateWorkerRef(worker);
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
      const reason = recycleReason(worker, { rss, catastrophic, stopped, ghost, maxRunsPerWorker: this.maxRunsPerWorker, maxRssMb: this.maxRssMb });
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
    } else updateWorkerRef(worker);
  }

  #onCall(worker: WorkerHandle, message: Extract<FromWorker, { t: 'call' }>): void {
    const job = worker.jobs.get(message.id);
    if (job === undefined || job.settled) {
      sendToWorker(worker, {
        t: 'reply',
        call: message.call,
        ok: false,
        error: { name: 'Error', message: 'The sandbox run has ended; host calls after that are refused.' },
      });
      return;
    }
    const fn = job.functions[message.fn];
    if (typeof fn !== 'function' || !Array.isArray(message.args)) {
      sendToWorker(worker, { t: 'reply', call: message.call, ok: false, error: { name: 'Error', message: 'Unknown host function.' } });
      return;
    }
    // A late answer to a settled run or a dead worker goes nowhere; the worker forgets such calls too.
    relayHostCall(job, fn, message, (reply) => {
      if (!job.settled) sendToWorker(worker, reply);
    });
  }

  #onExit(worker: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void {
    worker.dead = true;
    clearTimeout(worker.startTimer);
    this.#workers.delete(worker);
    const how = signal !== null ? `signal ${signal}` : code !== null ? `exit code ${code}` : 'an end whose cause was not reported';
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
      this.#settle(job, failedOutcome(job, 'crashed', message));
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
  #stop(worker: WorkerHandle): Promise<void> {
    return stopWorker(worker, this.killGraceMs, () => this.#kill(worker, undefined));
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
      worker.proc.kill('SIGKILL');
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
    updateWorkerRef(worker);
    this.#startSampler();
    const { timeoutMs } = job.limits;
    if (timeoutMs !== null) {
      job.timer = setTimeout(() => {
        if (job.settled) return;
        // Not necessarily the code's fault: the worker's own timer should have ended the run at the limit.
        // A worker silent past the grace is stuck (native code, a deadlock, a stopped process) or starved.
        const message = `The run did not finish within the ${timeoutMs} ms time limit and its sandbox process stopped responding for ${this.killGraceMs} ms more, so the process was killed and replaced. If the code is quick, run it again; otherwise make it do less per run or raise timeoutMs.`;
        this.#settle(job, failedOutcome(job, 'timeout', message));
        this.#kill(worker, `a run overran its ${timeoutMs} ms time limit`);
      }, Math.min(timeoutMs + this.killGraceMs, MAX_TIMEOUT_MS));
    }
    sendToWorker(worker, {
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
      this.#settle(job, failedOutcome(job, 'aborted', message));
      return;
    }
    sendToWorker(worker, { t: 'abort', id: job.id });
    // The worker answers within milliseconds; one that doesn't is hung and gets killed.
    clearTimeout(job.timer);
    job.timer = setTimeout(() => {
      if (job.settled) return;
      this.#settle(job, failedOutcome(job, 'aborted', message));
      this.#kill(worker, 'a run did not stop when aborted');
    }, this.killGraceMs);
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
