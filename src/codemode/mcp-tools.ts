/**
 * The MCP-facing tools of code mode: `execute`, `search` and `get_schema`, as plain definitions with
 * handlers, for the server layer to mount on an SDK `Server` (or an `McpServer` via `inputShape`).
 *
 * @module
 */

import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod';
import { isCodemodeError } from '../errors.js';
import type { LogEntry } from '../sandbox/types.js';
import { boundedPrettyJson } from './bounded-json.js';
import type { CodeMode } from './codemode.js';
import { generateDeclarations } from './declarations.js';
import { MAX_SCHEMA_NAMES, MAX_SEARCH_LIMIT } from './search.js';
import type { SearchDetail } from './search.js';
import { capText, MAX_ECHO_CHARS } from './text-caps.js';
import type { ExecuteResult, JsonSchema, ToolCallRecord } from './types.js';

/** Default cap on the characters of the result JSON in the `execute` text content. */
export const DEFAULT_MAX_RESULT_TEXT_CHARS = 20_000;
/** Default cap on the characters of the logs in the `execute` text content. */
export const DEFAULT_MAX_LOG_TEXT_CHARS = 8_000;
/**
 * Up to this many characters of declarations are inlined into the `execute` description. Sized so that
 * codemode's whole tools/list stays under 1,500 tokens (o200k_base; bench/footprint.ts): the three tools
 * without declarations cost ~740 tokens, and declarations run as dense as 3.8 characters per token.
 */
export const DEFAULT_INLINE_DECLARATIONS_MAX_CHARS = 2_800;
/**
 * Cap on the text of a `search` answer at detail "detailed" or "full". 100 hits of large schemas, pretty-printed
 * with deep indentation, could otherwise grow far beyond the catalog they came from.
 */
const MAX_SEARCH_TEXT_CHARS = 200_000;
/** Cap on the text of an uncaught ToolError's `structuredContent` in the `execute` text content. */
const MAX_ERROR_DETAILS_TEXT_CHARS = 2_000;

/** What a tool handler receives from the server (a subset of the SDK's `RequestHandlerExtra`). */
export interface ToolHandlerExtra {
  signal?: AbortSignal;
  /** The request's `_meta`; a `progressToken` there turns on progress notifications from `execute`. */
  _meta?: { progressToken?: string | number; [key: string]: unknown };
  /** Sends a notification related to the request (used for `notifications/progress`). */
  sendNotification?: (notification: { method: 'notifications/progress'; params: { progressToken: string | number; progress: number; message?: string } }) => Promise<void>;
}

/** One MCP tool, ready to list (`name`, `title`, `description`, `inputSchema`, `annotations`) and call. */
export interface CodeModeTool {
  name: string;
  title: string;
  description: string;
  /** JSON Schema of the arguments, for `tools/list`. */
  inputSchema: JsonSchema & { type: 'object' };
  /** The same as a zod raw shape, for `McpServer.registerTool`. */
  inputShape: Record<string, z.ZodType>;
  annotations: ToolAnnotations;
  /**
   * Runs the tool. Invalid arguments throw `McpError(InvalidParams)`; everything the code did comes back
   * as a result (`isError: true` for failures).
   */
  handler(args: unknown, extra?: ToolHandlerExtra): Promise<CallToolResult>;
}

export interface CodeModeToolsOptions {
  /** Cap on the result JSON in the text content (the structured content carries it whole). */
  maxResultTextChars?: number;
  /** Cap on the logs in the text content. */
  maxLogTextChars?: number;
  /** Inline the declarations into the execute description when they are at most this long; 0 never does. */
  inlineDeclarationsMaxChars?: number;
  /** Tool names; default `execute`, `search`, `get_schema`. */
  names?: { execute?: string; search?: string; getSchema?: string };
}

function cap(text: string, max: number, what: string, advice: string): string {
  if (text.length <= max) return text;
  // Never cut between the two halves of a surrogate pair: a lone half is not valid UTF-16 text.
  const end = max > 0 && isHighSurrogate(text.charCodeAt(max - 1)) ? max - 1 : max;
  return `${text.slice(0, end)}\n… [${what} truncated: showing the first ${end} characters. ${advice}]`;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** The log lines as text, stopping one character past `max`: `cap` then marks the cut. */
function formatLogs(logs: readonly LogEntry[], max: number): string {
  const lines: string[] = [];
  let length = 0;
  for (const l of logs) {
    if (length > max) break;
    const line = `${lines.length > 0 ? '\n' : ''}[${l.level}] ${l.message.length > max - length + 1 ? l.message.slice(0, max - length + 1) : l.message}`;
    lines.push(line);
    length += line.length;
  }
  return lines.join('');
}

/**
 * The value as pretty JSON, cut at `max` characters with a marker. The writer stops at the cap, so a
 * 200-million-character rendering is never built (see bounded-json.ts); the total length is not known then.
 */
function jsonText(value: unknown, max: number, what: string, advice: string): string {
  const { text, truncated } = boundedPrettyJson(value, max);
  return truncated ? `${text}\n… [${what} truncated: showing the first ${text.length} characters. ${advice}]` : text;
}

/**
 * Formats an execution as the `execute` tool's MCP result.
 *
 * Success: text content holding the JSON of the value (capped and marked when truncated), then the logs
 * and warnings; `structuredContent` of `{ result, logs, toolCalls: [{ tool, ok, ms }], stats }`.
 * Failure: `isError: true` with `structuredContent` of `{ error: { kind, message, line?, column? }, logs,
 * toolCalls }`.
 *
 * @example
 * ```ts
 * const mcpResult = formatExecuteResult(await mode.execute(code), { maxResultTextChars: 10_000 });
 * ```
 */
export function formatExecuteResult(result: ExecuteResult, options: Pick<CodeModeToolsOptions, 'maxResultTextChars' | 'maxLogTextChars'> = {}): CallToolResult {
  const maxResult = options.maxResultTextChars ?? DEFAULT_MAX_RESULT_TEXT_CHARS;
  const maxLogs = options.maxLogTextChars ?? DEFAULT_MAX_LOG_TEXT_CHARS;
  const toolCalls = result.toolCalls.map((c) => ({ tool: c.tool, ok: c.ok, ms: c.ms, ...(c.reason ? { reason: c.reason } : {}) }));
  const content: CallToolResult['content'] = [];
  let head: string;
  if (result.ok) {
    head = jsonText(result.value, maxResult, 'result', 'Return less data: pick fields, filter, or slice arrays in the code.');
  } else {
    const { error } = result;
    const where = error.line !== undefined ? ` at line ${error.line}${error.column !== undefined ? `, column ${error.column}` : ''}` : '';
    head = `Error (${error.kind})${where}: ${error.name && !error.message.startsWith(error.name) && error.kind === 'runtime' ? `${error.name}: ` : ''}${error.message}`;
    if (error.structuredContent !== undefined) head += `\nTool error details: ${jsonText(error.structuredContent, MAX_ERROR_DETAILS_TEXT_CHARS, 'details', '')}`;
  }
  content.push({ type: 'text', text: head });
  const tail: string[] = [];
  if (result.logs.length > 0) tail.push(`Logs:\n${cap(formatLogs(result.logs, maxLogs), maxLogs, 'logs', 'Log less.')}`);
  if (result.warnings.length > 0) tail.push(`Warnings:\n${result.warnings.map((w) => `- ${w}`).join('\n')}`);
  if (result.ok && result.value === undefined && result.logs.length === 0) {
    tail.push('Note: the code returned no value. End it with `return <value>` to get a result.');
  }
  if (tail.length > 0) content.push({ type: 'text', text: tail.join('\n\n') });
  const extras = result.warnings.length > 0 ? { warnings: result.warnings } : {};
  if (result.ok) {
    return { content, structuredContent: { result: result.value ?? null, logs: result.logs, toolCalls, stats: result.stats, ...extras } };
  }
  const { kind, message, line, column, name, tool } = result.error;
  const error = { kind, message, ...(line !== undefined ? { line } : {}), ...(column !== undefined ? { column } : {}), ...(name ? { name } : {}), ...(tool ? { tool } : {}) };
  return { content, isError: true, structuredContent: { error, logs: result.logs, toolCalls, ...extras } };
}

/**
 * The `execute` description: the API, the limits, and the declarations when the catalog is small.
 *
 * @example
 * ```ts
 * const text = executeDescription(mode, { inlineDeclarationsMaxChars: 0 }); // never inline
 * ```
 */
export function executeDescription(mode: CodeMode, options: Pick<CodeModeToolsOptions, 'inlineDeclarationsMaxChars' | 'names'> = {}): string {
  const searchName = options.names?.search ?? 'search';
  const schemaName = options.names?.getSchema ?? 'get_schema';
  const lines = [
    'Run JavaScript (or TypeScript) in a sandbox where tools are async functions. Do a whole task in one call: chain tool calls, filter and combine their results in code, and return only what you need.',
    '',
    'Write the body of an async function: use `await`, and `return` the value you want back (a final expression is returned too). The value comes back as JSON, with console output.',
    '',
    'In scope:',
    '- `tools.<namespace>.<tool>(args)`: calls a tool. It resolves to the structured content when the tool sends one, the text of a single text block, or else the content array.',
    '- `callTool("namespace.tool", args)`: the same, by name.',
  ];
  if (mode.hasResources) lines.push('- `resources.read(uri)`: reads a resource; resolves to its contents array.');
  if (mode.hasPrompts) lines.push('- `prompts.get(name, args)`: gets a prompt; resolves to `{ description, messages }`.');
  lines.push(
    '- `console.log(...)` and friends: captured and returned.',
    '- A failed call throws `ToolError` (`e.message`, `e.tool`, `e.structuredContent`); catch it to recover or try another way.',
  );
  const limits: string[] = [];
  if (mode.maxToolCalls !== null) limits.push(`at most ${mode.maxToolCalls} tool calls per execution (further calls throw ToolCallLimitError)`);
  if (mode.maxConcurrentToolCalls !== null) limits.push(`up to ${mode.maxConcurrentToolCalls} run at once, so use \`Promise.all\` for independent calls`);
  if (limits.length > 0) lines.push(`- Limits: ${limits.join('; ')}. Always \`await\` tool calls: calls still running when the code returns are cancelled.`);
  const sandboxLimits = mode.limits;
  if (sandboxLimits) {
    const parts: string[] = [];
    if (sandboxLimits.timeoutMs !== null) parts.push(`runs for at most ${formatMs(sandboxLimits.timeoutMs)}`);
    if (sandboxLimits.memoryMb !== null) parts.push(`uses at most ${sandboxLimits.memoryMb} MB of memory`);
    if (sandboxLimits.maxResultBytes !== null) parts.push(`returns at most ${formatBytes(sandboxLimits.maxResultBytes)} of JSON`);
    if (parts.length > 0) lines.push(`- Each execution ${parts.join(', ')}.`);
  }
  lines.push('- There is no network, filesystem, `require` or `import`: only the tools.');
  const entries = mode.catalog.entries;
  // Only `declare const tools`: the bullets above already say what ToolError, callTool, resources and
  // prompts are, and repeating their declarations cost ~210 tokens of every host's context.
  const declarations = generateDeclarations(entries, { preamble: false });
  const inlineMax = options.inlineDeclarationsMaxChars ?? DEFAULT_INLINE_DECLARATIONS_MAX_CHARS;
  lines.push('');
  if (entries.length > 0 && declarations.length <= inlineMax) {
    lines.push('The API, as TypeScript declarations:', '', declarations.trimEnd());
  } else {
    const counts = new Map<string, number>();
    for (const e of entries) counts.set(e.namespace, (counts.get(e.namespace) ?? 0) + 1);
    const summary = [...counts].map(([ns, n]) => `${ns} (${n})`).join(', ');
    lines.push(
      entries.length === 0
        ? 'No tools are available right now.'
        : `${entries.length} tools are available in the namespaces ${summary}. Use \`${searchName}\` to find tools and \`${schemaName}\` for their exact TypeScript declarations before calling them.`,
    );
  }
  return lines.join('\n');
}

function formatMs(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

function invalidParams(message: string): McpError {
  return new McpError(ErrorCode.InvalidParams, message);
}

function asObject(args: unknown): Record<string, unknown> {
  if (args === undefined || args === null) return {};
  if (typeof args !== 'object' || Array.isArray(args)) throw invalidParams('Arguments must be an object.');
  return args as Record<string, unknown>;
}

const DETAILS = ['brief', 'detailed', 'full'] as const;

function parseDetail(value: unknown, fallback: SearchDetail): SearchDetail {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(DETAILS as readonly string[]).includes(value)) {
    throw invalidParams(`"detail" must be one of ${DETAILS.map((d) => `"${d}"`).join(', ')}.`);
  }
  return value as SearchDetail;
}

function internal(err: unknown): McpError {
  if (err instanceof McpError) return err;
  return new McpError(ErrorCode.InternalError, isCodemodeError(err) ? err.message : `Code mode failed: ${err instanceof Error ? err.message : String(err)}`);
}

/**
 * Builds the `execute`, `search` and `get_schema` tools over a `CodeMode`. The execute description is
 * computed when this is called; call it again after `mode.refresh()`.
 *
 * @example
 * ```ts
 * const tools = createCodeModeTools(mode);
 * server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: tools.map(({ handler, inputShape, ...t }) => t) }));
 * server.setRequestHandler(CallToolRequestSchema, (req, extra) =>
 *   tools.find((t) => t.name === req.params.name)!.handler(req.params.arguments, extra));
 * ```
 */
export function createCodeModeTools(mode: CodeMode, options: CodeModeToolsOptions = {}): CodeModeTool[] {
  const names = { execute: options.names?.execute ?? 'execute', search: options.names?.search ?? 'search', getSchema: options.names?.getSchema ?? 'get_schema' };
  const execute: CodeModeTool = {
    name: names.execute,
    title: 'Execute code',
    description: executeDescription(mode, options),
    inputSchema: {
      type: 'object',
      properties: { code: { type: 'string', description: 'The JavaScript or TypeScript to run: the body of an async function.' } },
      required: ['code'],
    },
    inputShape: { code: z.string().describe('The JavaScript or TypeScript to run: the body of an async function.') },
    annotations: { title: 'Execute code', readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    async handler(args, extra) {
      const { code } = asObject(args);
      if (typeof code !== 'string') throw invalidParams('"code" must be a string holding the code to run.');
      // With a progress token, each finished tool call is reported, which also keeps clients that reset
      // their request timeout on progress from giving up on a long execution.
      const progressToken = extra?._meta?.progressToken;
      const send = extra?.sendNotification;
      const onToolCall =
        progressToken !== undefined && send !== undefined
          ? (record: Readonly<ToolCallRecord>, completed: number) => {
              const message = `${record.tool} ${record.ok ? 'done' : 'failed'} (${completed} tool call${completed === 1 ? '' : 's'})`;
              send({ method: 'notifications/progress', params: { progressToken, progress: completed, message } }).catch(() => {});
            }
          : undefined;
      try {
        const result = await mode.execute(code, { ...(extra?.signal ? { signal: extra.signal } : {}), ...(onToolCall ? { onToolCall } : {}) });
        return formatExecuteResult(result, options);
      } catch (err) {
        throw internal(err);
      }
    },
  };
  const search: CodeModeTool = {
    name: names.search,
    title: 'Search tools',
    description:
      'Find tools for a task by keywords (ranked by name, description and parameter names). ' +
      '`detail`: "brief" (name and one line, the default), "detailed" (with parameters) or "full" (with the TypeScript declaration and JSON schemas). ' +
      `Then call them in \`${names.execute}\` as \`tools.<namespace>.<tool>(args)\`.`,
    inputSchema: {
      type: 'object',
      properties: {
        query: { type: 'string', description: 'Keywords describing what you want to do.' },
        detail: { type: 'string', enum: [...DETAILS], description: 'How much to return per tool.', default: 'brief' },
        limit: { type: 'integer', minimum: 1, maximum: MAX_SEARCH_LIMIT, description: 'Maximum number of tools.', default: 10 },
      },
      required: ['query'],
    },
    inputShape: {
      query: z.string().describe('Keywords describing what you want to do.'),
      detail: z.enum(DETAILS).optional().describe('How much to return per tool.'),
      limit: z.number().int().min(1).max(MAX_SEARCH_LIMIT).optional().describe('Maximum number of tools.'),
    },
    annotations: { title: 'Search tools', readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async handler(args) {
      const { query, detail, limit } = asObject(args);
      if (typeof query !== 'string') throw invalidParams('"query" must be a string.');
      if (limit !== undefined && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_SEARCH_LIMIT)) {
        throw invalidParams(`"limit" must be an integer from 1 to ${MAX_SEARCH_LIMIT}.`);
      }
      const level = parseDetail(detail, 'brief');
      const results = mode.search(query, { detail: level, ...(limit !== undefined ? { limit } : {}) });
      // Brief hits read best (and cost fewest tokens) as one line each; richer levels stay JSON.
      const text =
        results.length === 0
          ? `No tools match "${capText(query, MAX_ECHO_CHARS)}". Try other words, or an empty query to list tools.`
          : level === 'brief'
            ? results.map((r) => `${r.call}  (${r.name})${r.description ? `: ${r.description}` : ''}`).join('\n')
            : jsonText(results, MAX_SEARCH_TEXT_CHARS, 'search results', 'Ask with detail "brief", a lower limit, or get_schema for a few tools.');
      return { content: [{ type: 'text', text }], structuredContent: { results } };
    },
  };
  const getSchema: CodeModeTool = {
    name: names.getSchema,
    title: 'Get tool schemas',
    description:
      'Get the TypeScript declarations of tools by name ("namespace.tool", as `search` returns them), to call them correctly in ' +
      `\`${names.execute}\`. \`detail\` "full" adds the JSON schemas.`,
    inputSchema: {
      type: 'object',
      properties: {
        tools: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: MAX_SCHEMA_NAMES, description: 'Tool names, e.g. ["github.search_issues"].' },
        detail: { type: 'string', enum: [...DETAILS], default: 'detailed' },
      },
      required: ['tools'],
    },
    inputShape: {
      tools: z.array(z.string()).min(1).max(MAX_SCHEMA_NAMES).describe('Tool names, e.g. ["github.search_issues"].'),
      detail: z.enum(DETAILS).optional(),
    },
    annotations: { title: 'Get tool schemas', readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async handler(args) {
      const { tools, detail } = asObject(args);
      if (!Array.isArray(tools) || tools.length === 0 || tools.some((t) => typeof t !== 'string')) {
        throw invalidParams('"tools" must be a non-empty array of tool names.');
      }
      if (tools.length > MAX_SCHEMA_NAMES) {
        throw invalidParams(`"tools" names ${tools.length} tools; ask for at most ${MAX_SCHEMA_NAMES} at a time.`);
      }
      const schema = mode.getSchema(tools as string[], parseDetail(detail, 'detailed'));
      const parts: string[] = [];
      if (schema.declarations !== '') parts.push(schema.declarations.trimEnd());
      if (schema.notFound.length > 0) {
        parts.push(`Not found: ${schema.notFound.map((n) => `"${capText(n, MAX_ECHO_CHARS)}"`).join(', ')}. Use \`${names.search}\` to find tool names.`);
      }
      const result: CallToolResult = { content: [{ type: 'text', text: parts.join('\n\n') }], structuredContent: schema };
      if (schema.tools.length === 0) result.isError = true;
      return result;
    },
  };
  return [execute, search, getSchema];
}
