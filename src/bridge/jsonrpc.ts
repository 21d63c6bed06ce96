/**
 * JSON-RPC shapes and error codes the bridge needs. The bridge forwards messages without parsing
 * them against the SDK's schemas (that module alone costs ~100 ms to load), so it carries the few
 * codes it sends itself; the values are the SDK's `ErrorCode` values, no new codes are invented.
 *
 * @module
 */

import type { CodemodeErrorCode } from '../errors.js';
import { CodemodeError } from '../errors.js';

export type JsonRpcId = string | number;

export interface JsonRpcMessage {
  jsonrpc: '2.0';
  id?: JsonRpcId | null;
  method?: string;
  params?: Record<string, unknown> & { _meta?: Record<string, unknown> };
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: unknown };
}

/** The SDK's `ErrorCode` values that the bridge answers with. */
export const RpcCode = {
  ConnectionClosed: -32000,
  RequestTimeout: -32001,
  ParseError: -32700,
  InvalidRequest: -32600,
  InvalidParams: -32602,
  InternalError: -32603,
} as const;

export function isRequest(m: JsonRpcMessage): m is JsonRpcMessage & { id: JsonRpcId; method: string } {
  return typeof m.method === 'string' && m.id !== undefined && m.id !== null;
}

export function isNotification(m: JsonRpcMessage): boolean {
  return typeof m.method === 'string' && (m.id === undefined || m.id === null);
}

export function isResponse(m: JsonRpcMessage): boolean {
  return m.method === undefined && (m.result !== undefined || m.error !== undefined);
}

/** An upstream failure with the wire code it should be reported under. */
export class UpstreamError extends CodemodeError {
  override readonly name = 'UpstreamError';
  readonly rpcCode: number;
  readonly status: number | undefined;

  constructor(code: CodemodeErrorCode, message: string, options?: { cause?: unknown; rpcCode?: number; status?: number }) {
    super(code, message, options);
    this.rpcCode = options?.rpcCode ?? (code === 'UPSTREAM_TIMEOUT' ? RpcCode.RequestTimeout : RpcCode.InternalError);
    this.status = options?.status;
  }
}

export function errorResponse(id: JsonRpcId | null, code: number, message: string, data?: unknown): JsonRpcMessage {
  return { jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } };
}
