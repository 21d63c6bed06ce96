import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { toolMatcher } from '../../src/bridge/bridge.js';
import { readSse } from '../../src/bridge/sse.js';
import type { SseEvent } from '../../src/bridge/sse.js';
import { TokenStore, storageKey, writeFileAtomic } from '../../src/bridge/token-store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cm-bridge-unit-'));
  dirs.push(d);
  return d;
}

async function events(chunks: string[]): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(enc.encode(c));
      controller.close();
    },
  });
  await readSse(body, (e) => out.push(e));
  return out;
}

describe('readSse', () => {
  it('parses events split across chunks, CRLF and CR line ends, multi-line data, comments, id and retry', async () => {
    const got = await events([': comment\r\nid: 1\r', '\nretry: 500\r\ndata: {"a":', '1}\r\n\r\nevent: endpoint\rdata: /messages?x=1\r\rdata: line1\ndata: line2\n\n', 'data: incomplete']);
    expect(got).toEqual([
      { event: 'message', data: '{"a":1}', id: '1', retry: 500 },
      { event: 'endpoint', data: '/messages?x=1', id: '1', retry: undefined },
      { event: 'message', data: 'line1\nline2', id: '1', retry: undefined },
    ]);
  });

  it('reads one long event in time linear in its size (a 24 MB result in 64 KB chunks)', async () => {
    const piece = 'x'.repeat(64 * 1024);
    const chunks = ['data: {"text":"', ...Array.from({ length: 384 }, () => piece), '"}\r', '\n\r\n'];
    const started = performance.now();
    const got = await events(chunks);
    const ms = performance.now() - started;
    expect(got).toHaveLength(1);
    expect(got[0]!.data).toHaveLength(384 * 64 * 1024 + 11);
    // Rescanning the whole pending line at every chunk took 70 s here; linear takes under 1 s on a quiet machine.
    expect(ms).toBeLessThan(15_000);
  });

  it('dispatches a priming event with empty data so its id is seen', async () => {
    expect(await events(['id: e-1\nretry: 10\ndata: \n\n'])).toEqual([{ event: 'message', data: '', id: 'e-1', retry: 10 }]);
  });
});

describe('toolMatcher', () => {
  it('matches * and ? globs literally otherwise', () => {
    const m = toolMatcher(['delete_*', 'a?c', 'x.y']);
    expect(['delete_all', 'abc', 'x.y'].map(m)).toEqual([true, true, true]);
    expect(['keep', 'abbc', 'xzy', 'delete'].map(m)).toEqual([false, false, false, false]);
    expect(toolMatcher([])('anything')).toBe(false);
  });
});

describe('TokenStore', () => {
  it('keys by URL, resource and headers (header-name case and order do not matter)', () => {
    const a = storageKey('https://x/mcp', undefined, { A: '1', b: '2' });
    expect(storageKey('https://x/mcp', undefined, { B: '2', a: '1' })).toBe(a);
    expect(storageKey('https://x/mcp', 'https://x/', { A: '1', b: '2' })).not.toBe(a);
    expect(storageKey('https://x/mcp', undefined, { A: '1', b: '3' })).not.toBe(a);
    expect(storageKey('https://y/mcp', undefined, { A: '1', b: '2' })).not.toBe(a);
  });

  it('writes 0600 files atomically, merges updates, and reads a corrupt file as empty', () => {
    const dir = join(tempDir(), 'nested');
    const store = new TokenStore(dir, 'k', 'https://x/mcp');
    store.update({ tokens: { access_token: 'a' }, callbackPort: 1234 });
    store.update({ clientInformation: { client_id: 'c' } });
    expect(store.read()).toMatchObject({ version: 1, tokens: { access_token: 'a' }, callbackPort: 1234, clientInformation: { client_id: 'c' } });
    store.update({ tokens: undefined });
    expect(store.read().tokens).toBeUndefined();
    expect(statSync(store.file).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['k.json']);
    writeFileSync(store.file, '{not json');
    expect(store.read()).toEqual({ version: 1, serverUrl: 'https://x/mcp', resource: undefined });
    writeFileAtomic(store.file, '{"version":1,"serverUrl":"https://x/mcp","future":"field"}');
    expect(JSON.parse(readFileSync(store.file, 'utf8')).future).toBe('field');
  });

  it('a lease excludes a second holder until released, and times out with a clear error', async () => {
    const store = new TokenStore(tempDir(), 'k', 'https://x/mcp');
    const release = await store.lease('login', { timeoutMs: 1_000 });
    await expect(store.lease('login', { timeoutMs: 200, pollMs: 20 })).rejects.toThrow(/another codemode-remote process holds the login lease/);
    const waiting = store.lease('login', { timeoutMs: 2_000, pollMs: 20 });
    setTimeout(release, 100);
    const second = await waiting;
    second();
    release(); // idempotent, and must not remove someone else's lock
  });

  it('breaks a lease whose holder process is dead', async () => {
    const dir = tempDir();
    const store = new TokenStore(dir, 'k', 'https://x/mcp');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(join(dir, 'k.refresh.lock'), JSON.stringify({ pid: Number(dead.stdout), at: Date.now() }));
    const t0 = Date.now();
    const release = await store.lease('refresh', { timeoutMs: 5_000, pollMs: 20 });
    expect(Date.now() - t0).toBeLessThan(1_000);
    release();
  });

  it('honours an abort signal while waiting', async () => {
    const store = new TokenStore(tempDir(), 'k', 'https://x/mcp');
    const release = await store.lease('login', { timeoutMs: 5_000 });
    const controller = new AbortController();
    const waiting = store.lease('login', { timeoutMs: 5_000, pollMs: 20, signal: controller.signal });
    controller.abort();
    await expect(waiting).rejects.toThrow();
    release();
  });
});
