/**
 * The protocol between a `ProcessPool` and its worker processes. Messages travel as newline-delimited JSON
 * over the worker's fd 3 (line-channel.ts), so every field is plain JSON.
 *
 * The parent keeps the host functions: a worker knows only their paths and names, and relays each guest
 * call back as a `call` message. Workers therefore hold no credentials and no connections.
 *
 * @module
 */

import type { HostErrorDescription } from '../host-functions.js';
import type { RunOutcome, SandboxLimits } from '../types.js';

/** A host error as it crosses to the worker: what `IsolatedVmSandbox` copies into the guest. */
export type WireHostError = HostErrorDescription;

/** Parent -> worker. */
export type ToWorker =
  | {
      t: 'run';
      id: number;
      code: string;
      limits: SandboxLimits;
      /** Paths of the host functions (namespaces first), in index order. */
      paths: string[][];
      errorClasses: string[];
    }
  | { t: 'abort'; id: number }
  /**
   * The first message on a channel: the worker sends nothing before it. A launcher that started the worker
   * held the same socket end until the pool acknowledged it, and a read there would lose the message.
   */
  | { t: 'hello' }
  /**
   * The answer to a `call`: plain data travels as `value` (the channel's own JSON copy is then the only one
   * the parent makes); anything else as `json`, the JSON text of the checked copy. Neither for `undefined`.
   */
  | { t: 'reply'; call: number; ok: true; value?: unknown; json?: string }
  | { t: 'reply'; call: number; ok: false; error: WireHostError };

/** Worker -> parent. */
export type FromWorker =
  /** Sent once, after isolated-vm loaded and the first warm isolate is prepared. */
  | { t: 'ready'; rss: number }
  /**
   * Sent every `HEARTBEAT_MS`: the worker's main thread is turning (guest code runs on other threads).
   * `rss` (bytes) is the parent's fallback for the hard RSS ceiling where it cannot read `/proc/<pid>/statm`.
   */
  | { t: 'beat'; rss: number }
  | { t: 'call'; id: number; call: number; fn: number; args: unknown[] }
  /**
   * A run settled. `rss` is the worker's resident set size in bytes right after it; `warm` says whether the
   * run got an isolate prepared ahead of time; `catastrophic` is the worker's `catastrophicErrorCount()`
   * (above 0: V8 left a parked thread and heap behind, so the parent recycles the worker).
   */
  | { t: 'done'; id: number; outcome: RunOutcome; rss: number; warm: boolean; catastrophic: number }
  /** `run()` rejected in the worker (a host-side error such as invalid arguments), with its code. */
  | { t: 'failed'; id: number; code: string; message: string; rss: number; catastrophic: number }
  /**
   * An isolate's thread was still running well after its run settled and the isolate was disposed (a long
   * built-in reached by microtasks after the return): it burns a core until the process ends, so the parent
   * retires this worker. `threads` is how many such threads the worker has now.
   */
  | { t: 'ghost'; threads: number };

/** How often a worker reports that its main thread is alive. */
export const HEARTBEAT_MS = 250;

/** Startup configuration, passed to the worker as its single argv entry (JSON). */
export interface WorkerConfig {
  /** Memory limit of the isolate kept warm before the first run (`null`: isolated-vm's unlimited stand-in). */
  warmMemoryMb: number | null;
  /** Nice value the worker sets on all its threads at start (`null`: leave its priority alone). */
  nice?: number | null;
}
