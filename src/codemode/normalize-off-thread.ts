/**
 * Code normalization in a worker thread, for `execute`. Parsing and TypeScript stripping of submitted code
 * cost the main thread up to seconds on hostile inputs (acorn takes ~0.5 s for 100,000 backticks; amaro's
 * reload after a trap ~100 ms); in a worker they cost other sessions nothing. One worker serves one request at
 * a time (there are `NORMALIZE_WORKERS`); one that takes longer than `NORMALIZE_TIMEOUT_MS` is ended and replaced.
 *
 * @module
 */

import { Worker } from 'node:worker_threads';
import { normalizeJavaScript, withPositions } from './normalize.js';
import type { NormalizedCode, NormalizedData } from './normalize.js';

/**
 * Plain JavaScript up to this long is prepared in this thread: parsing 2,000 characters costs at most a few
 * milliseconds whatever their shape, less than the round trip to the worker (~0.3-0.6 ms) plus its queue.
 */
export const IN_THREAD_MAX_CHARS = 2_000;

/** Longest one normalization may take before its worker is ended; 200,000 characters take well under 1 s. */
export const NORMALIZE_TIMEOUT_MS = 10_000;

const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './normalize-worker.ts' : './normalize-worker.js', import.meta.url);

interface Reply {
  id?: number;
  ready?: boolean;
  ok?: boolean;
  data?: NormalizedData;
  message?: string;
  /** The worker's count of discarded stripper instances so far. */
  discarded?: number;
}

/**
 * Normalization failed in the worker: it stopped, or took too long (`kind: 'timeout'`). `execute` reports
 * it as a failed run of that kind, without running the code.
 */
export class NormalizeError extends Error {
  override readonly name = 'NormalizeError';
  readonly kind: 'timeout' | 'internal';

  constructor(kind: 'timeout' | 'internal', message: string) {
    super(message);
    this.kind = kind;
  }
}

const stats = { workersStarted: 0, strippersDiscarded: 0 };

/** Counters for tests and diagnostics: workers started, and broken amaro instances replaced inside them. */
export function offThreadStats(): Readonly<typeof stats> {
  return { ...stats };
}

class NormalizeWorker {
  private worker: Worker | undefined;
  /** The count the current worker reported last, to add only what is new. */
  private discardedSeen = 0;
  private nextId = 0;
  private queue: Promise<unknown> = Promise.resolve();
  /** Requests queued or running on this worker. */
  pending = 0;

  normalize(input: string): Promise<NormalizedData> {
    this.pending++;
    const run = this.queue.then(() => this.send(input)).finally(() => this.pending--);
    // The queue only orders requests; one's failure must not fail the next.
    this.queue = run.catch(() => undefined);
    return run;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_URL);
    worker.unref();
    worker.on('error', () => {}); // a failed start or crash reaches the pending request through 'exit'
    worker.on('exit', () => {
      if (this.worker === worker) this.worker = undefined;
    });
    this.worker = worker;
    this.discardedSeen = 0;
    stats.workersStarted++;
    return worker;
  }

  private send(input: string): Promise<NormalizedData> {
    const worker = this.start();
    const id = ++this.nextId;
    return new Promise<NormalizedData>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        worker.unref();
      };
      const onMessage = (reply: Reply) => {
        if (reply.id !== id) return;
        done();
        if (typeof reply.discarded === 'number') {
          stats.strippersDiscarded += Math.max(0, reply.discarded - this.discardedSeen);
          this.discardedSeen = reply.discarded;
        }
        if (reply.ok === true && reply.data !== undefined) resolve(reply.data);
        else reject(new NormalizeError('internal', `Preparing the code failed: ${reply.message ?? 'no reason given'}.`));
      };
      const onExit = (code: number) => {
        done();
        reject(new NormalizeError('internal', `The worker preparing the code stopped (exit code ${code}). Run the code again.`));
      };
      const timer = setTimeout(() => {
        done();
        if (this.worker === worker) this.worker = undefined;
        void worker.terminate().catch(() => {});
        reject(new NormalizeError('timeout', `Preparing the code (parsing and stripping TypeScript) took longer than ${NORMALIZE_TIMEOUT_MS} ms and was stopped. Send shorter, plainer code.`));
      }, NORMALIZE_TIMEOUT_MS);
      worker.on('message', onMessage);
      worker.on('exit', onExit);
      // Referenced while a request is pending, so a process with nothing else to do waits for the answer.
      worker.ref();
      worker.postMessage({ id, input });
    });
  }
}

/**
 * Workers preparing code. Two, so one slow (hostile) input does not queue everyone else's behind it; the
 * second starts only when the first is busy.
 */
export const NORMALIZE_WORKERS = 2;
const workers: NormalizeWorker[] = [];

/** An idle worker, a new one while under the limit, or else the least busy. */
function pickWorker(): NormalizeWorker {
  const idle = workers.find((w) => w.pending === 0);
  if (idle) return idle;
  if (workers.length < NORMALIZE_WORKERS) {
    const worker = new NormalizeWorker();
    workers.push(worker);
    return worker;
  }
  return workers.reduce((a, b) => (b.pending < a.pending ? b : a));
}

/**
 * `normalizeCode` in a worker thread: the same result, with parsing and stripping off the main thread (short
 * plain JavaScript, the common case, is prepared in this thread).
 *
 * @throws NormalizeError when the worker fails, or takes longer than `NORMALIZE_TIMEOUT_MS` (kind `timeout`).
 */
export async function normalizeCodeOffThread(input: string): Promise<NormalizedCode> {
  const plain = input.length <= IN_THREAD_MAX_CHARS ? normalizeJavaScript(input) : undefined;
  if (plain !== undefined) return withPositions(plain);
  return withPositions(await pickWorker().normalize(input));
}
