/**
 * Size caps on what an upstream lists, applied once as the catalog loads, so every later step (search
 * indexing, declarations, the execute description, discovery answers) works on bounded text.
 *
 * An upstream server is a tenant too: one tool with a 512 KB description kept `codemode serve --http`
 * busy for more than 15 s before it listened. A tool over a cap is trimmed (its text cut with a marker, an
 * oversized schema replaced by a permissive one) or, when its name is unusable, left out; each case becomes
 * a `CatalogWarning` the server can report.
 *
 * @module
 */

import { capText } from './text-caps.js';
import type { JsonSchema, ToolDefinition } from './types.js';

/** A tool description longer than this is cut, with a marker. Real ones are a few KB at most. */
export const MAX_TOOL_DESCRIPTION_CHARS = 10_000;
/** A tool title longer than this is cut. */
export const MAX_TOOL_TITLE_CHARS = 200;
/** A tool whose name is longer than this is left out: it cannot be cut, it is what the upstream is called with. */
export const MAX_TOOL_NAME_CHARS = 512;
/** A string inside a schema (a description, a title, an enum value...) longer than this is cut. */
export const MAX_SCHEMA_STRING_CHARS = 2_000;
/** A schema with more nodes (objects, arrays and values) than this is replaced by a permissive one. */
export const MAX_SCHEMA_NODES = 20_000;
/** A schema whose keys and strings (after cutting) total more characters than this is replaced. */
export const MAX_SCHEMA_CHARS = 200_000;
/** A schema nested deeper than this is replaced. */
export const MAX_SCHEMA_DEPTH = 64;

/** Something the catalog trimmed or left out when it loaded, for the server to report as a source's status. */
export interface CatalogWarning {
  /** The source's name (its namespace). */
  source: string;
  /** The tool's name as listed (capped), when the warning is about one tool. */
  tool?: string;
  /** What was done: `description_truncated`, `title_truncated`, `schema_trimmed`, `schema_replaced`, `tool_dropped`. */
  kind: 'description_truncated' | 'title_truncated' | 'schema_trimmed' | 'schema_replaced' | 'tool_dropped';
  /** A sentence saying what happened and why. */
  message: string;
}

class TooLarge extends Error {}

interface Budget {
  nodes: number;
  chars: number;
  cut: number;
}

/**
 * The schema with long strings cut, or `undefined` when it is too large or too deep to keep. Costs
 * O(MAX_SCHEMA_NODES) whatever the input: the walk stops at the first budget it exceeds. A schema with
 * nothing to cut is returned as is (50,000 tools are not copied).
 */
function boundedSchema(schema: JsonSchema): { schema: JsonSchema; cut: number } | undefined {
  const budget: Budget = { nodes: MAX_SCHEMA_NODES, chars: MAX_SCHEMA_CHARS, cut: 0 };
  // One walk measures (copy: false) and, only when some string is cut, a second one copies.
  const walk = (value: unknown, depth: number, copy: boolean): unknown => {
    if (--budget.nodes < 0 || depth > MAX_SCHEMA_DEPTH) throw new TooLarge();
    if (typeof value === 'string') {
      const text = value.length > MAX_SCHEMA_STRING_CHARS ? capText(value, MAX_SCHEMA_STRING_CHARS) : value;
      if (text !== value) budget.cut++;
      if ((budget.chars -= text.length) < 0) throw new TooLarge();
      return text;
    }
    if (typeof value !== 'object' || value === null) return value;
    if (Array.isArray(value)) {
      const out: unknown[] = [];
      for (let i = 0; i < value.length; i++) {
        const item = walk(value[i], depth + 1, copy);
        if (copy) out.push(item);
      }
      return out;
    }
    const out: Record<string, unknown> = {};
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue;
      if ((budget.chars -= key.length) < 0) throw new TooLarge();
      const item = walk((value as Record<string, unknown>)[key], depth + 1, copy);
      // defineProperty, not assignment: a "__proto__" key must stay an own key.
      if (copy) Object.defineProperty(out, key, { value: item, enumerable: true, writable: true, configurable: true });
    }
    return out;
  };
  try {
    walk(schema, 0, false);
    const cut = budget.cut;
    if (cut === 0) return { schema, cut };
    Object.assign(budget, { nodes: MAX_SCHEMA_NODES, chars: MAX_SCHEMA_CHARS, cut: 0 });
    return { schema: walk(schema, 0, true) as JsonSchema, cut };
  } catch (err) {
    // RangeError: a structure deep enough to overflow the stack before the depth check (a local tool's object).
    if (err instanceof TooLarge || err instanceof RangeError) return undefined;
    throw err;
  }
}

/**
 * The tool with its text and schemas within the caps, plus what was trimmed; `undefined` when the tool is
 * left out (its name is over `MAX_TOOL_NAME_CHARS`).
 */
export function boundTool(source: string, tool: ToolDefinition, warnings: CatalogWarning[]): ToolDefinition | undefined {
  const shown = capText(tool.name, 100);
  if (tool.name.length > MAX_TOOL_NAME_CHARS) {
    warnings.push({
      source,
      tool: shown,
      kind: 'tool_dropped',
      message: `Tool "${shown}" of "${source}" was left out: its name is ${tool.name.length} characters long, over the ${MAX_TOOL_NAME_CHARS} accepted.`,
    });
    return undefined;
  }
  const out: ToolDefinition = { ...tool };
  if (tool.description !== undefined && tool.description.length > MAX_TOOL_DESCRIPTION_CHARS) {
    out.description = capText(tool.description, MAX_TOOL_DESCRIPTION_CHARS);
    warnings.push({
      source,
      tool: shown,
      kind: 'description_truncated',
      message: `The description of "${shown}" of "${source}" is ${tool.description.length} characters long; only the first ${MAX_TOOL_DESCRIPTION_CHARS} are kept.`,
    });
  }
  if (tool.title !== undefined && tool.title.length > MAX_TOOL_TITLE_CHARS) {
    out.title = capText(tool.title, MAX_TOOL_TITLE_CHARS);
    warnings.push({ source, tool: shown, kind: 'title_truncated', message: `The title of "${shown}" of "${source}" was cut to ${MAX_TOOL_TITLE_CHARS} characters.` });
  }
  for (const field of ['inputSchema', 'outputSchema'] as const) {
    const schema = tool[field];
    if (schema === undefined) continue;
    const bounded = boundedSchema(schema);
    if (bounded === undefined) {
      // A permissive schema keeps the tool callable; the upstream still validates what it receives.
      if (field === 'inputSchema') out.inputSchema = { type: 'object' };
      else delete out.outputSchema;
      warnings.push({
        source,
        tool: shown,
        kind: 'schema_replaced',
        message:
          `The ${field} of "${shown}" of "${source}" is too large (over ${MAX_SCHEMA_NODES} nodes, ${MAX_SCHEMA_CHARS} characters or ` +
          `${MAX_SCHEMA_DEPTH} levels) and was replaced by ${field === 'inputSchema' ? 'a permissive object schema' : 'none'}.`,
      });
      continue;
    }
    out[field] = bounded.schema;
    if (bounded.cut > 0) {
      warnings.push({
        source,
        tool: shown,
        kind: 'schema_trimmed',
        message: `${bounded.cut} string${bounded.cut === 1 ? '' : 's'} in the ${field} of "${shown}" of "${source}" ${bounded.cut === 1 ? 'was' : 'were'} cut to ${MAX_SCHEMA_STRING_CHARS} characters.`,
      });
    }
  }
  return out;
}
