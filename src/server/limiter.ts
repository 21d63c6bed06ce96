/**
 * The execution limiter: at most N executes run at once, at most M wait for a slot, and anything past
 * that is refused at once. A server under load should say "busy, retry" rather than hold requests until
 * the client's own timeout fires.
 *
 * It is fair between tenants. Each execute names its tenant (the authenticated principal, or the session
 * when there is no authentication). A freed slot goes to the waiting tenant with the fewest executes
 * running, and among equals to the one that has waited longest, so one tenant's slow or hostile executes
 * take at most their share of the slots while others wait. One tenant may also hold at most half of the
 * queue, so it cannot fill the queue and make everyone else's executes refused.
 *
 * @module
 */

import { availableParallelism } from 'node:os';
import { CodemodeError } from '../errors.js';

/**
 * Default executes at once: twice the CPU count, at least 4. Executes mostly wait on tool calls, so a
 * slot is not a core; with only as many slots as cores, one tenant's CPU-bound execute would halve
 * everyone else's throughput.
 */
export const DEFAULT_MAX_CONCURRENT_EXECUTIONS = Math.max(4, 2 * availableParallelism());
/** Default queue length, as a multiple of the concurrency. */
export const DEFAULT_QUEUE_FACTOR = 4;
/** The tenant of an execute that names none. */
const DEFAULT_TENANT = '';

/** Thrown by `ExecutionLimiter.run` when the queue (or the caller's share of it) is full. */
export class OverloadedError extends CodemodeError {
  override readonly name = 'OverloadedError';
  /** A suggested wait before retrying, in ms. */
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number) {
    super('OVERLOADED', message);
    this.retryAfterMs = retryAfterMs;
  }
}

interface Waiter {
  start: () => void;
  /** Set when the caller's signal aborted while it waited; the waiter is skipped. */
  gone: boolean;
}

interface Tenant {
  active: number;
  waiting: Waiter[];
  /** When this tenant last got a slot (a counter, not a clock): ties go to the longest-waiting. */
  lastServed: number;
}

/**
 * Bounded, tenant-fair concurrency with a bounded queue.
 *
 * @example
 * ```ts
 * const limiter = new ExecutionLimiter(4, 16);
 * const value = await limiter.run(() => mode.execute(code), signal, 'principal:alice');
 * ```
 */
export class ExecutionLimiter {
  readonly maxConcurrent: number;
  readonly maxQueued: number;
  /** The most executes one tenant may have waiting: half the queue, at least 1. */
  readonly maxQueuedPerTenant: number;
  readonly #tenants = new Map<string, Tenant>();
  #active = 0;
  #queued = 0;
  #served = 0;
  /** Recent execute durations (ms), for the retry hint. */
  readonly #recent: number[] = [];

  constructor(maxConcurrent: number = DEFAULT_MAX_CONCURRENT_EXECUTIONS, maxQueued: number = maxConcurrent * DEFAULT_QUEUE_FACTOR) {
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
      throw new CodemodeError('INVALID_CONFIG', `maxConcurrentExecutions must be a positive integer, got ${String(maxConcurrent)}.`);
    }
    if (!Number.isInteger(maxQueued) || maxQueued < 0) {
      throw new CodemodeError('INVALID_CONFIG', `maxQueuedExecutions must be a non-negative integer, got ${String(maxQueued)}.`);
    }
    this.maxConcurrent = maxConcurrent;
    this.maxQueued = maxQueued;
    this.maxQueuedPerTenant = Math.max(1, Math.ceil(maxQueued / 2));
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  /** Tenants with an execute running or waiting (for stats and tests). */
  get tenants(): number {
    return this.#tenants.size;
  }

  /** A retry hint: roughly how long the work ahead of a new caller takes to drain, 1-30 s. */
  retryAfterMs(): number {
    const typical = this.#recent.length === 0 ? 1_000 : [...this.#recent].sort((a, b) => a - b)[Math.floor(this.#recent.length / 2)]!;
    const waves = Math.ceil((this.active + this.queued) / this.maxConcurrent);
    return Math.min(30_000, Math.max(1_000, Math.round(typical * waves)));
  }

  /**
   * Runs `fn` when a slot is free and it is `tenant`'s turn. Throws `OverloadedError` at once when the
   * queue, or the tenant's share of it, is full. A call whose `signal` aborts while it waits never starts
   * (`fn` is not called; it rejects with `ABORTED`).
   */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal, tenant: string = DEFAULT_TENANT): Promise<T> {
    if (signal?.aborted) return Promise.reject(new CodemodeError('ABORTED', 'The execution was cancelled before it started.'));
    const entry = this.#tenants.get(tenant) ?? { active: 0, waiting: [], lastServed: -1 };
    const mustWait = this.#active >= this.maxConcurrent || this.#queued > 0;
    if (mustWait && this.#queued >= this.maxQueued) return Promise.reject(this.#overloaded(`${this.active} executions are running and ${this.queued} are waiting (the limit)`));
    if (mustWait && entry.waiting.length >= this.maxQueuedPerTenant) {
      return Promise.reject(this.#overloaded(`this client already has ${entry.waiting.length} executions waiting (the limit for one client)`));
    }
    this.#tenants.set(tenant, entry);
    return new Promise<T>((resolve, reject) => {
      const start = () => {
        this.#active++;
        entry.active++;
        entry.lastServed = this.#served++;
        const started = performance.now();
        let settled: Promise<T>;
        try {
          settled = fn();
        } catch (err) {
          settled = Promise.reject(err);
        }
        settled
          .finally(() => {
            this.#recent.push(performance.now() - started);
            if (this.#recent.length > 32) this.#recent.shift();
            this.#active--;
            entry.active--;
            this.#forget(tenant, entry);
            this.#next();
          })
          .then(resolve, reject);
      };
      if (!mustWait) {
        start();
        return;
      }
      const waiter: Waiter = { start, gone: false };
      entry.waiting.push(waiter);
      this.#queued++;
      signal?.addEventListener(
        'abort',
        () => {
          if (waiter.gone) return;
          waiter.gone = true;
          const i = entry.waiting.indexOf(waiter);
          if (i >= 0) {
            entry.waiting.splice(i, 1);
            this.#queued--;
            this.#forget(tenant, entry);
          }
          reject(new CodemodeError('ABORTED', 'The execution was cancelled while it waited for a slot.'));
        },
        { once: true },
      );
      // Starting a waiter must not depend on the caller: `start` runs from #next when a slot frees.
      waiter.start = () => {
        waiter.gone = true;
        start();
      };
    });
  }

  #overloaded(why: string): OverloadedError {
    const retry = this.retryAfterMs();
    return new OverloadedError(`The server is busy: ${why}. Retry in about ${Math.ceil(retry / 1000)} s.`, retry);
  }

  #forget(tenant: string, entry: Tenant): void {
    if (entry.active === 0 && entry.waiting.length === 0 && this.#tenants.get(tenant) === entry) this.#tenants.delete(tenant);
  }

  /** Fills free slots: each goes to the waiting tenant with the fewest running, then the longest unserved. */
  #next(): void {
    while (this.#active < this.maxConcurrent && this.#queued > 0) {
      let best: [string, Tenant] | undefined;
      for (const pair of this.#tenants) {
        const t = pair[1];
        if (t.waiting.length === 0) continue;
        if (best === undefined || t.active < best[1].active || (t.active === best[1].active && t.lastServed < best[1].lastServed)) best = pair;
      }
      if (best === undefined) return;
      const waiter = best[1].waiting.shift()!;
      this.#queued--;
      waiter.start();
    }
  }
}
