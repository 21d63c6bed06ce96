/**
 * A `fetch` wrapper that bounds what an HTTP upstream can make us buffer for one message.
 *
 * The SDK's Streamable HTTP client reads a JSON answer whole (`response.json()`) and an SSE stream
 * through a parser that keeps each event's data until the event ends; neither has a size limit. A 200 MB
 * tool result therefore sat whole in memory, several times over, before anything looked at its size.
 * This wrapper sits under the SDK transport (its `fetch` option) and meters the body as it streams:
 *
 * - `application/json`: read up to the cap; past it, the rest is cancelled and the body is replaced by a
 *   JSON-RPC error answer to the request(s) this POST carried, so exactly that call fails, clearly.
 * - `text/event-stream`: complete events pass through as they arrive (no added latency, backpressure
 *   kept: the body is pulled, not pushed); an event growing past the cap is discarded as it streams in,
 *   and the POST's request gets the same error answer, once. Later events still pass.
 *
 * @module
 */

import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { createLogger } from '../log.js';
import { oversizedAnswer } from './stdio-transport.js';

const log = createLogger('proxy');

type Id = string | number;

/** The requests (id and method) a POST body carried; parsed only when an answer was too large. */
function requestsIn(body: unknown): Array<{ id: Id; method: string }> {
  if (typeof body !== 'string') return [];
  try {
    const parsed: unknown = JSON.parse(body);
    const out: Array<{ id: Id; method: string }> = [];
    for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
      const { id, method } = (m ?? {}) as { id?: unknown; method?: unknown };
      if ((typeof id === 'string' || typeof id === 'number') && typeof method === 'string') out.push({ id, method });
    }
    return out;
  } catch {
    return [];
  }
}

function mediaType(contentType: string | null): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * Index just past the last SSE event boundary (an empty line; LF or CRLF endings) in `chunk` at or after
 * `from`, or -1. `before` holds the bytes that preceded `chunk` (a boundary can straddle two chunks).
 */
function lastBoundary(chunk: Uint8Array, from: number, before: Uint8Array): number {
  const at = (i: number): number | undefined => (i >= from ? chunk[i] : from === 0 ? before[before.length + i] : undefined);
  for (let i = chunk.length - 1; i >= from; i--) {
    if (chunk[i] !== 10) continue;
    const p = at(i - 1);
    if (p === 10) return i + 1;
    if (p === 13 && at(i - 2) === 10) return i + 1;
  }
  return -1;
}

/** Index just past the first SSE event boundary at or after `from`, or -1. */
function firstBoundary(bytes: Uint8Array, from: number): number {
  for (let i = Math.max(from, 1); i < bytes.length; i++) {
    if (bytes[i] !== 10) continue;
    if (bytes[i - 1] === 10) return i + 1;
    if (bytes[i - 1] === 13 && i >= 2 && bytes[i - 2] === 10) return i + 1;
  }
  return -1;
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  return Buffer.concat(parts);
}

function rebuilt(response: Response, body: ConstructorParameters<typeof Response>[0]): Response {
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

async function boundedJson(response: Response, maxBytes: number, body: unknown): Promise<Response> {
  const reader = response.body!.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      const requests = requestsIn(body);
      log.warn(`an HTTP upstream answer passed the ${maxBytes}-byte limit for one message; the request fails, the session stays`);
      if (requests.length === 0) throw new Error(`the upstream's answer exceeded the ${maxBytes}-byte limit for one message`);
      const answers = requests.map((r) => oversizedAnswer(r.id, r.method, undefined, maxBytes));
      return rebuilt(response, JSON.stringify(answers.length === 1 ? answers[0] : answers));
    }
    parts.push(value);
  }
  return rebuilt(response, Buffer.concat(parts));
}

function boundedSse(response: Response, maxBytes: number, body: unknown): Response {
  const reader = response.body!.getReader();
  let held: Uint8Array[] = [];
  let heldBytes = 0;
  let skipping = false;
  let answered = false;
  const encoder = new TextEncoder();
  /** The bytes of complete events in `chunk` (with what was held before them), holding the rest. */
  const take = (chunk: Uint8Array): Uint8Array | undefined => {
    let from = 0;
    if (skipping) {
      // A boundary straddling two chunks is not seen while skipping: at worst one more event is dropped.
      const end = firstBoundary(chunk, 0);
      if (end === -1) return undefined;
      skipping = false;
      from = end;
    }
    const last = held[held.length - 1];
    const before = last === undefined ? new Uint8Array(0) : last.subarray(Math.max(0, last.length - 2));
    const end = lastBoundary(chunk, from, before);
    let out: Uint8Array | undefined;
    if (end === -1) {
      // No event ended: hold the piece without copying (copying per chunk made a big event quadratic).
      if (from < chunk.length) held.push(chunk.subarray(from));
      heldBytes += chunk.length - from;
    } else {
      out = concat([...held, chunk.subarray(from, end)]);
      held = end < chunk.length ? [chunk.subarray(end)] : [];
      heldBytes = chunk.length - end;
    }
    if (heldBytes > maxBytes) {
      held = [];
      heldBytes = 0;
      skipping = true;
      log.warn(`an HTTP upstream event passed the ${maxBytes}-byte limit for one message; it is discarded`);
      if (!answered) {
        answered = true;
        const answers: JSONRPCMessage[] = requestsIn(body).map((r) => oversizedAnswer(r.id, r.method, undefined, maxBytes));
        if (answers.length > 0) {
          const extra = encoder.encode(answers.map((a) => `event: message\ndata: ${JSON.stringify(a)}\n\n`).join(''));
          out = out === undefined ? extra : concat([out, extra]);
        }
      }
    }
    return out;
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      // One event-loop turn per chunk: the SDK reads events in a loop that, while data is buffered, never
      // leaves the microtask queue, so a flooding upstream stalled every other session for seconds.
      await new Promise((resolve) => setImmediate(resolve));
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          if (!skipping && heldBytes > 0) controller.enqueue(concat(held));
          held = [];
          controller.close();
          return;
        }
        const out = take(value);
        if (out !== undefined && out.length > 0) {
          controller.enqueue(out);
          return;
        }
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return rebuilt(response, stream);
}

/**
 * Wraps `base` (default: global `fetch`) so no single upstream message over `maxMessageBytes` is buffered.
 *
 * @example
 * ```ts
 * new StreamableHTTPClientTransport(url, { fetch: meteredFetch(undefined, 32 * 1024 * 1024) });
 * ```
 */
export function meteredFetch(base: FetchLike | undefined, maxMessageBytes: number): FetchLike {
  return async (url, init) => {
    const response = await (base ?? fetch)(url, init);
    if (!response.ok || response.body === null) return response;
    const type = mediaType(response.headers.get('content-type'));
    if (type === 'application/json') return boundedJson(response, maxMessageBytes, init?.body);
    if (type === 'text/event-stream') return boundedSse(response, maxMessageBytes, init?.body);
    return response;
  };
}
