/**
 * The package's subpath exports: `codemode/proxy` and `codemode/server` never load isolated-vm's native
 * addon on import (a proxy user never needs it; the server loads the sandbox on the first execute), while
 * `codemode/sandbox` does, which proves the check can see the addon. Runs against the build, through the
 * package's own `exports` map (Node resolves a package's own name from inside it).
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function importReport(specifier: string): { exports: string[]; isolatedVm: boolean } {
  const script = `import(${JSON.stringify(specifier)}).then((m) => {
    const loaded = Object.keys(require.cache).some((k) => k.includes('/node_modules/isolated-vm/'));
    process.stdout.write(JSON.stringify({ exports: Object.keys(m), isolatedVm: loaded }));
  });`;
  const run = spawnSync(process.execPath, ['--no-node-snapshot', '-e', script], { cwd: process.cwd(), encoding: 'utf8', timeout: 60_000 });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as { exports: string[]; isolatedVm: boolean };
}

describe('subpath exports', () => {
  it('codemode/proxy gives the proxy without loading isolated-vm', () => {
    const r = importReport('codemode/proxy');
    expect(r.exports).toEqual(expect.arrayContaining(['createProxy', 'connectUpstream', 'serveProxyHttp']));
    expect(r.isolatedVm).toBe(false);
  });

  it('codemode/server gives the server without loading isolated-vm until an execute runs', () => {
    const r = importReport('codemode/server');
    expect(r.exports).toEqual(expect.arrayContaining(['createCodemodeServerFromConfig', 'serveStdio']));
    expect(r.isolatedVm).toBe(false);
  });

  it('codemode/sandbox loads isolated-vm (control: the check sees the addon)', () => {
    const r = importReport('codemode/sandbox');
    expect(r.exports).toEqual(expect.arrayContaining(['IsolatedVmSandbox']));
    expect(r.isolatedVm).toBe(true);
  });
});
