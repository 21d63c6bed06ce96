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

/**
 * Turns any name into a JavaScript identifier: characters outside `[A-Za-z0-9_$]` become `_`, a leading
 * digit gets a `_` prefix, and reserved words get a `_` suffix.
 *
 * @example
 * ```ts
 * toIdentifier('get-sum');   // 'get_sum'
 * toIdentifier('delete');    // 'delete_'
 * toIdentifier('2fa.check'); // '_2fa_check'
 * ```
 */
export function toIdentifier(name: string): string {
  let id = name.replace(/[^A-Za-z0-9_$]/g, '_');
  if (id === '') id = '_';
  if (/^[0-9]/.test(id)) id = `_${id}`;
  if (RESERVED.has(id)) id = `${id}_`;
  return id;
}

/** True when `name` can be written as `obj.name` and as an unquoted property key. */
export function isIdentifier(name: string): boolean {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name);
}

/** A property key as TypeScript source: bare when it is an identifier, quoted otherwise. */
export function propertyKey(name: string): string {
  return isIdentifier(name) ? name : JSON.stringify(name);
}
