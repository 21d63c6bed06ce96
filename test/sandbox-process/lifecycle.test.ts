import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ProcessPool } from '../../src/sandbox/process/pool.js';
import { ProcessSandbox } from '../../src/sandbox/process/process-sandbox.js';
import { alive, failure, startPool, startSandbox, value, waitFor } from './helpers.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

describe('recycling (issue 8, hard limits from outside)', () => {
  it('replaces a worker after maxRunsPerWorker runs', async () => {
    const sb = await startSandbox({ maxRunsPerWorker: 3 });
    const [first] = sb.pool.stats().pids;
    for (let i = 0; i < 3; i++) expect(value(await sb.run(`return ${i}`))).toBe(i);
    // The third run retired it; the standby serves from now on.
    const [second] = sb.pool.stats().pids;
    expect(second).not.toBe(first);
    expect(sb.pool.stats().recycled).toBe(1);
    await waitFor(() => !alive(first!), 5_000, 'the retired worker to exit');
    expect(value(await sb.run('return "still serving"'))).toBe('still serving');
  });

  it('replaces a worker whose RSS passed maxRssMb after its current run', async () => {
    // Any worker is above 1 MB: every run retires its worker, and every run still succeeds.
    const sb = await startSandbox({ maxRssMb: 1 });
    const seen = new Set<number>();
    for (let i = 0; i < 3; i++) {
      seen.add(sb.pool.stats().pids[0]!);
      expect(value(await sb.run('return [1, 2, 3].map((x) => x * 2)'))).toEqual([2, 4, 6]);
      await sb.pool.ready();
    }
    expect(seen.size).toBe(3);
    expect(sb.pool.stats().recycled).toBe(3);
  });
});

describe('warm starts (issue 8)', () => {
  it('every run gets a fresh isolate, even on the same worker', async () => {
    const sb = await startSandbox({ size: 1 });
    const [pid] = sb.pool.stats().pids;
    expect(value(await sb.run('const before = typeof globalThis.leftover; globalThis.leftover = 1; Object.prototype.polluted = 1; return before'))).toBe('undefined');
    expect(value(await sb.run('return [typeof globalThis.leftover, typeof ({}).polluted]'))).toEqual(['undefined', 'undefined']);
    expect(sb.pool.stats().pids).toEqual([pid]);
  });

  it('runs get an isolate prepared ahead of time; the next one is prepared in the background', async () => {
    const sb = await startSandbox({ size: 1 });
    for (let i = 0; i < 4; i++) {
      // Idle time between runs, as model think time gives: the worker prepares the next isolate meanwhile.
      await new Promise((r) => setTimeout(r, 300));
      expect(value(await sb.run('return 1'))).toBe(1);
    }
    expect(sb.pool.stats()).toMatchObject({ warmRuns: 4, coldRuns: 0 });
    // A limit nobody prepared for gets a cold isolate (and the worker warms one for it next time).
    const other = new ProcessSandbox({ pool: sb.pool, limits: { memoryMb: 48 } });
    expect(value(await other.run('return 2'))).toBe(2);
    expect(sb.pool.stats().coldRuns).toBe(1);
    await other.close();
  });

  it('runs with another memory limit than the warm one still work (they prepare their own isolate)', async () => {
    const pool = await startPool({ warmMemoryMb: 100 });
    const small = new ProcessSandbox({ pool, limits: { memoryMb: 16, timeoutMs: 20_000 } });
    const big = new ProcessSandbox({ pool });
    try {
      expect(failure(await small.run('const a = []; while (true) a.push({ x: Math.random() })')).kind).toBe('memory');
      expect(value(await big.run('return 5'))).toBe(5);
      expect(value(await small.run('return 6'))).toBe(6);
    } finally {
      await Promise.all([small.close(), big.close()]);
    }
    // Sandboxes on a shared pool leave it open.
    expect(pool.closed).toBe(false);
    expect(pool.stats().ready).toBe(1);
  });
});

describe('configuration and shutdown (issue 8)', () => {
  it('rejects bad pool options as INVALID_CONFIG', () => {
    expect(() => new ProcessPool({ size: 0 })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(() => new ProcessPool({ concurrencyPerWorker: 1.5 })).toThrow(/concurrencyPerWorker/);
    expect(() => new ProcessPool({ maxRssMb: -1 })).toThrow(/maxRssMb/);
    expect(() => new ProcessSandbox({ maxConcurrency: 0, pool: {} as ProcessPool })).toThrow(/maxConcurrency/);
  });

  it('per-worker concurrency runs several runs on one worker at once', async () => {
    const sb = await startSandbox({ size: 1, concurrencyPerWorker: 3 });
    let inFlight = 0;
    let peak = 0;
    const hostFunctions = {
      wait: async () => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 100));
        inFlight--;
      },
    };
    const outcomes = await Promise.all([1, 2, 3, 4].map((i) => sb.run(`await wait(); return ${i}`, { hostFunctions })));
    expect(outcomes.map(value)).toEqual([1, 2, 3, 4]);
    expect(peak).toBe(3);
    expect(sb.pool.stats().pids).toHaveLength(1);
  });

  it('close() aborts queued and running runs, stops every worker, and is idempotent', async () => {
    const sb = new ProcessSandbox({ size: 1, standbyWorkers: 1, killGraceMs: 500 });
    await sb.ready();
    const pids = sb.pool.allPids();
    expect(pids).toHaveLength(2);
    const running = sb.run('while (true) {}');
    const queued = sb.run('return 1');
    await new Promise((r) => setTimeout(r, 30));
    await Promise.all([sb.close(), sb.close()]);
    expect(failure(await running).kind).toBe('aborted');
    expect(failure(await queued).kind).toBe('aborted');
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(sb.pool.allPids()).toEqual([]);
    await expect(sb.run('return 1')).rejects.toMatchObject({ code: 'CLOSED' });
    await sb.close();
  });

  it('workers get no credentials from the environment', async () => {
    process.env.CODEMODE_TEST_SECRET_TOKEN = 'hunter2';
    try {
      const sb = await startSandbox();
      const outcome = await sb.run('return 1');
      expect(value(outcome)).toBe(1);
      const [pid] = sb.pool.stats().pids;
      const { readFileSync } = await import('node:fs');
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      expect(environ).not.toContain('hunter2');
    } finally {
      delete process.env.CODEMODE_TEST_SECRET_TOKEN;
    }
  });

  // `npm test` builds before vitest: the built package must find its worker next to itself.
  it.skipIf(!existsSync(resolve(root, 'dist/sandbox/process/worker.js')))('runs from the built dist/ as well', async () => {
    const mod = (await import(resolve(root, 'dist/index.js'))) as { ProcessSandbox: typeof ProcessSandbox };
    const sb = new mod.ProcessSandbox({ size: 1, standbyWorkers: 0 });
    try {
      expect(value(await sb.run('return await twice(21)', { hostFunctions: { twice: ([n]) => (n as number) * 2 } }))).toBe(42);
    } finally {
      await sb.close();
    }
  });
});
