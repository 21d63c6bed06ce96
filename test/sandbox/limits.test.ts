import { describe, expect, it } from 'vitest';
import { CodemodeError } from '../../src/errors.js';
import { DEFAULT_LIMITS, resolveLimits } from '../../src/sandbox/limits.js';
import { DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS } from '../../src/sandbox/types.js';
import { failure, sandbox, value } from './helpers.js';

describe('limits (issue 2, point 1)', () => {
  it('undefined gives the defaults of 30 s and 100 MB', () => {
    const limits = resolveLimits(undefined);
    expect(limits.timeoutMs).toBe(DEFAULT_TIMEOUT_MS);
    expect(limits.timeoutMs).toBe(30_000);
    expect(limits.memoryMb).toBe(DEFAULT_MEMORY_MB);
    expect(limits.memoryMb).toBe(100);
    expect(sandbox().limits).toEqual(DEFAULT_LIMITS);
  });

  it('null turns every limit off', () => {
    const limits = resolveLimits(null);
    for (const v of Object.values(limits)) expect(v).toBeNull();
  });

  it('a partial object overrides only the keys it names; a null key turns that one limit off', () => {
    const limits = resolveLimits({ timeoutMs: 1234, memoryMb: null });
    expect(limits).toEqual({ ...DEFAULT_LIMITS, timeoutMs: 1234, memoryMb: null });
  });

  it('rejects unknown keys and nonsense values with INVALID_CONFIG', () => {
    expect(() => resolveLimits({ timeout: 5 } as never)).toThrow(/Unknown sandbox limit "timeout"/);
    for (const bad of [0, -1, Number.NaN, Infinity, '5']) {
      let caught: unknown;
      try {
        resolveLimits({ timeoutMs: bad as never });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(CodemodeError);
      expect((caught as CodemodeError).code).toBe('INVALID_CONFIG');
    }
    expect(() => resolveLimits({ memoryMb: 4 })).toThrow(/at least 8/);
    // Counts are whole numbers: 0.5 used to round down to 0 and refuse every result and host call.
    expect(() => resolveLimits({ maxResultBytes: 0.5 })).toThrow(/maxResultBytes must be a whole number/);
    expect(() => resolveLimits({ maxPendingHostCalls: 2.5 })).toThrow(/whole number/);
    expect(() => resolveLimits({ memoryMb: 64.5 })).toThrow(/whole number/);
    expect(resolveLimits({ timeoutMs: 1.5 }).timeoutMs).toBe(1.5);
    // Past 2^31-1 ms Node turns a timer into 1 ms: the run's deadline timer re-armed every millisecond.
    expect(() => resolveLimits({ timeoutMs: 3e9 })).toThrow(/at most 2147483647 .*Use null for no time limit/);
    expect(resolveLimits({ timeoutMs: 2_147_483_647 }).timeoutMs).toBe(2_147_483_647);
  });

  it('every instance owns a frozen copy of its limits', () => {
    const input = { timeoutMs: 200 };
    const a = sandbox({ limits: input });
    input.timeoutMs = 5;
    expect(a.limits.timeoutMs).toBe(200);
    expect(Object.isFrozen(a.limits)).toBe(true);
    const b = sandbox({ limits: { timeoutMs: 300 } });
    expect(a.limits).not.toBe(b.limits);
    expect(b.limits.timeoutMs).toBe(300);
    // Defaults and "no limits" are copies too, not one shared object.
    expect(sandbox().limits).not.toBe(sandbox().limits);
    expect(sandbox({ limits: null }).limits).not.toBe(sandbox({ limits: null }).limits);
    expect(Object.isFrozen(sandbox().limits)).toBe(true);
  });

  it('the resolved limits are what runs enforce: a per-instance timeout fires, a null one does not', async () => {
    const busy = 'const end = Date.now() + 250; while (Date.now() < end) {} return "done"';
    expect(failure(await sandbox({ limits: { timeoutMs: 100 } }).run(busy)).kind).toBe('timeout');
    expect(value(await sandbox({ limits: { timeoutMs: null } }).run(busy))).toBe('done');
    expect(value(await sandbox({ limits: null }).run(busy))).toBe('done');
  });

  it('a null memory limit lifts the default heap cap', async () => {
    // ~160 MB of live double arrays: over the 100 MB default, fine without a limit.
    const code = 'const a = []; for (let i = 0; i < 80; i++) a.push(new Array(1 << 18).fill(i + 0.5)); return a.length';
    expect(failure(await sandbox({ limits: { timeoutMs: 20_000 } }).run(code)).kind).toBe('memory');
    expect(value(await sandbox({ limits: { memoryMb: null, timeoutMs: 20_000 } }).run(code))).toBe(80);
  });
});
