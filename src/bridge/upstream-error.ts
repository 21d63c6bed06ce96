/**
 * The bridge's upstream failures: a local error that also says which JSON-RPC code reports it to the host,
 * and how a failed fetch or an HTTP error body is put into words.
 *
 * @module
 */

import type { CodemodeErrorCode } from '../errors.js';
import { CodemodeError, describeError } from '../errors.js';
import { RpcCode } from '../wire/jsonrpc.js';
import { networkFailureOf } from '../wire/net-errors.js';

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

/** Maps a fetch() rejection to a message that names the cause. */
export function classifyFetchError(err: unknown, url: URL, what: string): UpstreamError {
  const where = url.host;
  if ((err as { name?: string } | null)?.name === 'TimeoutError') return new UpstreamError('UPSTREAM_TIMEOUT', `${what}: ${url.href} did not answer in time`, { cause: err });
  const net = networkFailureOf(err);
  switch (net?.kind) {
    case 'refused':
      return new UpstreamError('UPSTREAM_UNAVAILABLE', `${what}: connection refused by ${where}: nothing is listening there. Is the server running, and is the port right?`, { cause: err });
    case 'dns':
      return new UpstreamError('UPSTREAM_UNAVAILABLE', `${what}: cannot resolve host ${url.hostname} (DNS ${net.code}). Check the URL.`, { cause: err });
    case 'reset':
      return new UpstreamError('UPSTREAM_UNAVAILABLE', `${what}: the connection to ${where} was reset (${net.code}); the server may have restarted`, { cause: err });
    case 'unreachable':
      return new UpstreamError('UPSTREAM_UNAVAILABLE', `${what}: ${where} is unreachable (${net.code})`, { cause: err });
    case 'tls':
      return new UpstreamError('UPSTREAM_UNAVAILABLE', `${what}: TLS failure talking to ${where} (${net.code}: ${net.message ?? net.text})`, { cause: err });
    default: {
      const causeMessage = (err as { cause?: { message?: unknown } } | null)?.cause?.message;
      return new UpstreamError('UPSTREAM_UNAVAILABLE', `${what}: request to ${url.href} failed: ${typeof causeMessage === 'string' ? causeMessage : describeError(err)}`, { cause: err });
    }
  }
}

/** The start of an error answer's body, white space folded, for a message. */
export async function bodySnippet(res: Response): Promise<string> {
  try {
    const text = (await res.text()).replace(/\s+/g, ' ').trim();
    return text.length > 200 ? `${text.slice(0, 200)}...` : text;
  } catch {
    return '';
  }
}
