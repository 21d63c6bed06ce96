/**
 * The one Server-Sent Events parser (WHATWG "event stream" format), shared by the bridge, which reads
 * events, and the proxy's HTTP forward path, which passes them on as received and looks inside only to
 * filter a `tools/list` answer.
 *
 * Our own rather than `eventsource-parser` (which the SDK brings along): the forward path needs each
 * block's text as received (comments, unknown fields and line ends included) to pass it on untouched,
 * which that parser does not give; and the bridge, whose start-up time is a goal, loads nothing it does
 * not need. It is small, and linear in its input: a long line (one big result event) is kept as pieces,
 * never rescanned.
 *
 * @module
 */

import { StringDecoder } from 'node:string_decoder';

/** One dispatched event. */
export interface SseEvent {
  /** The `event` field, `message` when the block had none. */
  event: string;
  /** The `data` lines joined with `\n` (empty when there were none). */
  data: string;
  /** The last event id seen on the stream (it carries over to later events, as the spec says). */
  id: string | undefined;
  /** The block's `retry` field, in milliseconds. */
  retry: number | undefined;
}

export interface SseParserOptions {
  /**
   * Every block that had at least one field (a block of comments only dispatches nothing). Events with
   * empty data are dispatched too, so a priming event's id is seen.
   */
  onEvent?: (event: SseEvent) => void;
  /**
   * Every block ended by a blank line, comment-only ones included: its text as received, line ends kept,
   * without the blank line that ended it; `event` is what `onEvent` gets, or `undefined` for comments.
   * For code that passes events on untouched. The text is kept only when this is given.
   */
  onBlock?: (raw: string, event: SseEvent | undefined) => void;
}

/**
 * An incremental event-stream parser: `feed` it decoded text as it arrives. An unfinished block at the end
 * of the stream is never dispatched (the spec's rule).
 *
 * @example
 * ```ts
 * const parser = new SseParser({ onEvent: (e) => console.error(e.event, e.data) });
 * parser.feed('event: endpoint\ndata: /messages\n\n');
 * ```
 */
export class SseParser {
  readonly #onEvent: ((event: SseEvent) => void) | undefined;
  readonly #onBlock: ((raw: string, event: SseEvent | undefined) => void) | undefined;
  /** The unfinished line, as pieces: appending to one string and rescanning it was quadratic. */
  #parts: string[] = [];
  /** The previous chunk ended with CR: a LF first in the next one is the second half of a CRLF. */
  #pendingCr = false;
  #event = '';
  #data: string[] = [];
  #id: string | undefined;
  #retry: number | undefined;
  #sawField = false;
  /** The block's text so far (lines and the line ends between them), kept only for `onBlock`. */
  #raw: string[] = [];
  /** The line end of the last line in `#raw`, written before the next one. */
  #lastEnd = '';

  constructor(options: SseParserOptions) {
    this.#onEvent = options.onEvent;
    this.#onBlock = options.onBlock;
  }

  /** Feeds decoded text; calls the callbacks for every block it completes. */
  feed(text: string): void {
    if (text === '') return;
    let start = 0;
    if (this.#pendingCr) {
      this.#pendingCr = false;
      if (text.charCodeAt(0) === 10) {
        start = 1;
        this.#lastEnd = '\r\n';
      }
    }
    for (let i = start; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue;
      this.#parts.push(text.slice(start, i));
      const line = this.#parts.length === 1 ? this.#parts[0]! : this.#parts.join('');
      this.#parts = [];
      let end = ch === 10 ? '\n' : '\r';
      if (ch === 13) {
        if (i === text.length - 1) this.#pendingCr = true;
        else if (text.charCodeAt(i + 1) === 10) {
          i++;
          end = '\r\n';
        }
      }
      start = i + 1;
      this.#line(line, end);
    }
    if (start < text.length) this.#parts.push(text.slice(start));
  }

  #line(line: string, end: string): void {
    if (line === '') {
      this.#dispatch();
      return;
    }
    if (this.#onBlock !== undefined) {
      if (this.#raw.length > 0) this.#raw.push(this.#lastEnd);
      this.#raw.push(line);
      this.#lastEnd = end;
    }
    if (line.charCodeAt(0) === 58) return; // ':' starts a comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    this.#sawField = true;
    if (field === 'event') this.#event = value;
    else if (field === 'data') this.#data.push(value);
    else if (field === 'id') {
      if (!value.includes('\0')) this.#id = value;
    } else if (field === 'retry') {
      if (/^\d+$/.test(value)) this.#retry = Number(value);
    }
  }

  #dispatch(): void {
    const event = this.#sawField ? { event: this.#event || 'message', data: this.#data.join('\n'), id: this.#id, retry: this.#retry } : undefined;
    const raw = this.#raw;
    this.#event = '';
    this.#data = [];
    this.#retry = undefined;
    this.#sawField = false;
    this.#raw = [];
    if (raw.length > 0) this.#onBlock?.(raw.length === 1 ? raw[0]! : raw.join(''), event);
    if (event !== undefined) this.#onEvent?.(event);
  }
}

/**
 * Reads events from a response body until it ends or `signal` aborts. Calls `onEvent` for every
 * dispatched event (including ones with empty data, so callers see priming events' ids).
 *
 * @example
 * ```ts
 * const res = await fetch(url, { headers: { accept: 'text/event-stream' } });
 * await readSse(res.body!, (e) => console.error(e.data), signal);
 * ```
 */
export async function readSse(body: ReadableStream<Uint8Array>, onEvent: (event: SseEvent) => void, signal?: AbortSignal): Promise<void> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = (): void => {
    reader.cancel().catch(() => undefined);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const parser = new SseParser({ onEvent });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(value);
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.releaseLock();
  }
}

/**
 * `readSse` for a Node stream (a `node:http` response): decodes with one `StringDecoder`, so a multi-byte
 * character cut across chunks stays whole. Resolves when the stream ends; rejects when it breaks. `signal`
 * destroys the stream (the read then resolves).
 *
 * @example
 * ```ts
 * await readSseNode(res, (e) => console.error(e.data), signal);
 * ```
 */
export function readSseNode(body: NodeJS.ReadableStream & { destroy(error?: Error): void }, onEvent: (event: SseEvent) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    const parser = new SseParser({ onEvent });
    const onAbort = (): void => {
      body.destroy();
      resolve();
    };
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = (error?: Error): void => {
      signal?.removeEventListener('abort', onAbort);
      if (error !== undefined && signal?.aborted !== true) reject(error);
      else resolve();
    };
    body.on('data', (chunk: Buffer) => parser.feed(decoder.write(chunk)));
    body.once('end', () => {
      parser.feed(decoder.end());
      done();
    });
    body.once('error', (error: Error) => done(error));
    body.once('aborted', () => done(Object.assign(new Error('the connection closed mid-stream'), { code: 'ECONNRESET' })));
  });
}
