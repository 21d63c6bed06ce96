/**
 * Newline-delimited framing for byte streams (stdio JSON-RPC), shared by the proxy's stdio upstream
 * transport and the bridge's stdin.
 *
 * Why a `StringDecoder` per line: a pipe read can end in the middle of a multi-byte UTF-8 character;
 * decoding each chunk on its own (`chunk.toString('utf8')`) turns both halves into U+FFFD. Splitting on
 * the byte 0x0A is safe because it never occurs inside a multi-byte sequence.
 *
 * Why a byte cap with a head and a tail: a hostile or broken peer can send a line of any size. Past
 * `maxLineBytes` the reader stops keeping the line (memory stays at the cap) and reports it as oversized
 * with its first and last few KB, so a caller can still find the JSON-RPC `id` (the MCP SDK serializes
 * `{"result":...,"jsonrpc":"2.0","id":N}`, id last) and answer that one request with an error.
 *
 * @module
 */

import { StringDecoder } from 'node:string_decoder';

/** How much of an oversized line is kept at each end, in bytes. */
export const OVERSIZED_KEEP_BYTES = 4096;

export interface LineReaderOptions {
  /** Longest line kept, in UTF-8 bytes (without the newline). Longer lines are reported as `oversized`. */
  maxLineBytes: number;
  /** Bytes kept from the start and the end of an oversized line. Default `OVERSIZED_KEEP_BYTES`. */
  keepBytes?: number;
}

/** One framed line (a trailing `\r` removed), or a line that was too long to keep. */
export type LineEvent =
  | { kind: 'line'; line: string; bytes: number }
  | { kind: 'oversized'; bytes: number; head: string; tail: string };

/**
 * Splits a byte stream into lines, decoding UTF-8 across chunk boundaries.
 *
 * @example
 * ```ts
 * const reader = new LineReader({ maxLineBytes: 1 << 20 });
 * stream.on('data', (chunk: Buffer) => {
 *   for (const event of reader.push(chunk)) if (event.kind === 'line') handle(event.line);
 * });
 * stream.on('end', () => { for (const event of reader.end()) if (event.kind === 'line') handle(event.line); });
 * ```
 */
export class LineReader {
  readonly #max: number;
  readonly #keep: number;
  #decoder = new StringDecoder('utf8');
  #parts: string[] = [];
  #bytes = 0;
  /** Set while discarding an oversized line: its head, and a rolling window of its last bytes. */
  #oversized: { head: string; tail: Buffer } | undefined;

  constructor(options: LineReaderOptions) {
    if (!(options.maxLineBytes > 0)) throw new RangeError(`maxLineBytes must be positive, got ${options.maxLineBytes}`);
    this.#max = options.maxLineBytes;
    this.#keep = Math.max(0, Math.min(options.keepBytes ?? OVERSIZED_KEEP_BYTES, options.maxLineBytes));
  }

  /** Bytes of the unfinished line held now (at most `maxLineBytes`, plus the tail window while discarding). */
  get bufferedBytes(): number {
    return this.#oversized === undefined ? this.#bytes : this.#oversized.tail.length + this.#oversized.head.length;
  }

  /** True while the current, unfinished line is already over the cap (it is being discarded). */
  get discarding(): boolean {
    return this.#oversized !== undefined;
  }

  /** Feeds a chunk; returns the lines it completed, in order. */
  push(chunk: Buffer): LineEvent[] {
    const out: LineEvent[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      this.#take(chunk.subarray(start, nl));
      out.push(this.#finishLine());
      start = nl + 1;
    }
    if (start < chunk.length) this.#take(chunk.subarray(start));
    return out;
  }

  /** The end of the stream: the unterminated last line, if any. */
  end(): LineEvent[] {
    if (this.#bytes === 0 && this.#oversized === undefined) return [];
    return [this.#finishLine()];
  }

  /** Drops whatever is buffered. */
  clear(): void {
    this.#decoder = new StringDecoder('utf8');
    this.#parts = [];
    this.#bytes = 0;
    this.#oversized = undefined;
  }

  #take(piece: Buffer): void {
    if (piece.length === 0) return;
    this.#bytes += piece.length;
    if (this.#oversized !== undefined) {
      this.#keepTail(piece);
      return;
    }
    if (this.#bytes > this.#max) {
      // Keep a bounded head, then only a rolling tail: memory stays at the cap whatever the line's size.
      // Only the first parts are needed for the head: joining all of them would copy the whole cap.
      let prefix = '';
      for (const part of this.#parts) {
        prefix += part;
        if (prefix.length >= this.#keep) break;
      }
      if (prefix.length < this.#keep) prefix += this.#decoder.end();
      const before = Buffer.from(prefix.slice(0, this.#keep), 'utf8').subarray(0, this.#keep);
      const headBytes = Buffer.concat([before, piece.subarray(0, this.#keep - before.length)]);
      // write() holds back an incomplete last character instead of turning it into U+FFFD.
      this.#oversized = { head: new StringDecoder('utf8').write(headBytes), tail: Buffer.alloc(0) };
      this.#parts = [];
      this.#decoder = new StringDecoder('utf8');
      this.#keepTail(piece);
      return;
    }
    const text = this.#decoder.write(piece);
    if (text !== '') this.#parts.push(text);
  }

  #keepTail(piece: Buffer): void {
    const o = this.#oversized!;
    if (piece.length >= this.#keep) o.tail = Buffer.from(piece.subarray(piece.length - this.#keep));
    else o.tail = Buffer.concat([o.tail, piece]).subarray(-this.#keep);
  }

  #finishLine(): LineEvent {
    const bytes = this.#bytes;
    this.#bytes = 0;
    if (this.#oversized !== undefined) {
      const { head, tail } = this.#oversized;
      this.#oversized = undefined;
      // The window may start inside a character: drop the partial leading bytes (continuation bytes 10xxxxxx).
      let from = 0;
      while (from < tail.length && from < 3 && (tail[from]! & 0xc0) === 0x80) from++;
      const t = tail.subarray(from).toString('utf8');
      return { kind: 'oversized', bytes, head, tail: t.endsWith('\r') ? t.slice(0, -1) : t };
    }
    const rest = this.#decoder.end();
    let line = this.#parts.length === 0 ? rest : this.#parts.length === 1 && rest === '' ? this.#parts[0]! : this.#parts.join('') + rest;
    this.#parts = [];
    if (line.endsWith('\r')) line = line.slice(0, -1);
    return { kind: 'line', line, bytes };
  }
}
