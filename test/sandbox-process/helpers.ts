import { afterEach } from 'vitest';
import { ProcessPool } from '../../src/sandbox/process/pool.js';
import type { ProcessPoolOptions } from '../../src/sandbox/process/pool.js';
import { ProcessSandbox } from '../../src/sandbox/process/process-sandbox.js';
import type { ProcessSandboxOptions } from '../../src/sandbox/process/process-sandbox.js';
import type { RunOutcome, SandboxError } from '../../src/sandbox/types.js';

const open: { close(): Promise<void> }[] = [];

/** A started pool, closed after the current test. */
export async function startPool(options: ProcessPoolOptions = {}): Promise<ProcessPool> {
  const pool = new ProcessPool({ size: 1, standbyWorkers: 1, ...options });
  open.push(pool);
  await pool.ready();
  return pool;
}

/** A sandbox on its own started pool, closed after the current test. */
export async function startSandbox(options: ProcessSandboxOptions = {}): Promise<ProcessSandbox> {
  const sandbox = new ProcessSandbox({ size: 1, standbyWorkers: 1, ...options });
  open.push(sandbox);
  await sandbox.ready();
  return sandbox;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Polls `check` every 10 ms until it holds; fails after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A promise that resolves when called, for "the guest reached this point" handshakes. */
export function latch(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

export function value(outcome: RunOutcome): unknown {
  if (!outcome.ok) throw new Error(`expected ok, got ${outcome.error.kind}: ${outcome.error.message}`);
  return outcome.value;
}

export function failure(outcome: RunOutcome): SandboxError {
  if (outcome.ok) throw new Error(`expected a failure, got ok: ${JSON.stringify(outcome.value)}`);
  return outcome.error;
}
