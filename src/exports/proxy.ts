/**
 * `codemode/proxy`: upstream connections (stdio, Streamable HTTP, SSE) and the forwarding MCP server,
 * without the sandbox: importing it never loads isolated-vm.
 *
 * @example
 * ```ts
 * import { createProxy } from 'codemode/proxy';
 * ```
 *
 * @module
 */

export {
  UpstreamConfigSchema,
  StdioUpstreamConfigSchema,
  HttpUpstreamConfigSchema,
  parseUpstreamConfig,
  describeUpstream,
  isStdioConfig,
} from '../proxy/config.js';
export type { UpstreamConfig, StdioUpstreamConfig, HttpUpstreamConfig, HttpTransportKind } from '../proxy/config.js';
export { connectUpstream, isSessionExpiredError, DEFAULT_CONNECT_TIMEOUT_MS } from '../proxy/upstream.js';
export { DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES } from '../proxy/stdio-transport.js';
export type { ConnectUpstreamOptions, NegotiatedConnectOptions, UpstreamConnection } from '../proxy/upstream.js';
export type { UpstreamClient } from '../proxy/negotiated-client.js';
export { createProxy, DEFAULT_IDLE_TIMEOUT_MS } from '../proxy/proxy.js';
export type { Proxy, ProxyOptions, ProxySession, ProxyConnectOptions } from '../proxy/proxy.js';
export { serveProxyHttp, DEFAULT_PROXY_MAX_BODY_BYTES } from '../proxy/http.js';
export type { ProxyHttpServer, ServeProxyHttpOptions } from '../proxy/http.js';
// The HTTP front door shared by serve and proxy: socket limits against slow clients.
export { DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS } from '../wire/http-guard.js';
export type { HttpServerLimits } from '../wire/http-guard.js';
