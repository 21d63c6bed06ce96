/**
 * JSON-RPC shapes, error codes and helpers for code that moves messages without the SDK's schemas
 * (loading `@modelcontextprotocol/sdk/types.js` alone costs ~100 ms, which the bridge's start-up cannot
 * afford, and the proxy's forward path parses bodies only to find ids and method names).
 *
 * The codes are the SDK's `ErrorCode` values; no new codes are invented.
 *
 * @module
 */

export type JsonRpcId = string | number;

export interface JsonRpcMessage {
  jsonrpc: '2.0';
  id?: JsonRpcId | null;
  method?: string;
  params?: Record<string, unknown> & { _meta?: Record<string, unknown> };
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: unknown };
}

/** The SDK's `ErrorCode` values that SDK-free code answers with. */
export const RpcCode = {
  ConnectionClosed: -32000,
  RequestTimeout: -32001,
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
} as const;

/** A request: a method and an id (a message with a `null` id is not one). Takes anything parsed from JSON. */
export function isRequest(m: unknown): m is JsonRpcMessage & { id: JsonRpcId; method: string } {
  if (typeof m !== 'object' || m === null) return false;
  const { method, id } = m as JsonRpcMessage;
  return typeof method === 'string' && id !== undefined && id !== null;
}

export function isResponse(m: JsonRpcMessage): boolean {
  return m.method === undefined && (m.result !== undefined || m.error !== undefined);
}

/**
 * A JSON-RPC error answer (`data` only when given).
 *
 * @example
 * ```ts
 * errorResponse(7, RpcCode.InvalidParams, 'Unknown tool: x'); // { jsonrpc: '2.0', id: 7, error: { code: -32602, message: 'Unknown tool: x' } }
 * ```
 */
export function errorResponse(id: JsonRpcId | null, code: number, message: string, data?: unknown): JsonRpcMessage {
  return { jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } };
}

/**
 * The message of a JSON-RPC error as it travelled, without the "MCP error <code>: " prefix the SDK's
 * `McpError` adds to its `message`. Re-sending the prefixed text would double the prefix, since the
 * receiving SDK adds its own.
 *
 * @example
 * ```ts
 * wireErrorMessage({ code: -32602, message: 'MCP error -32602: Unknown tool' }); // 'Unknown tool'
 * ```
 */
export function wireErrorMessage(error: { code: number; message: string }): string {
  const prefix = `MCP error ${error.code}: `;
  return error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
}
