/**
 * `codemode/sandbox`: the isolate providers alone (in-process isolated-vm, and the process pool) with
 * their limits and outcome types. Knows no MCP. Importing it loads isolated-vm's native addon.
 *
 * @example
 * ```ts
 * import { IsolatedVmSandbox } from 'codemode/sandbox';
 * const sandbox = new IsolatedVmSandbox({ limits: { timeoutMs: 5_000 } });
 * const outcome = await sandbox.run('return 6 * 7', { hostFunctions: {} });
 * ```
 *
 * @module
 */

export {
  DEFAULT_TIMEOUT_MS,
  DEFAULT_MEMORY_MB,
  DEFAULT_MAX_RESULT_BYTES,
  DEFAULT_MAX_LOG_LINES,
  DEFAULT_MAX_LOG_BYTES,
  DEFAULT_MAX_PENDING_HOST_CALLS,
} from '../sandbox/types.js';
export type {
  SandboxLimits,
  SandboxLimitsInput,
  SandboxProvider,
  SandboxError,
  SandboxErrorKind,
  RunOutcome,
  RunOptions,
  RunStats,
  LogEntry,
  HostFunction,
  HostFunctions,
  HostCallContext,
} from '../sandbox/types.js';
export { IsolatedVmSandbox, PreparedIsolate, prepareIsolate, liveIsolateCount, UNLIMITED_MEMORY_MB } from '../sandbox/isolated-vm-sandbox.js';
export type { IsolatedVmSandboxOptions, RunWithPreparedOptions } from '../sandbox/isolated-vm-sandbox.js';
export { resolveLimits, DEFAULT_LIMITS } from '../sandbox/limits.js';
// Isolate threads still running after their isolate was disposed (a guest stuck in a long built-in).
export { busyIsolateThreads, ghostIsolateThreadCount, onGhostIsolateThread, isolateThreadsIdle, GHOST_AFTER_MS } from '../sandbox/threads.js';
// sandbox/process: the same contract in a pool of worker processes (crash containment, warm starts).
export { ProcessSandbox } from '../sandbox/process/process-sandbox.js';
export type { ProcessSandboxOptions } from '../sandbox/process/process-sandbox.js';
export { ProcessPool, DEFAULT_KILL_GRACE_MS, DEFAULT_HANG_TIMEOUT_MS, DEFAULT_MAX_RUNS_PER_WORKER, DEFAULT_MAX_RSS_MB } from '../sandbox/process/pool.js';
export type { ProcessPoolOptions, ProcessPoolStats } from '../sandbox/process/pool.js';
