/**
 * `resources.read(uri, server?)` and `prompts.get(name, args)` inside the sandbox: each picks the sources
 * that serve it and asks them in turn, every request counting toward the execution's tool-call cap.
 *
 * @module
 */

import type { HostCallContext } from '../sandbox/types.js';
import { ATTR } from '../telemetry/index.js';
import { isPlainArgs } from './execution.js';
import type { Execution } from './execution.js';
import { capString, MAX_ERROR_MESSAGE_CHARS, MAX_TOOL_LABEL_CHARS } from './text-caps.js';
import { ToolError, toolErrorFromFailure } from './tool-errors.js';
import type { ToolSource } from './types.js';

/** `resources.read(uri, server?)`: the resource's `contents` from the named source, or the first that has it. */
export async function readResource(execution: Execution, sources: ToolSource[], uri: unknown, server: unknown, ctx: HostCallContext): Promise<unknown> {
  const label = `resources/read ${capString(uri, MAX_TOOL_LABEL_CHARS)}`;
  execution.admit(label);
  if (typeof uri !== 'string' || uri === '') {
    execution.record({ tool: label, ok: false, ms: 0, reason: 'invalid_arguments' });
    throw new ToolError('resources.read(uri) needs the resource URI as a string.', { tool: label });
  }
  const candidates = pickSources(sources, server, 'resources.read', label, execution);
  const attributes = { [ATTR.MCP_METHOD]: 'resources/read', [ATTR.MCP_RESOURCE_URI]: capString(uri, MAX_TOOL_LABEL_CHARS) };
  const result = await askInTurn(execution, label, candidates, ctx, 'resources/read', attributes, (source, meta) =>
    source.readResource!(uri, { signal: ctx.signal, meta }),
  );
  return result.contents;
}

/** `prompts.get(name, args)`: "namespace.prompt" asks that source; a bare name asks every prompt source in turn. */
export async function getPrompt(execution: Execution, sources: ToolSource[], name: unknown, rawArgs: unknown, ctx: HostCallContext): Promise<unknown> {
  const label = `prompts/get ${capString(name, MAX_TOOL_LABEL_CHARS)}`;
  execution.admit(label);
  if (typeof name !== 'string' || name === '' || !isPlainArgs(rawArgs)) {
    execution.record({ tool: label, ok: false, ms: 0, reason: 'invalid_arguments' });
    throw new ToolError('prompts.get(name, args) needs the prompt name as a string and args as an object of strings.', { tool: label });
  }
  const args: Record<string, string> = {};
  for (const [k, v] of Object.entries(rawArgs ?? {})) args[k] = typeof v === 'string' ? v : JSON.stringify(v);
  // "namespace.prompt" routes to that namespace; a bare name goes to every prompt source in turn.
  let candidates = sources;
  let promptName = name;
  const dot = sources.find((s) => name.startsWith(`${s.name}.`));
  if (dot) {
    candidates = [dot];
    promptName = name.slice(dot.name.length + 1);
  }
  const shownName = capString(promptName, MAX_TOOL_LABEL_CHARS);
  const attributes = { [ATTR.MCP_METHOD]: 'prompts/get', [ATTR.GEN_AI_PROMPT_NAME]: shownName };
  return askInTurn(execution, label, candidates, ctx, `prompts/get ${shownName}`, attributes, (source, meta) =>
    source.getPrompt!(promptName, args, { signal: ctx.signal, meta }),
  );
}

/**
 * Asks each candidate source in turn until one answers. Every source asked after the first counts as one
 * more call toward `maxToolCalls` (each is a request upstream); if all fail, the error names each
 * source's own failure.
 */
async function askInTurn<T>(
  execution: Execution,
  label: string,
  candidates: readonly ToolSource[],
  ctx: HostCallContext,
  spanName: string,
  attributes: Readonly<Record<string, string>>,
  invoke: (source: ToolSource, meta: Record<string, unknown>) => Promise<T>,
): Promise<T> {
  const failures: { source: string; err: unknown }[] = [];
  for (const [i, source] of candidates.entries()) {
    if (i > 0) execution.admit(label);
    try {
      return await execution.run(label, spanName, attributes, ctx, (meta) => invoke(source, meta), () => true);
    } catch (err) {
      failures.push({ source: source.name, err });
      if (ctx.signal.aborted) break;
    }
  }
  const [only] = failures;
  if (failures.length === 1 && only !== undefined) throw toolErrorFromFailure(label, only.source, only.err, false);
  const each = failures.map(({ source, err }) => `"${source}": ${capString(err instanceof Error ? err.message || err.name : err, MAX_ERROR_MESSAGE_CHARS / 8)}`);
  throw new ToolError(`${label}: no server could answer (asked ${failures.length}): ${each.join('; ')}`, { tool: label }, { cause: failures.at(-1)?.err });
}

function pickSources(sources: ToolSource[], server: unknown, api: string, label: string, execution: Execution): ToolSource[] {
  if (server === undefined || server === null) return sources;
  const match = sources.find((s) => s.name === server);
  if (!match) {
    execution.record({ tool: label, ok: false, ms: 0, reason: 'unknown_tool' });
    throw new ToolError(`${api}: no source named ${JSON.stringify(capString(server, MAX_TOOL_LABEL_CHARS))} serves this. Sources that do: ${sources.map((s) => `"${s.name}"`).join(', ')}.`, { tool: label });
  }
  return [match];
}
