/**
 * The forward path's POST client for plain `http:` upstreams: a thin wrapper over an undici `Pool`
 * (keep-alive, llhttp parsing, Content-Length/chunked/close framing, backpressure) that streams the answer
 * back through callbacks.
 *
 * Why undici and not `node:http`: `node:http`'s client costs about as much CPU per request as the rest of a
 * forwarding hop (ClientRequest, IncomingMessage, agent bookkeeping); on a 2-core machine that alone is most
 * of a 0.3 ms budget. undici's `dispatch` with a handler object allocates neither. Why not a hand-written
 * client: the answer comes from an upstream we do not control, and HTTP/1.1 response parsing is what a
 * maintained parser is for.
 *
 * What undici decides, and we keep as is:
 * - Stale keep-alive sockets. undici honours the server's `Keep-Alive: timeout=N` hint (minus 2 s) and,
 *   before reusing an idle socket, yields one event-loop turn so a pending FIN/RST is seen first; a socket
 *   the upstream closed while idle is therefore not reused. A POST whose socket dies after it was written
 *   is *not* retried (undici retries no non-idempotent request, and neither do we): it may have run
 *   upstream, so the failure is reported.
 * - Header validation: a header name or value that could inject headers (CR, LF, NUL) is refused before
 *   anything is written (`UND_ERR_INVALID_ARG`).
 * - No timeouts: forwarded calls are not capped (tool calls may run for minutes; progress keeps them
 *   alive), so undici's 300 s headers/body timeouts are switched off.
 *
 * TLS, GET streams and DELETE stay on `node:http`.
 *
 * @module
 */

import { errors, Pool } from 'undici';
import type { Dispatcher } from 'undici';

export interface RawResponseHandlers {
  /** The status and the response headers (names lower-case; repeated headers joined with ", "). */
  head(status: number, headers: Record<string, string>): void;
  /** A piece of the body (de-chunked). Returning false pauses reading until `waitDrain`'s callback runs. */
  data(chunk: Buffer): boolean;
  /** Called after `data` returned false: call `resume` when the consumer can take more. */
  waitDrain(resume: () => void): void;
  /** The body is complete. */
  end(): void;
  /** The exchange failed; `answered` says whether the response head had arrived. */
  error(error: Error, answered: boolean): void;
}

/** Request headers the pool sets itself (undici frames the body and manages the connection). */
const SKIPPED = new Set(['content-length', 'host', 'connection', 'transfer-encoding', 'keep-alive']);

/** A parser error means the upstream's bytes are not an HTTP/1.1 answer: say so (llhttp's code, when undici gives one). */
function describe(error: Error): Error {
  if (error instanceof errors.HTTPParserError) {
    const code = (error as { code?: string }).code ?? 'HPE_INVALID_RESPONSE';
    return Object.assign(new Error(`the upstream did not answer with HTTP/1.1: ${error.message}`, { cause: error }), { code });
  }
  return error;
}

/**
 * A keep-alive connection pool to one `http:` origin, sending POSTs.
 *
 * @example
 * const pool = new RawHttpPool(new URL('http://127.0.0.1:3000/mcp'));
 * pool.post({ 'content-type': 'application/json' }, Buffer.from('{}'), {
 *   head: (status) => console.log(status), data: () => true, waitDrain: () => {}, end: () => {}, error: () => {},
 * });
 * await pool.close();
 */
export class RawHttpPool {
  readonly #pool: Pool;
  readonly #path: string;
  #closed = false;

  constructor(url: URL) {
    this.#path = `${url.pathname}${url.search}`;
    // connections: unlimited (a long tool call holds its socket; other calls must not queue behind it).
    this.#pool = new Pool(url.origin, { connections: null, pipelining: 1, headersTimeout: 0, bodyTimeout: 0, connect: { noDelay: true } });
  }

  /** Sends a POST with `headers` and `body`. Returns a function that aborts the exchange. */
  post(headers: Record<string, string | string[] | number | undefined>, body: Buffer, on: RawResponseHandlers): () => void {
    const out: Record<string, string | string[]> = {};
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined || SKIPPED.has(name)) continue;
      out[name] = typeof value === 'number' ? String(value) : value;
    }
    let controller: Dispatcher.DispatchController | undefined;
    let aborted = false;
    let answered = false;
    let returned = false;
    let finished = false;
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (aborted) c.abort(new Error('aborted by the proxy'));
      },
      onResponseStart(_c, status, raw) {
        answered = true;
        const flat: Record<string, string> = {};
        for (const name in raw) {
          const v = raw[name];
          if (v !== undefined) flat[name] = Array.isArray(v) ? v.join(', ') : v;
        }
        on.head(status, flat);
      },
      onResponseData(c, chunk) {
        if (!on.data(chunk)) {
          c.pause();
          on.waitDrain(() => c.resume());
        }
      },
      onResponseEnd() {
        finished = true;
        on.end();
      },
      onResponseError(_c, error) {
        if (finished || aborted) return;
        finished = true;
        const reported = describe(error);
        // A synchronous refusal (invalid header, closed pool) must not run before the caller has the abort function.
        if (returned) on.error(reported, answered);
        else queueMicrotask(() => on.error(reported, answered));
      },
    };
    if (this.#closed) {
      queueMicrotask(() => on.error(new Error('the upstream connection pool is closed'), false));
      return () => undefined;
    }
    this.#pool.dispatch({ path: this.#path, method: 'POST', headers: out, body }, handler);
    returned = true;
    return () => {
      if (finished || aborted) return;
      aborted = true;
      controller?.abort(new Error('aborted by the proxy'));
    };
  }

  /** Closes every connection (in-flight exchanges are cut off). Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#pool.destroy().catch(() => undefined);
  }
}
