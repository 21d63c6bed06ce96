/**
 * The install path the README shows hosts: the packed tarball, installed into an empty directory, and its
 * bins run from there with `npx` (issue 16). `npm test` builds dist/ before vitest runs, so the tarball is
 * packed without running prepack again. .ci/run does the same on Node 22.15, the lowest supported Node.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

interface Run { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], cwd: string, input?: string, timeoutMs = 240_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { cwd, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(input ?? '');
  });
}

let dir: string;
let tarball: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'codemode-pack-'));
  const packed = await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], ROOT);
  expect(packed.code, packed.stderr).toBe(0);
  tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
  expect(tarball).toMatch(/^codemode-.*\.tgz$/);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  // The cache is warm after `npm ci`; --prefer-offline keeps this from asking the registry for each package.
  const installed = await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', `./${tarball}`], dir);
  expect(installed.code, installed.stderr.slice(-2000)).toBe(0);
}, 300_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the packed tarball, installed into an empty directory', () => {
  it('ships dist/ and no sources or tests', () => {
    const manifest = JSON.parse(readFileSync(join(dir, 'node_modules/codemode/package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(Object.keys(manifest.bin).sort()).toEqual(['codemode', 'codemode-remote']);
    const shipped = readdirSync(join(dir, 'node_modules/codemode'));
    expect(shipped).toContain('dist');
    expect(shipped).not.toContain('src');
    expect(shipped).not.toContain('test');
  });

  it('npx codemode run - runs a block from stdin', async () => {
    const r = await run('npx', ['codemode', 'run', '-'], dir, 'const xs = [1, 2, 3]; return xs.reduce((a, b) => a + b, 0) * 7;', 60_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('42');
  }, 90_000);

  it('npx codemode-remote --help prints its usage and exits 0', async () => {
    const r = await run('npx', ['codemode-remote', '--help'], dir, undefined, 60_000);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Usage: codemode-remote/);
  }, 90_000);
});
