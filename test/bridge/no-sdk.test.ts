/**
 * The bridge's start-up promise: `codemode-remote` serves a session (initialize, a JSON answer, an
 * event-stream answer, shutdown) without ever loading the MCP SDK, zod or isolated-vm. A resolve hook
 * (`module.registerHooks`, which sees `import`, `import()` and `require`) records every module the built
 * bridge loads; a control run proves the hook sees the SDK and isolated-vm when they are loaded.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { spawnBridge } from '../fixtures/bridge-host.js';
import type { BridgeHost } from '../fixtures/bridge-host.js';
import { loadRecorder } from '../fixtures/load-recorder.js';

/** What the bridge must never load: the SDK (and zod, its schemas) and the sandbox's native addon. */
const FORBIDDEN = /\/node_modules\/(?:@modelcontextprotocol\/sdk|zod|isolated-vm)\//;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cm-no-sdk-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A hand-written Streamable HTTP upstream: initialize as JSON, tools/list as an event stream. */
async function upstream(): Promise<string> {
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET') return void res.writeHead(405, { allow: 'POST, DELETE' }).end();
    if (req.method === 'DELETE') return void res.writeHead(200).end();
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const m = JSON.parse(body) as { id?: number; method?: string };
      if (m.id === undefined) return void res.writeHead(202).end();
      if (m.method === 'initialize') {
        const result = { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'plain', version: '1.0.0' } };
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's-1' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
        return;
      }
      const result = m.method === 'tools/list' ? { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } : {};
      res.writeHead(200, { 'content-type': 'text/event-stream' }).end(`: hello\n\nid: e1\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: m.id, result })}\n\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
}

describe('codemode-remote start-up', () => {
  it('serves a session without loading the MCP SDK, zod or isolated-vm', async () => {
    const dir = tempDir();
    const { env, loaded, internals } = loadRecorder(dir);
    const url = await upstream();
    // OAuth is on (the default), so the auth hooks load too; the login code loads only on a 401.
    const h: BridgeHost = spawnBridge([url], { ...env, CODEMODE_CONFIG_DIR: join(dir, 'config') });
    cleanups.push(() => h.kill());
    const init = await h.initialize();
    expect(init.result?.serverInfo).toEqual({ name: 'plain', version: '1.0.0' });
    const list = await h.request('tools/list');
    expect(list.result?.tools).toEqual([{ name: 'echo', inputSchema: { type: 'object' } }]);
    expect((await h.endInput()).code).toBe(0);

    const urls = loaded();
    // The path ran through the pieces that matter (so the list is not empty for a wrong reason).
    for (const piece of ['/dist/cli/remote-main.js', '/dist/bridge/upstream.js', '/dist/bridge/auth.js', '/dist/wire/sse.js', '/dist/wire/line-reader.js']) {
      expect(urls.some((u) => u.endsWith(piece)), piece).toBe(true);
    }
    expect(urls.filter((u) => FORBIDDEN.test(u))).toEqual([]);
    // Nor Node's fetch (its undici): the session's HTTP goes by node:http (native-post.ts), which costs
    // about 50 ms less start-up and 12 MiB less memory. node:http itself must have been used.
    expect(internals()).toContain('NativeModule _http_client');
    expect(internals().filter((m) => m.includes('undici'))).toEqual([]);
  });

  it('the load recorder sees the SDK and isolated-vm when something loads them (control)', () => {
    const dir = tempDir();
    const { env, loaded } = loadRecorder(dir);
    const script = "await import('@modelcontextprotocol/sdk/types.js'); try { (await import('node:module')).createRequire(import.meta.url)('isolated-vm'); } catch {}";
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), env: { ...process.env, ...env }, encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const hits = loaded().filter((u) => FORBIDDEN.test(u));
    expect(hits.some((u) => u.includes('/@modelcontextprotocol/sdk/'))).toBe(true);
    expect(hits.some((u) => u.includes('/isolated-vm/'))).toBe(true);
  });
});
