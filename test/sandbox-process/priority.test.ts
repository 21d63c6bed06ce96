/**
 * Guest code yields the CPU to the server (issue 17): sandbox workers run niced, every thread included,
 * the isolate threads that a run creates too. Linux only: elsewhere the nice value is per process and
 * there is no /proc to read it from.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ProcessPool } from '../../src/sandbox/process/pool.js';
import { latch, startSandbox, value } from './helpers.js';

/** The nice value of each thread of `pid` (field 19 of /proc/<pid>/task/<tid>/stat). */
function threadNice(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    try {
      return [Number(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16])];
    } catch {
      return []; // the thread ended while we read
    }
  });
}

/** Threads of the test process itself, for the control case. */
const ownNice = threadNice(process.pid);

describe.runIf(process.platform === 'linux')('sandbox worker priority', () => {
  it('runs every worker thread at the nice value it is given, isolate threads created by a run included', async () => {
    expect(Math.max(...ownNice)).toBeLessThan(10);
    const sb = await startSandbox({ nice: 10 });
    const inRun = latch();
    const seen: number[][] = [];
    const run = sb.run('await started(); const t = Date.now(); while (Date.now() - t < 300) {} return 1;', {
      hostFunctions: {
        started: () => {
          inRun.open();
          return null;
        },
      },
    });
    await inRun.promise;
    for (const pid of sb.pool.stats().pids) seen.push(threadNice(pid));
    expect(value(await run)).toBe(1);
    expect(seen.length).toBeGreaterThan(0);
    for (const threads of seen) {
      // Node's own threads (V8 platform, libuv) plus the isolate's: a dozen or more.
      expect(threads.length).toBeGreaterThan(4);
      expect(Math.min(...threads)).toBe(10);
    }
  });

  it('leaves the priority alone by default and with nice: null, and refuses nonsense', async () => {
    for (const options of [{}, { nice: null }]) {
      const sb = await startSandbox(options);
      const pids = sb.pool.stats().pids;
      expect(pids.length).toBeGreaterThan(0);
      for (const pid of pids) expect(Math.max(...threadNice(pid))).toBeLessThan(10);
    }
    expect(() => new ProcessPool({ nice: 20 })).toThrow(/nice must be an integer from 0 to 19/);
    expect(() => new ProcessPool({ nice: -5 })).toThrow(/nice must be an integer from 0 to 19/);
  });
});
