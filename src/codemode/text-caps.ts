/**
 * Caps on strings that someone else chose (guest code, an MCP client, an upstream server) before they
 * reach a result, a log, a span or an MCP response. Each cut keeps a prefix and says how much was left
 * out, so the reader knows the text is not whole.
 *
 * @module
 */

/**
 * A tool label as records, progress messages and errors show it (`toolCalls[].tool`). Real names are far
 * shorter (MCP allows 128 characters); `callTool('z'.repeat(1e6))` in a loop once answered 82 MB.
 */
export const MAX_TOOL_LABEL_CHARS = 256;
/** An error's class name as the guest set it (`e.name`); a forged one carried 40 million characters. */
export const MAX_ERROR_NAME_CHARS = 256;
/** An error message in an execute result. */
export const MAX_ERROR_MESSAGE_CHARS = 8_000;
/** A string echoed back in a discovery answer (a query, a tool name that matched nothing). */
export const MAX_ECHO_CHARS = 200;

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/**
 * `text` when it is at most `maxChars` long; else its first `maxChars` characters (never half a surrogate
 * pair) and a marker with the count left out. Costs O(maxChars), whatever the input's length.
 *
 * @example
 * ```ts
 * capText('z'.repeat(1e6), 5); // 'zzzzz… [999995 more characters]'
 * ```
 */
export function capText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const end = maxChars > 0 && isHighSurrogate(text.charCodeAt(maxChars - 1)) ? maxChars - 1 : maxChars;
  return `${text.slice(0, end)}… [${text.length - end} more characters]`;
}

/** `String(value)` capped; a value whose conversion throws (a guest object cannot reach here, but be safe) is named by type. */
export function capString(value: unknown, maxChars: number): string {
  let text: string;
  try {
    text = String(value);
  } catch {
    text = `[${typeof value}]`;
  }
  return capText(text, maxChars);
}
