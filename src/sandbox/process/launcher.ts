/**
 * Entry point of the worker launcher (forked once by a `ProcessPool`, never imported). It starts sandbox
 * workers on the pool's request and hands the pool each worker's channel, so the pool's process never
 * calls `fork()` after start-up.
 *
 * Why: `fork()` copies the calling process's page tables, so its cost grows with that process's RSS, and it
 * runs on the calling thread. In `codemode serve` that thread is the event loop every session shares, the
 * server is the largest process in the tree, and a guest decides when a worker must be replaced (a memory
 * bomb, a timeout). This process stays small (tens of MB), so its forks are cheap, and they block only
 * this process.
 *
 * Protocol (Node IPC, JSON), pool -> launcher:
 * - `{ t: 'spawn', id, file, args, env }`: start `file args` with fd 3 a socket pair;
 * - `{ t: 'kill', id, signal }`: signal that worker (only while it is our unreaped child, so a reused pid is
 *   never hit).
 *
 * launcher -> pool:
 * - `{ t: 'spawned', id, pid }` with the socket as the message's handle;
 * - `{ t: 'released', id }`: our copy of that socket is closed (Node queues this message until the pool
 *   acknowledged the handle, and closes our copy right before sending it). Until then a read on our copy
 *   would swallow what the worker wrote, so the pool greets the worker only now, and the worker writes
 *   nothing before that greeting;
 * - `{ t: 'failed', id, message }`: it could not be started;
 * - `{ t: 'exit', id, code, signal }`: it ended.
 *
 * The launcher exits when the pool's channel closes; the workers it started do not depend on it (they exit
 * when their own channel to the pool closes).
 *
 * @module
 */

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';

export type ToLauncher =
  | { t: 'spawn'; id: number; file: string; args: string[]; env: Record<string, string> }
  | { t: 'kill'; id: number; signal: NodeJS.Signals };

export type FromLauncher =
  | { t: 'spawned'; id: number; pid: number }
  | { t: 'released'; id: number }
  | { t: 'failed'; id: number; message: string }
  | { t: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null };

const children = new Map<number, ChildProcess>();

function tell(message: FromLauncher, handle?: Socket): void {
  if (!process.connected) return;
  try {
    process.send?.(message, handle);
  } catch {
    // The pool is gone; 'disconnect' ends this process.
  }
}

function start(request: Extract<ToLauncher, { t: 'spawn' }>): void {
  let child: ChildProcess;
  try {
    child = spawn(request.file, request.args, { env: request.env, stdio: ['ignore', 'ignore', 'inherit', 'pipe'] });
  } catch (err) {
    tell({ t: 'failed', id: request.id, message: err instanceof Error ? err.message : String(err) });
    return;
  }
  let reported = false;
  child.once('error', (err) => {
    // A process that never started emits 'error' and no 'exit'.
    if (child.pid === undefined && !reported) {
      reported = true;
      tell({ t: 'failed', id: request.id, message: err.message });
    }
  });
  if (child.pid === undefined) return;
  children.set(request.id, child);
  child.once('exit', (code, signal) => {
    children.delete(request.id);
    tell({ t: 'exit', id: request.id, code, signal });
  });
  // Handing the socket over closes our copy of it (keepOpen is false): only the pool and the worker hold it.
  tell({ t: 'spawned', id: request.id, pid: child.pid }, child.stdio[3] as Socket);
  tell({ t: 'released', id: request.id });
}

process.on('message', (raw: unknown) => {
  const message = raw as ToLauncher;
  if (message.t === 'spawn') start(message);
  else if (message.t === 'kill') {
    try {
      children.get(message.id)?.kill(message.signal);
    } catch {
      // It exited meanwhile: its 'exit' report is on its way.
    }
  }
});

// The pool closed the channel, exited or was killed: nothing is left to launch. Workers keep running until
// their own channel to the pool closes (they exit then), so none is killed here; our exit closes the copies
// of their sockets we may still hold.
process.on('disconnect', () => process.exit(0));
// 'disconnect' alone is not enough: Node postpones it while a sent handle waits for its acknowledgement,
// and a pool killed in that moment never acknowledges. The launcher then lived on, holding its copies of
// the workers' sockets, so those workers never saw their channel close either (found as leftover
// processes after the test suite). A parent pid other than the pool's means the pool is gone; the pool
// passes its pid, because it may die before this line runs (we would then read the reaper's pid).
const pool = Number(process.argv[2]);
const poolGone = (): boolean => Number.isInteger(pool) && pool > 0 && process.ppid !== pool;
if (poolGone()) process.exit(0);
setInterval(() => {
  if (poolGone()) process.exit(0);
}, 250).unref();
// A terminal's Ctrl-C and a service manager's SIGTERM reach the whole process group; the pool decides.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
