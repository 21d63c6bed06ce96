/**
 * The host functions one execution hands the sandbox: `tools.<namespace>.<tool>`, `callTool(name, args)`,
 * and `resources.read` / `prompts.get` when some source serves them. Every call goes through the
 * execution, which counts it, bounds it, traces it and records it.
 *
 * @module
 */

import { createLogger } from '../log.js';
import { assertHostResultCopyable } from '../sandbox/host-functions.js';
import type { HostCallContext, HostFunctions } from '../sandbox/types.js';
import { ATTR } from '../telemetry/index.js';
import type { Catalog, CatalogEntry } from './catalog.js';
import { isPlainArgs } from './execution.js';
import type { Execution } from './execution.js';
import { getPrompt, readResource } from './resources-prompts.js';
import { capString, MAX_TOOL_LABEL_CHARS } from './text-caps.js';
import { shapeToolResult, ToolError, toolErrorFromFailure, toolErrorFromResult } from './tool-errors.js';

const log = createLogger('codemode');

/**
 * The guest's API for one execution over `catalog`. `toolCallTimeoutMs` is `CodeModeOptions.toolCallTimeoutMs`
 * (`undefined`: none of its own).
 */
export function buildHostFunctions(catalog: Catalog, execution: Execution, toolCallTimeoutMs: number | undefined): HostFunctions {
  const callEntry = (label: string, entry: CatalogEntry, rawArgs: unknown, ctx: HostCallContext): Promise<unknown> =>
    callTool(execution, label, entry, rawArgs, ctx, toolCallTimeoutMs);
  // Null prototypes: a tool or namespace called "toString" or "__proto__" must be a plain own key.
  const tools: HostFunctions = Object.create(null) as HostFunctions;
  for (const entry of catalog.entries) {
    const ns = (tools[entry.namespaceId] ??= Object.create(null) as HostFunctions) as HostFunctions;
    ns[entry.toolId] = (args, ctx) => callEntry(entry.qualifiedName, entry, args[0], ctx);
  }
  // Upstream spellings work too (`tools.everything['get-sum']`), where they differ from and do not
  // shadow an identifier: models often write the name they saw in a tool list.
  for (const entry of catalog.entries) {
    if (!Object.hasOwn(tools, entry.namespace)) tools[entry.namespace] = tools[entry.namespaceId]!;
    const ns = tools[entry.namespaceId] as HostFunctions;
    if (!Object.hasOwn(ns, entry.tool.name)) ns[entry.tool.name] = ns[entry.toolId]!;
  }
  const fns: HostFunctions = {
    tools,
    callTool: (args, ctx) => {
      const name = args[0];
      // The name is the guest's: capped before it becomes a record, an error or a lookup key.
      const label = capString(name, MAX_TOOL_LABEL_CHARS);
      if (typeof name !== 'string') {
        execution.admit(label);
        execution.record({ tool: label, ok: false, ms: 0, reason: 'unknown_tool' });
        throw new ToolError(`callTool(name, args) needs the tool name as a string, got ${typeof name}.`, { tool: label });
      }
      const resolved = catalog.resolve(name);
      if ('error' in resolved) {
        execution.admit(label);
        execution.record({ tool: label, ok: false, ms: 0, reason: 'unknown_tool' });
        throw new ToolError(resolved.error, { tool: label });
      }
      return callEntry(resolved.entry.qualifiedName, resolved.entry, args[1], ctx);
    },
  };
  const resourceSources = catalog.sources.filter((s) => typeof s.readResource === 'function');
  if (resourceSources.length > 0) {
    fns.resources = { read: (args, ctx) => readResource(execution, resourceSources, args[0], args[1], ctx) };
  }
  const promptSources = catalog.sources.filter((s) => typeof s.getPrompt === 'function');
  if (promptSources.length > 0) {
    fns.prompts = { get: (args, ctx) => getPrompt(execution, promptSources, args[0], args[1], ctx) };
  }
  return fns;
}

async function callTool(
  execution: Execution,
  label: string,
  entry: CatalogEntry,
  rawArgs: unknown,
  ctx: HostCallContext,
  timeoutMs: number | undefined,
): Promise<unknown> {
  execution.admit(label);
  if (!isPlainArgs(rawArgs)) {
    execution.record({ tool: label, ok: false, ms: 0, reason: 'invalid_arguments' });
    throw new ToolError(`${label}: arguments must be an object, got ${Array.isArray(rawArgs) ? 'an array' : rawArgs === null ? 'null' : typeof rawArgs}.`, { tool: label });
  }
  const args = rawArgs ?? {};
  const { spanName, attributes: base } = callSpanInfo(entry);
  // The session id can change (a reconnect); the rest is fixed per entry and built once.
  const sessionId = entry.source.sessionId;
  const attributes = sessionId ? { ...base, [ATTR.MCP_SESSION_ID]: sessionId } : base;
  const local = entry.source.local === true;
  try {
    const output = await execution.run(
      label,
      spanName,
      attributes,
      ctx,
      async (meta) => {
        const output = await entry.source.callTool(entry.tool.name, args, timeoutMs !== undefined ? { signal: ctx.signal, meta, timeoutMs } : { signal: ctx.signal, meta });
        // A handler's value (a Map, a BigInt, a cycle) that cannot cross into the sandbox fails the call here,
        // so the guest gets a ToolError and the record says failed, not a bare Error after an "ok" call.
        if ('value' in output) assertCopyable(label, output.value);
        return output;
      },
      (out) => !('mcp' in out && out.mcp.isError === true),
    );
    if ('value' in output) return output.value;
    if (output.mcp.isError === true) throw toolErrorFromResult(label, output.mcp);
    return shapeToolResult(output.mcp);
  } catch (err) {
    if (err instanceof ToolError) throw err;
    if (ctx.signal.aborted) throw new ToolError(`${label}: cancelled because the execution ended.`, { tool: label }, { cause: err });
    log.debug('tool call failed', { tool: label, error: err instanceof Error ? err.message : String(err) });
    throw toolErrorFromFailure(label, entry.namespace, err, local);
  }
}

function assertCopyable(label: string, value: unknown): void {
  try {
    assertHostResultCopyable(value);
  } catch (err) {
    throw new ToolError(`${label}: its result cannot be copied into the sandbox: ${err instanceof Error ? err.message : String(err)}`, { tool: label }, { cause: err });
  }
}

const spanInfoCache = new WeakMap<CatalogEntry, { spanName: string; attributes: Readonly<Record<string, string>> }>();

/** The CLIENT span's name and fixed attributes for calls to one catalog entry, built once per entry. */
function callSpanInfo(entry: CatalogEntry): { spanName: string; attributes: Readonly<Record<string, string>> } {
  let info = spanInfoCache.get(entry);
  if (info === undefined) {
    const attributes: Record<string, string> = { [ATTR.MCP_METHOD]: 'tools/call', [ATTR.TOOL_NAME]: entry.tool.name };
    if (entry.source.transport) attributes[ATTR.NETWORK_TRANSPORT] = entry.source.transport;
    info = { spanName: `tools/call ${entry.tool.name}`, attributes: Object.freeze(attributes) };
    spanInfoCache.set(entry, info);
  }
  return info;
}
