import { describe, expect, it } from 'vitest';
import { failure, sandbox, value } from './helpers.js';

describe('timers (issue 2, point 8: bounded by the run, cleared when it ends)', () => {
  it('setTimeout delays, passes arguments, runs in order, and clearTimeout cancels', async () => {
    const started = performance.now();
    const out = value(
      await sandbox().run(`
        const order = [];
        await new Promise((resolve) => setTimeout(resolve, 50));
        const cancelled = setTimeout(() => order.push('cancelled'), 10);
        setTimeout((a, b) => order.push('second ' + a + b), 20, 'x', 'y');
        setTimeout(() => order.push('first'), 5);
        clearTimeout(cancelled);
        await new Promise((resolve) => setTimeout(resolve, 60));
        return { order, id: typeof cancelled };
      `),
    );
    expect(out).toEqual({ order: ['first', 'second xy'], id: 'number' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(100);
  });

  it('delays past Node\'s timer ceiling (or Infinity) wait, they do not fire at once', async () => {
    // Node runs a timer whose delay is over 2^31 - 1 ms after 1 ms; both sides clamp to the ceiling instead.
    for (const delay of ['1e12', 'Infinity', '2 ** 31']) {
      const out = value(
        await sandbox().run(`
          let fired = false;
          setTimeout(() => { fired = true; }, ${delay});
          await new Promise((resolve) => setTimeout(resolve, 60));
          return fired;
        `),
      );
      expect(out, delay).toBe(false);
    }
  });

  it('no timer callback runs after the run settled', async () => {
    let calls = 0;
    const outcome = await sandbox().run('setTimeout(() => late(), 20); setTimeout(() => late(), 0); return "done"', {
      hostFunctions: {
        late: () => {
          calls++;
        },
      },
    });
    expect(value(outcome)).toBe('done');
    await new Promise((r) => setTimeout(r, 80));
    expect(calls).toBe(0);
  });

  it('the wall clock still applies to code waiting on a long timer', async () => {
    const started = performance.now();
    const outcome = await sandbox({ limits: { timeoutMs: 150 } }).run('await new Promise((r) => setTimeout(r, 60_000)); return 1');
    expect(failure(outcome).kind).toBe('timeout');
    expect(performance.now() - started).toBeLessThan(250);
  });

  it('a throwing callback fails the run with its error', async () => {
    const error = failure(await sandbox().run('setTimeout(() => { throw new RangeError("in timer") }, 0);\nawait new Promise((r) => setTimeout(r, 20));\nreturn 1'));
    expect(error).toMatchObject({ kind: 'runtime', name: 'RangeError', message: 'in timer', line: 1 });
  });

  it('caps pending timers', async () => {
    const out = value(
      await sandbox().run(`
        const ids = [];
        try { for (let i = 0; i < 2000; i++) ids.push(setTimeout(() => {}, 60_000)); } catch (e) { return [ids.length, e.message]; }
        return [ids.length];
      `),
    );
    expect(out).toEqual([1000, 'setTimeout: too many pending timers (limit 1000)']);
  });

  it('rejects a non-function callback', async () => {
    const error = failure(await sandbox().run('setTimeout("alert(1)", 0)'));
    expect(error).toMatchObject({ kind: 'runtime', name: 'TypeError', message: 'setTimeout: the callback must be a function' });
  });
});
