/**
 * The bridge's upstream failure: a local error that also says which JSON-RPC code reports it to the host.
 *
 * @module
 */

import type { CodemodeErrorCode } from '../errors.js';
import { CodemodeError } from '../errors.js';
import { RpcCode } from '../wire/jsonrpc.js';

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
