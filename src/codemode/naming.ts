/**
 * Deterministic identifiers for tool and namespace names, so that `tools.<ns>.<tool>` is always valid
 * JavaScript and the same upstream name always maps to the same identifier.
 *
 * @module
 */

// Reserved words (ES2023 plus strict-mode and contextual ones) would be legal as property names, but a
// model writing `tools.fs.delete` next to `delete x` is needlessly confusing, and a declaration file with
// such names trips some tooling. `__proto__`, `constructor` and `prototype` would break or confuse the
// namespace objects the sandbox builds.
const RESERVED = new Set([
  'break', 'case', 'catch', 'class', 'const', 'continue', 'debugger', 'default', 'delete', 'do', 'else',
  'enum', 'export', 'extends', 'false', 'finally', 'for', 'function', 'if', 'import', 'in', 'instanceof',
  'new', 'null', 'return', 'super', 'switch', 'this', 'throw', 'true', 'try', 'typeof', 'var', 'void',
  'while', 'with', 'yield', 'let', 'static', 'implements', 'interface', 'package', 'private', 'protected',
  'public', 'await', 'async', 'arguments', 'eval', 'undefined', 'NaN', 'Infinity',
  '__proto__', 'constructor', 'prototype',
]);

// JavaScript identifiers are Unicode (ID_Start / ID_Continue, plus $ and _), so a server whose tools are
// named in Chinese, Cyrillic or Arabic keeps readable, distinct names. Default-ignorable characters (ZWJ,
// ZWNJ, variation selectors) are legal in identifiers too, but invisible: they become `_` like any other
// character that is not allowed, so two names never differ by something nobody can see.
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u;
const NOT_IDENTIFIER_PART = /[^\p{ID_Continue}$]|\p{Default_Ignorable_Code_Point}/gu;
const IDENTIFIER_START = /^[\p{ID_Start}$_]/u;
const IDENTIFIER = /^[\p{ID_Start}$_][\p{ID_Continue}$]*$/u;

/**
 * Turns any name into a JavaScript identifier. The name is NFKC-normalized first (UAX #31's form for
 * comparing identifiers), so names that differ only in composition or in compatibility forms, such as
 * `e\u0301` against `\u00e9`, or fullwidth `ｇｅｔ` against `get`, map to one identifier and are refused
 * as a collision instead of standing side by side looking alike. Then every character that cannot be part
 * of an identifier becomes `_`, a name that cannot start one (a digit, a combining mark) gets a `_`
 * prefix, and reserved words get a `_` suffix.
 *
 * @example
 * ```ts
 * toIdentifier('get-sum');   // 'get_sum'
 * toIdentifier('delete');    // 'delete_'
 * toIdentifier('2fa.check'); // '_2fa_check'
 * toIdentifier('天气预报');   // '天气预报'
 * toIdentifier('курс-валют'); // 'курс_валют'
 * ```
 */
export function toIdentifier(name: string): string {
  let id = name.normalize('NFKC').replace(NOT_IDENTIFIER_PART, '_');
  if (id === '') id = '_';
  if (!IDENTIFIER_START.test(id)) id = `_${id}`;
  if (RESERVED.has(id)) id = `${id}_`;
  return id;
}

/** True when `name` can be written as `obj.name` and as an unquoted property key. */
export function isIdentifier(name: string): boolean {
  return IDENTIFIER.test(name) && !INVISIBLE.test(name);
}

/** A property key as TypeScript source: bare when it is an identifier, quoted otherwise. */
export function propertyKey(name: string): string {
  return isIdentifier(name) ? name : JSON.stringify(name);
}
