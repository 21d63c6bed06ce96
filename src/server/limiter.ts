/**
 * The execution limiter: at most N executes run at once, at most M wait for a slot, and anything past
 * that is refused at once. A server under load should say "busy, retry" rather than hold requests until
 * the client's own timeout fires.
 *
 * @module
 */

import { availableParallelism } from 'node:os';
import pLimit from 'p-limit';
import type { LimitFunction } from 'p-limit';
import { CodemodeError } from '../errors.js';

/** Default executes at once: the CPU count, but at least 2 (executes mostly wait on tool calls). */
export const DEFAULT_MAX_CONCURRENT_EXECUTIONS = Math.max(2, availableParallelism());
/** Default queue length, as a multiple of the concurrency. */
export const DEFAULT_QUEUE_FACTOR = 4;

/** Thrown by `ExecutionLimiter.run` when the queue is full. */
export class OverloadedError extends CodemodeError {
  override readonly name = 'OverloadedError';
  /** A suggested wait before retrying, in ms. */
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number) {
    super('OVERLOADED', message);
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Bounded concurrency with a bounded queue.
 *
 * @example
 * ```ts
 * const limiter = new ExecutionLimiter(2, 8);
 * const value = await limiter.run(() => mode.execute(code));
 * ```
 */
export class ExecutionLimiter {
  readonly maxConcurrent: number;
  readonly maxQueued: number;
  readonly #limit: LimitFunction;
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
    this.#limit = pLimit(maxConcurrent);
  }

  get active(): number {
    return this.#limit.activeCount;
  }

  get queued(): number {
    return this.#limit.pendingCount;
  }

  /** A retry hint: roughly how long the work ahead of a new caller takes to drain, 1-30 s. */
  retryAfterMs(): number {
    const typical = this.#recent.length === 0 ? 1_000 : [...this.#recent].sort((a, b) => a - b)[Math.floor(this.#recent.length / 2)]!;
    const waves = Math.ceil((this.active + this.queued) / this.maxConcurrent);
    return Math.min(30_000, Math.max(1_000, Math.round(typical * waves)));
  }

  /**
   * Runs `fn` when a slot is free. Throws `OverloadedError` at once when the queue is full. A call whose
   * `signal` aborts while it waits never starts (`fn` is not called; it rejects with `ABORTED`).
   */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.active + this.queued >= this.maxConcurrent + this.maxQueued) {
      const retry = this.retryAfterMs();
      return Promise.reject(
        new OverloadedError(
          `The server is busy: ${this.active} executions are running and ${this.queued} are waiting (the limit). ` +
            `Retry in about ${Math.ceil(retry / 1000)} s.`,
          retry,
        ),
      );
    }
    return this.#limit(async () => {
      if (signal?.aborted) throw new CodemodeError('ABORTED', 'The execution was cancelled while it waited for a slot.');
      const started = performance.now();
      try {
        return await fn();
      } finally {
        this.#recent.push(performance.now() - started);
        if (this.#recent.length > 32) this.#recent.shift();
      }
    });
  }
}
