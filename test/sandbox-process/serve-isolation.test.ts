import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, startCli, waitFor } from '../cli/helpers.js';

// `codemode serve --isolation`: process isolation by default over HTTP, in-process by default over stdio.
// These run the built CLI (dist/; `npm test` builds before vitest).

/** Direct children of a process (Linux). */
function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Every process below `pid` (Linux). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  for (let guard = 0; stack.length > 0 && guard < 1_000; guard++) {
    for (const child of children(stack.pop()!)) {
      out.push(child);
      stack.push(child);
    }
  }
  return out;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

const stops: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(stops.splice(0).map((stop) => stop()));
});

async function serveHttp(args: string[]): Promise<{ pid: number; url: string }> {
  const cli = startCli(['serve', '--http', '--port', '0', ...args]);
  stops.push(async () => {
    cli.child.kill('SIGTERM');
    await cli.finished;
  });
  const text = await waitFor(cli.stderrText, (t) => /listening on http:\/\/\S+/.test(t) || cli.child.exitCode !== null);
  const url = /listening on (http:\/\/\S+)/.exec(text)?.[1];
  if (url === undefined) throw new Error(`serve did not start:\n${text}`);
  return { pid: cli.child.pid!, url };
}

async function execute(url: string, code: string): Promise<unknown> {
  const client = new Client({ name: 'isolation-test', version: '0.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  try {
    return await client.callTool({ name: 'execute', arguments: { code } });
  } finally {
    await client.close();
  }
}

describe('codemode serve --isolation (issue 8)', () => {
  it('documents the flag and rejects unknown modes with exit 2', async () => {
    const help = await runCli(['serve', '--help']);
    expect(help.stdout).toContain('--isolation <mode>');
    const bad = await runCli(['serve', '--isolation', 'thread']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--isolation must be "process" or "in-process"/);
  });

  it('over HTTP, executes run in worker processes by default', async () => {
    const { pid, url } = await serveHttp([]);
    expect(JSON.stringify(await execute(url, 'return 6 * 7'))).toContain('42');
    const workers = descendants(pid).filter((c) => cmdline(c).includes('sandbox/process/worker.js'));
    expect(workers.length).toBeGreaterThan(0);
    // The server forks only its launcher; the launcher forks the workers, so replacing a worker never
    // runs fork() on the server's event loop (whose cost grows with the server's RSS).
    const launchers = children(pid).filter((c) => cmdline(c).includes('sandbox/process/launcher.js'));
    expect(launchers).toHaveLength(1);
    expect(children(pid).filter((c) => cmdline(c).includes('sandbox/process/worker.js'))).toEqual([]);
    for (const w of workers) expect(children(launchers[0]!)).toContain(w);
  });

  it('--isolation in-process keeps executes in the server process', async () => {
    const { pid, url } = await serveHttp(['--isolation', 'in-process']);
    expect(JSON.stringify(await execute(url, 'return 6 * 7'))).toContain('42');
    expect(descendants(pid).filter((c) => /sandbox\/process\/(worker|launcher)/.test(cmdline(c)))).toEqual([]);
  });
});
