import { afterEach } from 'vitest';
import { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import type { IsolatedVmSandboxOptions } from '../../src/sandbox/isolated-vm-sandbox.js';
import type { RunOutcome, SandboxError } from '../../src/sandbox/types.js';

const open: IsolatedVmSandbox[] = [];

/** A sandbox closed after the current test. */
export function sandbox(options: IsolatedVmSandboxOptions = {}): IsolatedVmSandbox {
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
