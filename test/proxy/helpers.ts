/**
 * Test helpers for the proxy tests: throw-away HTTP servers on 127.0.0.1 and paths to fixtures.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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


export const FIXTURE_ENV = { NODE_COMPILE_CACHE: join(tmpdir(), 'codemode-compile-cache') };

/** The conformance fixture as a stdio upstream config. */
export function fixtureStdioConfig(): { command: string; args: string[]; env: Record<string, string> } {
  return { command: NODE, args: ['--experimental-strip-types', '--no-warnings', CONFORMANCE_SERVER, '--stdio'], env: FIXTURE_ENV };
}

export interface ChildServer {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

/** Spawns `args` and waits until its output matches `ready` (first group: the URL). */
export async function spawnServer(args: string[], ready: RegExp, env: Record<string, string> = {}, timeoutMs = 15_000): Promise<ChildServer> {
  const child = spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...FIXTURE_ENV, ...env } });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), timeoutMs);
    const onData = (c: Buffer): void => {
      out += c.toString();
      const m = ready.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1] ?? '');
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${out}`));
    });
  });
  let stopped: Promise<void> | undefined;
  return {
    child,
    url,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
      return stopped;
    },
  };
}

/** The conformance fixture over Streamable HTTP on 127.0.0.1 (`port` 0 = any). */
export function startFixtureHttp(port = 0): Promise<ChildServer> {
  return spawnServer(['--experimental-strip-types', '--no-warnings', CONFORMANCE_SERVER, '--port', String(port)], /listening on (http:\S+)/);
}
