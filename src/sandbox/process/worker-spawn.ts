/**
 * Starting one sandbox worker process: the script, its Node flags (`--no-node-snapshot`; from TypeScript
 * sources, type stripping and a resolve hook), and the environment it inherits (nothing that could be a
 * credential).
 *
 * @module
 */

import { fileURLToPath } from 'node:url';
import { describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import type { WorkerHandle } from './pool-types.js';
import type { FromWorker, ToWorker, WorkerConfig } from './protocol.js';
import { DirectSpawner, LauncherSpawner } from './spawner.js';
import type { Spawner, WorkerProcess } from './spawner.js';

const log = createLogger('sandbox-pool');

/** How long a worker may take to start before it counts as a failed start. */
const START_TIMEOUT_MS = 30_000;

/**
 * When this module runs from TypeScript sources (tests, `--experimental-strip-types`), the worker is a
 * `.ts` file whose imports say `.js` (the `nodenext` convention). Node's type stripping does not map
 * those, so the worker gets this resolve hook: a relative `.js` import that does not exist is retried as
 * `.ts`. The built package (dist/) never needs it.
 */
const TS_RESOLVE_HOOK = `data:text/javascript,${encodeURIComponent(
  'import { registerHooks } from "node:module";' +
    'registerHooks({ resolve(specifier, context, next) {' +
    '  try { return next(specifier, context); } catch (err) {' +
    '    if (err && err.code === "ERR_MODULE_NOT_FOUND" && /^\\.\\.?\\//.test(specifier) && specifier.endsWith(".js"))' +
    '      return next(specifier.slice(0, -3) + ".ts", context);' +
    '    throw err;' +
    '  }' +
    '} });',
)}`;

const FROM_SOURCES = import.meta.url.endsWith('.ts');
const WORKER_PATH = fileURLToPath(new URL(FROM_SOURCES ? './worker.ts' : './worker.js', import.meta.url));
const WORKER_EXEC_ARGV = [
  '--no-node-snapshot',
  ...(FROM_SOURCES ? ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--import', TS_RESOLVE_HOOK] : []),
];
/** What a worker inherits from our environment: nothing that could be a credential. */
const WORKER_ENV_KEYS = ['PATH', 'TZ', 'LANG', 'LC_ALL', 'TMPDIR', 'SYSTEMROOT', 'CODEMODE_LOG_LEVEL'];

/** @internal Exposed for tests that start a TypeScript parent process the same way. */
export const SOURCE_EXEC_ARGV: readonly string[] = WORKER_EXEC_ARGV;

/** The Node flags a launcher runs with: a launcher is a plain script, but from sources it is TypeScript too. */
const LAUNCHER_EXEC_ARGV = FROM_SOURCES ? ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', '--import', TS_RESOLVE_HOOK] : [];

/**
 * How a pool starts its workers: through a launcher process on Linux, where `fork()` from a large server
 * costs its event loop time that grows with its RSS (see spawner.ts); directly elsewhere. `via` forces one.
 */
export function createSpawner(via?: 'launcher' | 'direct'): Spawner {
  const choice = via ?? (process.platform === 'linux' ? 'launcher' : 'direct');
  return choice === 'launcher' ? new LauncherSpawner(LAUNCHER_EXEC_ARGV) : new DirectSpawner();
}

/**
 * Starts a worker with `config` through `spawner`. Throws what a synchronous spawn failure throws (the caller
 * counts it as a failed start). stdout is the protocol in stdio modes, so a worker never gets it; its stderr
 * carries its logs, and fd 3 is its channel to us.
 */
function spawnWorker(spawner: Spawner, config: WorkerConfig, events: Parameters<Spawner['start']>[2]): WorkerProcess {
  const env: Record<string, string> = {};
  for (const key of WORKER_ENV_KEYS) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  return spawner.start([...WORKER_EXEC_ARGV, WORKER_PATH, JSON.stringify(config)], env, events);
}

/** What the pool hears from a worker started by `startWorker`. */
export interface WorkerHooks {
  onMessage(worker: WorkerHandle, message: FromWorker): void;
  /** Exactly once per worker, also for one that never started (`code` and `signal` null then). */
  onExit(worker: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void;
  /** The worker did not report ready within START_TIMEOUT_MS. */
  onStartTimeout(worker: WorkerHandle): void;
}

/** Starts a worker and wires its events to `hooks`. Throws what a synchronous spawn failure throws. */
export function startWorker(spawner: Spawner, role: 'serving' | 'standby', config: WorkerConfig, hooks: WorkerHooks): WorkerHandle {
  let exited!: () => void;
  // The handle needs the process and the process's events need the handle. No spawner reports an event
  // synchronously from start() (spawn errors, exits and messages all arrive on later turns), so the box is
  // filled before any event reads it.
  const box: { worker: WorkerHandle | undefined } = { worker: undefined };
  const proc = spawnWorker(spawner, config, {
    onMessage: (message: FromWorker) => hooks.onMessage(box.worker!, message),
    // Exactly once: the spawner's exit join guarantees it.
    onExit: (code, signal) => {
      try {
        hooks.onExit(box.worker!, code, signal);
      } finally {
        exited();
      }
    },
  });
  const handle: WorkerHandle = {
    proc,
    get pid() {
      return proc.pid;
    },
    role,
    ready: false,
    doomed: false,
    killedFor: undefined,
    killedMessage: undefined,
    dead: false,
    jobs: new Map(),
    runs: 0,
    exited: new Promise<void>((r) => (exited = r)),
    startTimer: undefined,
    lastDispatch: 0,
    lastSeen: performance.now(),
    baseRss: 0,
    beatRss: 0,
  };
  box.worker = handle;
  handle.startTimer = setTimeout(() => {
    if (!handle.ready) hooks.onStartTimeout(handle);
  }, START_TIMEOUT_MS);
  handle.startTimer.unref();
  // Until it is ready, a starting worker keeps this process alive.
  proc.keepAlive(true);
  return handle;
}

/** Sends a message to a live worker; a failed send is logged (the worker's exit reports the cause). */
export function sendToWorker(worker: WorkerHandle, message: ToWorker): void {
  if (worker.dead || !worker.proc.connected) return;
  try {
    worker.proc.send(message, (err) => {
      if (err) log.debug('sending to a worker failed', { pid: worker.pid, error: describeError(err) });
    });
  } catch (err) {
    log.debug('sending to a worker failed', { pid: worker.pid, error: describeError(err) });
  }
}

/** Keeps this process alive only while a worker starts or runs something for us. */
export function updateWorkerRef(worker: WorkerHandle): void {
  if (worker.dead) return;
  worker.proc.keepAlive(!worker.ready || worker.jobs.size > 0 || worker.doomed);
}

/**
 * Stops a worker politely (closing its channel makes it exit), then calls `kill` after `graceMs`.
 * Resolves when it has exited.
 */
export async function stopWorker(worker: WorkerHandle, graceMs: number, kill: () => void): Promise<void> {
  if (worker.dead) return;
  worker.doomed = true;
  // Whoever awaits this (close()) is waiting for the exit: keep the process alive until it comes.
  worker.proc.keepAlive(true);
  worker.proc.end();
  const timer = setTimeout(kill, graceMs);
  timer.unref();
  await worker.exited;
  clearTimeout(timer);
}
