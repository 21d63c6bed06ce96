/**
 * Naming network and HTTP failures: which errno code means what, and what an HTTP status is called. The
 * proxy and the bridge phrase their messages differently (the proxy names the upstream's label, the bridge
 * the host and a hint), but both read the failure through here, so a code the one understands the other
 * does too.
 *
 * @module
 */

import type * as NodeHttp from 'node:http';
import { createRequire } from 'node:module';

// node:http only when a status is named, and through require: an `import ... from 'node:http'` makes Node
// build an ES module facade that reads every export, which loads its undici-backed ones too (~45 ms on a
// 2-vCPU machine), and even a require of it costs a few ms that stdio-only start-ups do not need.
let statusCodes: typeof NodeHttp.STATUS_CODES | undefined;
const statusCodesTable = (): typeof NodeHttp.STATUS_CODES => (statusCodes ??= (createRequire(import.meta.url)('node:http') as typeof NodeHttp).STATUS_CODES);

/** The class of a network failure, for callers that phrase each class themselves. */
export type NetworkFailureKind = 'refused' | 'dns' | 'reset' | 'unreachable' | 'tls';

/** A network failure found in an error (or its `cause` chain). */
export interface NetworkFailure {
  /** The errno-style code, e.g. `ECONNREFUSED`, `UND_ERR_SOCKET`, `CERT_HAS_EXPIRED`. */
  code: string;
  kind: NetworkFailureKind;
  /** What it means, as a phrase: "nothing is listening there (connection refused)". */
  text: string;
  /** The message of the error that carried the code. */
  message: string | undefined;
}

const NETWORK_ERRORS: Record<string, { kind: NetworkFailureKind; text: string }> = {
  ECONNREFUSED: { kind: 'refused', text: 'nothing is listening there (connection refused)' },
  ENOTFOUND: { kind: 'dns', text: 'the host name does not resolve' },
  EAI_NONAME: { kind: 'dns', text: 'the host name does not resolve' },
  EAI_AGAIN: { kind: 'dns', text: 'the host name could not be resolved (DNS lookup failed)' },
  ECONNRESET: { kind: 'reset', text: 'the connection was reset' },
  EPIPE: { kind: 'reset', text: 'the connection was reset' },
  UND_ERR_SOCKET: { kind: 'reset', text: 'the connection closed unexpectedly' },
  EHOSTUNREACH: { kind: 'unreachable', text: 'the host is unreachable' },
  ENETUNREACH: { kind: 'unreachable', text: 'the network is unreachable' },
  ETIMEDOUT: { kind: 'unreachable', text: 'the TCP connection timed out' },
  UND_ERR_CONNECT_TIMEOUT: { kind: 'unreachable', text: 'the TCP connection timed out' },
  CERT_HAS_EXPIRED: { kind: 'tls', text: 'its TLS certificate has expired' },
  DEPTH_ZERO_SELF_SIGNED_CERT: { kind: 'tls', text: 'its TLS certificate is self-signed' },
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: { kind: 'tls', text: 'its TLS certificate cannot be verified' },
};

function lookup(code: string): { kind: NetworkFailureKind; text: string } | undefined {
  if (Object.hasOwn(NETWORK_ERRORS, code)) return NETWORK_ERRORS[code];
  // OpenSSL and Node name the rest of the TLS failures with these words (ERR_SSL_..., ERR_TLS_..., ..._CERT_...).
  if (/CERT|SSL|TLS/.test(code)) return { kind: 'tls', text: 'the TLS connection failed' };
  return undefined;
}

/**
 * The network failure behind `error`: the first errno-style `code` on it or its `cause` chain (fetch wraps
 * the socket error as `TypeError('fetch failed', { cause })`) that names one, or `undefined`.
 *
 * @example
 * ```ts
 * networkFailureOf(new TypeError('fetch failed', { cause: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }) }));
 * // { code: 'ECONNREFUSED', kind: 'refused', text: 'nothing is listening there (connection refused)', message: 'connect' }
 * ```
 */
export function networkFailureOf(error: unknown): NetworkFailure | undefined {
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    const known = typeof code === 'string' ? lookup(code) : undefined;
    if (known !== undefined) {
      const message = (e as { message?: unknown }).message;
      return { code: code as string, ...known, message: typeof message === 'string' ? message : undefined };
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * An HTTP status with its standard name, as `node:http` knows it: `HTTP 404 Not Found`, or `HTTP 599`
 * for a status without one.
 *
 * @example
 * ```ts
 * describeHttpStatus(405); // 'HTTP 405 Method Not Allowed'
 * ```
 */
export function describeHttpStatus(status: number): string {
  const name = statusCodesTable()[status];
  return name === undefined ? `HTTP ${status}` : `HTTP ${status} ${name}`;
}
