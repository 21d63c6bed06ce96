import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { SOURCE_EXEC_ARGV } from '../../src/sandbox/process/pool.js';
import { alive, waitFor } from './helpers.js';

const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/parent.ts');
const leftovers: number[] = [];

afterEach(() => {
  // Whatever a failed test left behind is killed here, so a failure can't leak processes into the run.
  for (const pid of leftovers.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

async function startParent(mode?: 'starting'): Promise<{ parent: number; workers: number[] }> {
  const child = spawn(process.execPath, [...SOURCE_EXEC_ARGV, fixture, ...(mode === undefined ? [] : [mode])], { stdio: ['ignore', 'pipe', 'inherit'] });
  leftovers.push(child.pid!);
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the parent fixture did not report its workers within 30 s')), 30_000);
    let text = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const end = text.indexOf('\n');
      if (end >= 0) {
        clearTimeout(timer);
        resolve(text.slice(0, end));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the parent fixture exited early (${code ?? signal})`));
    });
  });
  const workers = JSON.parse(line) as number[];
  leftovers.push(...workers);
  return { parent: child.pid!, workers };
}

describe('no orphans (issue 8, shutdown)', () => {
  it.each(['SIGKILL', 'SIGTERM'] as const)('workers exit when their parent is killed with %s, busy or idle', async (sig) => {
    const { parent, workers } = await startParent();
    // Two serving workers (one in a CPU loop, one waiting on a host call) and a standby.
    expect(workers).toHaveLength(3);
    for (const pid of workers) expect(alive(pid)).toBe(true);
    process.kill(parent, sig);
    await waitFor(() => workers.every((pid) => !alive(pid)), 10_000, 'every worker to exit');
    expect(alive(parent)).toBe(false);
  });

  it('nothing is left when the parent is killed while its workers are being started (their channels in transit)', async () => {
    for (let round = 0; round < 3; round++) {
      const { parent, workers } = await startParent('starting');
      const launcher = workers[0]!;
      // Whatever the launcher started, before and after the kill, must end with it.
      const started = new Set<number>();
      const collect = () => {
        try {
          for (const c of readFileSync(`/proc/${launcher}/task/${launcher}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) started.add(Number(c));
        } catch {
          // The launcher is gone.
        }
      };
      collect();
      process.kill(parent, 'SIGKILL');
      for (let i = 0; i < 20; i++) {
        collect();
        await new Promise((r) => setTimeout(r, 5));
      }
      leftovers.push(launcher, ...started);
      await waitFor(() => !alive(launcher), 10_000, 'the launcher to exit');
      await waitFor(() => [...started].every((pid) => !alive(pid)), 10_000, 'every worker the launcher started to exit');
    }
  });
});
