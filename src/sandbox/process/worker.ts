/**
 * Entry point of a sandbox worker process (spawned by `ProcessPool`, never imported). It hosts
 * isolated-vm through the in-process `IsolatedVmSandbox`, so results, logs and error kinds are exactly the
 * in-process ones; only host calls differ: they are relayed to the pool over the worker's channel (fd 3,
 * newline-delimited JSON; see line-channel.ts).
 *
 * Warm starts: the worker keeps one prepared isolate (fresh isolate + bootstrapped context) per memory
 * limit it has seen last, hands it to the next run, and prepares the next one after the run's result is
 * on its way. An isolate is never reused between runs.
 *
 * The worker exits when its channel closes: the pool closed it, exited, or was killed.
 *
 * @module
 */

import { fstatSync } from 'node:fs';
import { Socket } from 'node:net';
import { CodemodeError, describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { IsolatedVmSandbox, catastrophicErrorCount, prepareIsolate } from '../isolated-vm-sandbox.js';
import type { PreparedIsolate } from '../isolated-vm-sandbox.js';
import { resolveLimits } from '../limits.js';
import { onGhostIsolateThread } from '../threads.js';
import type { HostCallContext, HostFunctions } from '../types.js';
import { LineChannel, WORKER_CHANNEL_FD } from './line-channel.js';
import { lowerOwnPriority } from './priority.js';
import { HEARTBEAT_MS } from './protocol.js';
import type { FromWorker, ToWorker, WorkerConfig } from './protocol.js';

const log = createLogger('sandbox-worker');

/** The channel to the pool: fd 3, a socket pair end the pool (or its launcher) gave us. */
const channel = ((): LineChannel<ToWorker, FromWorker> => {
  let isSocket = false;
  try {
    // A Unix socket pair; a pipe where the platform makes one for a 'pipe' stdio entry.
    const stat = fstatSync(WORKER_CHANNEL_FD);
    isSocket = stat.isSocket() || stat.isFIFO();
  } catch {
    // No fd 3 at all.
  }
  if (!isSocket) {
    log.error('this is the codemode sandbox worker; it runs only under a ProcessPool (no channel on fd 3)');
    process.exit(2);
  }
  return new LineChannel<ToWorker, FromWorker>(new Socket({ fd: WORKER_CHANNEL_FD, readable: true, writable: true }), {
    onMessage: (message) => onMessage(message),
    onBadMessage: (reason) => log.error('the pool sent a message that is not one', { reason }),
    onClose: () => onChannelClosed(),
  });
})();

/**
 * What we said before the pool's `hello`: held back, because until then a launcher may still hold our
 * channel's other end and read (and lose) it. Only `ready` and heartbeats can be early; a few at most.
 */
let greeted = false;
const early: Array<[FromWorker, (() => void) | undefined]> = [];

/** Sends to the pool; `written` runs once the message is handed to the OS (or could not be). */
function send(message: FromWorker, written?: () => void): void {
  if (!greeted) {
    if (early.length < 64) early.push([message, written]);
    else written?.();
    return;
  }
  channel.send(message, () => written?.());
}

const config = ((): WorkerConfig => {
  try {
    return JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
  } catch {
    return { warmMemoryMb: 100 };
  }
})();

// First, before any isolate thread exists: guest code must yield the CPU to the parent's event loop.
if (typeof config.nice === 'number') lowerOwnPriority(config.nice);

// ---------------------------------------------------------------------------------------------------------
// Warm isolates: at most one per memory limit, most recent limits only (a pool normally serves one).

const MAX_WARM_KINDS = 2;
/** Delay between a run's result being written and the next isolate being prepared. */
const REFILL_DELAY_MS = 2;
const spares = new Map<number | null, PreparedIsolate>();
const preparing = new Set<number | null>();

function takeSpare(memoryMb: number | null): PreparedIsolate | undefined {
  const spare = spares.get(memoryMb);
  spares.delete(memoryMb);
  return spare !== undefined && !spare.disposed ? spare : undefined;
}

async function refill(memoryMb: number | null): Promise<void> {
  if (spares.has(memoryMb) || preparing.has(memoryMb)) return;
  preparing.add(memoryMb);
  try {
    const prepared = await prepareIsolate(resolveLimits({ memoryMb }));
    spares.set(memoryMb, prepared);
    while (spares.size > MAX_WARM_KINDS) {
      const oldest = spares.keys().next().value as number | null;
      spares.get(oldest)?.dispose();
      spares.delete(oldest);
    }
  } catch (err) {
    log.warn('could not prepare a warm isolate', { error: describeError(err) });
  } finally {
    preparing.delete(memoryMb);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Host calls relayed to the parent

interface PendingCall {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

const calls = new Map<number, PendingCall & { runId: number }>();
const runs = new Map<number, { controller: AbortController; calls: Set<number> }>();
let nextCall = 0;

function relayed(runId: number, index: number): (args: unknown[], context: HostCallContext) => Promise<unknown> {
  return (args) =>
    new Promise<unknown>((resolve, reject) => {
      const call = ++nextCall;
      calls.set(call, { resolve, reject, runId });
      // Forgotten when the run ends (the parent aborts the real call's signal itself).
      runs.get(runId)?.calls.add(call);
      send({ t: 'call', id: runId, call, fn: index, args });
    });
}

function hostTree(runId: number, paths: string[][]): HostFunctions {
  // Null prototypes: names such as `__proto__`, `constructor` or `toString` are own keys like any other.
  const root = Object.create(null) as HostFunctions;
  paths.forEach((path, index) => {
    let node = root;
    for (const key of path.slice(0, -1)) {
      let next = Object.hasOwn(node, key) ? node[key] : undefined;
      if (next === undefined || typeof next === 'function') {
        next = Object.create(null) as HostFunctions;
        node[key] = next;
      }
      node = next;
    }
    node[path[path.length - 1] ?? ''] = relayed(runId, index);
  });
  return root;
}

function onReply(message: Extract<ToWorker, { t: 'reply' }>): void {
  const pending = calls.get(message.call);
  if (pending === undefined) return;
  calls.delete(message.call);
  runs.get(pending.runId)?.calls.delete(message.call);
  if (message.ok) {
    pending.resolve('value' in message ? message.value : message.json === undefined ? undefined : (JSON.parse(message.json) as unknown));
    return;
  }
  // Rebuilt so that IsolatedVmSandbox copies the same name, message and data into the guest.
  const err = new Error(message.error.message);
  err.name = message.error.name;
  if (message.error.data !== undefined) Object.assign(err, { data: message.error.data });
  pending.reject(err);
}

// ---------------------------------------------------------------------------------------------------------
// Runs

async function onRun(message: Extract<ToWorker, { t: 'run' }>): Promise<void> {
  const { id, code, limits, paths, errorClasses } = message;
  const controller = new AbortController();
  const run = { controller, calls: new Set<number>() };
  runs.set(id, run);
  let sandbox: IsolatedVmSandbox | undefined;
  // Preparing the next isolate takes a millisecond or two of CPU. It starts a moment after the result is
  // written, so that it competes neither with the write nor with the parent handling the result: started
  // right away (setImmediate), it made a warm `return 1` about 2.3 ms instead of 1.0 ms on 2 busy cores.
  const memoryMb = limits.memoryMb;
  const prepareNext = (): void => {
    setTimeout(() => void refill(memoryMb), REFILL_DELAY_MS);
  };
  try {
    // The parent samples this process's RSS against its hard ceiling and kills it; no in-process guard here.
    sandbox = new IsolatedVmSandbox({ limits, warmIsolates: 0, maxConcurrency: 1, rssGuard: false });
    const prepared = takeSpare(sandbox.limits.memoryMb);
    const outcome = await sandbox.run(code, {
      hostFunctions: hostTree(id, paths),
      errorClasses,
      signal: controller.signal,
      ...(prepared !== undefined ? { prepared } : {}),
    });
    send({ t: 'done', id, outcome, rss: process.memoryUsage.rss(), warm: prepared !== undefined, catastrophic: catastrophicErrorCount() }, prepareNext);
  } catch (err) {
    const code = err instanceof CodemodeError ? err.code : 'SANDBOX_INTERNAL';
    send({ t: 'failed', id, code, message: describeError(err), rss: process.memoryUsage.rss(), catastrophic: catastrophicErrorCount() }, prepareNext);
  } finally {
    runs.delete(id);
    for (const call of run.calls) calls.delete(call);
    void sandbox?.close();
  }
}

// The parent going away (close, exit, SIGKILL) closes the channel: nothing is left to serve. Isolates
// are disposed first: Node's exit waits for isolated-vm's cleanup, which waits for running guest code, so
// a plain exit() would hang behind a `while (true) {}`.
function onChannelClosed(): void {
  for (const run of runs.values()) run.controller.abort();
  for (const spare of spares.values()) spare.dispose();
  process.exit(0);
}

// Ctrl-C in a terminal and a service manager's SIGTERM reach the whole process group. The parent decides
// when runs end (its graceful shutdown may let them finish); we exit when it closes the channel.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);

function onMessage(message: ToWorker): void {
  switch (message.t) {
    case 'hello':
      if (!greeted) {
        greeted = true;
        for (const [m, written] of early.splice(0)) send(m, written);
      }
      break;
    case 'run':
      void onRun(message);
      break;
    case 'abort':
      runs.get(message.id)?.controller.abort();
      break;
    case 'reply':
      onReply(message);
      break;
  }
}

// A thread that outlived its run keeps a core busy for every later tenant of this process, and nothing but the
// end of the process stops it: the parent retires this worker when told.
onGhostIsolateThread((threads) => send({ t: 'ghost', threads }));

await refill(config.warmMemoryMb);
send({ t: 'ready', rss: process.memoryUsage.rss() });
// Guest code runs on isolate threads; this thread only relays. If it stops turning (a native deadlock),
// the parent notices the silence and replaces this process.
setInterval(() => send({ t: 'beat', rss: process.memoryUsage.rss() }), HEARTBEAT_MS).unref();
