import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ProcessPool } from '../../src/sandbox/process/pool.js';
import { alive, failure, latch, startSandbox, value, waitFor } from './helpers.js';

/** Direct children of a process (Linux). */
function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

const launchersOfThisProcess = () => children(process.pid).filter((c) => cmdline(c).includes('sandbox/process/launcher'));

describe('who starts the sandbox workers', () => {
  it('by default on Linux, a launcher does: the pool process forks it once, never a worker', async () => {
    const before = new Set(launchersOfThisProcess());
    const sb = await startSandbox({ size: 2, standbyWorkers: 1, limits: { memoryMb: 16 } });
    const launchers = launchersOfThisProcess().filter((p) => !before.has(p));
    expect(launchers).toHaveLength(1);
    await waitFor(() => sb.pool.allPids().length === 3, 30_000, 'the standby to start');
    const pids = sb.pool.allPids();
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(children(launchers[0]!)).toContain(pid);
    expect(children(process.pid).filter((p) => pids.includes(p))).toEqual([]);
    // A replacement (after a memory stop, say) also comes from the launcher.
    const error = failure(await sb.run('const a = []; while (true) a.push(new Array(1e5).fill(1.5));'));
    expect(error.kind).toBe('memory');
    // The stopped worker is retired and a new one takes its place: wait for that new pid.
    await waitFor(() => sb.pool.allPids().length === 3 && sb.pool.allPids().some((p) => !pids.includes(p)), 30_000, 'a replacement worker');
    const replacements = sb.pool.allPids().filter((p) => !pids.includes(p));
    expect(replacements.length).toBeGreaterThan(0);
    for (const pid of replacements) expect(children(launchers[0]!)).toContain(pid);
    expect(children(process.pid).filter((p) => replacements.includes(p))).toEqual([]);
    await sb.close();
    // Closing the pool lets its launcher go.
    await waitFor(() => !alive(launchers[0]!) || cmdline(launchers[0]!) === '', 10_000, 'the launcher to exit');
  });

  it("spawnVia: 'direct' starts the workers from the pool process, with the same channel and behaviour", async () => {
    const sb = await startSandbox({ size: 1, standbyWorkers: 1, spawnVia: 'direct' });
    await waitFor(() => sb.pool.allPids().length === 2, 30_000, 'the standby to start');
    const pids = sb.pool.allPids();
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(children(process.pid)).toContain(pid);
    expect(value(await sb.run('return (await twice(21)) + 0', { hostFunctions: { twice: (args: unknown[]) => (args[0] as number) * 2 } }))).toBe(42);
    // A crash is reported with its signal, and the standby takes over.
    const inHost = latch();
    const running = sb.run('await hang()', { hostFunctions: { hang: () => (inHost.open(), new Promise(() => undefined)) } });
    await inHost.promise;
    const [serving] = sb.pool.allPids();
    process.kill(serving!, 'SIGKILL');
    const error = failure(await running);
    expect(error.kind).toBe('crashed');
    expect(error.message).toContain('signal SIGKILL');
    expect(value(await sb.run('return 2'))).toBe(2);
  });

  it('a launcher that dies takes no run with it silently: its workers are stopped, the runs fail as crashed, and a new launcher serves the next run', async () => {
    const before = new Set(launchersOfThisProcess());
    const sb = await startSandbox({ size: 1, standbyWorkers: 1 });
    const [launcher] = launchersOfThisProcess().filter((p) => !before.has(p));
    const oldWorkers = sb.pool.allPids();
    const inHost = latch();
    const running = sb.run('await hang()', { hostFunctions: { hang: () => (inHost.open(), new Promise(() => undefined)) } });
    await inHost.promise;
    process.kill(launcher!, 'SIGKILL');
    const error = failure(await running);
    expect(error.kind).toBe('crashed');
    await waitFor(() => oldWorkers.every((p) => !alive(p) || cmdline(p) === ''), 10_000, 'the orphaned workers to be stopped');
    expect(value(await sb.run('return 3'))).toBe(3);
    const [next] = launchersOfThisProcess().filter((p) => !before.has(p) && p !== launcher);
    expect(next).toBeDefined();
    for (const pid of sb.pool.allPids()) expect(children(next!)).toContain(pid);
  });

  it('refuses an unknown spawnVia', () => {
    expect(() => new ProcessPool({ spawnVia: 'fork' as never })).toThrow(/spawnVia must be 'launcher' or 'direct'/);
  });
});
