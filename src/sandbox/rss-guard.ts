/**
 * The host RSS guard, shared by every in-process sandbox of this process (RSS is per process): V8 lets a
 * heap overshoot its limit while isolated-vm stops the isolate, so while runs are in flight RSS is sampled,
 * and past the budget of the runs in flight every one of them is stopped (see `IsolatedVmSandboxOptions.rssGuard`).
 *
 * @module
 */

import { createLogger } from '../log.js';

const log = createLogger('sandbox');

const RSS_SAMPLE_MS = 25;
const RSS_FLOOR_BYTES = 128 * 2 ** 20;
const RSS_FACTOR = 3;

interface RssWatch {
  /** Bytes this run may add to the process's RSS; Infinity for a run without a memory limit. */
  budget: number;
  stop(): void;
}

const rssWatches = new Set<RssWatch>();
let rssBase = 0;
let rssTimer: NodeJS.Timeout | undefined;

function sampleRss(): void {
  let budget = RSS_FLOOR_BYTES;
  for (const w of rssWatches) budget += w.budget;
  const rss = process.memoryUsage.rss();
  if (rss - rssBase <= budget) return;
  log.warn('host RSS grew past the budget of the runs in flight; stopping them', {
    rssMb: Math.round(rss / 2 ** 20),
    baseMb: Math.round(rssBase / 2 ** 20),
    budgetMb: Math.round(budget / 2 ** 20),
    runs: rssWatches.size,
  });
  for (const w of [...rssWatches]) w.stop();
}

/** Watches host RSS while the run is in flight; returns the function that ends the watch. */
export function watchRss(memoryMb: number | null, stop: () => void): () => void {
  const watch: RssWatch = { budget: memoryMb === null ? Number.POSITIVE_INFINITY : RSS_FACTOR * memoryMb * 2 ** 20, stop };
  if (rssWatches.size === 0) {
    rssBase = process.memoryUsage.rss();
    rssTimer = setInterval(sampleRss, RSS_SAMPLE_MS);
    rssTimer.unref();
  }
  rssWatches.add(watch);
  return () => {
    rssWatches.delete(watch);
    if (rssWatches.size === 0 && rssTimer !== undefined) {
      clearInterval(rssTimer);
      rssTimer = undefined;
    }
  };
}
