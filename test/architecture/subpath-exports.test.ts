/**
 * The package's subpath exports: importing `codemode/proxy`, `codemode/server` or `codemode/bridge` never loads isolated-vm's
 * native addon (a proxy user never needs it; the server loads the sandbox when it runs code), while
 * `codemode/sandbox` does, which proves the recorder sees the addon. Runs against the build, through the
 * package's own `exports` map (Node resolves a package's own name from inside it).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadRecorder } from '../fixtures/load-recorder.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function importReport(specifier: string): { exports: string[]; isolatedVm: boolean; sdk: boolean; zod: boolean } {
  const dir = mkdtempSync(join(tmpdir(), 'cm-subpath-'));
  dirs.push(dir);
  const { env, loaded } = loadRecorder(dir);
  const script = `import(${JSON.stringify(specifier)}).then((m) => process.stdout.write(JSON.stringify(Object.keys(m))));`;
  const run = spawnSync(process.execPath, ['--no-node-snapshot', '-e', script], { cwd: process.cwd(), env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  expect(run.status, run.stderr).toBe(0);
  const urls = loaded();
  return {
    exports: JSON.parse(run.stdout) as string[],
    isolatedVm: urls.some((u) => u.includes('/node_modules/isolated-vm/')),
    sdk: urls.some((u) => u.includes('/node_modules/@modelcontextprotocol/')),
    zod: urls.some((u) => u.includes('/node_modules/zod/')),
  };
}

describe('subpath exports', () => {
  it('codemode/proxy gives the proxy without loading isolated-vm', () => {
    const r = importReport('codemode/proxy');
    expect(r.exports).toEqual(expect.arrayContaining(['createProxy', 'connectUpstream', 'serveProxyHttp']));
    expect(r.isolatedVm).toBe(false);
  });

  it('codemode/server gives the server without loading isolated-vm on import', () => {
    const r = importReport('codemode/server');
    expect(r.exports).toEqual(expect.arrayContaining(['createCodemodeServerFromConfig', 'serveStdio']));
    expect(r.isolatedVm).toBe(false);
  });

  it('codemode/bridge gives the bridge without loading isolated-vm, the MCP SDK or zod', () => {
    const r = importReport('codemode/bridge');
    expect(r.exports).toEqual(expect.arrayContaining(['startBridge', 'UpstreamError']));
    expect(r).toMatchObject({ isolatedVm: false, sdk: false, zod: false });
    // Control for the SDK and zod checks: the proxy entry does load them.
    expect(importReport('codemode/proxy')).toMatchObject({ sdk: true, zod: true });
  });

  it('codemode/sandbox loads isolated-vm (control: the recorder sees the addon)', () => {
    const r = importReport('codemode/sandbox');
    expect(r.exports).toEqual(expect.arrayContaining(['IsolatedVmSandbox']));
    expect(r.isolatedVm).toBe(true);
  });
});
