/**
 * A pretty JSON writer whose cost is bounded by its output cap, not by its input.
 *
 * `JSON.stringify(value, null, 2)` formats a value whole before anyone can cut it: a 1 MB result nested
 * 199 levels deep became 200 million characters (2.4 s of blocked event loop and 200 MB of RSS) only to be
 * cut to 20,000. This writer emits the same text as `JSON.stringify(value, null, 2)` while it fits, and
 * stops as soon as the cap is reached: it never looks at more of the value than it writes. Indentation
 * stops growing past `MAX_INDENT_LEVELS`, so deep nesting cannot spend the cap on spaces alone.
 *
 * @module
 */

/** Nesting levels that get their own indentation; deeper levels are indented like this one. */
export const MAX_INDENT_LEVELS = 32;
/** Indentation per level, as `JSON.stringify(value, null, 2)`. */
const INDENT = '  ';

export interface BoundedJson {
  /** The text, at most `maxChars` long (plus nothing: the caller adds its own marker). */
  text: string;
  /** True when the value's JSON is longer than `maxChars` and `text` is a prefix of it. */
  truncated: boolean;
}

class Full extends Error {}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/**
 * Writes `value` as pretty JSON (two-space indent) up to `maxChars` characters. `undefined` at the top is
 * `undefined`, cycles are `"[Circular]"`, BigInts are their digits as a string; everything else is what
 * `JSON.stringify` writes (including `toJSON`). A cut never splits a surrogate pair.
 *
 * @example
 * ```ts
 * boundedPrettyJson({ a: [1, 2] }, 100).text; // '{\n  "a": [\n    1,\n    2\n  ]\n}'
 * boundedPrettyJson('x'.repeat(1e8), 10);      // { text: '"xxxxxxxxx', truncated: true }, in microseconds
 * ```
 */
export function boundedPrettyJson(value: unknown, maxChars: number): BoundedJson {
  const max = Math.max(0, Math.floor(maxChars));
  const parts: string[] = [];
  let length = 0;
  const put = (s: string): void => {
    const room = max - length;
    if (s.length <= room) {
      parts.push(s);
      length += s.length;
      return;
    }
    let piece = s.slice(0, room);
    if (piece.length > 0 && isHighSurrogate(piece.charCodeAt(piece.length - 1))) piece = piece.slice(0, -1);
    parts.push(piece);
    length = max;
    throw new Full();
  };
  const indents: string[] = [''];
  const indent = (depth: number): string => {
    const level = Math.min(depth, MAX_INDENT_LEVELS);
    while (indents.length <= level) indents.push(indents[indents.length - 1]! + INDENT);
    return indents[level]!;
  };
  // Only the ancestors on the current path: a value seen twice side by side is written twice, as JSON does.
  const ancestors = new Set<object>();

  const primitive = (v: unknown): string | undefined => {
    if (v === null) return 'null';
    switch (typeof v) {
      case 'string':
        // Quoting escapes only lengthen a string, so the room left (plus the quote) is all that can show.
        return JSON.stringify(v.length > max - length ? v.slice(0, max - length + 1) : v);
      case 'number':
        return Number.isFinite(v) ? String(v) : 'null';
      case 'boolean':
        return v ? 'true' : 'false';
      case 'bigint':
        return JSON.stringify(String(v));
      default:
        return undefined; // undefined, functions, symbols: skipped in objects, null in arrays
    }
  };

  const write = (raw: unknown, depth: number): void => {
    let v = raw;
    if (typeof v === 'object' && v !== null && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
      v = (v as { toJSON(): unknown }).toJSON();
    }
    if (typeof v !== 'object' || v === null) {
      put(primitive(v) ?? 'null');
      return;
    }
    if (ancestors.has(v)) {
      put('"[Circular]"');
      return;
    }
    ancestors.add(v);
    const inner = indent(depth + 1);
    if (Array.isArray(v)) {
      if (v.length === 0) put('[]');
      else {
        put('[');
        for (let i = 0; i < v.length; i++) {
          put(`${i === 0 ? '' : ','}\n${inner}`);
          writeMember(v[i], depth + 1, true);
        }
        put(`\n${indent(depth)}]`);
      }
    } else {
      let first = true;
      // for-in, not Object.keys: a cut stops early instead of listing a million keys first.
      for (const key in v) {
        if (!Object.hasOwn(v, key)) continue;
        const member = (v as Record<string, unknown>)[key];
        if (skipped(member)) continue;
        put(`${first ? '{' : ','}\n${inner}${JSON.stringify(key.length > max - length ? key.slice(0, max - length + 1) : key)}: `);
        first = false;
        writeMember(member, depth + 1, false);
      }
      put(first ? '{}' : `\n${indent(depth)}}`);
    }
    ancestors.delete(v);
  };

  const skipped = (member: unknown): boolean => {
    const t = typeof member;
    if (t === 'undefined' || t === 'function' || t === 'symbol') return true;
    if (t === 'object' && member !== null && typeof (member as { toJSON?: unknown }).toJSON === 'function') {
      return skipped((member as { toJSON(): unknown }).toJSON());
    }
    return false;
  };

  // Recursion is bounded by the cap: every level writes at least two characters before going deeper.
  const writeMember = (member: unknown, depth: number, inArray: boolean): void => {
    if (inArray && skipped(member)) put('null');
    else write(member, depth);
  };

  try {
    if (value === undefined) put('undefined');
    else if (typeof value === 'function' || typeof value === 'symbol') put(String(typeof value === 'symbol' ? value.toString() : 'undefined'));
    else write(value, 0);
  } catch (err) {
    if (err instanceof Full) return { text: parts.join(''), truncated: true };
    if (err instanceof RangeError) {
      // Too deep for the stack even within the cap (a huge cap): show what was written.
      return { text: parts.join(''), truncated: true };
    }
    throw err;
  }
  return { text: parts.join(''), truncated: false };
}
