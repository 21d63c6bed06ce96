import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { IsolatedVmSandbox, liveIsolateCount, prepareIsolate } from '../../src/sandbox/isolated-vm-sandbox.js';
import { resolveLimits } from '../../src/sandbox/limits.js';
import { failure, ON_PROCESS_POOL, sandbox, value } from './helpers.js';

describe('concurrency (issue 2, point 11)', () => {
  it('maxConcurrency limits how many isolates run at once; further runs queue', async () => {
    const sb = sandbox({ maxConcurrency: 2 });
    let active = 0;
    let maxActive = 0;
    const hostFunctions = {
      enter: () => {
        active++;
        maxActive = Math.max(maxActive, active);
      },
      hold: () => new Promise((r) => setTimeout(r, 60)),
      leave: () => {
        active--;
      },
    };
    const outcomes = await Promise.all(
      Array.from({ length: 6 }, (_, i) => sb.run(`await enter(); await hold(); await leave(); return ${i}`, { hostFunctions })),
    );
    expect(outcomes.map(value)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(maxActive).toBe(2);
    // The last pair waited for two earlier pairs.
    const queued = outcomes.map((o) => o.stats.queuedMs);
    expect(Math.max(...queued)).toBeGreaterThanOrEqual(100);
    expect(queued[0]).toBeLessThan(50);
  });

  it('maxQueuedRuns bounds the queue: a run past it rejects with OVERLOADED', async () => {
    const sb = sandbox({ maxConcurrency: 1, maxQueuedRuns: 1, limits: { timeoutMs: 2_000 } });
    const blocker = new AbortController();
    const running = sb.run('while (true) {}', { signal: blocker.signal });
    const queued = sb.run('return "queued"');
    await expect(sb.run('return "overflow"')).rejects.toMatchObject({ code: 'OVERLOADED' });
    // A run aborted while queued frees its queue place at once.
    const abortQueued = new AbortController();
    const sb2 = sandbox({ maxConcurrency: 1, maxQueuedRuns: 1, limits: { timeoutMs: 2_000 } });
    const blocker2 = new AbortController();
    const running2 = sb2.run('while (true) {}', { signal: blocker2.signal });
    const aborted = sb2.run('return 1', { signal: abortQueued.signal });
    abortQueued.abort();
    expect(failure(await aborted).kind).toBe('aborted');
    const next = sb2.run('return "next"');
    blocker.abort();
    blocker2.abort();
    expect(failure(await running).kind).toBe('aborted');
    expect(failure(await running2).kind).toBe('aborted');
    expect(value(await queued)).toBe('queued');
    expect(value(await next)).toBe('next');
    expect(() => new IsolatedVmSandbox({ maxQueuedRuns: -1 })).toThrow(/maxQueuedRuns/);
  });

  // ProcessSandbox has no own bound by default (its pool's size is the bound): test/sandbox-process.
  it.skipIf(ON_PROCESS_POOL)('defaults to os.availableParallelism() and validates the option', () => {
    expect(sandbox().maxConcurrency).toBe(availableParallelism());
    expect(() => new IsolatedVmSandbox({ maxConcurrency: 0 })).toThrow(/maxConcurrency must be a positive integer/);
    expect(() => new IsolatedVmSandbox({ warmIsolates: -1 })).toThrow(/warmIsolates/);
  });

  it('a CPU-bound run does not block another run from completing', async () => {
    const sb = sandbox({ maxConcurrency: 2, limits: { timeoutMs: 500 } });
    const spinning = sb.run('while (true) {}');
    const started = performance.now();
    expect(value(await sb.run('return "fast"'))).toBe('fast');
    expect(performance.now() - started).toBeLessThan(250);
    expect(failure(await spinning).kind).toBe('timeout');
  });
});

describe('lifecycle', () => {
  it('close() aborts running and queued runs, is idempotent, and later runs reject with CLOSED', async () => {
    const sb = sandbox({ maxConcurrency: 1 });
    const running = sb.run('while (true) {}');
    const queued = sb.run('return 1');
    await new Promise((r) => setTimeout(r, 30));
    await Promise.all([sb.close(), sb.close()]);
    expect(failure(await running).kind).toBe('aborted');
    expect(failure(await queued).kind).toBe('aborted');
    expect(liveIsolateCount()).toBe(0);
    await expect(sb.run('return 1')).rejects.toMatchObject({ code: 'CLOSED' });
  });

  // Prepared isolates are the in-process provider's API; the pool's warm isolates: test/sandbox-process.
  it.skipIf(ON_PROCESS_POOL)('runs on an isolate prepared ahead of time, exactly once', async () => {
    const sb = sandbox();
    const prepared = await sb.prepare();
    expect(liveIsolateCount()).toBe(1);
    expect(value(await sb.run('return await f()', { prepared, hostFunctions: { f: () => 'warm' } }))).toBe('warm');
    expect(liveIsolateCount()).toBe(0);
    await expect(sb.run('return 1', { prepared })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  // Prepared isolates are the in-process provider's API; the pool's warm isolates: test/sandbox-process.
  it.skipIf(ON_PROCESS_POOL)('refuses a prepared isolate with a different memory limit', async () => {
    const sb = sandbox({ limits: { memoryMb: 64 } });
    const prepared = await prepareIsolate(resolveLimits({ memoryMb: 32 }));
    await expect(sb.run('return 1', { prepared })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(liveIsolateCount()).toBe(0);
  });

  // Prepared isolates are the in-process provider's API; the pool's warm isolates: test/sandbox-process.
  it.skipIf(ON_PROCESS_POOL)('an unused prepared isolate can be disposed, idempotently', async () => {
    const prepared = await prepareIsolate(resolveLimits(undefined));
    expect(liveIsolateCount()).toBe(1);
    prepared.dispose();
    prepared.dispose();
    expect(liveIsolateCount()).toBe(0);
  });
});
