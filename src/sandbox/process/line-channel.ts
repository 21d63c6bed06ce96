/**
 * The message channel between a `ProcessPool` and one worker: newline-delimited JSON over a Unix socket
 * pair that the worker holds as fd 3 (`WORKER_CHANNEL_FD`). Both ends use this class.
 *
 * Why not Node's IPC channel (`fork`): that channel exists only between a parent and the child it forked,
 * and `fork()` from the server costs its main thread time proportional to the server's RSS (the kernel
 * copies its page tables): 6 ms at 50 MB, 16-36 ms at 200-400 MB, measured here, on the loop every session
 * shares, once per replaced worker, and a guest decides when a worker is replaced (a memory bomb, a
 * timeout). A socket pair can be created by a small launcher process and handed to the server (see
 * launcher.ts), so the fork happens elsewhere. The framing is what Node's IPC uses with its JSON
 * serialization: one `JSON.stringify` per message and a newline.
 *
 * @module
 */

import type { Socket } from 'node:net';
import { LineReader } from '../../wire/line-reader.js';

/** The worker's end of the channel. */
export const WORKER_CHANNEL_FD = 3;

/**
 * Longest message either side accepts. Not a guard against the peer (both ends are our code, and the
 * worker's JSON is built from values it already capped); Node's own string limit (about 512 MiB) is the real
 * ceiling, and a line past this one is reported instead of kept.
 */
const MAX_MESSAGE_BYTES = 1024 * 1024 * 1024;

export interface LineChannelHooks<In> {
  onMessage(message: In): void;
  /** A line that is not JSON, or is over the size limit: the peer is broken. */
  onBadMessage(reason: string): void;
  /** The peer closed its end, or the socket failed. Once. */
  onClose(): void;
}

export class LineChannel<In, Out> {
  readonly #socket: Socket;
  readonly #reader = new LineReader({ maxLineBytes: MAX_MESSAGE_BYTES, keepBytes: 256 });
  #open = true;

  constructor(socket: Socket, hooks: LineChannelHooks<In>) {
    this.#socket = socket;
    const deliver = (events: ReturnType<LineReader['push']>): void => {
      for (const event of events) {
        if (event.kind === 'oversized') {
          hooks.onBadMessage(`a message of ${event.bytes} bytes is over the channel's ${MAX_MESSAGE_BYTES}-byte limit`);
          continue;
        }
        if (event.line === '') continue;
        let message: In;
        try {
          message = JSON.parse(event.line) as In;
        } catch {
          hooks.onBadMessage(`a message is not JSON: ${event.line.slice(0, 120)}`);
          continue;
        }
        hooks.onMessage(message);
      }
    };
    socket.on('data', (chunk: Buffer) => deliver(this.#reader.push(chunk)));
    socket.on('end', () => deliver(this.#reader.end()));
    // EPIPE and ECONNRESET end the channel like a close does; the close event follows.
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.#open = false;
      hooks.onClose();
    });
  }

  /** False once either side closed it. */
  get open(): boolean {
    return this.#open && this.#socket.writable;
  }

  /** Sends one message; `written` runs once it is handed to the OS, or could not be (with the error). */
  send(message: Out, written?: (err?: Error) => void): void {
    if (!this.open) {
      written?.(new Error('the channel is closed'));
      return;
    }
    let line: string;
    try {
      line = `${JSON.stringify(message)}\n`;
    } catch (err) {
      written?.(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.#socket.write(line, (err) => written?.(err ?? undefined));
  }

  /** Closes our sending side; the peer reads the end (a worker then exits). */
  end(): void {
    this.#socket.end();
  }

  /** Drops the channel at once, unread input included. */
  destroy(): void {
    this.#socket.destroy();
  }

  /** Whether this channel keeps the process alive. */
  ref(): void {
    this.#socket.ref();
  }

  unref(): void {
    this.#socket.unref();
  }
}
