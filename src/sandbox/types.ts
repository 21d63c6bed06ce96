/**
 * The sandbox contract. A sandbox runs untrusted JavaScript with a set of host functions and reports
 * what happened as data. It knows nothing of MCP: tools are just host functions to it.
 *
 * @module
 */

/** Default wall-clock limit of one run. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Default heap limit of one isolate. */
export const DEFAULT_MEMORY_MB = 100;
/** Default cap on the JSON size of a run's return value. */
export const DEFAULT_MAX_RESULT_BYTES = 1024 * 1024;
/** Default cap on captured console lines per run. */
export const DEFAULT_MAX_LOG_LINES = 1_000;
/** Default cap on captured console bytes per run. */
export const DEFAULT_MAX_LOG_BYTES = 256 * 1024;
/** Default cap on host calls that may be pending at once in one run. */
export const DEFAULT_MAX_PENDING_HOST_CALLS = 1_000;

/**
 * Limits of one run. `null` turns a limit off; that is the only way to opt out.
 */
export interface SandboxLimits {
  /** Wall clock, enforced by a host timer that disposes the isolate. */
  timeoutMs: number | null;
  /** V8 heap limit of the isolate. */
  memoryMb: number | null;
  /** Cap on the UTF-8 JSON size of the return value; past it the run fails with kind `output_limit`. */
  maxResultBytes: number | null;
  /** Cap on captured console lines; further lines are dropped and a truncation marker is logged. */
  maxLogLines: number | null;
  /** Cap on captured console bytes; likewise. */
  maxLogBytes: number | null;
  /** Cap on host calls pending at once; a call past it throws inside the guest. */
  maxPendingHostCalls: number | null;
}

/**
 * What callers pass: `undefined` means all defaults, `null` means no limits at all, and a partial object
 * overrides only the keys it names (a key set to `null` turns that one limit off).
 */
export type SandboxLimitsInput = Partial<SandboxLimits> | null | undefined;

/** What a host function receives besides its arguments. */
export interface HostCallContext {
  /** Aborted when the run ends (settles, times out, is aborted) while this call is still in flight. */
  readonly signal: AbortSignal;
}

/**
 * A function the guest can call. It appears in the guest as an async function; its arguments arrive as
 * copies, and its return value (or thrown error) crosses back as a copy.
 *
 * A thrown `Error` reaches the guest as a catchable error with the same `name` and `message`; the own
 * enumerable property `data` (JSON-copyable), if any, is copied onto the guest error's own properties.
 */
export type HostFunction = (args: unknown[], context: HostCallContext) => unknown;

/** Host functions, optionally nested in namespaces: `{ tools: { github: { search: fn } } }`. */
export interface HostFunctions {
  [name: string]: HostFunction | HostFunctions;
}

export type LogLevel = 'log' | 'info' | 'warn' | 'error' | 'debug';

export interface LogEntry {
  level: LogLevel;
  /** The formatted line, as `console.log` would print it. */
  message: string;
}

export interface RunStats {
  /** Time from the run starting (after any queueing) to settling. */
  durationMs: number;
  /** Time spent waiting for a concurrency slot. */
  queuedMs: number;
  /** Host calls the guest started. */
  hostCalls: number;
  /** Host calls still in flight when the run settled; they were cancelled through their signal. */
  pendingHostCalls: number;
  /** Console lines dropped by the log caps. */
  droppedLogLines: number;
}

export type SandboxErrorKind =
  | 'timeout'
  | 'memory'
  | 'aborted'
  | 'syntax'
  | 'runtime'
  | 'tool_call_limit'
  | 'output_limit'
  | 'internal'
  | 'crashed';

export interface SandboxError {
  kind: SandboxErrorKind;
  message: string;
  /** The guest error's `name` for `runtime` errors (`TypeError`, `ToolError`, ...). */
  name?: string;
  /** 1-based line in the user's own code. */
  line?: number;
  /** 1-based column in the user's own code. */
  column?: number;
  stack?: string;
  /** JSON-copyable own properties of a thrown guest error (for example a ToolError's `tool`). */
  data?: Record<string, unknown>;
}

/** Guest failures are data: `run()` resolves with `ok: false` for anything the guest did. */
export type RunOutcome =
  | { ok: true; value: unknown; logs: LogEntry[]; stats: RunStats }
  | { ok: false; error: SandboxError; logs: LogEntry[]; stats: RunStats };

export interface RunOptions {
  /** Functions the guest may call, as globals (nested objects become namespaces). */
  hostFunctions?: HostFunctions;
  /** Aborting disposes the isolate at once (or removes a queued run from the queue). */
  signal?: AbortSignal;
  /**
   * Names of guest error classes to define as globals, each a subclass of `Error`. A host error whose
   * `name` is one of them is rethrown in the guest as an instance of that class.
   */
  errorClasses?: string[];
}

/** Runs untrusted code. Implementations: `IsolatedVmSandbox` (in-process). */
export interface SandboxProvider {
  /**
   * Runs `code` as the body of an async function: top-level `await` works and `return` gives the value.
   * Resolves for every guest outcome; rejects only for host bugs.
   */
  run(code: string, options?: RunOptions): Promise<RunOutcome>;
  /** Releases everything the provider holds. Idempotent. */
  close?(): Promise<void>;
}
