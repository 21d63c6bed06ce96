/**
 * `codemode/server`: the engine as an MCP server (execute / search / get_schema over stdio or Streamable
 * HTTP), its HTTP auth and OAuth proxy. Importing it does not load isolated-vm: code mode loads the
 * sandbox on the first execute (or pass your own `sandbox`, e.g. from `codemode/sandbox`).
 *
 * @example
 * ```ts
 * import { createCodemodeServerFromConfig, serveStdio } from 'codemode/server';
 * ```
 *
 * @module
 */

export {
  createOAuthProxy,
  createOAuthProxyFromConfig,
  parseOAuthConfig,
  OAuthConfigSchema,
  MemoryOAuthStorage,
  FileOAuthStorage,
  RedisOAuthStorage,
  UpstreamGrantRevokedError,
  ClientMetadataDocumentError,
  DEFAULT_ACCESS_TOKEN_EXPIRY_SECONDS,
  DEFAULT_REFRESH_TOKEN_EXPIRY_SECONDS,
  SIGNING_KEY_ENV as OAUTH_SIGNING_KEY_ENV,
} from '../server/auth/index.js';
export type {
  OAuthProxy,
  OAuthProxyOptions,
  OAuthConfig,
  OAuthStorage,
  ReleaseLock,
  RedisOAuthStorageOptions,
  UpstreamConfig as OAuthUpstreamConfig,
  OidcUpstreamConfig,
  GitHubUpstreamConfig,
  ClientIdMetadataDocumentOptions,
  ClientMetadataFailure,
} from '../server/auth/index.js';

// server: the engine as an MCP server (execute / search / get_schema) over stdio or Streamable HTTP.
export { loadServersConfig, parseServersConfig } from '../server/config.js';
export type { ServersConfig, CodemodeSettings, ParseServersConfigOptions } from '../server/config.js';
export {
  createCodemodeServer,
  createCodemodeServerFromConfig,
  codeModeOptionsFromConfig,
  DEFAULT_SHUTDOWN_GRACE_MS,
  DEFAULT_PROGRESS_INTERVAL_MS,
  EXPOSED_TOOL_SEPARATOR,
  TOOLS_LIST_CACHE_HINT,
} from '../server/server.js';
export type {
  CodemodeServer,
  CodemodeServerOptions,
  CodemodeServerFromConfigOptions,
  CodemodeSession,
  CodemodeServerStats,
  CloseOptions as CodemodeServerCloseOptions,
} from '../server/server.js';
export { serveHttp, isLoopbackHost, DEFAULT_SESSION_IDLE_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES } from '../server/http.js';
export type { ServeHttpOptions, CodemodeHttpServer, HttpAuthLike, HttpAuthFactory } from '../server/http.js';
export { DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_PRINCIPAL, DEFAULT_SESSION_RATE_PER_SECOND, DEFAULT_SESSION_RATE_BURST } from '../server/sessions.js';
export type { SessionRate } from '../server/sessions.js';// The HTTP front door shared by serve and proxy: socket limits against slow clients.
export { DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS } from '../wire/http-guard.js';
export type { HttpServerLimits } from '../wire/http-guard.js';
export { serveStdio } from '../server/stdio.js';
export type { ServeStdioOptions, CodemodeStdioServer } from '../server/stdio.js';
export { createHttpAuth, parseTokenList, DEFAULT_AUTH_TOKENS_ENV, DEFAULT_JWT_ALGORITHMS } from '../server/http-auth.js';
export type { HttpAuth, HttpAuthOptions, JwtAuthOptions } from '../server/http-auth.js';
export { ExecutionLimiter, OverloadedError, DEFAULT_MAX_CONCURRENT_EXECUTIONS } from '../server/limiter.js';
export { connectUpstreams, Upstreams } from '../server/upstreams.js';
export type { UpstreamStatus, UpstreamState, ConnectUpstreamsOptions } from '../server/upstreams.js';
