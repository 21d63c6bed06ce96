/**
 * Isolate threads that outlive their run. Disposing an isolate asks V8 to stop, but V8 checks for that only
 * between JavaScript steps: a thread inside a long built-in (`lastIndexOf` over 2^53 indices, `Array.from` of
 * 1e8 elements past the memory limit) keeps running, and burning a core, after its run has settled.
 *
 * The signal: a no-op call queued into the isolate just before it is disposed settles only once the isolate's
 * thread has let go of it. `PreparedIsolate.dispose()` sends one and hands its promise to `watchRelease`.
 * A release that takes longer than `GHOST_AFTER_MS` is a ghost: listeners hear of it (the process pool's
 * worker retires itself), and `isolateThreadsIdle()` lets a process wait for every thread before it exits
 * (exiting while one runs crashed `codemode run` with SIGSEGV).
 *
 * @module
 */

/**
 * How long a disposed isolate's thread may take to let go before it counts as still running. An idle one
 * answers the probe in about 1 ms (isolated-vm starts a new thread rather than queue a task), so this only
 * leaves room for a loaded machine; a false alarm costs a worker restart, nothing more.
 */
export const GHOST_AFTER_MS = 500;

const pending = new Set<Promise<unknown>>();
const idleWaiters = new Set<() => void>();
const ghostListeners = new Set<(pendingThreads: number) => void>();
let ghosts = 0;

/** Tracks the release of one disposed isolate's thread; `probe` settles when the thread let go. */
export function watchRelease(probe: Promise<unknown>): void {
  const done = probe.then(
    () => undefined,
    () => undefined,
  );
  pending.add(done);
  const timer = setTimeout(() => {
    ghosts++;
    for (const listener of ghostListeners) {
      try {
        listener(pending.size);
      } catch {
        /* a listener's failure is its own */
      }
    }
  }, GHOST_AFTER_MS);
  // Never keeps the process alive by itself.
  timer.unref();
  void done.then(() => {
    clearTimeout(timer);
    pending.delete(done);
    if (pending.size === 0) for (const wake of [...idleWaiters]) wake();
  });
}

/** Disposed isolates whose thread has not let go yet. */
export function busyIsolateThreads(): number {
  return pending.size;
}

/** Disposed isolates whose thread was still running `GHOST_AFTER_MS` after disposal, in this process so far. */
export function ghostIsolateThreadCount(): number {
  return ghosts;
}

/**
 * Calls `listener` each time a disposed isolate's thread is still running `GHOST_AFTER_MS` after disposal.
 * Returns the function that removes it.
 */
export function onGhostIsolateThread(listener: (pendingThreads: number) => void): () => void {
  ghostListeners.add(listener);
  return () => {
    ghostListeners.delete(listener);
  };
}

/**
 * Resolves true once every disposed isolate's thread has let go, or false after `timeoutMs`. A process
 * should wait for this before it exits: Node tearing V8 down under a running isolate thread crashes it.
 *
 * @example
 * ```ts
 * await sandbox.close();
 * if (!(await isolateThreadsIdle(5_000))) log.warn('an isolate thread is still running');
 * ```
 */
export function isolateThreadsIdle(timeoutMs: number): Promise<boolean> {
  if (pending.size === 0) return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const wake = (): void => {
      clearTimeout(timer);
      idleWaiters.delete(wake);
      resolve(true);
    };
    const timer = setTimeout(() => {
      idleWaiters.delete(wake);
      resolve(pending.size === 0);
    }, timeoutMs);
    idleWaiters.add(wake);
  });
}
