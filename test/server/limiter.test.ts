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

  it('gives a freed slot to the tenant with the fewest running, not to the one that queued first', async () => {
    const limiter = new ExecutionLimiter(2, 10);
    const gates = Array.from({ length: 6 }, () => deferred());
    const order: string[] = [];
    const task = (tenant: string, i: number) =>
      limiter.run(async () => {
        order.push(`${tenant}${i}`);
        await gates[i]!.promise;
      }, undefined, tenant);
    // A fills both slots and queues three more; then B queues one.
    const all = [task('a', 0), task('a', 1), task('a', 2), task('a', 3), task('a', 4)];
    await new Promise((r) => setTimeout(r, 5));
    all.push(task('b', 5));
    expect(limiter.active).toBe(2);
    expect(limiter.queued).toBe(4);
    gates[0]!.resolve();
    await new Promise((r) => setTimeout(r, 5));
    // B waited least, but holds no slot: it goes before A's earlier queued executes.
    expect(order).toEqual(['a0', 'a1', 'b5']);
    gates[1]!.resolve();
    await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual(['a0', 'a1', 'b5', 'a2']);
    for (const g of gates) g.resolve();
    await Promise.all(all);
    expect(order).toEqual(['a0', 'a1', 'b5', 'a2', 'a3', 'a4']);
    expect(limiter.tenants).toBe(0);
  });

  it('takes turns between tenants that each have executes waiting', async () => {
    const limiter = new ExecutionLimiter(1, 20);
    const order: string[] = [];
    const gate = deferred();
    const first = limiter.run(() => gate.promise, undefined, 'x');
    const runs = [];
    for (let i = 0; i < 3; i++) for (const t of ['a', 'b', 'c']) runs.push(limiter.run(async () => void order.push(t), undefined, t));
    gate.resolve();
    await Promise.all([first, ...runs]);
    // Each turn goes to the tenant served longest ago: a, b, c, a, b, c, ... rather than a, a, a, b, ...
    expect(order).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('lets one tenant fill at most half of the queue, so others can still queue', async () => {
    const limiter = new ExecutionLimiter(1, 4);
    expect(limiter.maxQueuedPerTenant).toBe(2);
    const gate = deferred();
    const runs = [0, 1, 2].map(() => limiter.run(() => gate.promise, undefined, 'hostile'));
    const refused = await limiter.run(() => gate.promise, undefined, 'hostile').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OverloadedError);
    expect((refused as OverloadedError).message).toMatch(/this client already has 2 executions waiting \(the limit for one client\)\. Retry in about \d+ s\./);
    // Another tenant still gets a place in the queue.
    const other = limiter.run(async () => 'ok', undefined, 'other');
    expect(limiter.queued).toBe(3);
    gate.resolve();
    await Promise.all(runs);
    await expect(other).resolves.toBe('ok');
  });

  it('frees the slot when the function throws synchronously or rejects', async () => {
    const limiter = new ExecutionLimiter(1, 2);
    await expect(limiter.run(() => { throw new Error('sync'); })).rejects.toThrow('sync');
    await expect(limiter.run(() => Promise.reject(new Error('async')))).rejects.toThrow('async');
    await expect(limiter.run(async () => 7)).resolves.toBe(7);
    expect(limiter.active + limiter.queued + limiter.tenants).toBe(0);
  });

  it('rejects nonsense sizes', () => {
    expect(() => new ExecutionLimiter(0)).toThrow(/positive integer/);
    expect(() => new ExecutionLimiter(1, -1)).toThrow(/non-negative/);
  });
});
