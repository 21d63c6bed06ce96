/**
 * The errors a tool call raises inside the sandbox, and how MCP results are shaped into guest values.
 *
 * These are host-side classes. The sandbox rethrows them in the guest as instances of guest classes of
 * the same name (`RunOptions.errorClasses`), with the own properties of `data` copied on, so guest code
 * can write `catch (e) { if (e instanceof ToolError) e.structuredContent }`.
 *
 * @module
 */

import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

/** Guest error class names defined in every execution. */
export const GUEST_ERROR_CLASSES = ['ToolError', 'ToolCallLimitError'] as const;

/** Cap on the upstream error text carried in a ToolError message. */
const MAX_ERROR_TEXT_CHARS = 4_000;

/** Fields of a ToolError that cross into the guest. */
export interface ToolErrorData {
  /** The tool as `namespace.tool`. */
  tool: string;
  structuredContent?: unknown;
  content?: unknown[];
  /** The JSON-RPC error code, for protocol and transport failures. */
  code?: number;
}

/**
 * A tool call failed: the upstream answered `isError: true`, a local handler threw, or the server could
 * not be reached. Inside the sandbox it is a `ToolError` with `tool`, `structuredContent` and `content`.
 *
 * @example
 * ```ts
 * // guest code
 * try { await tools.github.get_issue({ number: 1 }); }
 * catch (e) { if (e instanceof ToolError) return e.structuredContent; throw e; }
 * ```
 */
export class ToolError extends Error {
  override readonly name = 'ToolError';
  /** Own enumerable: the sandbox copies these properties onto the guest error. */
  readonly data: ToolErrorData;

  constructor(message: string, data: ToolErrorData, options?: { cause?: unknown }) {
    super(message, options);
    this.data = data;
  }

  get tool(): string {
    return this.data.tool;
  }

  get structuredContent(): unknown {
    return this.data.structuredContent;
  }
}

/**
 * A tool call past `maxToolCalls`. It never reaches the tool; guest code may catch it.
 *
 * @example
 * ```ts
 * // guest code
 * try { for (const id of ids) await tools.db.get({ id }); }
 * catch (e) { if (e instanceof ToolCallLimitError) return { partial: true, limit: e.limit }; throw e; }
 * ```
 */
export class ToolCallLimitError extends Error {
  override readonly name = 'ToolCallLimitError';
  readonly data: { limit: number; tool: string };

  constructor(limit: number, tool: string) {
    super(
      `Tool call limit exceeded: at most ${limit} tool calls per execution; this call to "${tool}" was not made. ` +
        'Batch work into fewer calls, or split it across several executions.',
    );
    this.data = { limit, tool };
  }

  get limit(): number {
    return this.data.limit;
  }
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}… (truncated, ${text.length} chars)` : text;
}

/** The text of a result's text blocks, joined. */
export function resultText(result: CallToolResult): string {
  return (result.content ?? [])
    .filter((block): block is { type: 'text'; text: string } => block.type === 'text' && typeof (block as { text?: unknown }).text === 'string')
    .map((block) => block.text)
    .join('\n');
}

/**
 * The value a successful MCP tool result becomes in the guest: `structuredContent` when present, the text
 * of a single text block, or else the content array.
 */
export function shapeToolResult(result: CallToolResult): unknown {
  if (result.structuredContent !== undefined) return result.structuredContent;
  const content = result.content ?? [];
  const [first] = content;
  if (content.length === 1 && first !== undefined && first.type === 'text') return first.text;
  return content;
}

/** The ToolError for an upstream result with `isError: true`. */
export function toolErrorFromResult(tool: string, result: CallToolResult): ToolError {
  const text = resultText(result).trim();
  const data: ToolErrorData = { tool };
  if (result.structuredContent !== undefined) data.structuredContent = result.structuredContent;
  if (result.content !== undefined && result.content.length > 0) data.content = result.content;
  return new ToolError(text === '' ? `${tool} failed without an error message.` : `${tool}: ${truncate(text, MAX_ERROR_TEXT_CHARS)}`, data);
}

/** The ToolError for a call that failed before a result arrived (transport, protocol or handler failure). */
export function toolErrorFromFailure(tool: string, namespace: string, err: unknown, local: boolean): ToolError {
  if (err instanceof ToolError) return err;
  const cause = err instanceof Error ? err.message || err.name : String(err);
  const code = typeof (err as { code?: unknown } | null)?.code === 'number' ? (err as { code: number }).code : undefined;
  const data: ToolErrorData = { tool };
  if (code !== undefined) data.code = code;
  const message = local
    ? `${tool}: ${truncate(cause, MAX_ERROR_TEXT_CHARS)}`
    : `${tool}: calling server "${namespace}" failed: ${truncate(cause, MAX_ERROR_TEXT_CHARS)}`;
  return new ToolError(message, data, { cause: err });
}
