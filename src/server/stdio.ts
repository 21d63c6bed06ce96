/**
 * Serving a `CodemodeServer` over stdio, both protocol eras: the v2 SDK's `serveStdio` picks the era from the
 * client's opening message (`initialize` for 2025-11-25, a `server/discover` or any request carrying its
 * version in `_meta` for 2026-07-28) and pins one server instance for the connection. This also watches the
 * input stream itself: a host that closes our stdin gets a prompt, clean exit.
 *
 * @module
 */

import type { Readable, Writable } from 'node:stream';
import { serveStdio as serveStdioEntry, StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import { describeError } from '../errors.js';
import { createLogger } from '../log.js';
import type { CodemodeServer } from './server.js';

const log = createLogger('server');

export interface ServeStdioOptions {
  /** Default: the process's stdin. */
  input?: Readable;
  /** Default: the process's stdout. */
  output?: Writable;
}

export interface CodemodeStdioServer {
  /** Resolves when the input ended (EOF) or the connection closed. */
  readonly done: Promise<'eof' | 'closed'>;
  /** Closes the connection. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves one connection over stdin/stdout, to a client of either protocol era.
 *
 * @example
 * ```ts
 * const stdio = serveStdio(server);
 * await stdio.done;           // the host closed our stdin
 * await server.close();
 * ```
 */
export function serveStdio(server: CodemodeServer, options: ServeStdioOptions = {}): CodemodeStdioServer {
  const input = options.input ?? process.stdin;
  let resolveDone!: (why: 'eof' | 'closed') => void;
  const done = new Promise<'eof' | 'closed'>((resolve) => (resolveDone = resolve));
  const onEnd = () => resolveDone('eof');
  input.once('end', onEnd);
  input.once('close', onEnd);
  const wire = new StdioServerTransport(input, options.output);
  // The entry may build a probe instance for a `server/discover` and discard it when the client falls back
  // to `initialize`; each instance is tracked (list_changed, closed with the server) until it closes, and
  // only the end of the connection itself (the wire closing) ends this.
  const handle = serveStdioEntry((context) => server.createServer(context, { track: true }), {
    transport: wire,
    onerror: (error) => log.debug('stdio connection error', { error: describeError(error) }),
  });
  const entryOnClose = wire.onclose;
  wire.onclose = () => {
    entryOnClose?.();
    resolveDone('closed');
  };
  void done.then(() => {
    input.off('end', onEnd);
    input.off('close', onEnd);
  });
  let closing: Promise<void> | undefined;
  return {
    done,
    close: () => {
      closing ??= handle.close().catch(() => undefined);
      return closing;
    },
  };
}
