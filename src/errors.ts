/**
 * Local errors of codemode. These are thrown to host code (the embedding API, the CLI) and are never
 * serialized onto the wire as-is: MCP-facing code maps them to `McpError` or to `isError` results.
 *
 * @module
 */

/** Machine-readable error codes. Messages say what happened and what to do; codes say which class it is. */
export type CodemodeErrorCode =
  /** A config file, option bag or CLI flag is malformed. */
  | 'INVALID_CONFIG'
  /** An argument to a public API is malformed. */
  | 'INVALID_ARGUMENT'
  /** An upstream MCP server could not be reached or started. */
  | 'UPSTREAM_UNAVAILABLE'
  /** An upstream accepted the connection but did not answer in time. */
  | 'UPSTREAM_TIMEOUT'
  /** An upstream denied authorization (401/403). */
  | 'UPSTREAM_AUTH'
  /** An upstream answered with something that is not MCP. */
  | 'UPSTREAM_PROTOCOL'
  /** A tool name is unknown or hidden. */
  | 'TOOL_NOT_FOUND'
  /** Two tools sanitize to the same identifier. */
  | 'TOOL_NAME_COLLISION'
  /** OAuth discovery, registration, authorization or refresh failed. */
  | 'AUTH_FAILED'
  /** The sandbox itself failed (a host bug, not a guest failure). */
  | 'SANDBOX_INTERNAL'
  /** An operation was attempted on a closed object. */
  | 'CLOSED'
  /** An operation was cancelled through an AbortSignal. */
  | 'ABORTED'
  /** A bounded queue is full. */
  | 'OVERLOADED';

/**
 * Base class of every error codemode throws to host code.
 *
 * @example
 * ```ts
 * try { await proxy.connect(); }
 * catch (err) { if (err instanceof CodemodeError && err.code === 'UPSTREAM_UNAVAILABLE') retryLater(); }
 * ```
 */
export class CodemodeError extends Error {
  override readonly name: string = 'CodemodeError';
  readonly code: CodemodeErrorCode;

  constructor(code: CodemodeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** True when `err` is a CodemodeError, optionally of one code. */
export function isCodemodeError(err: unknown, code?: CodemodeErrorCode): err is CodemodeError {
  return err instanceof CodemodeError && (code === undefined || err.code === code);
}

/** A readable one-line description of any thrown value, for messages and logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err) ?? String(err);
  } catch {
    return String(err);
  }
}
