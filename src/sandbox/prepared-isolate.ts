/**
 * Prepared isolates: a fresh V8 isolate whose context already ran the bootstrap (bootstrap.ts), with the
 * host bridges wired to the handlers in guest-bridge.ts. Creating one is the expensive part of a run, so it is
 * a step of its own: the sandbox keeps warm spares, and a process pool prepares them ahead of time.
 *
 * Also the process-wide accounting of live isolates and catastrophic errors.
 *
 * @module
 */

import ivm from 'isolated-vm';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { BOOTSTRAP_FILENAME, BOOTSTRAP_SOURCE } from './bootstrap.js';
import { answerGuestCall, logFromGuest, timerFromGuest } from './guest-bridge.js';
import { bag } from './run-state.js';
import type { RunState } from './run-state.js';
import { watchRelease } from './threads.js';
import type { SandboxLimits } from './types.js';

const log = createLogger('sandbox');

/**
 * Heap size used when `memoryMb` is `null`. isolated-vm always needs some limit; this one is far above
 * anything a code-mode script needs, so in practice it means "no sandbox-imposed cap".
 */
export const UNLIMITED_MEMORY_MB = 4096;

// ---------------------------------------------------------------------------------------------------------
// Live isolate accounting (hygiene tests assert on it)

/** Every isolate not yet disposed: counted by liveIsolateCount, disposed by disposeAllAtExit. */
const liveSet = new Set<PreparedIsolate>();
let exitHookInstalled = false;
let catastrophicErrors = 0;

/** The isolate class; replaceable only so hygiene tests can count real `dispose()` calls (isolated-vm's prototype is frozen). */
let IsolateClass: typeof ivm.Isolate = ivm.Isolate;

/** @internal Test seam: swap in a subclass of `ivm.Isolate`. Returns a function that restores the original. */
export function setIsolateClassForTesting(cls: typeof ivm.Isolate): () => void {
  const previous = IsolateClass;
  IsolateClass = cls;
  return () => {
    IsolateClass = previous;
  };
}

/**
 * Isolates created by this module and not yet disposed, across all sandboxes in this process (warm spares
 * included). Useful for leak checks and health metrics.
 */
export function liveIsolateCount(): number {
  return liveSet.size;
}

/**
 * Catastrophic errors (V8 out-of-memory failures isolated-vm could not contain) in this process so far. Each
 * one leaves a parked thread and its heap behind, so a health check may restart the process when it is above 0.
 *
 * @example
 * ```ts
 * if (catastrophicErrorCount() > 0) log.warn('sandbox memory was lost; consider restarting');
 * ```
 */
export function catastrophicErrorCount(): number {
  return catastrophicErrors;
}

type InstallFn = (configJson: string, code: string) => void;
type SettleFn = (id: number, envelope: string) => void;
type FireFn = (id: number) => void;
type ReportFn = () => string;

/**
 * How long an exit waits, after disposing the isolates of runs in progress, for their threads to finish tearing
 * them down. Measured here: with no wait 5 exits in 20 crashed (idle machine), with 5 ms none of 20, with 20 ms
 * none of 20 with both CPUs busy. The wait is paid only by an exit that interrupts a run.
 */
const EXIT_RELEASE_WAIT_MS = 50;

/**
 * When the process exits (process.exit, an uncaught exception) while a guest runs (its thread blocked on a host
 * call through applySyncPromise, see answerGuestCall, or busy in its own code), nothing will answer or stop it,
 * and isolated-vm's thread pool joins that thread at exit: the process hung for good. Disposing the isolate
 * releases the thread. The thread then tears the isolate down, and Node has already disposed the V8 platform
 * by the time exit handlers run, so a teardown still going when the pool is joined crashed the exit with
 * SIGSEGV (the exit code was lost): the exit blocks its thread for a short bounded wait to let it finish.
 * Idle isolates (warm ones, none of whose threads is busy) are left alone: they hold no thread, and disposing
 * them would start the same teardown race.
 */
function disposeAllAtExit(): void {
  let interrupted = 0;
  for (const prepared of [...liveSet]) {
    if (!prepared.used) continue;
    prepared.dispose();
    interrupted++;
  }
  if (interrupted > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, EXIT_RELEASE_WAIT_MS);
}

/**
 * A fresh isolate with its context bootstrapped: the guest globals are in place and the host bridges are
 * wired, but no user code has run. Use it for exactly one run; dispose it if unused.
 */
export class PreparedIsolate {
  /** @internal */ readonly isolate: ivm.Isolate;
  /** @internal */ context: ivm.Context | undefined;
  /** @internal */ install: ivm.Reference<InstallFn> | undefined;
  /** @internal */ settle: ivm.Reference<SettleFn> | undefined;
  /** @internal */ fire: ivm.Reference<FireFn> | undefined;
  /** @internal */ report: ivm.Reference<ReportFn> | undefined;
  /** @internal */ state: RunState | undefined;
  /** @internal */ used = false;
  /** @internal */ disposedByUs = false;
  /** @internal Set by a run on this isolate: called if V8 hits a catastrophic out-of-memory error in it. */
  onCatastrophe: (() => void) | undefined;
  readonly memoryMb: number | null;
  #disposed = false;
  readonly #refs: ivm.Reference<unknown>[] = [];

  /** @internal */
  constructor(memoryMb: number | null) {
    this.memoryMb = memoryMb;
    // Some allocations (a dictionary object's hash table doubling past the heap limit, e.g. 4 million keys
    // with a 64 MB limit) fail inside V8 where isolated-vm's memory limit can't catch them. Without this
    // handler V8 aborts the whole Node process; with it, isolated-vm parks the isolate's thread and calls us,
    // and the run fails with kind `memory`. The parked thread and its heap are not reclaimed (isolated-vm
    // advises restarting the process), so this is logged as an error.
    this.isolate = new IsolateClass(
      bag({
        memoryLimit: memoryMb ?? UNLIMITED_MEMORY_MB,
        onCatastrophicError: (message: string): void => {
          catastrophicErrors++;
          log.error('isolate hit a catastrophic error; its thread and memory are lost until the process restarts', {
            error: String(message),
            catastrophicErrors,
          });
          const notify = this.onCatastrophe;
          this.onCatastrophe = undefined;
          notify?.();
        },
      }),
    );
    liveSet.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', disposeAllAtExit);
    }
  }

  /** True once disposed, by us or by isolated-vm (out of memory). */
  get disposed(): boolean {
    return this.#disposed || this.isolate.isDisposed;
  }

  /** @internal */
  track<T>(ref: ivm.Reference<T>): ivm.Reference<T> {
    this.#refs.push(ref as ivm.Reference<unknown>);
    return ref;
  }

  /** Disposes the isolate. Idempotent; never calls isolated-vm's dispose twice, nor after it disposed itself. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    liveSet.delete(this);
    if (!this.isolate.isDisposed) {
      this.disposedByUs = true;
      // A no-op queued behind whatever the isolate's thread is still doing: it settles once the thread has let
      // go, which tells a thread stuck in a long built-in after its run settled (threads.ts).
      let probe: Promise<unknown> | undefined;
      if (this.used && this.settle !== undefined) {
        try {
          probe = this.settle.apply(undefined, [-1, ''], bag({}));
        } catch {
          /* no probe: nothing to watch */
        }
      }
      try {
        this.isolate.dispose();
      } catch (err) {
        log.warn('isolate dispose failed', { error: describeError(err) });
      }
      if (probe !== undefined) watchRelease(probe);
    }
    for (const ref of this.#refs) {
      try {
        ref.release();
      } catch {
        /* already released with the isolate */
      }
    }
    this.#refs.length = 0;
  }
}

let bootstrapCache: ivm.ExternalCopy<ArrayBuffer> | undefined;

/**
 * Creates an isolate and context and runs the bootstrap, ready for one `run`. This is the expensive part
 * of a run (about 1-2 ms); a process pool can call it ahead of time and pass the result to
 * `IsolatedVmSandbox.run` via `RunWithPreparedOptions.prepared`.
 *
 * @example
 * ```ts
 * const prepared = await prepareIsolate(resolveLimits({ memoryMb: 64 }));
 * const outcome = await sandbox.run('return 1', { prepared });
 * ```
 */
export async function prepareIsolate(limits: Readonly<SandboxLimits>): Promise<PreparedIsolate> {
  const prepared = new PreparedIsolate(limits.memoryMb);
  try {
    // Synchronous calls throughout: this is trusted bootstrap code, and sync calls skip the thread hop
    // each async isolated-vm call costs (measured ~0.1-0.3 ms apiece on a loaded 2-vCPU machine).
    const { isolate } = prepared;
    const context = isolate.createContextSync();
    prepared.context = context;
    const cached = bootstrapCache;
    type Factory = ivm.Reference<(hostCall: unknown, log: unknown, timer: unknown) => [InstallFn, SettleFn, FireFn, ReportFn]>;
    let factory: Factory;
    if (cached !== undefined) {
      const script = isolate.compileScriptSync(BOOTSTRAP_SOURCE, bag({ filename: BOOTSTRAP_FILENAME, cachedData: cached }));
      factory = script.runSync(context, bag({ reference: true, release: true })) as unknown as Factory;
    } else {
      // The process's first bootstrap compiles without a code cache and makes one: about 15-35 ms on a
      // 2-vCPU VM. Asynchronous calls do that on the isolate's thread, so this thread stays free meanwhile
      // (in `codemode serve --stdio` the warm-up otherwise delayed the answer to initialize by that much).
      const script = await isolate.compileScript(BOOTSTRAP_SOURCE, bag({ filename: BOOTSTRAP_FILENAME, produceCachedData: true }));
      const produced = (script as unknown as { cachedData?: ivm.ExternalCopy<ArrayBuffer> }).cachedData;
      if (produced !== undefined) bootstrapCache ??= produced;
      factory = (await script.run(context, bag({ reference: true, release: true }))) as unknown as Factory;
    }
    const hostCall = prepared.track(
      new ivm.Reference((id: number, index: number, argsJson: string): string | Promise<string> => answerGuestCall(prepared, id, index, argsJson)),
    );
    const logRef = prepared.track(
      new ivm.Reference((level: unknown, message: unknown): void => logFromGuest(prepared, level, message)),
    );
    const timerRef = prepared.track(
      new ivm.Reference((id: unknown, delayMs: unknown): void => timerFromGuest(prepared, id, delayMs)),
    );
    const parts = factory.applySync(undefined, [hostCall, logRef, timerRef], bag({ result: bag({ reference: true }) })) as unknown as ivm.Reference<
      [InstallFn, SettleFn, FireFn, ReportFn]
    >;
    factory.release();
    prepared.install = prepared.track(parts.getSync(0, bag({ reference: true })) as unknown as ivm.Reference<InstallFn>);
    prepared.settle = prepared.track(parts.getSync(1, bag({ reference: true })) as unknown as ivm.Reference<SettleFn>);
    prepared.fire = prepared.track(parts.getSync(2, bag({ reference: true })) as unknown as ivm.Reference<FireFn>);
    prepared.report = prepared.track(parts.getSync(3, bag({ reference: true })) as unknown as ivm.Reference<ReportFn>);
    parts.release();
    return prepared;
  } catch (err) {
    prepared.dispose();
    throw new CodemodeError('SANDBOX_INTERNAL', `Could not prepare a sandbox isolate: ${describeError(err)}`, { cause: err });
  }
}
