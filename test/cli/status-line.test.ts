import { Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCommand } from '../../src/cli/run-command.js';

function io(isTTY: boolean, script: string) {
  let stdout = '';
  let stderr = '';
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      stdout += chunk.toString();
      cb();
    },
  });
  const err = Object.assign(
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        stderr += chunk.toString();
        cb();
      },
    }),
    { isTTY },
  ) as unknown as NodeJS.WriteStream;
  return { io: { stdin: Readable.from([script]), stdout: out, stderr: err }, stdout: () => stdout, stderr: () => stderr };
}

// Spins for 1.2 s inside the isolate; the status line ticks on the host's event loop meanwhile.
const SLOW = 'const t = Date.now(); while (Date.now() - t < 1200) {} return "done"';

describe('codemode run status line', () => {
  it('shows elapsed time and tool calls on a terminal, and clears it before the result', async () => {
    const t = io(true, SLOW);
    expect(await runCommand(['-'], t.io)).toBe(0);
    expect(t.stderr()).toMatch(/running \d+\.\ds · 0 tool calls/);
    expect(t.stderr().endsWith('\r\x1b[2K')).toBe(true);
    expect(t.stdout()).toBe('"done"\n');
  });

  it('prints nothing extra off a terminal', async () => {
    const t = io(false, SLOW);
    expect(await runCommand(['-'], t.io)).toBe(0);
    expect(t.stderr()).toBe('');
    expect(t.stdout()).toBe('"done"\n');
  });
});
