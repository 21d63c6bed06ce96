/**
 * codemode: a sandboxed code-mode execution engine for LLM agents.
 *
 * Named exports only; each layer adds its public surface here.
 *
 * @module
 */

export { CodemodeError, isCodemodeError, describeError } from './errors.js';
export type { CodemodeErrorCode } from './errors.js';
export { createLogger, setLogLevel, getLogLevel } from './log.js';
export type { Logger, LogLevel as LoggerLevel } from './log.js';
export {
  DEFAULT_TIMEOUT_MS,
  DEFAULT_MEMORY_MB,
  DEFAULT_MAX_RESULT_BYTES,
  DEFAULT_MAX_LOG_LINES,
  DEFAULT_MAX_LOG_BYTES,
  DEFAULT_MAX_PENDING_HOST_CALLS,
} from './sandbox/types.js';
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
} from './sandbox/types.js';
export { IsolatedVmSandbox, PreparedIsolate, prepareIsolate, liveIsolateCount, UNLIMITED_MEMORY_MB } from './sandbox/isolated-vm-sandbox.js';
export type { IsolatedVmSandboxOptions, RunWithPreparedOptions } from './sandbox/isolated-vm-sandbox.js';
export { resolveLimits, DEFAULT_LIMITS } from './sandbox/limits.js';

// proxy: upstream connections (stdio / Streamable HTTP / SSE) and the forwarding MCP server.
export {
  UpstreamConfigSchema,
  StdioUpstreamConfigSchema,
  HttpUpstreamConfigSchema,
  parseUpstreamConfig,
  describeUpstream,
  isStdioConfig,
} from './proxy/config.js';
export type { UpstreamConfig, StdioUpstreamConfig, HttpUpstreamConfig, HttpTransportKind } from './proxy/config.js';
export { connectUpstream, isSessionExpiredError, DEFAULT_CONNECT_TIMEOUT_MS } from './proxy/upstream.js';
export type { ConnectUpstreamOptions, UpstreamConnection } from './proxy/upstream.js';
export { createProxy, DEFAULT_IDLE_TIMEOUT_MS } from './proxy/proxy.js';
export type { Proxy, ProxyOptions, ProxySession } from './proxy/proxy.js';
export { serveProxyHttp } from './proxy/http.js';
export type { ProxyHttpServer, ServeProxyHttpOptions } from './proxy/http.js';
