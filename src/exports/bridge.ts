/**
 * `codemode/bridge`: the stdio-to-remote-HTTP bridge behind `codemode-remote`, for a host that embeds it
 * instead of launching the bin. Importing it loads neither isolated-vm nor the MCP SDK (the bridge frames
 * JSON-RPC itself, so it starts fast; the SDK's OAuth client is loaded only when an OAuth flow runs).
 *
 * @example
 * ```ts
 * import { startBridge } from 'codemode/bridge';
 * const bridge = startBridge(
 *   { url: new URL('https://mcp.example.com/mcp'), transport: 'auto', headers: {}, connectTimeoutMs: 30_000, ignoreTools: [], auth: undefined, logLevel: undefined },
 *   { input: process.stdin, output: process.stdout },
 * );
 * process.exitCode = await bridge.done;
 * ```
 *
 * @module
 */

export { startBridge } from '../bridge/bridge.js';
export type { Bridge, BridgeIo } from '../bridge/bridge.js';
export { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_AUTH_TIMEOUT_MS, DEFAULT_REFRESH_THRESHOLD_S } from '../bridge/config.js';
export type { BridgeConfig, BridgeOAuthConfig, CrossAppAccessConfig } from '../bridge/config.js';
// Not here: crossAppAccess, which needs the SDK's OAuth client; startBridge loads it only when a flow needs it.
export { UpstreamError } from '../bridge/upstream-error.js';
