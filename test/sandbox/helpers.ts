import { afterAll, afterEach, beforeAll } from 'vitest';
import { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import type { IsolatedVmSandboxOptions } from '../../src/sandbox/isolated-vm-sandbox.js';
import { ProcessPool } from '../../src/sandbox/process/pool.js';
import { ProcessSandbox } from '../../src/sandbox/process/process-sandbox.js';
import type { RunOutcome, SandboxError } from '../../src/sandbox/types.js';

/** True in the vitest project that runs this suite again on the process pool (vitest.config.ts). */
export const ON_PROCESS_POOL = process.env.CODEMODE_TEST_SANDBOX === 'process';

const open: (IsolatedVmSandbox | ProcessSandbox)[] = [];
// One started pool per test file (one worker: the suite is about the contract, not containment), shared by
// its sandboxes, so no test waits for a worker process to start.
let pool: ProcessPool | undefined;
if (ON_PROCESS_POOL) {
  beforeAll(async () => {
    pool = new ProcessPool({ size: 1, concurrencyPerWorker: 4, standbyWorkers: 0 });
    await pool.ready();
  });
  afterAll(async () => {
    await pool?.close();
  });
}

/** A sandbox closed after the current test: in-process, or on the process pool under CODEMODE_TEST_SANDBOX=process. */
export function sandbox(options: IsolatedVmSandboxOptions = {}): IsolatedVmSandbox {
  if (ON_PROCESS_POOL) {
    const { limits, maxConcurrency, maxQueuedRuns } = options;
    const sb = new ProcessSandbox({
      pool: pool!,
      ...(limits !== undefined ? { limits } : {}),
      ...(maxConcurrency !== undefined ? { maxConcurrency } : {}),
      ...(maxQueuedRuns !== undefined ? { maxQueuedRuns } : {}),
    });
    open.push(sb);
    // Same contract; the suite uses run(), close(), limits, maxConcurrency and maxQueuedRuns, which both have.
    return sb as unknown as IsolatedVmSandbox;
  }
  const sb = new IsolatedVmSandbox({ warmIsolates: 0, ...options });
  open.push(sb);
  return sb;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((sb) => sb.close()));
});

export function value(outcome: RunOutcome): unknown {
  if (!outcome.ok) throw new Error(`expected ok, got ${outcome.error.kind}: ${outcome.error.message}`);
  return outcome.value;
}

export function failure(outcome: RunOutcome): SandboxError {
  if (outcome.ok) throw new Error(`expected a failure, got ok: ${JSON.stringify(outcome.value)}`);
  return outcome.error;
}
