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
  // the conformance CLI's "auth" suite
  'auth/metadata-default',
  'auth/metadata-var1',
  'auth/metadata-var2',
  'auth/metadata-var3',
  'auth/basic-cimd',
  'auth/scope-from-www-authenticate',
  'auth/scope-from-scopes-supported',
  'auth/scope-omitted-when-undefined',
  'auth/scope-step-up',
  'auth/scope-retry-limit',
  'auth/token-endpoint-auth-basic',
  'auth/token-endpoint-auth-post',
  'auth/token-endpoint-auth-none',
  'auth/pre-registration',
  // the rest
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
  'auth/cross-app-access-complete-flow',
];

/** At most three scenarios at once: each runs a conformance server, the driver, the bridge and a browser. */
const slot = (() => {
  let free = 3;
  const queue: Array<() => void> = [];
  return {
    acquire: (): Promise<void> =>
      new Promise((resolve_) => {
        if (free > 0) {
          free--;
          resolve_();
        } else queue.push(resolve_);
      }),
    release: (): void => {
      const next = queue.shift();
      if (next !== undefined) next();
      else free++;
    },
  };
})();

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

  it('covers the whole auth suite of the conformance CLI', async () => {
    const list = await new Promise<string>((resolve_) => {
      const child = spawn(process.execPath, [conformance, 'list'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', () => resolve_(out));
    });
    const authScenarios = [...list.matchAll(/- (auth\/[\w-]+)/g)].map((m) => m[1]!);
    expect(authScenarios.length).toBeGreaterThan(20);
    expect(authScenarios.filter((s_) => !SCENARIOS.includes(s_))).toEqual([]);
  });

  describe.concurrent('scenarios', () => {
    for (const scenario of SCENARIOS) {
      it(scenario, { timeout: 240_000 }, async () => {
        await slot.acquire();
        let result;
        try {
          result = await runConformance(['--scenario', scenario, '--timeout', '60000']);
        } finally {
          slot.release();
        }
        const { code, output, ms } = result;
        expect(output, output).toMatch(/Passed: (\d+)\/\1, 0 failed, 0 warnings/);
        expect(code, output).toBe(0);
        process.stderr.write(`conformance ${scenario}: ${Math.round(ms)} ms\n`);
      });
    }
  });
});
