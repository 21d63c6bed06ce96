/**
 * Tool sources: adapters from an SDK `Client` and from in-process handlers to the `ToolSource` contract.
 *
 * @module
 */

import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema, GetPromptResultSchema, ReadResourceResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { GetPromptResult, ReadResourceResult } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod';
import { CodemodeError } from '../errors.js';
import type { JsonSchema, SourceCallOptions, ToolCallOutput, ToolDefinition, ToolSource } from './types.js';
import { ToolError } from './tool-errors.js';
import { MAX_TIMER_DELAY_MS as MAX_TIMER_MS } from '../wire/timers.js';

/** Bound on `tools/list` pages, so a server that always returns a cursor cannot loop us forever. */
const MAX_LIST_PAGES = 100;

export interface McpClientSourceOptions {
  /** `pipe` (stdio) or `tcp` (HTTP), for the `network.transport` span attribute. */
  transport?: 'pipe' | 'tcp';
  /**
   * Timeout of one upstream call in ms. By default none: the execution's own wall-clock limit ends the call
   * (through its abort signal), instead of the SDK's silent 60 s default.
   */
  timeoutMs?: number;
}

/**
 * Adapts a connected SDK `Client` as a tool source. Calls go through `client.request` with the raw
 * `CallToolResultSchema` (so a result that does not match the tool's `outputSchema` is passed on rather than
 * thrown), carry `_meta` (trace context), and send `notifications/cancelled` upstream when aborted.
 *
 * @example
 * ```ts
 * const client = new Client({ name: 'me', version: '1.0.0' });
 * await client.connect(new StdioClientTransport({ command: 'mcp-server-everything' }));
 * const mode = await CodeMode.create({ sources: [mcpClientSource('everything', client)] });
 * ```
 */
/**
 * What `mcpClientSource` needs of an SDK client: the v1 `Client` has it, and so does the proxy layer's
 * negotiated client (the v2 client behind the same calls, speaking 2026-07-28 or 2025-11-25).
 */
export interface SourceClient {
  request: Client['request'];
  listTools: Client['listTools'];
  getServerCapabilities: Client['getServerCapabilities'];
  readonly transport: { readonly sessionId?: string | undefined } | undefined;
}

export function mcpClientSource(name: string, client: SourceClient, options: McpClientSourceOptions = {}): ToolSource {
  /**
   * Runs one request with a signal of its own, linked to the call's signal only while the request is open.
   * The SDK adds an `abort` listener to the signal it is given and never removes it, and the sandbox hands
   * all of an execution's calls one shared signal: given that signal, every finished request of the run
   * would stay hooked to it (a scan per call) and, when the run ends and the signal aborts, each would send
   * a spurious `notifications/cancelled` upstream for a request long answered.
   */
  const scoped = async <T>(call: SourceCallOptions, send: (requestOptions: { signal: AbortSignal; timeout: number; maxTotalTimeout: number }) => Promise<T>): Promise<T> => {
    const timeout = Math.min(call.timeoutMs ?? options.timeoutMs ?? MAX_TIMER_MS, MAX_TIMER_MS);
    const outer = call.signal;
    // Already aborted: the SDK refuses at once, and there is nothing to unlink.
    if (outer.aborted) return send({ signal: outer, timeout, maxTotalTimeout: timeout });
    const own = new AbortController();
    const forward = () => own.abort(outer.reason);
    outer.addEventListener('abort', forward, { once: true });
    try {
      return await send({ signal: own.signal, timeout, maxTotalTimeout: timeout });
    } finally {
      outer.removeEventListener('abort', forward);
    }
  };
  const withMeta = <T extends Record<string, unknown>>(params: T, meta: Record<string, unknown> | undefined) =>
    meta !== undefined && Object.keys(meta).length > 0 ? { ...params, _meta: meta } : params;
  const capabilities = client.getServerCapabilities() ?? {};

  const source: ToolSource = {
    name,
    ...(options.transport !== undefined ? { transport: options.transport } : {}),
    get sessionId() {
      const id = (client.transport as { sessionId?: unknown } | undefined)?.sessionId;
      return typeof id === 'string' ? id : undefined;
    },
    async listTools({ signal } = {}) {
      const tools: ToolDefinition[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < MAX_LIST_PAGES; page++) {
        const result = await client.listTools(cursor !== undefined ? { cursor } : undefined, signal ? { signal } : undefined);
        for (const tool of result.tools) {
          const def: ToolDefinition = { name: tool.name, inputSchema: tool.inputSchema as JsonSchema };
          if (tool.title !== undefined) def.title = tool.title;
          if (tool.description !== undefined) def.description = tool.description;
          if (tool.outputSchema !== undefined) def.outputSchema = tool.outputSchema as JsonSchema;
          if (tool.annotations !== undefined) def.annotations = tool.annotations as Record<string, unknown>;
          tools.push(def);
        }
        cursor = result.nextCursor;
        if (cursor === undefined) break;
      }
      return tools;
    },
    async callTool(tool, args, call): Promise<ToolCallOutput> {
      const result = await scoped(call, (requestOptions) =>
        client.request({ method: 'tools/call', params: withMeta({ name: tool, arguments: args }, call.meta) }, CallToolResultSchema, requestOptions),
      );
      // A legacy (protocol 2024-10-07) answer carries its value in `toolResult`; the schema still fills in
      // `content: []`, which used to hide the value behind an empty array.
      const legacy = result as { toolResult?: unknown };
      if ('toolResult' in legacy && (result.content ?? []).length === 0 && result.structuredContent === undefined && result.isError !== true) {
        return { value: legacy.toolResult };
      }
      return { mcp: result.content !== undefined ? result : { ...result, content: [] } };
    },
  };
  if (capabilities.resources !== undefined) {
    source.readResource = (uri: string, call: SourceCallOptions): Promise<ReadResourceResult> =>
      scoped(call, (requestOptions) => client.request({ method: 'resources/read', params: withMeta({ uri }, call.meta) }, ReadResourceResultSchema, requestOptions));
  }
  if (capabilities.prompts !== undefined) {
    source.getPrompt = (prompt: string, args: Record<string, string>, call: SourceCallOptions): Promise<GetPromptResult> =>
      scoped(call, (requestOptions) =>
        client.request({ method: 'prompts/get', params: withMeta({ name: prompt, arguments: args }, call.meta) }, GetPromptResultSchema, requestOptions),
      );
  }
  return source;
}

/** What a local tool handler receives besides its arguments. */
export interface LocalToolContext {
  /** Aborted when the execution ends or is aborted while the call is in flight. */
  signal: AbortSignal;
}

/** An in-process tool. */
export interface LocalTool {
  name: string;
  title?: string;
  description?: string;
  /**
   * The arguments: a zod object schema (validated before the handler runs), a zod raw shape
   * (`{ q: z.string() }`), or a JSON Schema object (not validated). Omitted means no arguments.
   */
  input?: z.ZodType | Record<string, z.ZodType> | JsonSchema;
  /** The result: a zod schema or JSON Schema; only used for the declarations. */
  output?: z.ZodType | JsonSchema;
  annotations?: Record<string, unknown>;
  /**
   * Returns the value the guest receives (JSON-copyable). Throwing makes the guest's call throw a
   * `ToolError` with the message; throw a `ToolError` yourself to attach `structuredContent`.
   */
  handler: (args: Record<string, unknown>, context: LocalToolContext) => unknown;
}

/**
 * Defines a local tool whose handler receives arguments typed from a zod raw shape or object schema.
 *
 * @example
 * ```ts
 * const add = localTool({ name: 'add', input: { a: z.number(), b: z.number() }, handler: ({ a, b }) => a + b });
 * const math = localTools('math', [add]);
 * ```
 */
export function localTool<S extends Record<string, z.ZodType> | z.ZodType>(
  tool: Omit<LocalTool, 'input' | 'handler'> & {
    input: S;
    handler: (args: S extends z.ZodType ? z.output<S> : z.output<z.ZodObject<Extract<S, Record<string, z.ZodType>>>>, context: LocalToolContext) => unknown;
  },
): LocalTool {
  return tool as unknown as LocalTool;
}

function isZod(value: unknown): value is z.ZodType {
  return typeof value === 'object' && value !== null && '_zod' in value && typeof (value as { safeParse?: unknown }).safeParse === 'function';
}

function isZodShape(value: unknown): value is Record<string, z.ZodType> {
  return typeof value === 'object' && value !== null && !isZod(value) && Object.values(value).length > 0 && Object.values(value).every(isZod);
}

function toJsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const json = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  delete json.$schema;
  return json;
}

/**
 * Adapts in-process handlers as a tool source, so `CodeMode` works without any MCP server.
 *
 * @example
 * ```ts
 * const math = localTools('math', [
 *   { name: 'add', input: { a: z.number(), b: z.number() }, handler: ({ a, b }) => (a as number) + (b as number) },
 * ]);
 * const mode = await CodeMode.create({ sources: [math] });
 * await mode.execute('return await tools.math.add({ a: 1, b: 2 })'); // value 3
 * ```
 */
export function localTools(name: string, tools: readonly LocalTool[]): ToolSource {
  const prepared = new Map<string, { def: ToolDefinition; validator?: z.ZodType; handler: LocalTool['handler'] }>();
  for (const tool of tools) {
    if (typeof tool.name !== 'string' || tool.name === '') {
      throw new CodemodeError('INVALID_CONFIG', `A local tool of "${name}" has no name. Give every tool a non-empty name.`);
    }
    if (typeof tool.handler !== 'function') {
      throw new CodemodeError('INVALID_CONFIG', `Local tool "${name}.${tool.name}" has no handler function.`);
    }
    if (prepared.has(tool.name)) {
      throw new CodemodeError('TOOL_NAME_COLLISION', `Local tool "${tool.name}" is defined twice in "${name}". Tool names must be unique within a source.`);
    }
    let validator: z.ZodType | undefined;
    let inputSchema: JsonSchema;
    if (tool.input === undefined) inputSchema = { type: 'object', properties: {} };
    else if (isZod(tool.input)) validator = tool.input;
    else if (isZodShape(tool.input)) validator = z.object(tool.input);
    else inputSchema = tool.input as JsonSchema;
    if (validator !== undefined) inputSchema = toJsonSchema(validator, 'input');
    const def: ToolDefinition = { name: tool.name, inputSchema: inputSchema! };
    if (tool.title !== undefined) def.title = tool.title;
    if (tool.description !== undefined) def.description = tool.description;
    if (tool.output !== undefined) def.outputSchema = isZod(tool.output) ? toJsonSchema(tool.output, 'output') : (tool.output as JsonSchema);
    if (tool.annotations !== undefined) def.annotations = tool.annotations;
    prepared.set(tool.name, { def, ...(validator !== undefined ? { validator } : {}), handler: tool.handler });
  }
  return {
    name,
    local: true,
    async listTools() {
      return [...prepared.values()].map((p) => p.def);
    },
    async callTool(tool, args, call): Promise<ToolCallOutput> {
      const entry = prepared.get(tool);
      if (entry === undefined) throw new CodemodeError('TOOL_NOT_FOUND', `Unknown tool "${name}.${tool}".`);
      let parsed: Record<string, unknown> = args;
      if (entry.validator !== undefined) {
        const check = entry.validator.safeParse(args);
        if (!check.success) {
          throw new ToolError(`${name}.${tool}: invalid arguments: ${z.prettifyError(check.error).replace(/\n/g, '; ')}`, {
            tool: `${name}.${tool}`,
            structuredContent: { issues: JSON.parse(JSON.stringify(check.error.issues)) as unknown },
          });
        }
        parsed = check.data as Record<string, unknown>;
      }
      return { value: await entry.handler(parsed, { signal: call.signal }) };
    },
  };
}
