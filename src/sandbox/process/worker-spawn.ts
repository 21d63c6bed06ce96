/**
 * Starting one sandbox worker process: the script, its Node flags (`--no-node-snapshot`; from TypeScript
 * sources, type stripping and a resolve hook), and the environment it inherits (nothing that could be a
 * credential).
 *
 * @module
 */

import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import type { WorkerHandle } from './pool-types.js';
import type { FromWorker, ToWorker, WorkerConfig } from './protocol.js';

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

/**
 * Forks a worker with `config`. Throws what `fork` throws (the caller counts it as a failed start).
 * stdout is the protocol in stdio modes, so a worker never gets it; its stderr carries its logs.
 */
export function forkWorker(config: WorkerConfig): ChildProcess {
  const env: Record<string, string> = {};
  for (const key of WORKER_ENV_KEYS) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  return fork(WORKER_PATH, [JSON.stringify(config)], {
    execArgv: WORKER_EXEC_ARGV,
    env,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    serialization: 'json',
  });
}

/** What the pool hears from a worker started by `startWorker`. */
export interface WorkerHooks {
  onMessage(worker: WorkerHandle, message: FromWorker): void;
  /** Exactly once per worker, also for one that never started (`code` and `signal` null then). */
  onExit(worker: WorkerHandle, code: number | null, signal: NodeJS.Signals | null): void;
  /** The worker did not report ready within START_TIMEOUT_MS. */
  onStartTimeout(worker: WorkerHandle): void;
}

/** Forks a worker and wires its events to `hooks`. Throws what `fork` throws. */
export function startWorker(role: 'serving' | 'standby', config: WorkerConfig, hooks: WorkerHooks): WorkerHandle {
  const child = forkWorker(config);
  let exited!: () => void;
  const worker: WorkerHandle = {
    child,
    pid: child.pid ?? -1,
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
  worker.startTimer = setTimeout(() => {
    if (!worker.ready) hooks.onStartTimeout(worker);
  }, START_TIMEOUT_MS);
  worker.startTimer.unref();
  child.on('message', (message: FromWorker) => {
    try {
      hooks.onMessage(worker, message);
    } catch (err) {
      log.error('handling a worker message failed', { pid: worker.pid, error: describeError(err) });
    }
  });
  let gone = false;
  const onGone = (code: number | null, signal: NodeJS.Signals | null): void => {
    if (gone) return;
    gone = true;
    try {
      hooks.onExit(worker, code, signal);
    } finally {
      exited();
    }
  };
  child.on('error', (err) => {
    log.debug('worker process error', { pid: worker.pid, error: describeError(err) });
    // A process that never started emits 'error' and may never emit 'exit'.
    if (child.pid === undefined) onGone(null, null);
  });
  child.once('exit', onGone);
  child.unref();
  return worker;
}

/** Sends a message to a live worker; a failed send is logged (the worker's exit reports the cause). */
export function sendToWorker(worker: WorkerHandle, message: ToWorker): void {
  if (worker.dead || !worker.child.connected) return;
  try {
    worker.child.send(message, undefined, undefined, (err) => {
      if (err) log.debug('sending to a worker failed', { pid: worker.pid, error: describeError(err) });
    });
  } catch (err) {
    log.debug('sending to a worker failed', { pid: worker.pid, error: describeError(err) });
  }
}

/** Keeps this process alive only while a worker starts or runs something for us. */
export function updateWorkerRef(worker: WorkerHandle): void {
  const channel = worker.child.channel;
  if (channel == null) return;
  if (!worker.ready || worker.jobs.size > 0) channel.ref();
  else channel.unref();
}

/**
 * Stops a worker politely (closing its channel makes it exit), then calls `kill` after `graceMs`.
 * Resolves when it has exited.
 */
export async function stopWorker(worker: WorkerHandle, graceMs: number, kill: () => void): Promise<void> {
  if (worker.dead) return;
  worker.doomed = true;
  // Whoever awaits this (close()) is waiting for the exit: keep the process alive until it comes.
  worker.child.ref();
  try {
    if (worker.child.connected) worker.child.disconnect();
  } catch {
    /* already disconnected */
  }
  const timer = setTimeout(kill, graceMs);
  timer.unref();
  await worker.exited;
  clearTimeout(timer);
}
