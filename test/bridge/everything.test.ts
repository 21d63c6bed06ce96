/**
 * codemode-remote against the reference server-everything over Streamable HTTP, including a real
 * server restart (kill the process, start a new one on the same port): the stale session must be
 * recovered whatever status the new process answers it with. Needs the built bridge.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { BridgeHost } from '../fixtures/bridge-host.js';
import { spawnBridge } from '../fixtures/bridge-host.js';

const everythingBin = resolve(dirname(fileURLToPath(import.meta.url)), '../../node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const children: ChildProcess[] = [];
const hosts: BridgeHost[] = [];

afterEach(async () => {
  for (const h of hosts.splice(0)) h.kill();
  await Promise.all(children.splice(0).map((c) => stop(c)));
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startEverything(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [everythingBin, 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  await new Promise<void>((resolve_, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`server-everything did not start: ${err}`)), 20_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening')) {
        clearTimeout(timer);
        resolve_();
      }
    });
  });
  return child;
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill('SIGKILL');
  });
}

function text(m: { result?: Record<string, unknown>; error?: unknown }): string {
  if (m.error !== undefined) return `error: ${JSON.stringify(m.error)}`;
  return ((m.result?.content as Array<{ text?: string }> | undefined) ?? []).map((c) => c.text ?? '').join('');
}

describe('against server-everything', () => {
  it('initializes, lists, calls, and survives a server restart on the same port', { timeout: 60_000 }, async () => {
    const port = await freePort();
    const first = await startEverything(port);
    const h = spawnBridge([`http://127.0.0.1:${port}/mcp`, '--auth', 'none'], { CODEMODE_CONFIG_DIR: '/nonexistent-codemode-test' });
    hosts.push(h);
    const init = await h.initialize();
    expect((init.result?.serverInfo as { name?: string }).name).toMatch(/everything/);
    const tools = ((await h.request('tools/list')).result?.tools as Array<{ name: string }>).map((t) => t.name);
    expect(tools).toContain('echo');
    expect(text(await h.request('tools/call', { name: 'echo', arguments: { message: 'before' } }))).toBe('Echo: before');

    await stop(first);
    children.splice(children.indexOf(first), 1);
    await startEverything(port);
    expect(text(await h.request('tools/call', { name: 'echo', arguments: { message: 'after' } }, 20_000))).toBe('Echo: after');
    expect(h.stderr()).toMatch(/upstream session expired; re-initializing status=(404|400)/);
    expect(h.garbage).toEqual([]);
    const { code } = await h.endInput();
    expect(code).toBe(0);
  });
});
