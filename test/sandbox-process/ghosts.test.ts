/**
 * Workers don't keep ghosts (issue 17, defect 4): a worker whose isolate thread is still busy after its run
 * settled (microtasks after the return reached a long built-in) is retired and replaced, like one whose run
 * timed out, and later runs on the pool don't share a core with it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alive, startSandbox, value } from './helpers.js';

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

/**
 * What became of a worker after a run that may have left a ghost thread: killed (the pool retired it),
 * idle (no ghost formed: its thread let go), or still alive and burning a core after 20 s (the defect).
 */
async function ghostOutcome(pid: number): Promise<'killed' | 'no ghost' | 'ghost left alive'> {
  const deadline = performance.now() + 20_000;
  while (performance.now() < deadline) {
    if (!alive(pid)) return 'killed';
    let cpu: number;
    try {
      cpu = await cpuSecondsPerSecond(pid);
    } catch {
      return 'killed'; // it ended while we sampled it
    }
    if (cpu < 0.2 && alive(pid)) return 'no ghost';
  }
  return alive(pid) ? 'ghost left alive' : 'killed';
}

describe('ghost isolate threads', () => {
  it('a worker whose isolate thread outlives an ok run is retired and replaced; the next run is not slowed by it', async () => {
    const sb = await startSandbox({ standbyWorkers: 0, limits: { timeoutMs: 20_000 } });
    // Warm up, then measure one run of plain work on a quiet worker.
    value(await sb.run(WORK));
    let started = performance.now();
    value(await sb.run(WORK));
    const quietMs = performance.now() - started;

    // Whether the ghost forms depends on the guest's reactions running before the isolate is disposed,
    // which a machine busy with other test files can reorder (measured once in a full CI run: the worker
    // sat idle, 0.01 s of CPU per second). So: try up to four times. The property that must hold every
    // time is that no worker is left alive burning a core; at least one attempt must show the kill.
    let ghostPid: number | undefined;
    const outcomes: string[] = [];
    for (let attempt = 0; attempt < 4 && !outcomes.includes('killed'); attempt++) {
      await sb.pool.ready();
      const [pid] = sb.pool.stats().pids;
      // The run itself succeeds: the result is out before the built-in starts.
      expect(value(await sb.run(GHOST, { hostFunctions }))).toBe(1);
      const outcome = await ghostOutcome(pid!);
      outcomes.push(outcome);
      expect(outcome, `attempt ${attempt + 1}: the worker's isolate thread kept running and nobody retired it`).not.toBe('ghost left alive');
      if (outcome === 'killed') ghostPid = pid;
    }
    expect(outcomes, 'the ghost thread never formed, so the kill could not be shown').toContain('killed');
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
  }, 150_000);

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
