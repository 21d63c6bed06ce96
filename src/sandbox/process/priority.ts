/**
 * Lowers the CPU priority of a sandbox worker process, all of its threads included.
 *
 * Guest code is the one thing in a server that can burn CPU at will. With the workers niced, the
 * parent's event loop (which every session shares) and the upstream servers win the CPU whenever the
 * machine is contended, and a spinning guest only slows other guests. On an idle machine nice changes
 * nothing.
 *
 * On Linux a nice value belongs to a thread, not a process, and new threads inherit their creator's: the
 * worker lowers every thread it already has (from /proc/self/task) as its first act, so the threads it
 * creates later (isolate threads, the libuv pool) start low too. Elsewhere it lowers the process.
 *
 * @module
 */

import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/**
 * Sets the nice value of this process's threads to at least `nice` (never raises a priority: that needs
 * privileges). Returns how many threads were lowered; failures are not fatal and count as 0.
 */
export function lowerOwnPriority(nice: number): number {
  const ids = threadIds();
  let lowered = 0;
  for (const id of ids) {
    try {
      if (getPriority(id) < nice) {
        setPriority(id, nice);
        lowered++;
      }
    } catch {
      // The thread ended meanwhile, or the platform refuses: the worker still works, at normal priority.
    }
  }
  return lowered;
}

function threadIds(): number[] {
  if (process.platform === 'linux') {
    try {
      // A process has a few dozen threads; the bound is a guard, not a limit anyone meets.
      return readdirSync('/proc/self/task')
        .slice(0, 1_000)
        .map(Number)
        .filter((n) => Number.isInteger(n) && n > 0);
    } catch {
      // No procfs: fall through to the process itself.
    }
  }
  return [process.pid];
}
