import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
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
