/**
 * An upstream client that negotiates the protocol era: the v2 SDK `Client` in `auto` mode (2026-07-28 where
 * the server offers it through `server/discover`, 2025-11-25 `initialize` otherwise), seen through the part
 * of the v1 `Client` interface that codemode's tool sources and the serve host use (`UpstreamClient`). The
 * v1 `Client` has the same shape, so code written against `UpstreamClient` takes either.
 *
 * Errors leave it in the v1 shapes the rest of codemode classifies: a JSON-RPC error answer is a v1
 * `McpError` (same code, message and data), a request timeout or a closed connection the v1 `McpError`
 * codes for those. HTTP failures keep the v2 `SdkHttpError`, which `httpStatusOf` reads by name.
 *
 * @module
 */

import type { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { Client as V2Client } from '@modelcontextprotocol/client';

/** What codemode needs of an upstream client; the v1 SDK `Client` and `NegotiatedClient` both provide it. */
export interface UpstreamClient {
  request: V1Client['request'];
  listTools: V1Client['listTools'];
  getServerCapabilities: V1Client['getServerCapabilities'];
  setNotificationHandler: V1Client['setNotificationHandler'];
  onclose?: (() => void) | undefined;
  readonly transport: { readonly sessionId?: string | undefined } | undefined;
  close(): Promise<void>;
}

/** The error-class names of the v2 SDK, read through the prototype chain (two copies may be loaded). */
function v2ErrorName(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  let proto: unknown = Object.getPrototypeOf(err);
  for (let depth = 0; depth < 8 && proto !== null && proto !== Error.prototype; depth++) {
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
    if (name === 'ProtocolError' || name === 'SdkError' || name === 'SdkHttpError') return name;
    proto = Object.getPrototypeOf(proto);
  }
  return undefined;
}

/**
 * A v2 SDK error as the v1 error codemode classifies: JSON-RPC error answers and the SDK's own timeout and
 * closed-connection errors become `McpError`; everything else (HTTP status errors, network failures) passes
 * through unchanged.
 */
export function toV1Error(err: unknown): unknown {
  const name = v2ErrorName(err);
  if (name === 'ProtocolError') {
    const e = err as Error & { code: number; data?: unknown };
    return new McpError(e.code, e.message, e.data);
  }
  if (name === 'SdkError') {
    const e = err as Error & { code: string; data?: unknown };
    if (e.code === 'REQUEST_TIMEOUT') return new McpError(ErrorCode.RequestTimeout, e.message, e.data);
    if (e.code === 'CONNECTION_CLOSED') return new McpError(ErrorCode.ConnectionClosed, e.message, e.data);
    // A failed era negotiation carries what actually went wrong (a 404, an HTML page, a refused connection).
    if (e.code === 'ERA_NEGOTIATION_FAILED' && e.cause !== undefined) return toV1Error(e.cause);
  }
  return err;
}

/** The `method` literal of a v1 notification schema (a zod object whose `method` is a literal). */
function methodOf(schema: unknown): string {
  const method = (schema as { shape?: { method?: { value?: unknown; values?: Iterable<unknown> } } }).shape?.method;
  const value = method?.value ?? (method?.values !== undefined ? [...method.values][0] : undefined);
  if (typeof value !== 'string') throw new TypeError('setNotificationHandler needs a notification schema whose "method" is a literal.');
  return value;
}

/** A connected (or connecting) v2 client behind the `UpstreamClient` interface. */
export class NegotiatedClient implements UpstreamClient {
  readonly inner: V2Client;

  constructor(inner: V2Client) {
    this.inner = inner;
  }

  get onclose(): (() => void) | undefined {
    return this.inner.onclose;
  }

  set onclose(handler: (() => void) | undefined) {
    this.inner.onclose = handler;
  }

  get transport(): { readonly sessionId?: string | undefined } | undefined {
    return this.inner.transport;
  }

  /** `2026-07-28` or `2025-11-25` (or older) once connected. */
  get protocolVersion(): string | undefined {
    return this.inner.getNegotiatedProtocolVersion();
  }

  request = (async (request: { method: string; params?: Record<string, unknown> }, resultSchema: unknown, options?: Record<string, unknown>) => {
    try {
      // The v1 result schemas are zod schemas, which are Standard Schemas: the v2 client validates with them.
      return await this.inner.request(request as Parameters<V2Client['request']>[0], resultSchema as never, options);
    } catch (err) {
      throw toV1Error(err);
    }
  }) as unknown as V1Client['request'];

  listTools = (async (params?: Record<string, unknown>, options?: Record<string, unknown>) => {
    try {
      // Never from the client's cache: codemode lists at start and after list_changed, and wants the answer now.
      return await this.inner.listTools(params as Parameters<V2Client['listTools']>[0], { ...options, cacheMode: 'bypass' });
    } catch (err) {
      throw toV1Error(err);
    }
  }) as unknown as V1Client['listTools'];

  getServerCapabilities = (() => this.inner.getServerCapabilities()) as V1Client['getServerCapabilities'];

  setNotificationHandler = ((schema: unknown, handler: (notification: unknown) => void | Promise<void>) => {
    this.inner.setNotificationHandler(methodOf(schema) as never, handler as never);
  }) as V1Client['setNotificationHandler'];

  close(): Promise<void> {
    return this.inner.close();
  }
}
