/**
 * Keeps this process's event loop polling instead of sleeping for a short window.
 *
 * A guest's host call reaches the host through libuv's async handle. When the event loop sleeps in
 * `epoll_wait`, waking it costs a kernel wake-up of the main thread; on the 2-vCPU VM the project is measured
 * on, that was ~35 of the ~55 µs a host-call round trip took. While a loop iteration is pending
 * (`setImmediate`), libuv polls with a zero timeout and sees the call at once: the round trip fell to ~20 µs.
 *
 * So the sandbox keeps the loop hot for a short window after a host function answered fast (code that calls
 * in a loop calls again within microseconds), and cools it as soon as that run waits on slow host work
 * instead. After an answer that waited on I/O it does not spin at all: other threads and processes are being
 * woken then, and the scheduler often put them on the spinning thread's CPU, where they waited (a stdio echo
 * tool got slower). The cost is CPU: the main thread spins at most `windowMs` past a fast answer. Other work
 * on the loop is not delayed: each spin is one loop iteration, so I/O and timers run between them.
 *
 * @module
 */

/** Open windows: owner (a run) to the time its window closes (performance.now()). */
const windows = new Map<object, number>();
let spinning = false;

function spin(): void {
  const now = performance.now();
  for (const [owner, until] of windows) {
    if (until <= now) windows.delete(owner);
  }
  if (windows.size > 0) {
    setImmediate(spin);
  } else {
    spinning = false;
  }
}

/** Keeps the event loop polling for `windowMs` from now on behalf of `owner`. 0 does nothing. */
export function keepEventLoopHot(owner: object, windowMs: number): void {
  if (windowMs <= 0) return;
  windows.set(owner, performance.now() + windowMs);
  if (!spinning) {
    spinning = true;
    // Referenced on purpose: an unreferenced immediate lets libuv block in poll again.
    setImmediate(spin);
  }
}

/** Closes `owner`'s window (it now waits on something slow); the loop sleeps again once no window is open. */
export function coolEventLoop(owner: object): void {
  windows.delete(owner);
}

/** True while the loop is being kept hot (for tests and diagnostics). */
export function eventLoopIsHot(): boolean {
  return spinning;
}
