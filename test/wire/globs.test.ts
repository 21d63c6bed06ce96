/** Tool-name globs (src/wire/globs.ts), shared by the proxy's ignoreTools and the bridge's --ignore-tool. */
import { describe, expect, it } from 'vitest';
import { compileToolGlobs } from '../../src/wire/globs.js';

describe('compileToolGlobs', () => {
  it('matches * and ? and treats the rest literally', () => {
    const m = compileToolGlobs(['delete_*', 'a.b', 'x?z']);
    expect(m('delete_all')).toBe('delete_*');
    expect(m('a.b')).toBe('a.b');
    expect(m('axb')).toBeUndefined();
    expect(m('xyz')).toBe('x?z');
    expect(m('keep')).toBeUndefined();
  });

  it('matches * and ? globs literally otherwise (the bridge\'s cases)', () => {
    const m = compileToolGlobs(['delete_*', 'a?c', 'x.y']);
    expect(['delete_all', 'abc', 'x.y'].map((n) => m(n) !== undefined)).toEqual([true, true, true]);
    expect(['keep', 'abbc', 'xzy', 'delete'].map((n) => m(n) !== undefined)).toEqual([false, false, false, false]);
    expect(compileToolGlobs([])('anything')).toBeUndefined();
  });
});
