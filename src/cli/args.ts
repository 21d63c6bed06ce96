/**
 * Shared argument helpers of the `codemode` subcommands: a usage error (exit 2) and strict number
 * parsing with messages that name the flag.
 *
 * @module
 */

import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';

/** A usage problem: the CLI prints the message and exits with code 2. */
export class CliUsageError extends Error {
  override readonly name = 'CliUsageError';
}

/** Exit codes of every `codemode` subcommand. */
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

/**
 * `parseArgs` with strict flags and usage errors that say what was wrong.
 */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(argv: readonly string[], options: T, allowPositionals = true) {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // Node's messages are good ("Unknown option '--foo'"); drop its advice about `--` which rarely applies.
    throw new CliUsageError(message.replace(/\. To specify a positional argument starting with a '-'.*$/s, '.'));
  }
}

/**
 * A positive number (or `none`/`0` for "no limit" when `allowNone`), naming the flag when malformed.
 */
export function numberFlag(name: string, value: string | undefined, opts: { integer?: boolean; allowNone?: boolean; min?: number } = {}): number | null | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().toLowerCase();
  if (opts.allowNone && (v === 'none' || v === 'off' || v === '0')) return null;
  const n = Number(v);
  const min = opts.min ?? (opts.allowNone ? Number.MIN_VALUE : 0);
  if (v === '' || !Number.isFinite(n) || n < min || (opts.integer && !Number.isInteger(n))) {
    const kind = opts.integer ? 'a whole number' : 'a number';
    throw new CliUsageError(`--${name} must be ${kind}${min > 0 && min !== Number.MIN_VALUE ? ` >= ${min}` : ' > 0'}${opts.allowNone ? ' (or "none" for no limit)' : ''}, got ${JSON.stringify(value)}.`);
  }
  return n;
}

/** The package version, from package.json next to dist/. */
export async function packageVersion(): Promise<string> {
  try {
    const { readFile } = await import('node:fs/promises');
    return (JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
