/**
 * `ProcessSandbox`: the `SandboxProvider` that runs each execution in a pool of worker processes, so a
 * crash of V8 or isolated-vm fails one run instead of the server. See docs/process-pool.md.
 *
 * @module
 */

import { CodemodeError } from '../../errors.js';
import { flattenHostFunctions, validateErrorClasses } from '../host-functions.js';
import type { FlatFunctions } from '../host-functions.js';
import { resolveLimits } from '../limits.js';
import type { RunOptions, RunOutcome, SandboxLimits, SandboxLimitsInput, SandboxProvider } from '../types.js';
import { ProcessPool } from './pool.js';
import type { PoolJob, ProcessPoolOptions } from './pool.js';

/** Options of `ProcessSandbox`. */
export interface ProcessSandboxOptions extends ProcessPoolOptions {
  /** Limits of every run (see `SandboxLimitsInput`). Copied and frozen at construction. */
  limits?: SandboxLimitsInput;
  /**
   * A pool to run on, shared with other sandboxes; it stays open when this sandbox closes. Without it the
   * sandbox starts its own pool from the pool options (`size`, `concurrencyPerWorker`, ...) and closes it.
   */
  pool?: ProcessPool;
  /** Runs of this sandbox at once (on top of the pool's capacity); further runs queue. Default: no own bound. */
  maxConcurrency?: number;
  /**
   * How many runs of this sandbox may wait beyond those that can run at once (`maxConcurrency`, else the
   * pool's `size x concurrencyPerWorker`); a run past it rejects at once with `CodemodeError` code
   * `OVERLOADED`. Default: no cap. As `IsolatedVmSandbox`'s option of the same name.
   */
  maxQueuedRuns?: number | null;
}

/**
 * Runs untrusted code in a pool of worker processes, each hosting isolated-vm. Same contract, results,
 * logs and error kinds as `IsolatedVmSandbox`, plus kind `crashed` when a worker dies mid-run. Host
 * functions run in this process; workers get only their names.
 *
 * The parent never loads isolated-vm, so a program using only `ProcessSandbox` does not need
 * `--no-node-snapshot` itself (its workers get it).
 *
 * @example
 * ```ts
 * const sandbox = new ProcessSandbox({ limits: { timeoutMs: 5_000 }, size: 2 });
 * const outcome = await sandbox.run('return (await lookup("x")).n + 1', {
 *   hostFunctions: { lookup: async ([key]) => ({ key, n: 41 }) },
 * });
 * if (outcome.ok) console.log(outcome.value); // 42
 * else console.error(outcome.error.kind, outcome.error.message); // 'crashed' if its worker died
 * await sandbox.close();
 * ```
 */
export class ProcessSandbox implements SandboxProvider {
  /** This instance's own frozen copy of its limits. */
  readonly limits: Readonly<SandboxLimits>;
  /** The pool this sandbox runs on. */
  readonly pool: ProcessPool;
  readonly maxConcurrency: number | undefined;
  readonly maxQueuedRuns: number | null;
  readonly #ownsPool: boolean;
  /** Runs accepted and not yet settled (running or waiting). */
  #live = 0;
  #closed = false;
  #active = 0;
  readonly #waiting: (() => void)[] = [];
  readonly #controllers = new Set<AbortController>();
  readonly #inflight = new Set<Promise<unknown>>();

  constructor(options: ProcessSandboxOptions = {}) {
    this.limits = resolveLimits(options.limits);
    const { maxConcurrency } = options;
    if (maxConcurrency !== undefined && (!Number.isInteger(maxConcurrency) || maxConcurrency < 1)) {
      throw new CodemodeError('INVALID_CONFIG', `maxConcurrency must be a positive integer; got ${String(maxConcurrency)}.`);
    }
    this.maxConcurrency = maxConcurrency;
    const maxQueued = options.maxQueuedRuns ?? null;
    if (maxQueued !== null && (!Number.isInteger(maxQueued) || maxQueued < 0)) {
      throw new CodemodeError('INVALID_CONFIG', `maxQueuedRuns must be a non-negative integer or null; got ${String(maxQueued)}.`);
    }
    this.maxQueuedRuns = maxQueued;
    if (options.pool !== undefined) {
      this.pool = options.pool;
      this.#ownsPool = false;
    } else {
      this.pool = new ProcessPool({ warmMemoryMb: this.limits.memoryMb, ...options });
      this.#ownsPool = true;
    }
  }

  /** Resolves once the pool's workers are started and ready (runs before that simply queue). */
  ready(): Promise<void> {
    return this.pool.ready();
  }

  /** Runs `code` as the body of an async function in a worker process. Resolves for every guest outcome. */
  run(code: string, options: RunOptions = {}): Promise<RunOutcome> {
    if (this.#closed) return Promise.reject(new CodemodeError('CLOSED', 'The sandbox is closed; create a new one to run code.'));
    if (typeof code !== 'string') return Promise.reject(new CodemodeError('INVALID_ARGUMENT', 'Sandbox code must be a string.'));
    let flat: FlatFunctions;
    let errorClasses: string[];
    try {
      flat = flattenHostFunctions(options.hostFunctions);
      // Shadowing of standard globals is checked in the worker, against the global object the guest gets.
      errorClasses = validateErrorClasses(options.errorClasses, false);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (this.maxQueuedRuns !== null) {
      const runnable = this.maxConcurrency ?? this.pool.size * this.pool.concurrencyPerWorker;
      if (this.#live >= runnable + this.maxQueuedRuns) {
        return Promise.reject(
          new CodemodeError('OVERLOADED', `The sandbox queue is full (${this.#live} runs in progress or waiting, maxQueuedRuns ${this.maxQueuedRuns}); retry later.`),
        );
      }
    }
    // One controller per run joins the caller's signal and close(); the pool sees only this one.
    const controller = new AbortController();
    const outer = options.signal;
    if (outer?.aborted === true) controller.abort();
    const onOuter = (): void => controller.abort();
    outer?.addEventListener('abort', onOuter, { once: true });
    this.#controllers.add(controller);
    const job: PoolJob = { code, limits: this.limits, functions: flat.functions, paths: flat.paths, errorClasses, signal: controller.signal };
    this.#live++;
    const promise = this.#bounded(job).finally(() => {
      this.#live--;
      outer?.removeEventListener('abort', onOuter);
      this.#controllers.delete(controller);
    });
    this.#inflight.add(promise);
    const forget = (): void => {
      this.#inflight.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }

  async #bounded(job: PoolJob): Promise<RunOutcome> {
    if (this.maxConcurrency === undefined) return this.pool.submit(job);
    const enqueued = performance.now();
    if (this.#active >= this.maxConcurrency) {
      const signal = job.signal;
      const admitted = await new Promise<boolean>((resolve) => {
        const admit = (): void => {
          signal?.removeEventListener('abort', cancel);
          resolve(true);
        };
        const cancel = (): void => {
          const index = this.#waiting.indexOf(admit);
          if (index >= 0) this.#waiting.splice(index, 1);
          resolve(false);
        };
        if (signal?.aborted === true) return resolve(false);
        signal?.addEventListener('abort', cancel, { once: true });
        this.#waiting.push(admit);
      });
      if (!admitted) {
        const queuedMs = performance.now() - enqueued;
        return {
          ok: false,
          error: { kind: 'aborted', message: 'The run was aborted by the caller.' },
          logs: [],
          stats: { durationMs: 0, queuedMs, hostCalls: 0, pendingHostCalls: 0, droppedLogLines: 0 },
        };
      }
    }
    this.#active++;
    const waitedMs = performance.now() - enqueued;
    try {
      const outcome = await this.pool.submit(job);
      outcome.stats.queuedMs += waitedMs;
      return outcome;
    } finally {
      this.#active--;
      this.#waiting.shift()?.();
    }
  }

  /** Aborts this sandbox's queued and running runs and waits for them; closes the pool if it owns it. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    try {
      for (const controller of this.#controllers) controller.abort();
      await Promise.allSettled([...this.#inflight]);
    } finally {
      if (this.#ownsPool) await this.pool.close();
    }
  }
}
