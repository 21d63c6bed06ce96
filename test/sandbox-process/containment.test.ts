import { describe, expect, it } from 'vitest';
import { ProcessPool } from '../../src/sandbox/process/pool.js';
import type { HostCallContext } from '../../src/sandbox/types.js';
import { alive, failure, latch, startSandbox, value, waitFor } from './helpers.js';

type Started = Awaited<ReturnType<typeof startSandbox>>;

/**
 * Starts `await ping(); for (;;) {}` on the pool's first worker and SIGSTOPs that worker from inside the host
 * call, before it gets the answer (neither its isolate timer nor anything else runs). Resolves once stopped.
 */
async function runThenStopWorker(sb: Started, signal?: AbortSignal): Promise<{ pid: number; running: ReturnType<Started['run']> }> {
  const [pid] = sb.pool.stats().pids;
  const inHost = latch();
  const running = sb.run('await ping(); for (;;) {}', {
    ...(signal !== undefined ? { signal } : {}),
    hostFunctions: {
      ping: () => {
        process.kill(pid!, 'SIGSTOP');
        inHost.open();
        return 1;
      },
    },
  });
  await inHost.promise;
  return { pid: pid!, running };
}

describe('a worker dying mid-run (issue 8, containment)', () => {
  it.each(['SIGKILL', 'SIGSEGV', 'SIGABRT'] as const)('%s: that run fails as crashed, the next succeeds, the pool is full again', async (sig) => {
    const sb = await startSandbox({ size: 1, standbyWorkers: 1 });
    const [pid] = sb.pool.stats().pids;
    const inHost = latch();
    let hostSignal: AbortSignal | undefined;
    const running = sb.run('await hang()', {
      hostFunctions: {
        hang: (_args: unknown[], ctx: HostCallContext) => {
          hostSignal = ctx.signal;
          inHost.open();
          return new Promise(() => undefined);
        },
      },
    });
    await inHost.promise;
    process.kill(pid!, sig);
    const error = failure(await running);
    expect(error.kind).toBe('crashed');
    expect(error.message).toContain(`signal ${sig}`);
    expect(error.message).toMatch(/run the code again/);
    // The dead worker's pending host call learns its run is over.
    expect(hostSignal?.aborted).toBe(true);
    // The standby took over at once: the next run needs no process start.
    expect(value(await sb.run('return 1 + 1'))).toBe(2);
    const stats = sb.pool.stats();
    expect(stats.pids).toHaveLength(1);
    expect(stats.pids[0]).not.toBe(pid);
    expect(stats.crashed).toBe(1);
    expect(stats.lastRecoveryMs).toBeLessThan(50);
    expect(alive(pid!)).toBe(false);
    // A new standby is started in the background.
    await waitFor(() => sb.pool.stats().standby === 1, 20_000, 'a new standby worker');
  });

  it('a crash fails only the runs on that worker; runs on other workers are unaffected', async () => {
    const sb = await startSandbox({ size: 2, standbyWorkers: 0 });
    const bothIn = { a: latch(), b: latch() };
    const release = latch();
    const hostFunctions = {
      enter: ([who]: unknown[]) => {
        bothIn[who as 'a' | 'b'].open();
        return release.promise.then(() => who);
      },
    };
    const a = sb.run('return await enter("a")', { hostFunctions });
    const b = sb.run('console.log("b here"); return await enter("b")', { hostFunctions });
    await Promise.all([bothIn.a.promise, bothIn.b.promise]);
    const [victim, survivor] = sb.pool.stats().pids;
    expect(survivor).toBeDefined();
    process.kill(victim!, 'SIGKILL');
    await waitFor(() => !sb.pool.stats().pids.includes(victim!), 5_000, 'the victim to be noticed');
    release.open();
    const outcomes = await Promise.all([a, b]);
    const kinds = outcomes.map((o) => (o.ok ? 'ok' : o.error.kind)).sort();
    expect(kinds).toEqual(['crashed', 'ok']);
    const ok = outcomes.find((o) => o.ok)!;
    expect(ok.logs.length === 0 || ok.logs[0]?.message === 'b here').toBe(true);
    expect(alive(survivor!)).toBe(true);
    // The pool starts a replacement (no standby configured here) and serves again.
    await sb.pool.ready();
    expect(value(await sb.run('return "after"'))).toBe('after');
  });

  it('a host call answered after its worker died goes nowhere and breaks nothing', async () => {
    const sb = await startSandbox();
    const [pid] = sb.pool.stats().pids;
    const inHost = latch();
    const answer = latch();
    const running = sb.run('return await slow()', {
      hostFunctions: {
        slow: async () => {
          inHost.open();
          await answer.promise;
          return { late: true };
        },
      },
    });
    await inHost.promise;
    process.kill(pid!, 'SIGKILL');
    expect(failure(await running).kind).toBe('crashed');
    answer.open();
    await new Promise((r) => setTimeout(r, 20));
    expect(value(await sb.run('return 3'))).toBe(3);
  });
});

describe('signals to the process group (issue 8, shutdown)', () => {
  it('a worker outlives SIGINT and SIGTERM (Ctrl-C, a service manager): its run finishes', async () => {
    const sb = await startSandbox();
    const [pid] = sb.pool.stats().pids;
    const inHost = latch();
    const release = latch();
    const running = sb.run('const v = await hold(); return v + 1', {
      hostFunctions: {
        hold: async () => {
          inHost.open();
          await release.promise;
          return 41;
        },
      },
    });
    await inHost.promise;
    process.kill(pid!, 'SIGINT');
    process.kill(pid!, 'SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    release.open();
    expect(value(await running)).toBe(42);
    expect(alive(pid!)).toBe(true);
    expect(sb.pool.stats().crashed).toBe(0);
  });
});

describe('the parent enforces the wall clock (issue 8, hard limits from outside)', () => {
  it('a worker hung in native code (SIGSTOP) is SIGKILLed at limit + grace and replaced', async () => {
    const LIMIT_MS = 300;
    const GRACE_MS = 300;
    const sb = await startSandbox({ limits: { timeoutMs: LIMIT_MS }, killGraceMs: GRACE_MS });
    const started = performance.now();
    const { pid, running } = await runThenStopWorker(sb);
    const error = failure(await running);
    const elapsed = performance.now() - started;
    expect(error.kind).toBe('timeout');
    expect(error.message).toMatch(/300 ms time limit and its sandbox process stopped responding for 300 ms more, so the process was killed and replaced/);
    expect(elapsed).toBeGreaterThanOrEqual(LIMIT_MS + GRACE_MS - 5);
    expect(elapsed).toBeLessThan(LIMIT_MS + GRACE_MS + 500);
    await waitFor(() => !alive(pid), 5_000, 'the stopped worker to be killed');
    expect(value(await sb.run('return "next"'))).toBe('next');
    expect(sb.pool.stats().pids).not.toContain(pid);
  });

  it('a silent worker is killed after hangTimeoutMs even when the run has no time limit', async () => {
    const sb = await startSandbox({ limits: { timeoutMs: null }, hangTimeoutMs: 600 });
    const started = performance.now();
    const { pid, running } = await runThenStopWorker(sb);
    const error = failure(await running);
    expect(error.kind).toBe('crashed');
    expect(error.message).toMatch(/stopped responding \(no sign of life for \d+ ms: stuck in native code\)/);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(600);
    expect(elapsed).toBeLessThan(600 + 1_000);
    await waitFor(() => !alive(pid), 5_000, 'the stopped worker to be killed');
    expect(value(await sb.run('return "next"'))).toBe('next');
    expect(() => new ProcessPool({ hangTimeoutMs: 100 })).toThrow(/hangTimeoutMs must be at least/);
  });

  it('aborting a run on a hung worker settles as aborted after the grace and kills the worker', async () => {
    const sb = await startSandbox({ limits: { timeoutMs: 20_000 }, killGraceMs: 200 });
    const controller = new AbortController();
    const { pid, running } = await runThenStopWorker(sb, controller.signal);
    const started = performance.now();
    controller.abort();
    expect(failure(await running).kind).toBe('aborted');
    expect(performance.now() - started).toBeLessThan(200 + 300);
    await waitFor(() => !alive(pid), 5_000, 'the stopped worker to be killed');
  });

  it('a run on a healthy worker is aborted by the worker itself, fast', async () => {
    const sb = await startSandbox();
    const controller = new AbortController();
    const running = sb.run('while (true) {}', { signal: controller.signal });
    await new Promise((r) => setTimeout(r, 50));
    const [pid] = sb.pool.stats().pids;
    const started = performance.now();
    controller.abort();
    expect(failure(await running).kind).toBe('aborted');
    expect(performance.now() - started).toBeLessThan(100);
    // The worker that had to stop a run is replaced (its thread could still be inside a built-in), as a
    // recycle, not a crash.
    await waitFor(() => !alive(pid!), 5_000, 'the worker that stopped a run to exit');
    expect(sb.pool.stats()).toMatchObject({ crashed: 0, recycled: 1 });
    expect(value(await sb.run('return 1'))).toBe(1);
  });

  it('a run stopped inside a long built-in cannot keep its thread busy: that worker is killed and replaced', async () => {
    const sb = await startSandbox({ size: 1, standbyWorkers: 1, limits: { timeoutMs: 300 } });
    const [pid] = sb.pool.stats().pids;
    // V8 checks for termination only between JavaScript steps; this one builtin call would run for hours.
    const outcome = await sb.run('return Array.prototype.lastIndexOf.call({ length: 2 ** 53 - 1 }, 1)');
    expect(failure(outcome).kind).toBe('timeout');
    await waitFor(() => !alive(pid!), 5_000, 'the worker with the runaway thread to be killed');
    expect(value(await sb.run('return 2'))).toBe(2);
    expect(sb.pool.stats().pids).not.toContain(pid);
  });
});
