/**
 * Serving a `CodemodeServer` over stdio. The SDK's `StdioServerTransport` does not notice stdin EOF, so
 * this watches the input stream itself: a host that closes our stdin gets a prompt, clean exit.
 *
 * @module
 */

import type { Readable, Writable } from 'node:stream';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { CodemodeServer, CodemodeSession } from './server.js';

export interface ServeStdioOptions {
  /** Default: the process's stdin. */
  input?: Readable;
  /** Default: the process's stdout. */
  output?: Writable;
}

export interface CodemodeStdioServer {
  readonly session: CodemodeSession;
  /** Resolves when the input ended (EOF) or the session closed. */
  readonly done: Promise<'eof' | 'closed'>;
}

/**
 * Serves one session over stdin/stdout.
 *
 * @example
 * ```ts
 * const stdio = await serveStdio(server);
 * await stdio.done;           // the host closed our stdin
 * await server.close();
 * ```
 */
export async function serveStdio(server: CodemodeServer, options: ServeStdioOptions = {}): Promise<CodemodeStdioServer> {
  const input = options.input ?? process.stdin;
  const transport = new StdioServerTransport(input, options.output);
  let resolveDone!: (why: 'eof' | 'closed') => void;
  const done = new Promise<'eof' | 'closed'>((resolve) => (resolveDone = resolve));
  const onEnd = () => resolveDone('eof');
  input.once('end', onEnd);
  input.once('close', onEnd);
  const session = await server.connect(transport);
  void session.closed.then(() => resolveDone('closed'));
  void done.then(() => {
    input.off('end', onEnd);
    input.off('close', onEnd);
  });
  return { session, done };
}
