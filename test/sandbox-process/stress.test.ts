import { describe, expect, it } from 'vitest';
import { ProcessSandbox } from '../../src/sandbox/process/process-sandbox.js';
import type { HostCallContext, RunOutcome } from '../../src/sandbox/types.js';
import { startPool } from './helpers.js';

const RUNS = 200;
const BOUND_MS = 90_000;

type Expect = { ok: unknown } | { kind: string };

describe('200 mixed runs with random worker kills (issue 8)', () => {
  it('every run gets exactly one outcome, nothing hangs, and the pool ends at full strength', { timeout: BOUND_MS + 30_000 }, async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    const pool = await startPool({ size: 2, concurrencyPerWorker: 2, standbyWorkers: 1, killGraceMs: 500 });
    const normal = new ProcessSandbox({ pool, limits: { timeoutMs: 10_000 } });
    const short = new ProcessSandbox({ pool, limits: { timeoutMs: 150 } });
    const calls: { signal: AbortSignal; done: boolean }[] = [];
    const track = (ctx: HostCallContext): { done: boolean } => {
      const call = { signal: ctx.signal, done: false };
      calls.push(call);
      return call;
    };
    const hostFunctions = {
      echo: ([x]: unknown[], ctx: HostCallContext) => {
        track(ctx).done = true;
        return x;
      },
      sleep: async ([ms]: unknown[], ctx: HostCallContext) => {
        const call = track(ctx);
        await new Promise((r) => setTimeout(r, ms as number));
        call.done = true;
      },
    };
    const jobs: { expect: Expect; settled: number; outcome?: RunOutcome }[] = [];
    const promises: Promise<void>[] = [];
    let killer: NodeJS.Timeout | undefined;
    try {
      for (let i = 0; i < RUNS; i++) {
        let run: Promise<RunOutcome>;
        let expected: Expect;
        switch (i % 6) {
          case 0:
            run = normal.run(`return ${i}`);
            expected = { ok: i };
            break;
          case 1:
            run = normal.run(`return await echo({ i: ${i} })`, { hostFunctions });
            expected = { ok: { i } };
            break;
          case 2:
            run = normal.run(`throw new TypeError("bad ${i}")`);
            expected = { kind: 'runtime' };
            break;
          case 3:
            run = normal.run(`console.log("line", ${i}); return "logged"`);
            expected = { ok: 'logged' };
            break;
          case 4:
            run = normal.run(`await sleep(20); return ${i} * 2`, { hostFunctions });
            expected = { ok: i * 2 };
            break;
          default:
            run = short.run('while (true) {}');
            expected = { kind: 'timeout' };
        }
        const job: (typeof jobs)[number] = { expect: expected, settled: 0 };
        jobs.push(job);
        promises.push(
          run.then(
            (outcome) => {
              job.settled++;
              job.outcome = outcome;
            },
            (err: unknown) => {
              job.settled++;
              job.outcome = { ok: false, error: { kind: 'internal', message: `rejected: ${String(err)}` }, logs: [], stats: {} as never };
            },
          ),
        );
      }
      // Kill a random serving worker now and then while work is still queued (so the victim is busy).
      let kills = 0;
      const killed = new Set<number>();
      killer = setInterval(() => {
        const { pids, queued, ready } = pool.stats();
        // Only ready workers: killing starting ones would be testing start-up failures instead.
        if (kills >= 8 || queued === 0 || ready < 2) return;
        // A killed worker stays in the list until its exit is seen: never count one twice.
        const candidates = pids.filter((pid) => !killed.has(pid));
        if (candidates.length === 0) return;
        const victim = candidates[Math.floor(Math.random() * candidates.length)]!;
        killed.add(victim);
        try {
          process.kill(victim, kills % 2 === 0 ? 'SIGKILL' : 'SIGSEGV');
          kills++;
        } catch {
          /* it just exited */
        }
      }, 150);
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(promises),
        new Promise((_, reject) => {
          bound = setTimeout(() => reject(new Error(`runs still unsettled after ${BOUND_MS} ms: ${jobs.filter((j) => j.settled === 0).length}`)), BOUND_MS);
        }),
      ]).finally(() => clearTimeout(bound));
      clearInterval(killer);

      expect(kills).toBeGreaterThan(0);
      let crashed = 0;
      for (const [i, job] of jobs.entries()) {
        expect(job.settled, `run ${i} settled`).toBe(1);
        const outcome = job.outcome!;
        if (!outcome.ok && outcome.error.kind === 'crashed') {
          crashed++;
          continue;
        }
        if ('ok' in job.expect) {
          expect(outcome.ok ? { value: outcome.value } : outcome.error, `run ${i}`).toEqual({ value: job.expect.ok });
          if (i % 6 === 3) expect(outcome.logs).toEqual([{ level: 'log', message: `line ${i}` }]);
        } else {
          expect(outcome.ok ? 'ok' : `${outcome.error.kind}: ${outcome.error.message}`, `run ${i}`).toMatch(new RegExp(`^${job.expect.kind}:`));
        }
      }
      expect(crashed).toBeGreaterThan(0);
      // Every kill counted; under heavy load the parent may also have killed a worker whose run overran.
      expect(pool.stats().crashed).toBeGreaterThanOrEqual(kills);
      // No host call of a dead worker's run is left hanging: each finished or had its signal aborted.
      for (const call of calls) expect(call.done || call.signal.aborted).toBe(true);
      await pool.ready();
      expect(pool.stats()).toMatchObject({ ready: 2, standby: 1, running: 0, queued: 0 });
      expect(unhandled).toEqual([]);
    } finally {
      clearInterval(killer);
      process.off('unhandledRejection', onUnhandled);
      await Promise.all([normal.close(), short.close()]);
    }
  });
});
