/**
 * The pool's hard RSS ceiling: how a busy worker's resident memory is read (Linux: /proc/<pid>/statm, with
 * no cooperation from the worker) and how large it may grow before the parent SIGKILLs it.
 *
 * @module
 */

import { readFileSync } from 'node:fs';

/**
 * With `hardRssMb: 'auto'`, a busy worker may use its idle RSS plus this many times the largest `memoryMb`
 * of its runs in flight, per run slot (`concurrencyPerWorker`), before the parent SIGKILLs it.
 */
export const HARD_RSS_FACTOR = 3;
/** With `hardRssMb: 'auto'`, the ceiling is never below this many MB. */
export const HARD_RSS_FLOOR_MB = 256;
/** How often the parent samples the RSS of busy workers (only while runs are in flight). */
export const RSS_SAMPLE_MS = 25;
const MB = 2 ** 20;
/** Linux: a worker's RSS is read from /proc/<pid>/statm (no cooperation from the worker needed). */
const STATM = process.platform === 'linux';
/** Bytes per page, for statm's page counts: measured against our own RSS once (4 KiB, 16 KiB, 64 KiB). */
const PAGE_SIZE = ((): number => {
  if (!STATM) return 4096;
  try {
    const pages = Number(readFileSync('/proc/self/statm', 'latin1').split(' ')[1]);
    const ratio = process.memoryUsage.rss() / pages;
    return [4096, 16_384, 65_536].reduce((best, size) => (Math.abs(size - ratio) < Math.abs(best - ratio) ? size : best));
  } catch {
    return 4096;
  }
})();

/** A process's resident set size in bytes from /proc, or undefined when it cannot be read (gone, not Linux). */
export function statmRss(pid: number): number | undefined {
  if (!STATM || pid <= 0) return undefined;
  try {
    const pages = Number(readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ')[1]);
    return Number.isFinite(pages) ? pages * PAGE_SIZE : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The hard RSS ceiling (bytes) of a busy worker right now, or undefined for none.
 *
 * @param hardRssMb the pool's setting: a fixed ceiling in MB, `'auto'`, or `null` (off)
 * @param baseRss the worker's idle RSS in bytes (reported when it became ready)
 * @param runMemoryMb the `memoryMb` of each run in flight on it (`null`: a run without a heap limit)
 */
export function hardRssCeiling(hardRssMb: number | 'auto' | null, baseRss: number, runMemoryMb: Iterable<number | null>, concurrencyPerWorker: number): number | undefined {
  if (hardRssMb === null) return undefined;
  if (hardRssMb !== 'auto') return hardRssMb * MB;
  let memoryMb = 0;
  for (const mb of runMemoryMb) {
    // A run without a heap limit has no derived ceiling (set hardRssMb to bound it anyway).
    if (mb === null) return undefined;
    memoryMb = Math.max(memoryMb, mb);
  }
  if (memoryMb === 0) return undefined;
  return Math.max(HARD_RSS_FLOOR_MB * MB, baseRss + HARD_RSS_FACTOR * memoryMb * concurrencyPerWorker * MB);
}

/** What the runs of a worker killed past its ceiling are told. */
export function overCeilingMessage(rssBytes: number, ceilingBytes: number, liveRuns: number): string {
  const whose = liveRuns > 1 ? `one of the ${liveRuns} runs on it` : 'the run';
  return (
    `The sandbox process used ${Math.round(rssBytes / MB)} MB, past its ${Math.round(ceilingBytes / MB)} MB ceiling (hardRssMb); the run was stopped and the process replaced. ` +
    `The code allocates far more than its memory limit allows (${whose} kept allocating while the isolate was being stopped, or outside the JavaScript heap); make it work on less data at once.`
  );
}
