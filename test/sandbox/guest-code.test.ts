import { describe, expect, it } from 'vitest';
import { failure, sandbox, value } from './helpers.js';

describe('guest code (issue 2, point 2)', () => {
  it('runs as the body of an async function: top-level await and return work', async () => {
    const sb = sandbox();
    expect(value(await sb.run('const x = await Promise.resolve(20); return x + 22'))).toBe(42);
    expect(value(await sb.run('1 + 1'))).toBeUndefined();
    expect(value(await sb.run('return'))).toBeUndefined();
    // A trailing line comment must not swallow the wrapper.
    expect(value(await sb.run('return 7 // done'))).toBe(7);
  });

  it('returns JSON-compatible data as a copy', async () => {
    const out = value(
      await sandbox().run(`
        class Point { constructor() { this.x = 1; this.y = 2; } }
        return { s: 'é', n: 1.5, b: true, z: null, arr: [1, undefined, 'x'], skip: undefined, nan: NaN,
                 date: new Date(0), nested: { p: new Point() }, err: new TypeError('bad') };
      `),
    );
    expect(out).toEqual({
      s: 'é',
      n: 1.5,
      b: true,
      z: null,
      arr: [1, null, 'x'],
      nan: null,
      date: '1970-01-01T00:00:00.000Z',
      nested: { p: { x: 1, y: 2 } },
      err: { name: 'TypeError', message: 'bad' },
    });
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
  });

  it.each([
    ['return { a: { fn() {} } }', 'result.a.fn is a function'],
    ['return [1, Symbol("s")]', 'result[1] is a symbol'],
    ['return { big: 10n }', 'result.big is a BigInt (10n)'],
    ['const a = { b: {} }; a.b.back = a; return a', 'result.b.back is a circular reference to result'],
    ['return { "odd key": new Map([[1, 2]]) }', 'result["odd key"] is a Map'],
    ['return { s: new Set() }', 'result.s is a Set'],
    ['return { p: Promise.resolve(1) }', 'result.p is a Promise; did you forget an await?'],
    ['return { bytes: new Uint8Array(2) }', 'result.bytes is a Uint8Array'],
  ])('non-serializable values name what and where: %s', async (code, expected) => {
    const error = failure(await sandbox().run(code));
    expect(error.kind).toBe('runtime');
    expect(error.message).toContain('cannot be copied out of the sandbox');
    expect(error.message).toContain(expected);
  });

  it('a result over the size cap gives output_limit; under it passes', async () => {
    const sb = sandbox({ limits: { maxResultBytes: 1000 } });
    const error = failure(await sb.run('return "x".repeat(2000)'));
    expect(error.kind).toBe('output_limit');
    expect(error.message).toMatch(/1000-byte limit/);
    expect(value(await sb.run('return "x".repeat(900)'))).toHaveLength(900);
    // Bytes, not characters: 400 three-byte characters are 1200 bytes of UTF-8.
    expect(failure(await sb.run('return "€".repeat(400)')).kind).toBe('output_limit');
  });

  it('the default result cap is 1 MiB', async () => {
    const error = failure(await sandbox().run('return "x".repeat(1024 * 1024 + 10)'));
    expect(error.kind).toBe('output_limit');
  });
});

describe('errors (issue 2, point 9)', () => {
  it('syntax errors report line and column in the user code', async () => {
    const error = failure(await sandbox().run('const a = 1;\nconst b = 2;\n  let c = = 3;'));
    expect(error).toMatchObject({ kind: 'syntax', name: 'SyntaxError', line: 3, column: 11 });
    expect(error.message).toMatch(/Unexpected token '='/);
    expect(error.message).not.toMatch(/codemode-user/);
  });

  it('a syntax error on the first line maps to line 1', async () => {
    expect(failure(await sandbox().run('let = ;'))).toMatchObject({ kind: 'syntax', line: 1 });
  });

  it('unclosed blocks are reported at the end of the user code, not in the wrapper', async () => {
    const error = failure(await sandbox().run('if (true) {\n  return 1'));
    expect(error).toMatchObject({ kind: 'syntax', line: 2, column: 11 });
    expect(error.message).toMatch(/missing closing brace/);
  });

  it('runtime errors report name, message, line and column in the user code', async () => {
    const error = failure(await sandbox().run('const a = 1;\n\nconst o = null;\n    o.field;'));
    expect(error).toMatchObject({ kind: 'runtime', name: 'TypeError', line: 4, column: 7 });
    expect(error.message).toMatch(/Cannot read properties of null/);
    expect(error.stack).toContain('codemode-user.js:4:7');
    expect(error.stack).not.toContain('codemode-bootstrap');
  });

  it('errors thrown after an await still map to the user line', async () => {
    const error = failure(await sandbox().run('await null;\nawait null;\nthrow new RangeError("late")'));
    expect(error).toMatchObject({ kind: 'runtime', name: 'RangeError', message: 'late', line: 3, column: 7 });
  });

  it('own properties of a thrown error come back as data', async () => {
    const error = failure(await sandbox().run('const e = new Error("x"); e.code = 42; e.info = { a: [1] }; throw e'));
    expect(error.data).toEqual({ code: 42, info: { a: [1] } });
  });

  it.each([
    ['throw "boom"', "Uncaught (not an Error): boom"],
    ['throw 42', 'Uncaught (not an Error): 42'],
    ['throw { code: 7, reason: "x" }', "Uncaught (not an Error): { code: 7, reason: 'x' }"],
    ['throw undefined', 'Uncaught (not an Error): undefined'],
    ['throw null', 'Uncaught (not an Error): null'],
  ])('thrown non-Errors are reported meaningfully: %s', async (code, message) => {
    const error = failure(await sandbox().run(code));
    expect(error.kind).toBe('runtime');
    expect(error.message).toBe(message);
  });

  it('an error-like object without a name is reported as Error, and a position in a message is not taken for the throw site', async () => {
    expect(failure(await sandbox().run('throw { message: "boom" }'))).toMatchObject({ kind: 'runtime', name: 'Error', message: 'boom' });
    const error = failure(await sandbox().run('const x = 1;\nthrow new Error("see codemode-user.js:99:1")'));
    expect(error).toMatchObject({ message: 'see codemode-user.js:99:1', line: 2, column: 7 });
  });

  it('stack overflow is a catchable runtime error', async () => {
    const sb = sandbox();
    expect(value(await sb.run('function f() { return f() + 1 } try { f() } catch (e) { return [e instanceof RangeError, e.message] }'))).toEqual([
      true,
      'Maximum call stack size exceeded',
    ]);
    const error = failure(await sb.run('function f() { return f() + 1 }\nf()'));
    expect(error).toMatchObject({ kind: 'runtime', name: 'RangeError', message: 'Maximum call stack size exceeded' });
    expect(error.line).toBe(1);
  });

  it('huge error messages are capped before they reach the caller', async () => {
    const error = failure(await sandbox().run('throw new Error("m".repeat(1e6))'));
    expect(error.message.length).toBeLessThan(17 * 1024);
    expect(error.message).toMatch(/truncated \d+ characters/);
  });

  it('a throwing getter on a thrown error does not break reporting', async () => {
    const error = failure(await sandbox().run('const e = new Error("m"); Object.defineProperty(e, "stack", { get() { throw 1 } }); throw e'));
    expect(error).toMatchObject({ kind: 'runtime', message: 'm' });
  });
});
