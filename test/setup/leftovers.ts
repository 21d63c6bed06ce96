/**
 * Vitest global setup whose teardown fails the run when sandbox processes of this checkout outlive it: a
 * launcher or worker still alive after every test file closed its pools is a leak that a user's server
 * would have too (one was found this way: a launcher whose pool died while handing over a channel lived on,
 * and kept its workers alive). Linux only (it reads /proc); leftovers are killed after being reported.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MARKERS = ['dist/sandbox/process/launcher.js', 'dist/sandbox/process/worker.js', 'src/sandbox/process/launcher.ts', 'src/sandbox/process/worker.ts'].map((m) => `${ROOT}${m}`);

function sandboxProcesses(): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${entry}/status`, 'utf8'))) continue;
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (MARKERS.some((m) => cmd.includes(m))) out.push({ pid: Number(entry), cmd });
    } catch {
      // It ended while we read it.
    }
  }
  return out;
}

export default function leftovers(): () => Promise<void> {
  const before = new Set(sandboxProcesses().map((p) => p.pid));
  return async () => {
    // Pools closed in the last test files may still be letting their workers go: allow a few seconds.
    let left = sandboxProcesses().filter((p) => !before.has(p.pid));
    for (let i = 0; i < 50 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = sandboxProcesses().filter((p) => !before.has(p.pid));
    }
    if (left.length === 0) return;
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    throw new Error(`${left.length} sandbox process(es) outlived the test run (killed now):\n${left.map((p) => `  ${p.pid} ${p.cmd.slice(0, 200)}`).join('\n')}`);
  };
}
