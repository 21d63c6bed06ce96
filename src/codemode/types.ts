/**
 * The contracts of the code-mode layer: where tools come from (`ToolSource`) and what an execution
 * reports (`ExecuteResult`).
 *
 * @module
 */

import type { CallToolResult, GetPromptResult, ReadResourceResult } from '@modelcontextprotocol/sdk/types.js';
import type { LogEntry, SandboxErrorKind } from '../sandbox/types.js';

/** A JSON Schema object (draft-07 / 2020-12), as MCP tools carry them. */
export type JsonSchema = Record<string, unknown>;

/** One tool as a source lists it (the MCP `Tool` shape, minus what code mode does not use). */
export interface ToolDefinition {
  name: string;
  title?: string;
  description?: string;
  /** JSON Schema of the arguments object. */
  inputSchema: JsonSchema;
  /** JSON Schema of `structuredContent`, when the tool declares one. */
  outputSchema?: JsonSchema;
  annotations?: Record<string, unknown>;
}

/** What a source receives with every upstream call. */
export interface SourceCallOptions {
  /** Aborted when the execution ends or is aborted while the call is in flight. */
  signal: AbortSignal;
  /** Request `_meta` to send upstream (carries `traceparent`). */
  meta?: Record<string, unknown>;
  /** Per-call timeout in ms; `undefined` means the source imposes none beyond `signal`. */
  timeoutMs?: number;
}

/**
 * What a tool call produced: an MCP result (shaped by code mode into the value the guest sees), or a plain
 * value from a local handler (passed through unchanged).
 */
export type ToolCallOutput = { mcp: CallToolResult } | { value: unknown };

/**
 * A source of tools that is already connected. `mcpClientSource()` adapts an SDK `Client`; `localTools()`
 * adapts in-process handlers. Implement it yourself for anything else.
 */
export interface ToolSource {
  /** The namespace: tools appear in the sandbox as `tools.<identifier of name>.<tool>`. */
  readonly name: string;
  /** `pipe` for stdio, `tcp` for HTTP; reported as the `network.transport` span attribute. */
  readonly transport?: 'pipe' | 'tcp';
  /** True for in-process tools: their failures are not described as a server failing. */
  readonly local?: boolean;
  /** The MCP session id (Streamable HTTP), reported as the `mcp.session.id` span attribute. */
  readonly sessionId?: string | undefined;
  listTools(options?: { signal?: AbortSignal }): Promise<ToolDefinition[]>;
  /** Throws for transport and protocol failures; an upstream `isError` result is returned, not thrown. */
  callTool(name: string, args: Record<string, unknown>, options: SourceCallOptions): Promise<ToolCallOutput>;
  /** Present when the source serves resources. */
  readResource?(uri: string, options: SourceCallOptions): Promise<ReadResourceResult>;
  /** Present when the source serves prompts. */
  getPrompt?(name: string, args: Record<string, string>, options: SourceCallOptions): Promise<GetPromptResult>;
}

/** One upstream call made by an execution, in call order. */
export interface ToolCallRecord {
  /** `namespace.tool` with the upstream names, `resources/read <uri>` or `prompts/get <name>`. */
  tool: string;
  ok: boolean;
  /** Wall time of the call, including any wait for a concurrency slot. */
  ms: number;
  /** Set when the call never reached a tool: `unknown_tool`, `limit`, `invalid_arguments`, `cancelled`. */
  reason?: 'unknown_tool' | 'limit' | 'invalid_arguments' | 'cancelled';
}

/** Statistics of one execution. */
export interface ExecuteStats {
  durationMs: number;
  queuedMs: number;
  toolCalls: number;
  droppedLogLines: number;
}

/** The kinds of failure `execute` reports (the sandbox's kinds; `tool_call_limit` for an uncaught cap error). */
export type ExecuteErrorKind = SandboxErrorKind;

export interface ExecuteError {
  kind: ExecuteErrorKind;
  message: string;
  /** The guest error's class name for runtime errors (`TypeError`, `ToolError`, ...). */
  name?: string;
  /** 1-based line in the code as submitted. */
  line?: number;
  /** 1-based column in the code as submitted. */
  column?: number;
  /** The tool of an uncaught `ToolError`. */
  tool?: string;
  /** The `structuredContent` of an uncaught `ToolError`. */
  structuredContent?: unknown;
}

/** What `execute` resolves with. Guest failures are data: it rejects only for host bugs and misuse. */
export type ExecuteResult =
  | { ok: true; value: unknown; logs: LogEntry[]; toolCalls: ToolCallRecord[]; warnings: string[]; stats: ExecuteStats }
  | { ok: false; error: ExecuteError; logs: LogEntry[]; toolCalls: ToolCallRecord[]; warnings: string[]; stats: ExecuteStats };
