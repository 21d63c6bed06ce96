/** Spawning the built `codemode` CLI (dist/; `npm test` builds before vitest). */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = fileURLToPath(new URL('../../dist/cli/codemode.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Starts `codemode ...args`; the caller must end it (`finished` or kill). */
export function startCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): { child: ChildProcessWithoutNullStreams; finished: Promise<CliResult>; stderrText: () => string } {
  const started = performance.now();
  const child = spawn(process.execPath, ['--no-node-snapshot', CLI, ...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, CODEMODE_LOG_LEVEL: 'info', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const finished = new Promise<CliResult>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: performance.now() - started }));
  });
  return { child, finished, stderrText: () => stderr };
}

/** Runs `codemode ...args` to completion (killed after `timeoutMs`), feeding `input` on stdin. */
export async function runCli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  const { child, finished } = startCli(args, options);
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  child.stdin.end(options.input ?? '');
  try {
    return await finished;
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `predicate(stderr)` holds, polling every 25 ms, for at most `ms`. */
export async function waitFor(read: () => string, predicate: (text: string) => boolean, ms = 20_000): Promise<string> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const text = read();
    if (predicate(text)) return text;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting; output so far:\n${read()}`);
}
