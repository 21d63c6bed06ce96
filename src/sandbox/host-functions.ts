/**
 * Host-side rules for host functions that both providers share: how a `hostFunctions` tree is flattened
 * and validated, which `errorClasses` names are valid, and how a host error is described for the guest.
 * It loads no isolated-vm, so the process pool's parent can use it.
 *
 * @module
 */

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
