/**
 * Resolving `SandboxLimitsInput` into a complete, validated, frozen `SandboxLimits`.
 *
 * @module
 */

import { CodemodeError } from '../errors.js';
import { MAX_TIMER_DELAY_MS } from '../wire/timers.js';
import {
  DEFAULT_MAX_LOG_BYTES,
  DEFAULT_MAX_LOG_LINES,
  DEFAULT_MAX_PENDING_HOST_CALLS,
  DEFAULT_MAX_RESULT_BYTES,
  DEFAULT_MEMORY_MB,
  DEFAULT_TIMEOUT_MS,
} from './types.js';
import type { SandboxLimits, SandboxLimitsInput } from './types.js';

/** The defaults, as one frozen object (resolveLimits hands out copies). */
export const DEFAULT_LIMITS: Readonly<SandboxLimits> = Object.freeze({
  timeoutMs: DEFAULT_TIMEOUT_MS,
  memoryMb: DEFAULT_MEMORY_MB,
  maxResultBytes: DEFAULT_MAX_RESULT_BYTES,
  maxLogLines: DEFAULT_MAX_LOG_LINES,
  maxLogBytes: DEFAULT_MAX_LOG_BYTES,
  maxPendingHostCalls: DEFAULT_MAX_PENDING_HOST_CALLS,
});

/** Every limit off. */
const NO_LIMITS: Readonly<SandboxLimits> = Object.freeze({
  timeoutMs: null,
  memoryMb: null,
  maxResultBytes: null,
  maxLogLines: null,
  maxLogBytes: null,
  maxPendingHostCalls: null,
});

/** The longest `timeoutMs`: Node timers cannot wait longer (about 24.8 days); `null` means no limit. */
export const MAX_TIMEOUT_MS = MAX_TIMER_DELAY_MS;

/** isolated-vm refuses heaps under 8 MB. */
export const MIN_MEMORY_MB = 8;

const KEYS = Object.keys(DEFAULT_LIMITS) as (keyof SandboxLimits)[];

/**
 * Resolves limits the way ARCHITECTURE §2 prescribes: `undefined` gives the defaults, `null` turns every
 * limit off, and a partial object overrides only the keys it names (a key set to `null` turns that one
 * limit off; a key set to `undefined` keeps its default). The result is a new frozen object, so no two
 * callers ever share (or mutate) one limits object.
 *
 * @throws CodemodeError `INVALID_CONFIG` for unknown keys or values that are not positive numbers.
 * @example
 * ```ts
 * resolveLimits({ timeoutMs: 5_000, memoryMb: null });
 * // { timeoutMs: 5000, memoryMb: null, maxResultBytes: 1048576, ... }
 * ```
 */
export function resolveLimits(input: SandboxLimitsInput): Readonly<SandboxLimits> {
  // A new object even here: every instance owns its own copy (frozen, so nobody can change one anyway).
  if (input === undefined) return Object.freeze({ ...DEFAULT_LIMITS });
  if (input === null) return Object.freeze({ ...NO_LIMITS });
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new CodemodeError('INVALID_CONFIG', `Sandbox limits must be an object, null or undefined; got ${typeof input}.`);
  }
  for (const key of Object.keys(input)) {
    if (!(KEYS as string[]).includes(key)) {
      throw new CodemodeError('INVALID_CONFIG', `Unknown sandbox limit "${key}". Known limits: ${KEYS.join(', ')}.`);
    }
  }
  const out = { ...DEFAULT_LIMITS };
  for (const key of KEYS) {
    const value = input[key];
    if (value === undefined) continue;
    if (value === null) {
      out[key] = null;
      continue;
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new CodemodeError(
        'INVALID_CONFIG',
        `Sandbox limit ${key} must be a positive number or null (no limit); got ${String(value)}.`,
      );
    }
    // Only the wall clock may be fractional: the rest are counts, and rounding 0.5 down to 0 refused everything.
    if (key !== 'timeoutMs' && !Number.isInteger(value)) {
      throw new CodemodeError('INVALID_CONFIG', `Sandbox limit ${key} must be a whole number or null (no limit); got ${String(value)}.`);
    }
    if (key === 'timeoutMs' && value > MAX_TIMEOUT_MS) {
      throw new CodemodeError('INVALID_CONFIG', `Sandbox limit timeoutMs must be at most ${MAX_TIMEOUT_MS} (about 24.8 days); got ${value}. Use null for no time limit.`);
    }
    if (key === 'memoryMb' && value < MIN_MEMORY_MB) {
      throw new CodemodeError('INVALID_CONFIG', `Sandbox limit memoryMb must be at least ${MIN_MEMORY_MB}; got ${value}.`);
    }
    out[key] = value;
  }
  return Object.freeze(out);
}
