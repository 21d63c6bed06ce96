/**
 * Workers don't keep ghosts (issue 17, defect 4): a worker whose isolate thread is still busy after its run
 * settled (microtasks after the return reached a long built-in) is retired and replaced, like one whose run
 * timed out, and later runs on the pool don't share a core with it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alive, startSandbox, value, waitFor } from './helpers.js';

// Runs after an awaited host call (so the run settles in a later task of the isolate, while the host already
// waits for its result), and three reactions after the return, so the result is out before the built-in starts.
// lastIndexOf over 2^53 indices never checks for termination: only the end of the process stops it.
const GHOST =
  'await slow(); Promise.resolve().then(() => 0).then(() => 0).then(() => 0).then(() => Array.prototype.lastIndexOf.call({ length: 2 ** 53 }, 1)); return 1;';
const hostFunctions = { slow: () => new Promise((resolve) => setTimeout(() => resolve(1), 5)) };
/** Roughly 100-300 ms of pure JavaScript on this machine when it has a core to itself. */
const WORK = 'let x = 0; for (let i = 0; i < 3e7; i++) x = (x + i) % 1000003; return x';

/** CPU time (user + system) the process uses per wall-clock second, over one second, from /proc. */
async function cpuSecondsPerSecond(pid: number): Promise<number> {
  const ticks = () => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  };
  const before = ticks();
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  return (ticks() - before) / 100;
}

describe('ghost isolate threads', () => {
  it('a worker whose isolate thread outlives an ok run is retired and replaced; the next run is not slowed by it', async () => {
    const sb = await startSandbox({ standbyWorkers: 0, limits: { timeoutMs: 20_000 } });
    // Warm up, then measure one run of plain work on a quiet worker.
    value(await sb.run(WORK));
    let started = performance.now();
    value(await sb.run(WORK));
    const quietMs = performance.now() - started;

    const [ghostPid] = sb.pool.stats().pids;
    // The run itself succeeds: the result is out before the built-in starts.
    expect(value(await sb.run(GHOST, { hostFunctions }))).toBe(1);
    // The worker notices its thread did not let go (500 ms after disposal) and the pool SIGKILLs it. The
    // margin is for a machine busy with other test files; a worker still alive then must at least not be
    // burning a core (a ghost nobody retired would).
    try {
      await waitFor(() => !alive(ghostPid!), 20_000, 'the worker with the ghost thread to be killed');
    } catch (err) {
      const burning = cpuSecondsPerSecond(ghostPid!);
      throw new Error(`${String(err)}; it used ${(await burning).toFixed(2)} s of CPU per second meanwhile`, { cause: err });
    }
    expect(sb.pool.stats().recycled).toBe(1);

    await sb.pool.ready();
    const [nextPid] = sb.pool.stats().pids;
    expect(nextPid).not.toBe(ghostPid);
    started = performance.now();
    value(await sb.run(WORK));
    const afterMs = performance.now() - started;
    // With the ghost alive the run shares its cores with a thread that never ends (112 -> 667 ms in the
    // issue). The bound is loose for a loaded machine; the kill above is the real assertion.
    expect(afterMs).toBeLessThan(Math.max(4 * quietMs, 2_000));
  }, 60_000);

  it('ordinary runs, including ones that log and call the host after awaits, retire no worker', async () => {
    const sb = await startSandbox({ standbyWorkers: 0 });
    const [pid] = sb.pool.stats().pids;
    for (let i = 0; i < 20; i++) {
      expect(
        value(await sb.run('const a = await slow(); console.log(a); Promise.resolve().then(() => 0); return a + 1;', { hostFunctions })),
      ).toBe(2);
    }
    // Longer than the 500 ms a disposed isolate's thread gets to let go.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect(sb.pool.stats().recycled).toBe(0);
    expect(sb.pool.stats().pids).toEqual([pid]);
  });
});
