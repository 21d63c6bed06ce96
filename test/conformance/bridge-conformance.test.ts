/**
 * codemode-remote against the official MCP conformance client scenarios, driven headlessly through
 * test/conformance/bridge-driver.ts (a stdio host that also plays the browser during OAuth).
 * Needs the built bridge (`npm run build`), like the CI script runs it.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const conformance = resolve(root, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const driver = resolve(root, 'test/conformance/bridge-driver.ts');
const bridgeBin = resolve(root, 'dist/cli/codemode-remote.js');

/** Every client scenario the bridge is expected to pass, one conformance run each. */
const SCENARIOS = [
  'initialize',
  'tools_call',
  'sse-retry',
  'elicitation-sep1034-client-defaults',
  'auth/2025-03-26-oauth-metadata-backcompat',
  'auth/2025-03-26-oauth-endpoint-fallback',
  'auth/resource-mismatch',
  'auth/offline-access-scope',
  'auth/offline-access-not-supported',
  'auth/client-credentials-basic',
  'auth/client-credentials-jwt',
];

function runConformance(args: string[]): Promise<{ code: number | null; output: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve_) => {
    const child = spawn(process.execPath, [conformance, 'client', '--command', `"${process.execPath}" "${driver}"`, ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 110_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve_({ code, output, ms: performance.now() - started });
    });
  });
}

describe('codemode-remote passes the MCP conformance client scenarios', () => {
  beforeAll(() => {
    if (!existsSync(bridgeBin)) throw new Error(`${bridgeBin} is missing: run npm run build first`);
  });

  it('the whole auth suite (14 OAuth scenarios, run in parallel by the conformance CLI)', { timeout: 120_000 }, async () => {
    const { code, output, ms } = await runConformance(['--suite', 'auth', '--timeout', '60000']);
    expect(output, output).toMatch(/Total: \d+ passed, 0 failed, 0 warnings/);
    expect(output).toContain('auth/scope-step-up');
    expect(output).toContain('auth/pre-registration');
    expect(code, output).toBe(0);
    process.stderr.write(`conformance auth suite: ${Math.round(ms)} ms\n`);
  });

  describe.concurrent('single scenarios', () => {
    for (const scenario of SCENARIOS) {
      it(scenario, { timeout: 120_000 }, async () => {
        const { code, output, ms } = await runConformance(['--scenario', scenario, '--timeout', '60000']);
        expect(output, output).toMatch(/Passed: (\d+)\/\1, 0 failed, 0 warnings/);
        expect(code, output).toBe(0);
        process.stderr.write(`conformance ${scenario}: ${Math.round(ms)} ms\n`);
      });
    }
  });
});
