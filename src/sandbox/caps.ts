/**
 * Bounds on text and JSON the guest controls, applied by the host before anything reaches a caller, a log or
 * a response: the host's work on them is bounded by the cap, not by what the guest sent (ARCHITECTURE §4).
 *
 * @module
 */

/** Bounds text the guest controls (messages, stacks) before it reaches callers and logs (the guest clips at 16 KiB too). */
export const MAX_ERROR_TEXT = 32 * 1024;
/** Bounds an error's name, which the guest controls too (a forged outcome carried one of 40 M characters). */
export const MAX_ERROR_NAME = 1_000;
export function capText(text: string, max = MAX_ERROR_TEXT): string {
  if (text.length <= max) return text;
  // Not between the halves of a surrogate pair.
  const code = text.charCodeAt(max - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
  return `${text.slice(0, end)}… [truncated ${text.length - end} characters]`;
}

const utf8Encoder = new TextEncoder();
/** The longest prefix of `text` that fits in `maxBytes` of UTF-8, never splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  const { read } = utf8Encoder.encodeInto(text.slice(0, maxBytes), new Uint8Array(maxBytes));
  return text.slice(0, read);
}

/** The guest copier's nesting cap (bootstrap's MAX_DEPTH), enforced again on the host. */
export const MAX_RESULT_DEPTH = 200;

/** True when JSON text nests arrays/objects deeper than `max`. Linear; skips strings (and their escapes). */
export function jsonNestedDeeperThan(text: string, max: number): boolean {
  // Nesting deeper than max needs more than 2 * max brackets.
  if (text.length <= 2 * max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return false;
}
