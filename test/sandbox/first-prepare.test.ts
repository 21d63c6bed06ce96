/**
 * The process's first isolate compiles the bootstrap without a code cache (15-35 ms here). That work runs on
 * the isolate's thread, so this thread's event loop keeps turning meanwhile: `codemode serve --stdio`
 * prepares its warm isolate at start-up, and a blocked loop delayed the answer to `initialize` by that much.
 * Checked in a fresh process (the code cache is per process), by counting event-loop turns during it.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SOURCE_EXEC_ARGV } from '../../src/sandbox/process/pool.js';

const fixture = fileURLToPath(new URL('../fixtures/first-prepare.ts', import.meta.url));

describe('the first isolate of a process', () => {
  it('is prepared without blocking the event loop for the uncached bootstrap compile', () => {
    const run = spawnSync(process.execPath, [...SOURCE_EXEC_ARGV, fixture], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    const { turns, ms } = JSON.parse(run.stdout.trim()) as { turns: number; ms: number };
    expect(ms).toBeGreaterThan(0);
    // A synchronous compile gives 0 or 1 turn; the loop turns many times while the isolate's thread works,
    // and at least twice on a machine whose CPUs are busy with other work (a CI run beside other jobs
    // measured 2).
    expect(turns).toBeGreaterThanOrEqual(2);
  });
});
