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
// Isolate threads still running after their isolate was disposed (a guest stuck in a long built-in).
export { busyIsolateThreads, ghostIsolateThreadCount, onGhostIsolateThread, isolateThreadsIdle, GHOST_AFTER_MS } from './sandbox/threads.js';
// sandbox/process: the same contract in a pool of worker processes (crash containment, warm starts).
export { ProcessSandbox } from './sandbox/process/process-sandbox.js';
export type { ProcessSandboxOptions } from './sandbox/process/process-sandbox.js';
export { ProcessPool, DEFAULT_KILL_GRACE_MS, DEFAULT_HANG_TIMEOUT_MS, DEFAULT_MAX_RUNS_PER_WORKER, DEFAULT_MAX_RSS_MB } from './sandbox/process/pool.js';
export type { ProcessPoolOptions, ProcessPoolStats } from './sandbox/process/pool.js';

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
export { DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES } from './proxy/stdio-transport.js';
export type { ConnectUpstreamOptions, UpstreamConnection } from './proxy/upstream.js';
export { createProxy, DEFAULT_IDLE_TIMEOUT_MS } from './proxy/proxy.js';
export type { Proxy, ProxyOptions, ProxySession, ProxyConnectOptions } from './proxy/proxy.js';
export { serveProxyHttp, DEFAULT_PROXY_MAX_BODY_BYTES } from './proxy/http.js';
export type { ProxyHttpServer, ServeProxyHttpOptions } from './proxy/http.js';

// codemode: the code-mode engine (catalog, declarations, discovery, execute) and its MCP-facing tools.
export { CodeMode, DEFAULT_MAX_TOOL_CALLS, DEFAULT_MAX_CONCURRENT_TOOL_CALLS } from './codemode/codemode.js';
export type { CodeModeOptions, ExecuteOptions } from './codemode/codemode.js';
export { mcpClientSource, localTools, localTool } from './codemode/sources.js';
export type { McpClientSourceOptions, LocalTool, LocalToolContext } from './codemode/sources.js';
export { ToolError, ToolCallLimitError } from './codemode/tool-errors.js';
export type { ToolErrorData } from './codemode/tool-errors.js';
export type {
  ToolSource,
  ToolDefinition,
  ToolCallOutput,
  SourceCallOptions,
  JsonSchema,
  ExecuteResult,
  ExecuteError,
  ExecuteErrorKind,
  ExecuteStats,
  ToolCallRecord,
} from './codemode/types.js';
export { DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT } from './codemode/search.js';
export type { SearchDetail, SearchOptions, ToolSummary, ParameterSummary } from './codemode/search.js';
export { schemaToTs } from './codemode/schema-to-ts.js';
export { toIdentifier } from './codemode/naming.js';
// What the catalog does to a hostile upstream's tools: caps, and the warnings it records when it trims.
export { MAX_TOOL_DESCRIPTION_CHARS, MAX_TOOL_NAME_CHARS, MAX_SCHEMA_CHARS, MAX_SCHEMA_DEPTH } from './codemode/catalog-limits.js';
export type { CatalogWarning } from './codemode/catalog-limits.js';
export {
  createCodeModeTools,
  formatExecuteResult,
  executeDescription,
  DEFAULT_MAX_RESULT_TEXT_CHARS,
  DEFAULT_MAX_LOG_TEXT_CHARS,
  DEFAULT_INLINE_DECLARATIONS_MAX_CHARS,
} from './codemode/mcp-tools.js';
export type { CodeModeTool, CodeModeToolsOptions, ToolHandlerExtra } from './codemode/mcp-tools.js';

// telemetry: OpenTelemetry helpers (tracer, MCP semconv attributes, trace context in params._meta).
export { getTracer, injectTraceContext, extractTraceContext, TRACER_NAME, ATTR, ERROR_TYPE_TOOL_ERROR } from './telemetry/index.js';

// server/auth: OAuth proxy for `codemode serve --http` (upstream IdP login, sessions that survive idle time).
export {
  createOAuthProxy,
  createOAuthProxyFromConfig,
  parseOAuthConfig,
  OAuthConfigSchema,
  MemoryOAuthStorage,
  FileOAuthStorage,
  RedisOAuthStorage,
  UpstreamGrantRevokedError,
  DEFAULT_ACCESS_TOKEN_EXPIRY_SECONDS,
  DEFAULT_REFRESH_TOKEN_EXPIRY_SECONDS,
} from './server/auth/index.js';
export type { OAuthProxy, OAuthProxyOptions, OAuthConfig, OAuthStorage, UpstreamConfig as OAuthUpstreamConfig } from './server/auth/index.js';

// server: the engine as an MCP server (execute / search / get_schema) over stdio or Streamable HTTP.
export { loadServersConfig, parseServersConfig } from './server/config.js';
export type { ServersConfig, CodemodeSettings, ParseServersConfigOptions } from './server/config.js';
export {
  createCodemodeServer,
  createCodemodeServerFromConfig,
  codeModeOptionsFromConfig,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_PROGRESS_INTERVAL_MS,
  EXPOSED_TOOL_SEPARATOR,
} from './server/server.js';
export type {
  CodemodeServer,
  CodemodeServerOptions,
  CodemodeServerFromConfigOptions,
  CodemodeSession,
  CodemodeServerStats,
  CloseOptions as CodemodeServerCloseOptions,
} from './server/server.js';
export { serveHttp, isLoopbackHost, DEFAULT_SESSION_IDLE_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES } from './server/http.js';
export type { ServeHttpOptions, CodemodeHttpServer, HttpAuthLike, HttpAuthFactory } from './server/http.js';
export { DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_PRINCIPAL } from './server/sessions.js';
// The HTTP front door shared by serve and proxy: socket limits against slow clients.
export { DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS } from './wire/http-guard.js';
export type { HttpServerLimits } from './wire/http-guard.js';
export { serveStdio } from './server/stdio.js';
export type { ServeStdioOptions, CodemodeStdioServer } from './server/stdio.js';
export { createHttpAuth, parseTokenList, DEFAULT_AUTH_TOKENS_ENV, DEFAULT_JWT_ALGORITHMS } from './server/http-auth.js';
export type { HttpAuth, HttpAuthOptions, JwtAuthOptions } from './server/http-auth.js';
export { ExecutionLimiter, OverloadedError, DEFAULT_MAX_CONCURRENT_EXECUTIONS } from './server/limiter.js';
export { connectUpstreams, Upstreams } from './server/upstreams.js';
export type { UpstreamStatus, UpstreamState, ConnectUpstreamsOptions } from './server/upstreams.js';
