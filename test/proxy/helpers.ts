/**
 * Test helpers for the proxy tests: throw-away HTTP servers on 127.0.0.1 and paths to fixtures.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

export const NODE = process.execPath;
export const EVERYTHING = fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url));
export const CONFORMANCE_SERVER = fileURLToPath(new URL('../fixtures/conformance-server.ts', import.meta.url));

export interface LoopbackServer {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Starts a plain HTTP server on 127.0.0.1:0 with `handler`. */
export async function startHttp(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<LoopbackServer> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}

/** A port that was free a moment ago (nothing listens on it). */
export async function freePort(): Promise<number> {
  const s = await startHttp(() => undefined);
  const { port } = s;
  await s.close();
  return port;
}

/** Reads a request body fully. */
export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Measures how long `fn` takes to settle, in ms, and returns its rejection (or undefined). */
export async function timeRejection(fn: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const start = performance.now();
  try {
    await fn();
  } catch (error) {
    return { error, ms: performance.now() - start };
  }
  return { error: undefined, ms: performance.now() - start };
}
