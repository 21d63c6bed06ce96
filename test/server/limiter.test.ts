import { describe, expect, it } from 'vitest';
import { isCodemodeError } from '../../src/errors.js';
import { ExecutionLimiter, OverloadedError } from '../../src/server/limiter.js';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('ExecutionLimiter', () => {
  it('runs up to the concurrency, queues up to the queue length, and refuses the rest at once with a retry hint', async () => {
    const limiter = new ExecutionLimiter(2, 1);
    const gate = deferred();
    let started = 0;
    const task = () => limiter.run(async () => {
      started++;
      await gate.promise;
      return started;
    });
    const running = [task(), task(), task()];
    await new Promise((r) => setTimeout(r, 10));
    expect(started).toBe(2);
    expect(limiter.active).toBe(2);
    expect(limiter.queued).toBe(1);
    const t0 = performance.now();
    const refused = await task().catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(50);
    expect(refused).toBeInstanceOf(OverloadedError);
    expect((refused as OverloadedError).code).toBe('OVERLOADED');
    expect((refused as OverloadedError).message).toMatch(/busy: 2 executions are running and 1 are waiting.*Retry in about \d+ s/);
    expect((refused as OverloadedError).retryAfterMs).toBeGreaterThanOrEqual(1_000);
    gate.resolve();
    await Promise.all(running);
    expect(started).toBe(3);
    expect(limiter.active + limiter.queued).toBe(0);
  });

  it('never starts a queued call whose signal aborted while it waited', async () => {
    const limiter = new ExecutionLimiter(1, 5);
    const gate = deferred();
    const first = limiter.run(() => gate.promise);
    const controller = new AbortController();
    let ran = false;
    const second = limiter.run(async () => {
      ran = true;
    }, controller.signal);
    controller.abort();
    gate.resolve();
    await first;
    const err = await second.catch((e: unknown) => e);
    expect(isCodemodeError(err, 'ABORTED')).toBe(true);
    expect(ran).toBe(false);
  });

  it('rejects nonsense sizes', () => {
    expect(() => new ExecutionLimiter(0)).toThrow(/positive integer/);
    expect(() => new ExecutionLimiter(1, -1)).toThrow(/non-negative/);
  });
});
