/**
 * Runs the official `@modelcontextprotocol/conformance` server suite against a URL and collects the checks
 * of every scenario (from the `checks.json` files it writes with `-o`).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CONFORMANCE_BIN = fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/conformance/dist/index.js', import.meta.url));
export const FIXTURE = fileURLToPath(new URL('../fixtures/conformance-server.ts', import.meta.url));

export interface Check {
  id: string;
  name: string;
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'INFO' | 'SKIPPED';
  errorMessage?: string;
}

export interface SuiteResult {
  /** scenario name -> its checks */
  scenarios: Map<string, Check[]>;
  exitCode: number | null;
  output: string;
  ms: number;
}

/** Runs `conformance server --url <url> --suite all` (bounded by `timeoutMs`). */
export async function runServerSuite(url: string, timeoutMs = 120_000): Promise<SuiteResult> {
  const out = await mkdtemp(join(tmpdir(), 'codemode-conformance-'));
  const started = performance.now();
  try {
    const child = spawn(process.execPath, [CONFORMANCE_BIN, 'server', '--url', url, '--suite', 'all', '-o', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const exitCode = await new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    clearTimeout(timer);
    const scenarios = new Map<string, Check[]>();
    for (const dir of await readdir(out)) {
      const name = dir.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, '');
      const checks = JSON.parse(await readFile(join(out, dir, 'checks.json'), 'utf8')) as Check[];
      scenarios.set(name, checks);
    }
    return { scenarios, exitCode, output, ms: performance.now() - started };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** Scenario -> names of its FAILURE checks (with messages), for readable assertion diffs. */
export function failures(result: SuiteResult): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [scenario, checks] of result.scenarios) {
    const bad = checks.filter((c) => c.status === 'FAILURE').map((c) => `${c.name}: ${c.errorMessage ?? ''}`);
    if (bad.length > 0) out[scenario] = bad;
  }
  return out;
}

/** Sorted `scenario/check` names of WARNING checks. */
export function warnings(result: SuiteResult): string[] {
  const out: string[] = [];
  for (const [scenario, checks] of result.scenarios) for (const c of checks) if (c.status === 'WARNING') out.push(`${scenario}/${c.name}`);
  return out.sort();
}
