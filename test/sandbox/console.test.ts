import { describe, expect, it } from 'vitest';
import { failure, sandbox, value } from './helpers.js';

describe('console (issue 2, point 4)', () => {
  it('captures log/info/warn/error/debug with their level, in order', async () => {
    const outcome = await sandbox().run(
      'console.log("a", 1); console.info("b"); console.warn("c"); console.error("d"); console.debug("e"); return 0',
    );
    expect(value(outcome)).toBe(0);
    expect(outcome.logs).toEqual([
      { level: 'log', message: 'a 1' },
      { level: 'info', message: 'b' },
      { level: 'warn', message: 'c' },
      { level: 'error', message: 'd' },
      { level: 'debug', message: 'e' },
    ]);
  });

  it('formats objects readably and survives circular structures', async () => {
    const outcome = await sandbox().run(`
      const o = { name: 'x', list: [1, 'two', null, undefined], nested: { deep: { deeper: { deepest: 1 } } }, 'odd-key': true };
      o.self = o;
      console.log(o);
      console.log(new Map([['k', 1]]), new Set([1]), [1n, Symbol('s')], () => 1, function named() {});
      console.log(new Error('boom').message, new Date(0));
      const big = []; for (let i = 0; i < 150; i++) big.push(i);
      console.log(big);
    `);
    expect(outcome.ok).toBe(true);
    const [first, second, third, fourth] = outcome.logs.map((l) => l.message);
    expect(first).toBe("{ name: 'x', list: [ 1, 'two', null, undefined ], nested: { deep: { deeper: [Object] } }, 'odd-key': true, self: [Circular] }");
    expect(second).toBe("Map(1) { 'k' => 1 } Set(1) { 1 } [ 1n, Symbol(s) ] [Function (anonymous)] [Function: named]");
    expect(third).toBe('boom 1970-01-01T00:00:00.000Z');
    expect(fourth).toMatch(/^\[ 0, 1, 2, .* 99, \.\.\. 50 more items \]$/);
  });

  it('logs an Error with its stack', async () => {
    const outcome = await sandbox().run('console.error(new TypeError("bad"))');
    expect(outcome.logs[0]?.message).toMatch(/^TypeError: bad\n\s+at codemode-user\.js:1:15/);
  });

  it('a throwing getter or Proxy in a logged object does not break the run', async () => {
    const outcome = await sandbox().run(`
      console.log({ get bad() { throw new Error('getter') } });
      console.log(new Proxy({}, { ownKeys() { throw new Error('trap') } }));
      return 'still running';
    `);
    expect(value(outcome)).toBe('still running');
    expect(outcome.logs).toHaveLength(2);
  });

  it('caps lines, with a truncation marker', async () => {
    const outcome = await sandbox({ limits: { maxLogLines: 5 } }).run('for (let i = 0; i < 100; i++) console.log("line", i); return 1');
    expect(value(outcome)).toBe(1);
    expect(outcome.logs.slice(0, 5).map((l) => l.message)).toEqual(['line 0', 'line 1', 'line 2', 'line 3', 'line 4']);
    expect(outcome.logs).toHaveLength(6);
    expect(outcome.logs[5]).toMatchObject({ level: 'warn' });
    expect(outcome.logs[5]?.message).toMatch(/console output truncated: 95 line\(s\) dropped/);
    expect(outcome.stats.droppedLogLines).toBe(95);
  });

  it('caps bytes, with a truncation marker', async () => {
    const outcome = await sandbox({ limits: { maxLogBytes: 1000 } }).run('for (let i = 0; i < 100; i++) console.log("x".repeat(300)); return 1');
    const kept = outcome.logs.filter((l) => !l.message.startsWith('[console output truncated'));
    const bytes = kept.reduce((n, l) => n + Buffer.byteLength(l.message), 0);
    expect(bytes).toBeLessThanOrEqual(1000);
    expect(kept.length).toBeGreaterThanOrEqual(3);
    expect(outcome.logs.at(-1)?.message).toMatch(/console output truncated/);
    expect(outcome.stats.droppedLogLines).toBeGreaterThan(90);
  });

  it('one line longer than the byte cap is cut, and the cut is marked', async () => {
    const outcome = await sandbox({ limits: { maxLogBytes: 1000 } }).run('console.log("x".repeat(5000)); return 1');
    expect(value(outcome)).toBe(1);
    expect(outcome.logs).toHaveLength(2);
    expect(outcome.logs[0]!.message).toBe('x'.repeat(1000));
    expect(outcome.logs[1]).toEqual({ level: 'warn', message: expect.stringMatching(/^\[console output truncated: the rest was cut off; limits are 1000 lines and 1000 bytes\]$/) });
  });

  it('a line cut at the cap never ends in half a surrogate pair', async () => {
    const outcome = await sandbox({ limits: { maxLogBytes: 1000 } }).run('console.log("x".repeat(999) + "😀" + "y"); return 1');
    expect(outcome.logs[0]!.message).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/); // no lone surrogate half
    expect(outcome.logs[0]!.message).toBe('x'.repeat(999));
  });

  it('multi-byte output counts in bytes against the cap', async () => {
    const outcome = await sandbox({ limits: { maxLogBytes: 300 } }).run('for (let i = 0; i < 10; i++) console.log("€".repeat(50)); return 1');
    const kept = outcome.logs.filter((l) => !l.message.startsWith('[console output truncated'));
    expect(kept.reduce((n, l) => n + Buffer.byteLength(l.message), 0)).toBeLessThanOrEqual(300);
    expect(outcome.logs.at(-1)?.message).toMatch(/console output truncated/);
  });

  it('a log flood that ends in a timeout still returns the capped logs and the marker', async () => {
    const outcome = await sandbox({ limits: { timeoutMs: 200, maxLogLines: 10 } }).run('let i = 0; while (true) console.log(i++)');
    expect(failure(outcome).kind).toBe('timeout');
    expect(outcome.logs.length).toBe(11);
    expect(outcome.logs[10]?.message).toMatch(/console output truncated/);
  });

  it('no line is lost when the code logs right before it returns, after a host call answered by I/O', async () => {
    // isolated-vm delivers log messages and the run's result as separate tasks, in no fixed order: before the
    // host waited for the count the guest sends with its result, about half of these runs came back without
    // their last lines.
    const sb = sandbox({ maxConcurrency: 4 });
    const hostFunctions = {
      fetchTwo: async (): Promise<number[]> => {
        await new Promise((resolve) => setTimeout(resolve, 1));
        return [1, 2];
      },
    };
    const code = `const x = await fetchTwo();
      console.log('found', x.length);
      console.warn('last');
      if (x.length === 3) throw new Error('unreachable');
      return x.length;`;
    const failing = `await fetchTwo(); console.error('before the throw'); throw new Error('boom')`;
    const runs = await Promise.all(
      Array.from({ length: 60 }, (_, i) => sb.run(i % 3 === 2 ? failing : code, { hostFunctions })),
    );
    for (const [i, outcome] of runs.entries()) {
      if (i % 3 === 2) {
        expect(failure(outcome).message).toBe('boom');
        expect(outcome.logs).toEqual([{ level: 'error', message: 'before the throw' }]);
      } else {
        expect(value(outcome)).toBe(2);
        expect(outcome.logs).toEqual([
          { level: 'log', message: 'found 2' },
          { level: 'warn', message: 'last' },
        ]);
      }
    }
  });

  it('the truncation marker is not lost either when the cap is hit right before the return', async () => {
    const outcome = await sandbox({ limits: { maxLogLines: 1 } }).run(
      "await slow(); console.log('kept'); console.log('dropped'); return 1",
      { hostFunctions: { slow: () => new Promise((resolve) => setTimeout(resolve, 1)) } },
    );
    expect(value(outcome)).toBe(1);
    expect(outcome.logs).toEqual([
      { level: 'log', message: 'kept' },
      { level: 'warn', message: expect.stringMatching(/console output truncated: 1 line\(s\) dropped/) },
    ]);
  });

  it('logs written before an error are kept', async () => {
    const outcome = await sandbox().run('console.log("before"); throw new Error("x")');
    expect(failure(outcome).kind).toBe('runtime');
    expect(outcome.logs).toEqual([{ level: 'log', message: 'before' }]);
  });
});
