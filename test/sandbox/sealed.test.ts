/**
 * A returned block is sealed (issue 17, defect 6; ARCHITECTURE §4 rule 11): from the moment the guest's
 * function settles, no host call starts, replies are dropped, and nothing later changes the outcome, whether
 * the host functions answer at once or after 20 ms. Real isolates, both vitest projects.
 */
import { describe, expect, it } from 'vitest';
import type { HostFunctions, RunOutcome } from '../../src/sandbox/types.js';
import { ON_PROCESS_POOL, sandbox } from './helpers.js';

/** Host functions that answer at once (sync), in the same turn (async, resolved), or after `delayMs`. */
function tools(speed: 'sync' | 'async' | number, reached: string[]): HostFunctions {
  const answer = (name: string, value: unknown): unknown => {
    reached.push(name);
    if (speed === 'sync') return value;
    if (speed === 'async') return Promise.resolve(value);
    return new Promise((resolve) => setTimeout(() => resolve(value), speed));
  };
  return {
    tools: {
      t: {
        echo: ([x]) => answer('echo', x ?? null),
        record: () => answer('record', 'recorded'),
      },
    },
  };
}

/** What must be the same at every speed: ok, the value, or the failure's kind and message. */
function shape(outcome: RunOutcome): unknown {
  return outcome.ok ? { ok: true, value: outcome.value } : { ok: false, kind: outcome.error.kind, message: outcome.error.message };
}

const SPEEDS = ['sync', 'async', 20] as const;

describe('a returned block is sealed', () => {
  it('calls chained after return never reach the host, and the outcome does not depend on host speed', async () => {
    const code = 'tools.t.echo({}).then(() => tools.t.record({})).then(() => tools.t.record({})); return 1;';
    const sb = sandbox({ limits: { timeoutMs: 10_000 } });
    for (const speed of SPEEDS) {
      for (let i = 0; i < 15; i++) {
        const reached: string[] = [];
        const outcome = await sb.run(code, { hostFunctions: tools(speed, reached) });
        expect({ speed, i, outcome: shape(outcome) }).toEqual({ speed, i, outcome: { ok: true, value: 1 } });
        // echo started before the return; record only after it, so it is refused inside the guest, uncounted.
        expect({ speed, i, reached }).toEqual({ speed, i, reached: ['echo'] });
        expect(outcome.stats.hostCalls).toBe(1);
        // Replies that arrive after the run (the 20 ms echo) start nothing either: still only echo.
        await new Promise((resolve) => setTimeout(resolve, typeof speed === 'number' ? 2 * speed : 1));
        expect(reached).toEqual(['echo']);
      }
    }
  });

  it('a call forgotten before return still counts and is reported pending (slow) or done (fast), as before', async () => {
    const sb = sandbox({ limits: { timeoutMs: 10_000 } });
    for (const speed of SPEEDS) {
      const reached: string[] = [];
      const outcome = await sb.run('tools.t.record({}); return 2;', { hostFunctions: tools(speed, reached) });
      expect(shape(outcome)).toEqual({ ok: true, value: 2 });
      expect(reached).toEqual(['record']);
      expect(outcome.stats.hostCalls).toBe(1);
      // Over the process pool's IPC even a synchronous answer is still in transit when the run returns.
      if (!ON_PROCESS_POOL) expect(outcome.stats.pendingHostCalls).toBe(speed === 20 ? 1 : 0);
    }
  });

  it('a rejection or throw after the return never changes the outcome, at any host speed', async () => {
    const sb = sandbox({ limits: { timeoutMs: 10_000 } });
    const codes = [
      "tools.t.echo({}).then(() => { throw new Error('after return'); }); return 3;",
      "tools.t.echo({}).then(() => Promise.reject(new Error('after return'))); return 3;",
      'tools.t.echo({}).then(() => tools.t.record({})); return 3;',
      "Promise.resolve().then(() => { throw new Error('after return'); }); return 3;",
      "(async () => { await null; await null; throw new Error('after return'); })(); return 3;",
    ];
    for (const code of codes) {
      const shapes = new Set<string>();
      for (const speed of SPEEDS) {
        for (let i = 0; i < 5; i++) {
          const reached: string[] = [];
          const outcome = await sb.run(code, { hostFunctions: tools(speed, reached) });
          shapes.add(JSON.stringify(shape(outcome)));
          expect(reached).not.toContain('record');
        }
      }
      expect({ code, shapes: [...shapes] }).toEqual({ code, shapes: [JSON.stringify({ ok: true, value: 3 })] });
    }
  });

  it('a failing block is sealed the same way: its error stands and later calls are refused', async () => {
    const sb = sandbox({ limits: { timeoutMs: 10_000 } });
    for (const speed of SPEEDS) {
      const reached: string[] = [];
      const outcome = await sb.run("tools.t.echo({}).then(() => tools.t.record({})); throw new TypeError('mine');", {
        hostFunctions: tools(speed, reached),
      });
      expect(shape(outcome)).toEqual({ ok: false, kind: 'runtime', message: 'mine' });
      expect(reached).toEqual(['echo']);
    }
  });

  it('calls awaited before the return are untouched: sealing costs no legitimate call', async () => {
    const sb = sandbox({ limits: { timeoutMs: 10_000 } });
    for (const speed of SPEEDS) {
      const reached: string[] = [];
      const outcome = await sb.run(
        'const a = await tools.t.echo(1); const [b, c] = await Promise.all([tools.t.echo(2), tools.t.record()]); return [a, b, c];',
        { hostFunctions: tools(speed, reached) },
      );
      expect(shape(outcome)).toEqual({ ok: true, value: [1, 2, 'recorded'] });
      expect(reached).toEqual(['echo', 'echo', 'record']);
    }
  });
});
