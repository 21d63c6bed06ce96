/**
 * Who starts a pool's worker processes, and the handle the pool keeps for each one.
 *
 * - `LauncherSpawner` (the default on Linux): a small launcher process (launcher.ts), forked once, starts
 *   the workers and hands each one's channel back. The pool's process never forks again, so replacing a
 *   worker costs its event loop a message instead of a `fork()` whose time grows with the pool process's
 *   RSS (16-36 ms at 200-400 MB here, on the loop every session shares).
 * - `DirectSpawner`: the pool's process starts workers itself (other platforms, or when asked).
 *
 * Either way a worker talks to the pool over a `LineChannel` on its fd 3, and the pool learns of its exit
 * with the exit code and signal. The exit is reported once both the process has ended and its channel has
 * closed, so a message the worker wrote just before it died is read before the pool hears of the death.
 *
 * @module
 */

import { fork, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import type { FromLauncher, ToLauncher } from './launcher.js';
import { LineChannel } from './line-channel.js';
import type { FromWorker, ToWorker } from './protocol.js';

const log = createLogger('sandbox-pool');

/**
 * How long the pool waits for the second half of an exit (the exit report after the channel closed, or the
 * other way round) before it reports the exit with what it has. Both normally arrive within a millisecond.
 */
const EXIT_JOIN_MS = 2_000;

export interface WorkerEvents {
  onMessage(message: FromWorker): void;
  /** Exactly once; `code` and `signal` are null for a process that never started, or whose end was not reported. */
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
}

/** A started (or starting) worker process, as the pool sees it. */
export interface WorkerProcess {
  /** -1 until the process exists (a launcher reports it a moment after the request). */
  readonly pid: number;
  /** True while messages can be sent. */
  readonly connected: boolean;
  /** Sends one message; `written` runs once it is handed to the OS, or could not be. */
  send(message: ToWorker, written?: (err?: Error) => void): void;
  /** Whether this worker keeps the pool's process alive (while it starts, runs something, or is stopping). */
  keepAlive(on: boolean): void;
  /** Closes the channel: the worker exits when it reads the end. */
  end(): void;
  kill(signal: NodeJS.Signals): void;
}

export interface Spawner {
  /** Starts `process.execPath` with `args`. Throws what a synchronous spawn failure throws. */
  start(args: string[], env: Record<string, string>, events: WorkerEvents): WorkerProcess;
  /** Lets the launcher go (after the pool's workers have exited). Idempotent. */
  close(): void;
}

/** Reports an exit once both halves are in: the process ended, and its channel closed. */
class ExitJoin {
  #ended: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #closed = false;
  #done = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #events: WorkerEvents;

  constructor(events: WorkerEvents) {
    this.#events = events;
  }

  get done(): boolean {
    return this.#done;
  }

  ended(code: number | null, signal: NodeJS.Signals | null): void {
    this.#ended ??= { code, signal };
    this.#check();
  }

  closed(): void {
    this.#closed = true;
    this.#check();
  }

  /** Reports now, with whatever is known (the process never started, or its launcher is gone). */
  now(): void {
    this.#finish();
  }

  #check(): void {
    if (this.#done) return;
    if (this.#ended !== undefined && this.#closed) {
      this.#finish();
      return;
    }
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.#finish(), EXIT_JOIN_MS);
      this.#timer.unref();
    }
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.#events.onExit(this.#ended?.code ?? null, this.#ended?.signal ?? null);
  }
}

function channelFor(socket: Socket, events: WorkerEvents, join: ExitJoin, pid: () => number): LineChannel<FromWorker, ToWorker> {
  return new LineChannel<FromWorker, ToWorker>(socket, {
    onMessage: (message) => {
      try {
        events.onMessage(message);
      } catch (err) {
        log.error('handling a worker message failed', { pid: pid(), error: describeError(err) });
      }
    },
    onBadMessage: (reason) => log.warn('a sandbox worker sent a message that is not one', { pid: pid(), reason }),
    onClose: () => join.closed(),
  });
}

// -----------------------------------------------------------------------------------------------------------

export class DirectSpawner implements Spawner {
  start(args: string[], env: Record<string, string>, events: WorkerEvents): WorkerProcess {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'inherit', 'pipe'] });
    const join = new ExitJoin(events);
    const channel = child.pid === undefined ? undefined : channelFor(child.stdio[3] as Socket, events, join, () => child.pid ?? -1);
    // Nobody else holds our end: the worker may talk at once.
    channel?.send({ t: 'hello' });
    child.on('error', (err) => {
      log.debug('worker process error', { pid: child.pid, error: describeError(err) });
      // A process that never started emits 'error' and may never emit 'exit'.
      if (child.pid === undefined) join.now();
    });
    child.once('exit', (code, signal) => join.ended(code, signal));
    child.unref();
    return {
      get pid() {
        return child.pid ?? -1;
      },
      get connected() {
        return channel?.open ?? false;
      },
      send: (message, written) => (channel === undefined ? written?.(new Error('the worker did not start')) : channel.send(message, written)),
      keepAlive: (on) => {
        if (on) {
          child.ref();
          channel?.ref();
        } else {
          child.unref();
          channel?.unref();
        }
      },
      end: () => channel?.end(),
      kill: (signal) => {
        child.kill(signal);
      },
    };
  }

  close(): void {}
}

// -----------------------------------------------------------------------------------------------------------

const FROM_SOURCES = import.meta.url.endsWith('.ts');
const LAUNCHER_PATH = fileURLToPath(new URL(FROM_SOURCES ? './launcher.ts' : './launcher.js', import.meta.url));

/** One worker started through the launcher. */
class LaunchedWorker implements WorkerProcess {
  readonly id: number;
  readonly #spawner: LauncherSpawner;
  readonly #events: WorkerEvents;
  readonly join: ExitJoin;
  /** The launcher that started it: only that launcher's death orphans it. */
  readonly launcher: ChildProcess;
  #pid = -1;
  #channel: LineChannel<FromWorker, ToWorker> | undefined;
  #alive = false;
  #endWhenAttached = false;

  constructor(id: number, launcher: ChildProcess, spawner: LauncherSpawner, events: WorkerEvents) {
    this.id = id;
    this.launcher = launcher;
    this.#spawner = spawner;
    this.#events = events;
    this.join = new ExitJoin(events);
  }

  get pid(): number {
    return this.#pid;
  }

  get connected(): boolean {
    return this.#channel?.open ?? false;
  }

  attach(pid: number, socket: Socket | undefined): void {
    this.#pid = pid;
    if (socket === undefined) {
      // Started, but its channel did not arrive: it can never be reached. Stop it.
      log.warn('a sandbox worker started without its channel; stopping it', { pid });
      this.kill('SIGKILL');
      this.join.closed();
      return;
    }
    this.#channel = channelFor(socket, this.#events, this.join, () => this.#pid);
    if (this.#alive) this.#channel.ref();
    else this.#channel.unref();
    if (this.#endWhenAttached) this.#channel.end();
  }

  /** The launcher closed its copy of our socket: the worker may talk now. */
  released(): void {
    this.#channel?.send({ t: 'hello' });
  }

  send(message: ToWorker, written?: (err?: Error) => void): void {
    if (this.#channel === undefined) written?.(new Error('the worker has not started yet'));
    else this.#channel.send(message, written);
  }

  keepAlive(on: boolean): void {
    // After its exit nothing more will arrive for it: holding the launcher then would keep us alive forever.
    if (on === this.#alive || (on && this.join.done)) return;
    this.#alive = on;
    // The launcher's channel carries this worker's exit report: it must keep us alive too.
    this.#spawner.hold(on);
    if (on) this.#channel?.ref();
    else this.#channel?.unref();
  }

  end(): void {
    if (this.#channel === undefined) this.#endWhenAttached = true;
    else this.#channel.end();
  }

  kill(signal: NodeJS.Signals): void {
    this.#spawner.kill(this, signal);
  }

  /**
   * Its launcher is gone: no exit report will come, and it could no longer be killed safely later. It is
   * stopped now and reported as ended at once, so the pool sends it nothing more.
   */
  orphaned(): void {
    if (this.#pid > 0 && !this.join.done) {
      try {
        process.kill(this.#pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    this.#channel?.destroy();
    this.join.now();
  }

  release(): void {
    if (this.#alive) {
      this.#alive = false;
      this.#spawner.hold(false);
    }
  }
}

export class LauncherSpawner implements Spawner {
  readonly #execArgv: readonly string[];
  #launcher: ChildProcess | undefined;
  #nextId = 1;
  readonly #workers = new Map<number, LaunchedWorker>();
  #holds = 0;
  #closed = false;

  /** `execArgv`: the Node flags the launcher runs with (type stripping when running from sources). */
  constructor(execArgv: readonly string[]) {
    this.#execArgv = execArgv;
  }

  start(args: string[], env: Record<string, string>, events: WorkerEvents): WorkerProcess {
    const launcher = this.#ensureLauncher();
    const id = this.#nextId++;
    const worker = new LaunchedWorker(id, launcher, this, events);
    this.#workers.set(id, worker);
    // Until the launcher answers, the request keeps this process alive (the pool holds it while starting).
    this.#send(launcher, { t: 'spawn', id, file: process.execPath, args, env });
    return worker;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const launcher = this.#launcher;
    this.#launcher = undefined;
    if (launcher?.connected === true) {
      try {
        launcher.disconnect();
      } catch {
        // Already disconnected.
      }
    }
  }

  hold(on: boolean): void {
    this.#holds += on ? 1 : -1;
    this.#applyHolds();
  }

  #applyHolds(): void {
    const launcher = this.#launcher;
    if (launcher === undefined) return;
    if (this.#holds > 0) {
      launcher.ref();
      launcher.channel?.ref();
    } else {
      launcher.unref();
      launcher.channel?.unref();
    }
  }

  kill(worker: LaunchedWorker, signal: NodeJS.Signals): void {
    if (worker.join.done) return;
    // Its own launcher: only that one knows it.
    const launcher = worker.launcher;
    if (launcher.connected) {
      this.#send(launcher, { t: 'kill', id: worker.id, signal });
      return;
    }
    // No launcher to ask (it died): signal the pid ourselves.
    if (worker.pid > 0) process.kill(worker.pid, signal);
  }

  #send(launcher: ChildProcess, message: ToLauncher): void {
    try {
      launcher.send(message);
    } catch (err) {
      log.warn('the sandbox worker launcher cannot be reached', { error: describeError(err) });
    }
  }

  #ensureLauncher(): ChildProcess {
    if (this.#launcher !== undefined && this.#launcher.connected) return this.#launcher;
    // Our pid: the launcher exits when its parent is anyone else (we died, even before it started).
    const launcher = fork(LAUNCHER_PATH, [String(process.pid)], {
      execArgv: [...this.#execArgv],
      // It passes each worker the environment the pool chose; it needs nothing of ours.
      env: process.env.PATH === undefined ? {} : { PATH: process.env.PATH },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.#launcher = launcher;
    launcher.on('message', (raw: unknown, handle: unknown) => this.#onMessage(raw as FromLauncher, handle as Socket | undefined));
    launcher.on('error', (err) => log.warn('the sandbox worker launcher failed', { error: describeError(err) }));
    launcher.once('exit', (code, signal) => {
      if (this.#launcher === launcher) this.#launcher = undefined;
      if (!this.#closed || this.#workers.size > 0) {
        log.warn('the sandbox worker launcher exited; its workers are stopped and a new launcher starts when needed', { code, signal });
      }
      // Only this launcher's workers: a new launcher may already serve later starts.
      for (const worker of [...this.#workers.values()].filter((w) => w.launcher === launcher)) {
        this.#workers.delete(worker.id);
        worker.orphaned();
        worker.release();
      }
    });
    this.#applyHolds();
    return launcher;
  }

  #onMessage(message: FromLauncher, handle: Socket | undefined): void {
    const worker = this.#workers.get(message.id);
    if (worker === undefined) {
      handle?.destroy();
      return;
    }
    switch (message.t) {
      case 'spawned':
        worker.attach(message.pid, handle);
        return;
      case 'released':
        worker.released();
        return;
      case 'failed':
        log.warn('a sandbox worker could not be started', { error: message.message });
        this.#workers.delete(worker.id);
        worker.join.now();
        worker.release();
        return;
      case 'exit':
        this.#workers.delete(worker.id);
        worker.join.ended(message.code, message.signal);
        worker.release();
        return;
    }
  }
}
