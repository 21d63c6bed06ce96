/**
 * The official `@modelcontextprotocol/conformance` server suite against `codemode serve --http`. Every
 * scenario that needs no fixtures passes; the baseline lists only fixture scenarios, and a stale entry
 * (a listed scenario that now passes) fails the run too.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe } from './helpers.js';
import type { Spawned } from './helpers.js';

const CONFORMANCE = fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/conformance/dist/index.js', import.meta.url));
const BASELINE = fileURLToPath(new URL('./conformance-baseline.yml', import.meta.url));
const MUST_PASS = ['server-initialize', 'ping', 'tools-list', 'logging-set-level', 'dns-rebinding-protection', 'server-sse-multiple-streams'];

let serve: Spawned & { url: string };
let out: string;

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'codemode-serve-conformance-'));
  serve = await startServe(['--config', 'examples/mcp.json']);
});

afterAll(async () => {
  await serve?.stop();
  if (out) await rm(out, { recursive: true, force: true });
});

describe('conformance suite against codemode serve --http', () => {
  it('passes every scenario that needs no fixtures; the baseline holds only fixture scenarios', async () => {
    const child = spawn(process.execPath, [CONFORMANCE, 'server', '--url', serve.url, '--suite', 'all', '--expected-failures', BASELINE, '-o', out], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    clearTimeout(timer);
    // eslint-disable-next-line no-control-regex
    const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
    expect(plain).toContain('Baseline check passed');
    expect(code).toBe(0);

    const results = new Map<string, Array<{ name: string; status: string }>>();
    for (const d of await readdir(out)) {
      const name = d.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, '');
      results.set(name, JSON.parse(await readFile(join(out, d, 'checks.json'), 'utf8')) as Array<{ name: string; status: string }>);
    }
    for (const scenario of MUST_PASS) {
      const checks = results.get(scenario);
      expect(checks, scenario).toBeDefined();
      expect(checks!.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING').map((c) => `${scenario}/${c.name}`)).toEqual([]);
      expect(checks!.some((c) => c.status === 'SUCCESS'), scenario).toBe(true);
    }
  }, 180_000);
});
