/**
 * Host-side rules for host functions that both providers share: how a `hostFunctions` tree is flattened
 * and validated, which `errorClasses` names are valid, how a host error is described for the guest, and how
 * a host result is copied for it. It loads no isolated-vm, so the process pool's parent can use it.
 *
 * @module
 */

import { types as utilTypes } from 'node:util';
import { CodemodeError, describeError } from '../errors.js';
import type { HostFunction, HostFunctions } from './types.js';

/** How deep `hostFunctions` namespaces may nest. */
export const MAX_NAMESPACE_DEPTH = 8;
const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** A host function tree as parallel arrays: `paths[i]` is where `functions[i]` appears in the guest. */
export interface FlatFunctions {
  paths: string[][];
  functions: HostFunction[];
}

/** Flattens and validates a `hostFunctions` tree; throws `INVALID_ARGUMENT` naming the bad entry. */
export function flattenHostFunctions(tree: HostFunctions | undefined): FlatFunctions {
  const out: FlatFunctions = { paths: [], functions: [] };
  if (tree === undefined) return out;
  if (tree === null || typeof tree !== 'object') throw new CodemodeError('INVALID_ARGUMENT', 'hostFunctions must be an object.');
  const visit = (node: HostFunctions, path: string[]): void => {
    if (path.length > MAX_NAMESPACE_DEPTH) {
      throw new CodemodeError('INVALID_ARGUMENT', `hostFunctions nest deeper than ${MAX_NAMESPACE_DEPTH} levels at ${path.join('.')}.`);
    }
    for (const key of Object.keys(node)) {
      const value = node[key];
      const here = [...path, key];
      if (key === '') throw new CodemodeError('INVALID_ARGUMENT', `hostFunctions has an empty name under "${path.join('.')}".`);
      if (typeof value === 'function') {
        out.paths.push(here);
        out.functions.push(value);
      } else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        visit(value, here);
      } else {
        throw new CodemodeError('INVALID_ARGUMENT', `hostFunctions.${here.join('.')} must be a function or a namespace object.`);
      }
    }
  };
  visit(tree, []);
  return out;
}

/**
 * Validates `errorClasses` names (identifiers, deduplicated). With `rejectGlobals`, a name that would shadow
 * a standard global of this realm is refused too; the process pool checks that in the worker instead.
 */
export function validateErrorClasses(names: readonly string[] | undefined, rejectGlobals: boolean): string[] {
  if (names === undefined) return [];
  if (!Array.isArray(names)) throw new CodemodeError('INVALID_ARGUMENT', 'errorClasses must be an array of names.');
  for (const name of names) {
    if (typeof name !== 'string' || !IDENTIFIER.test(name)) {
      throw new CodemodeError('INVALID_ARGUMENT', `errorClasses entry ${JSON.stringify(name)} is not a valid identifier.`);
    }
    if (rejectGlobals && Object.hasOwn(globalThis, name)) {
      throw new CodemodeError('INVALID_ARGUMENT', `errorClasses entry "${name}" would shadow a standard global; pick another name.`);
    }
  }
  return [...new Set(names)];
}

/** A host error as the guest will see it: name, message and the error's own enumerable `data`. */
export interface HostErrorDescription {
  name: string;
  message: string;
  data?: Record<string, unknown>;
}

const UNDESCRIBABLE: HostErrorDescription = { name: 'Error', message: 'host function failed with an error that could not be described' };

/**
 * Describes a thrown host value for the guest. Never throws, whatever getters or proxies `err` carries: a
 * throw here would leave the guest waiting for an answer.
 */
export function describeHostError(err: unknown): HostErrorDescription {
  try {
    const error: HostErrorDescription = { name: 'Error', message: '' };
    if (err instanceof Error) {
      error.name = typeof err.name === 'string' && err.name !== '' ? err.name : 'Error';
      error.message = typeof err.message === 'string' ? err.message : String(err.message);
      const desc = Object.getOwnPropertyDescriptor(err, 'data');
      if (desc !== undefined && desc.enumerable === true && 'value' in desc) {
        const data: unknown = desc.value;
        if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
          try {
            // Only data that survives a JSON round trip crosses.
            error.data = JSON.parse(JSON.stringify(data)) as Record<string, unknown>;
          } catch {
            /* data that can't be copied is dropped; the message still crosses */
          }
        }
      }
    } else {
      error.message = describeError(err);
    }
    return error;
  } catch {
    return { ...UNDESCRIBABLE };
  }
}

/**
 * Past this depth the fast check gives up and the careful copy decides (it reports cycles). Deeper than
 * JSON.stringify itself can go, so deep plain data still takes the fast path.
 */
const PLAIN_CHECK_DEPTH = 10_000;

function isPlainMember(x: unknown, depth: number): boolean {
  const t = typeof x;
  if (t === 'object') return x === null || isPlainData(x as object, depth + 1);
  return t !== 'function' && t !== 'symbol' && t !== 'bigint';
}

/** True when `value` holds only plain objects, arrays and JSON primitives, so JSON.stringify copies it faithfully. */
function isPlainData(value: object, depth: number): boolean {
  if (depth > PLAIN_CHECK_DEPTH) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isPlainMember(value[i], depth)) return false;
    return true;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  // A getter on a plain object literal runs here and again in JSON.stringify. Reading descriptors instead
  // made the check cost +54% of the copy instead of +9% (470 KB result); class instances, where getters
  // usually live, take the careful copy anyway.
  for (const key in value) if (!isPlainMember((value as Record<string, unknown>)[key], depth)) return false;
  return true;
}

/**
 * A host result as JSON text for the guest (`undefined` for a value JSON leaves out). Plain data takes
 * V8's fast JSON.stringify (the check costs ~10% on a 470 KB result; a replacer alone cost 2-3x); anything
 * else goes through `copyMember`, which refuses what JSON would lose.
 *
 * @throws TypeError naming what could not be copied, or JSON.stringify's own error (cycles).
 */
export function hostResultJson(value: unknown): string | undefined {
  return isPlainValue(value) === true ? JSON.stringify(value) : carefulJson(value);
}

/**
 * True when JSON.stringify alone copies `value` faithfully (plain objects, arrays and JSON primitives, not
 * too deep to check): such a value may cross a JSON channel as itself instead of as JSON text.
 */
export function isPlainHostResult(value: unknown): boolean {
  return isPlainValue(value) === true;
}

/**
 * Throws as hostResultJson would, without serializing plain data: for a caller that checks a value before
 * handing it to the sandbox, which copies it afterwards anyway.
 */
export function assertHostResultCopyable(value: unknown): void {
  const plain = isPlainValue(value);
  if (plain === false) carefulJson(value);
  // Too deep to check (or a cycle): JSON.stringify itself tells whether it can be copied.
  else if (plain === 'unknown') JSON.stringify(value);
}

/** Whether `value` is plain data; 'unknown' when it is too deep for the check's stack (a cycle is, too). */
function isPlainValue(value: unknown): boolean | 'unknown' {
  try {
    return typeof value === 'object' ? value === null || isPlainData(value, 0) : isPlainMember(value, 0);
  } catch {
    return 'unknown';
  }
}

function carefulJson(value: unknown): string | undefined {
  // One copy per Error, so an error that refers to itself is still a cycle JSON.stringify can report.
  const errorCopies = new Map<object, object>();
  return JSON.stringify(value, (key: string, member: unknown): unknown => copyMember(key, member, errorCopies));
}

/**
 * JSON.stringify's replacer for host results that are not plain data (see hostResultJson): what plain JSON
 * would drop or empty without a word (a Map became {}, a function vanished) is refused instead, as the guest's
 * own copier refuses it the other way. Errors keep their name and message. Values arrive here after their own
 * toJSON (Date, Buffer) ran.
 */
function copyMember(key: string, value: unknown, errorCopies: Map<object, object>): unknown {
  // Called for every key of every result: primitives and plain objects leave at the first checks.
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
      return value;
    case 'function':
      throw new TypeError(`${where(key)} is a function, which JSON cannot represent; return data, not functions.`);
    case 'symbol':
      throw new TypeError(`${where(key)} is a symbol, which JSON cannot represent; convert it to a string first.`);
    case 'bigint':
      throw new TypeError(`${where(key)} is a BigInt (${value}n), which JSON cannot represent; convert it to a string or number first.`);
  }
  if (value === null || Array.isArray(value)) return value;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) return value;
  const kind = lossyKind(value as object);
  if (kind !== undefined) throw new TypeError(`${where(key)} is ${kind}, which JSON cannot represent; convert it to plain data first.`);
  if (utilTypes.isNativeError(value) || value instanceof Error) {
    let copy = errorCopies.get(value as object);
    if (copy === undefined) {
      const error = value as Error;
      copy = { ...(value as object), name: String(error.name), message: String(error.message) };
      errorCopies.set(value as object, copy);
    }
    return copy;
  }
  return value;
}

function where(key: string): string {
  return key === '' ? 'the value' : `"${key}"`;
}

function lossyKind(value: object): string | undefined {
  if (utilTypes.isMap(value)) return 'a Map (e.g. Object.fromEntries(map))';
  if (utilTypes.isSet(value)) return 'a Set (e.g. [...set])';
  if (utilTypes.isWeakMap(value) || utilTypes.isWeakSet(value)) return 'a WeakMap or WeakSet';
  if (utilTypes.isPromise(value)) return 'a Promise (await it in the host function)';
  if (utilTypes.isTypedArray(value) || utilTypes.isDataView(value) || utilTypes.isAnyArrayBuffer(value)) return 'binary data (e.g. Array.from(bytes) or base64)';
  if (utilTypes.isRegExp(value)) return 'a RegExp (e.g. its source string)';
  return undefined;
}
