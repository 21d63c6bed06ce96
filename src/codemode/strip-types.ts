/**
 * TypeScript stripping that one hostile input cannot break for everyone else.
 *
 * amaro (swc compiled to WebAssembly) parses recursively. 1,000 nested arrow functions (12 KB) overflow
 * its stack, and 5,000 nested type arguments trap with "memory access out of bounds"; after such a trap the
 * instance is corrupt and every later strip in the process failed, for every session, until a restart.
 * Two defences:
 * - `scanNesting` bounds the nesting depth with a linear scan before amaro sees the code, and the caller
 *   reports a clear syntax error instead;
 * - any failure that is not an ordinary syntax report from amaro discards the instance: the next strip
 *   loads a fresh module (with its own WebAssembly memory), so a trap never outlives its input.
 *
 * @module
 */

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Nesting (brackets, concise arrow bodies, conditionals and type arguments) past which code is not handed to amaro.
 * amaro itself handled 400 levels of each shape tried and failed at 1,000; real code nests a few dozen.
 */
export const MAX_TYPESCRIPT_NESTING_DEPTH = 200;

type Transform = (code: string, options: { mode: 'strip-only' }) => { code: string };

let transform: Transform | undefined;
/** How many times a broken instance was discarded (for tests and diagnostics). */
let discarded = 0;

/**
 * amaro costs ~100 ms to load, so it is required on first use only. Each load uses its own `require`, so a
 * discarded instance is unreachable once dropped from the cache (the parent module's `children` no longer
 * holds it) and its WebAssembly memory can be collected.
 */
function load(): Transform {
  if (transform) return transform;
  const require = createRequire(import.meta.url);
  const amaro = require('amaro') as { transformSync: Transform };
  transform = amaro.transformSync;
  return transform;
}

function discard(): void {
  transform = undefined;
  discarded++;
  const require = createRequire(import.meta.url);
  // The entry requires dist/internal.js, where the WebAssembly instance lives: both must load afresh.
  // (amaro's exports map hides dist/internal.js from require.resolve, so its path is built from the entry's.)
  const entry = require.resolve('amaro');
  delete require.cache[entry];
  delete require.cache[join(dirname(entry), 'internal.js')];
}

/** True for amaro's own reports of invalid or unsupported syntax: the instance is still sound after them. */
function isSyntaxReport(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'InvalidSyntax' || code === 'UnsupportedSyntax';
}

/**
 * Strips types from a module's source (strip-only: types become whitespace, so positions are kept). Throws
 * what amaro throws; after any failure other than a syntax report the instance is replaced before the next
 * call.
 */
export function stripTypeScript(code: string): string {
  const run = load();
  try {
    return run(code, { mode: 'strip-only' }).code;
  } catch (err) {
    if (!isSyntaxReport(err)) discard();
    throw err;
  }
}

/** How many broken stripper instances were replaced in this thread. */
export function discardedStrippers(): number {
  return discarded;
}

/** Where code nests too deep: the offset at which the depth first passed the limit. */
export interface NestingTooDeep {
  offset: number;
  limit: number;
}

const IDENT = /[\w$]/;
/** After these, a `/` starts a regular expression literal rather than a division. */
const REGEX_BEFORE = new Set(['', '(', ',', '=', ':', '[', '!', '&', '|', '?', '{', '}', ';', '+', '-', '*', '%', '<', '>', '~', '^']);

interface Level {
  /** Concise arrow bodies (`=> expr`) and conditional branches (`c ? a : b`) open at this level. */
  arrows: number;
  /** Type arguments (`Name<`) open at this level. */
  angles: number;
  /** The level is a template literal's `${...}`: its `}` goes back to template text. */
  template: boolean;
}

/**
 * A linear scan for nesting deeper than `limit`, counting brackets, concise arrow bodies, conditionals
 * and type arguments, and skipping strings, comments, template text and regular expressions. It is a bound, not a
 * parser: it errs towards counting less (a `,` or `;` ends the arrows and type arguments of its level), so
 * that real code is not refused.
 *
 * @example
 * ```ts
 * scanNesting('const f = ' + '(a: number) => '.repeat(1000) + '1', 200); // { offset: ..., limit: 200 }
 * ```
 */
export function scanNesting(code: string, limit = MAX_TYPESCRIPT_NESTING_DEPTH): NestingTooDeep | undefined {
  const levels: Level[] = [{ arrows: 0, angles: 0, template: false }];
  let total = 0;
  let last = ''; // the last significant character
  let lastArrow = false; // the last significant characters were `=>`
  let inTemplate = false;
  const n = code.length;
  for (let i = 0; i < n; i++) {
    if (inTemplate) {
      const c = code[i];
      if (c === '\\') i++;
      else if (c === '`') {
        inTemplate = false;
        last = '`';
        lastArrow = false;
      } else if (c === '$' && code[i + 1] === '{') {
        i++;
        inTemplate = false;
        levels.push({ arrows: 0, angles: 0, template: true });
        total++;
        last = '{';
      }
      continue;
    }
    const c = code[i]!;
    const level = levels[levels.length - 1]!;
    let arrow = false;
    switch (c) {
      case ' ':
      case '\t':
      case '\r':
        continue;
      case '\n':
        // A line that does not end in `=>`, `?` or `:` ends the concise bodies and conditionals of its level
        // (the next statement starts), and one that does not end in `<` the comparisons counted as type arguments.
        if (!lastArrow && last !== '?' && last !== ':') {
          total -= level.arrows;
          level.arrows = 0;
        }
        if (last !== '<') {
          total -= level.angles;
          level.angles = 0;
        }
        continue;
      case '"':
      case "'":
        for (i++; i < n && code[i] !== c && code[i] !== '\n'; i++) if (code[i] === '\\') i++;
        last = c;
        lastArrow = false;
        continue;
      case '`':
        inTemplate = true;
        continue;
      case '/':
        if (code[i + 1] === '/') {
          const end = code.indexOf('\n', i);
          i = end < 0 ? n : end - 1;
          continue;
        }
        if (code[i + 1] === '*') {
          const end = code.indexOf('*/', i + 2);
          i = end < 0 ? n : end + 1;
          continue;
        }
        if (REGEX_BEFORE.has(last)) {
          let inClass = false;
          for (i++; i < n && code[i] !== '\n'; i++) {
            const r = code[i];
            if (r === '\\') i++;
            else if (r === '[') inClass = true;
            else if (r === ']') inClass = false;
            else if (r === '/' && !inClass) break;
          }
          last = 'a'; // a regex is an operand, like an identifier
          lastArrow = false;
          continue;
        }
        break;
      case '(':
      case '[':
      case '{':
        levels.push({ arrows: 0, angles: 0, template: false });
        total++;
        break;
      case ')':
      case ']':
      case '}':
        if (levels.length > 1) {
          levels.pop();
          total -= 1 + level.arrows + level.angles;
          if (level.template) {
            inTemplate = true;
            last = '`';
            continue;
          }
        }
        break;
      case ';':
      case ',':
        total -= level.arrows + level.angles;
        level.arrows = 0;
        level.angles = 0;
        break;
      case '?': {
        // A conditional nests its branches (5,000 in a row overflowed amaro's stack). Not `?.`, `??`, `?:`,
        // `?)`, `?,` or `?=`: optional chaining, nullish coalescing and optional parameters and properties.
        const next = code[i + 1];
        if (last !== '?' && next !== '.' && next !== '?' && next !== ':' && next !== ')' && next !== ',' && next !== '=') {
          level.arrows++;
          total++;
        }
        break;
      }
      case '<':
        // `Name<` (or `Name <`) opens type arguments. A comparison counts too, until the `,`, `;`, bracket or
        // line that ends it: this bounds depth, and real code does not hold 200 comparisons on one line.
        if (IDENT.test(last)) {
          level.angles++;
          total++;
        }
        break;
      case '>':
        if (last === '=' && code[i - 1] === '=') {
          // `=>`: a concise body nests; a block body is counted by its brace.
          arrow = true;
          let j = i + 1;
          while (j < n && (code[j] === ' ' || code[j] === '\t' || code[j] === '\r' || code[j] === '\n')) j++;
          if (code[j] !== '{') {
            level.arrows++;
            total++;
          }
        } else if (level.angles > 0) {
          level.angles--;
          total--;
        }
        break;
      default:
        break;
    }
    last = c;
    lastArrow = arrow;
    if (total > limit) return { offset: i, limit };
  }
  return undefined;
}
