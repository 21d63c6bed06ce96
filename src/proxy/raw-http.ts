/**
 * A minimal HTTP/1.1 client for the forward path's hot loop: POST a buffered body on a kept-alive socket
 * and stream the answer back through callbacks.
 *
 * `node:http`'s client costs about as much CPU per request as the rest of a forwarding hop (ClientRequest,
 * IncomingMessage, agent bookkeeping); on a 2-core machine that alone is most of a 0.3 ms budget. This
 * client writes the request in one write and parses the answer's head and framing (Content-Length,
 * chunked, or until close) by hand. It is used only for plain `http:` upstreams and only for POSTs; TLS,
 * GET streams and DELETE stay on `node:http`.
 *
 * @module
 */

import { connect } from 'node:net';
import type { Socket } from 'node:net';

/** Idle sockets older than this are not reused: Node servers close idle keep-alive sockets after 5 s. */
const MAX_IDLE_MS = 4000;
/** A reused socket that fails this soon after the write, with no answer byte, is retried on a fresh one. */
const STALE_RETRY_WINDOW_MS = 250;
/** Idle sockets kept beyond this many are closed (a burst of concurrent calls should not pin sockets). */
const MAX_IDLE_SOCKETS = 64;
/** Response heads larger than this are refused (a server answering garbage). */
const MAX_HEAD_BYTES = 64 * 1024;

export interface RawResponseHandlers {
  /** The status and the response headers (names lower-case; repeated headers joined with ", "). */
  head(status: number, headers: Record<string, string>): void;
  /** A piece of the body (de-chunked). Returning false pauses reading until `waitDrain`'s callback runs. */
  data(chunk: Buffer): boolean;
  /** Called after `data` returned false: call `resume` when the consumer can take more. */
  waitDrain(resume: () => void): void;
  /** The body is complete. */
  end(): void;
  /** The exchange failed; `answered` says whether any of the response had arrived. */
  error(error: Error, answered: boolean): void;
}

interface Idle {
  socket: Socket;
  since: number;
  drop: () => void;
}

type BodyState =
  | { kind: 'length'; remaining: number }
  | { kind: 'chunked'; step: 'size' | 'data' | 'crlf' | 'trailer'; remaining: number }
  | { kind: 'close' };

/** A keep-alive connection pool to one `http:` origin, sending POSTs. */
export class RawHttpPool {
  readonly #host: string;
  readonly #port: number;
  readonly #prefix: string;
  readonly #idle: Idle[] = [];
  #closed = false;

  constructor(url: URL) {
    this.#host = url.hostname.replace(/^\[|\]$/g, '');
    this.#port = url.port === '' ? 80 : Number(url.port);
    this.#prefix = `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: keep-alive\r\n`;
  }

  /**
   * Sends a POST with `headers` (values must not contain CR/LF: they come from validated config and from
   * the downstream request's parsed headers) and `body`. Returns a function that aborts the exchange.
   */
  post(headers: Record<string, string | string[] | number | undefined>, body: Buffer, on: RawResponseHandlers): () => void {
    let head = this.#prefix;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined || name === 'content-length' || name === 'host' || name === 'connection') continue;
      const text = Array.isArray(value) ? value.join(', ') : String(value);
      // node:http would refuse these too: a CR or LF would let a value inject headers.
      if (/[\r\n\0]/.test(text) || /[^!#$%&'*+.^_`|~0-9A-Za-z-]/.test(name)) {
        queueMicrotask(() => on.error(Object.assign(new TypeError(`Invalid character in header "${name}"`), { code: 'ERR_INVALID_CHAR' }), false));
        return () => undefined;
      }
      head += `${name}: ${text}\r\n`;
    }
    head += `Content-Length: ${body.length}\r\n\r\n`;
    const request = Buffer.concat([Buffer.from(head, 'latin1'), body]);
    let abort = (): void => undefined;
    const attempt = (socket: Socket, reused: boolean): void => {
      abort = this.#exchange(socket, request, on, reused ? () => attempt(this.#fresh(), false) : undefined);
    };
    const idle = this.#checkout();
    attempt(idle ?? this.#fresh(), idle !== undefined);
    return () => abort();
  }

  #fresh(): Socket {
    const socket = connect({ host: this.#host, port: this.#port, noDelay: true });
    return socket;
  }

  #checkout(): Socket | undefined {
    const now = Date.now();
    for (;;) {
      const entry = this.#idle.pop();
      if (entry === undefined) return undefined;
      entry.socket.removeListener('error', entry.drop);
      entry.socket.removeListener('close', entry.drop);
      entry.socket.removeListener('end', entry.drop);
      entry.socket.removeListener('data', entry.drop);
      if (now - entry.since < MAX_IDLE_MS && !entry.socket.destroyed) return entry.socket;
      entry.socket.destroy();
    }
  }

  #release(socket: Socket): void {
    if (this.#closed || socket.destroyed || this.#idle.length >= MAX_IDLE_SOCKETS) {
      socket.destroy();
      return;
    }
    const entry: Idle = {
      socket,
      since: Date.now(),
      drop: () => {
        const i = this.#idle.indexOf(entry);
        if (i >= 0) this.#idle.splice(i, 1);
        socket.destroy();
      },
    };
    const drop = entry.drop;
    socket.once('error', drop);
    socket.once('close', drop);
    socket.once('end', drop);
    socket.once('data', drop);
    this.#idle.push(entry);
  }

  /** One request/response on `socket`. `retry`: on a reused socket that dies before answering, try a fresh one. */
  #exchange(socket: Socket, request: Buffer, on: RawResponseHandlers, retry: (() => void) | undefined): () => void {
    let buf: Buffer | undefined;
    let answered = false;
    let finished = false;
    let status = 0;
    let reusable = true;
    let body: BodyState | undefined;

    const detach = (): void => {
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
    };
    const done = (): void => {
      finished = true;
      detach();
      if (reusable) this.#release(socket);
      else socket.destroy();
      on.end();
    };
    const fail = (error: Error): void => {
      if (finished) return;
      finished = true;
      detach();
      socket.destroy();
      // Only the stale-socket race (the upstream closed the kept-alive socket as we wrote): that fails
      // within a round trip. A socket that dies later may have delivered the request, so no retry then.
      if (!answered && retry !== undefined && Date.now() - sentAt < STALE_RETRY_WINDOW_MS) {
        retry();
        return;
      }
      on.error(error, answered);
    };

    const parseHead = (): boolean => {
      const data = buf as Buffer;
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) {
        if (data.length > MAX_HEAD_BYTES) fail(new Error('the upstream sent an HTTP response head over 64 KiB'));
        return false;
      }
      const lines = data.toString('latin1', 0, end).split('\r\n');
      const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
      if (statusLine === null) {
        fail(Object.assign(new Error(`the upstream did not answer with HTTP/1.1 (${JSON.stringify((lines[0] ?? '').slice(0, 60))})`), { code: 'HPE_INVALID_CONSTANT' }));
        return false;
      }
      buf = data.subarray(end + 4);
      const code = Number(statusLine[1]);
      if (code >= 100 && code < 200) return buf.length > 0 ? parseHead() : false;
      status = code;
      const headers: Record<string, string> = {};
      for (let i = 1; i < lines.length; i++) {
        const line = lines[i] as string;
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
      if (/\bclose\b/i.test(headers.connection ?? '')) reusable = false;
      const te = headers['transfer-encoding'];
      if (status === 204 || status === 304) body = { kind: 'length', remaining: 0 };
      else if (te !== undefined && /chunked/i.test(te)) body = { kind: 'chunked', step: 'size', remaining: 0 };
      else if (headers['content-length'] !== undefined) body = { kind: 'length', remaining: Number(headers['content-length']) };
      else {
        body = { kind: 'close' };
        reusable = false;
      }
      on.head(status, headers);
      return true;
    };

    const emit = (chunk: Buffer): void => {
      if (!on.data(chunk)) {
        socket.pause();
        on.waitDrain(() => socket.resume());
      }
    };

    /** Consumes `buf` per the body framing; returns true when the body is complete. */
    const parseBody = (): boolean => {
      const state = body as BodyState;
      let data = buf as Buffer;
      if (state.kind === 'close') {
        if (data.length > 0) emit(data);
        buf = undefined;
        return false;
      }
      if (state.kind === 'length') {
        if (data.length >= state.remaining) {
          if (state.remaining > 0) emit(data.subarray(0, state.remaining));
          if (data.length > state.remaining) reusable = false; // bytes we did not ask for
          buf = undefined;
          return true;
        }
        if (data.length > 0) emit(data);
        state.remaining -= data.length;
        buf = undefined;
        return false;
      }
      for (;;) {
        if (state.step === 'size' || state.step === 'trailer') {
          const eol = data.indexOf('\r\n');
          if (eol < 0) {
            buf = data;
            return false;
          }
          const line = data.toString('latin1', 0, eol);
          data = data.subarray(eol + 2);
          if (state.step === 'trailer') {
            if (line === '') {
              if (data.length > 0) reusable = false;
              buf = undefined;
              return true;
            }
            continue;
          }
          const size = Number.parseInt(line.split(';')[0] as string, 16);
          if (!Number.isFinite(size) || size < 0) {
            fail(new Error('the upstream sent a malformed chunked body'));
            return false;
          }
          if (size === 0) {
            state.step = 'trailer';
            continue;
          }
          state.step = 'data';
          state.remaining = size;
        } else if (state.step === 'data') {
          if (data.length === 0) {
            buf = undefined;
            return false;
          }
          const take = Math.min(state.remaining, data.length);
          emit(data.subarray(0, take));
          data = data.subarray(take);
          state.remaining -= take;
          if (state.remaining === 0) state.step = 'crlf';
        } else {
          if (data.length < 2) {
            buf = data;
            return false;
          }
          data = data.subarray(2);
          state.step = 'size';
        }
      }
    };

    const onData = (chunk: Buffer): void => {
      if (finished) return;
      answered = true;
      buf = buf === undefined || buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (body === undefined && !parseHead()) return;
      if (finished) return;
      if (parseBody() && !finished) done();
    };
    const onEnd = (): void => {
      if (finished) return;
      if (body?.kind === 'close') {
        reusable = false;
        done();
        return;
      }
      fail(Object.assign(new Error('the upstream closed the connection mid-answer'), { code: answered ? 'UND_ERR_SOCKET' : 'ECONNRESET' }));
    };
    const onError = (error: Error): void => fail(error);
    const onClose = (): void => fail(Object.assign(new Error('the upstream closed the connection'), { code: 'ECONNRESET' }));
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
    socket.once('close', onClose);
    const sentAt = Date.now();
    socket.write(request);
    return () => {
      if (finished) return;
      finished = true;
      detach();
      socket.destroy();
    };
  }

  close(): void {
    this.#closed = true;
    for (const entry of this.#idle.splice(0)) entry.socket.destroy();
  }
}
