import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll } from 'vitest';
import { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import type { IsolatedVmSandboxOptions } from '../../src/sandbox/isolated-vm-sandbox.js';
import { ProcessPool } from '../../src/sandbox/process/pool.js';
import { ProcessSandbox } from '../../src/sandbox/process/process-sandbox.js';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);

/** The entry script of an installed MCP server package. */
export function serverScript(pkg: string): string {
  return join(dirname(require.resolve(`${pkg}/package.json`)), 'dist/index.js');
}

export interface Connected {
  client: Client;
  close(): Promise<void>;
}

/** Starts a stdio MCP server as a child process and connects an SDK client to it. */
export async function connectStdio(args: string[], env: Record<string, string> = {}, command = process.execPath): Promise<Connected> {
  const transport = new StdioClientTransport({
    command,
    args,
    env: { ...(process.env as Record<string, string>), ...env },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'codemode-test', version: '0.0.0' });
  await client.connect(transport);
  let closed = false;
  return {
    client,
    async close() {
      if (closed) return;
      closed = true;
      await client.close();
    },
  };
}

/** A free TCP port on 127.0.0.1 (for servers that cannot report the port they bound). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Starts server-everything over Streamable HTTP on a loopback port and connects a client. */
export async function connectEverythingHttp(): Promise<Connected> {
  const port = await freePort();
  const child = spawn(process.execPath, [serverScript('@modelcontextprotocol/server-everything'), 'streamableHttp'], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error('server-everything did not start within 15 s')), 15_000);
      let text = '';
      child.stderr!.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes('listening on port')) {
          clearTimeout(timer);
          ready();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`server-everything exited with ${code}: ${text}`));
      });
    });
    const client = new Client({ name: 'codemode-test', version: '0.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`)));
    let closed = false;
    return {
      client,
      async close() {
        if (closed) return;
        closed = true;
        try {
          await client.close();
        } finally {
          child.kill('SIGTERM');
          await exited;
        }
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw err;
  }
}

/** True in the vitest project that runs this suite again on the process pool (vitest.config.ts). */
export const ON_PROCESS_POOL = process.env.CODEMODE_TEST_SANDBOX === 'process';
let pool: ProcessPool | undefined;
afterAll(async () => {
  await pool?.close();
});

/**
 * The sandbox the code mode suites run on: in-process, or a `ProcessSandbox` on one pool per test file
 * under CODEMODE_TEST_SANDBOX=process. Same contract; the suites use run(), close() and limits only.
 */
export function testSandbox(options: IsolatedVmSandboxOptions = {}): IsolatedVmSandbox {
  if (!ON_PROCESS_POOL) return new IsolatedVmSandbox(options);
  pool ??= new ProcessPool({ size: 1, concurrencyPerWorker: 4, standbyWorkers: 0 });
  return new ProcessSandbox({ pool, ...(options.limits !== undefined ? { limits: options.limits } : {}) }) as unknown as IsolatedVmSandbox;
}
