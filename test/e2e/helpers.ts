/** Spawned pieces for the end-to-end tests: server-everything over HTTP and `codemode serve --http`. */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = fileURLToPath(new URL('../../dist/cli/codemode.js', import.meta.url));
export const REMOTE_CLI = fileURLToPath(new URL('../../dist/cli/codemode-remote.js', import.meta.url));
export const INVENTORY = fileURLToPath(new URL('../../examples/inventory-server.mjs', import.meta.url));
export const EVERYTHING = fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url));

export interface Spawned {
  child: ChildProcess;
  output: () => string;
  /** SIGTERM, then SIGKILL after 3 s; resolves when the process is gone. Idempotent. */
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Spawns `node args...` and waits (at most `timeoutMs`) until its stderr matches `ready`. */
export async function spawnUntil(args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<Spawned & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let text = '';
  child.stderr!.on('data', (c: Buffer) => (text += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    })());
  try {
    const match = await new Promise<RegExpExecArray>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready within ${timeoutMs} ms:\n${text}`)), timeoutMs);
      const check = () => {
        const m = ready.exec(text);
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
      };
      child.stderr!.on('data', check);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${String(code)} before it was ready:\n${text}`));
      });
    });
    return { child, output: () => text, stop, match };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** server-everything over Streamable HTTP on a free loopback port. */
export async function startEverythingHttp(): Promise<Spawned & { url: string }> {
  const port = await freePort();
  const s = await spawnUntil([EVERYTHING, 'streamableHttp'], /listening on port/, { PORT: String(port) });
  return { ...s, url: `http://127.0.0.1:${port}/mcp` };
}

/** `codemode serve --http --port 0 ...args`, once it prints its URL. */
export async function startServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Spawned & { url: string }> {
  const s = await spawnUntil(['--no-node-snapshot', CLI, 'serve', '--http', '--port', '0', ...args], /listening on (http:\/\/\S+)/, env);
  return { ...s, url: s.match[1]! };
}
