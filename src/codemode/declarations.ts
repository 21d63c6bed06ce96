/**
 * TypeScript declarations of the in-sandbox API, generated from the catalog. This is what a model reads
 * to learn the tools, so it is compact, documented, and always valid under `tsc --strict`.
 *
 * @module
 */

import type { CatalogEntry } from './catalog.js';
import { docText, hasNoRequired, jsDoc, schemaToTs } from './schema-to-ts.js';
import { propertyKey } from './naming.js';

export interface DeclarationOptions {
  /** Include the preamble (ToolError, callTool, resources, prompts). */
  preamble?: boolean;
  /** Whether some source serves resources / prompts (declares `resources.read` / `prompts.get`). */
  resources?: boolean;
  prompts?: boolean;
  /** Cap on a tool description's length in the JSDoc (characters). */
  maxDescriptionChars?: number;
}

const DEFAULT_MAX_DESCRIPTION_CHARS = 2_000;

/** The API every execution has, independent of the catalog. */
export function preambleDeclarations(options: { resources?: boolean; prompts?: boolean } = {}): string {
  let out = `/** Thrown by a tool call that failed: the tool answered with isError, or its server could not be reached. */
declare class ToolError extends Error {
  /** The tool, as "namespace.tool". */
  readonly tool: string;
  /** The tool's structured error payload, when it sent one. */
  readonly structuredContent?: unknown;
  /** The tool's content blocks, when it sent any. */
  readonly content?: unknown[];
}
/** Thrown by a tool call past the per-execution limit; the call did not reach the tool. */
declare class ToolCallLimitError extends Error {
  /** The limit of tool calls per execution. */
  readonly limit: number;
}
/**
 * Calls a tool by name ("namespace.tool", or a bare tool name when only one namespace has it).
 * Returns structuredContent when the tool sends it, the text of a single text block, or else the content array.
 */
declare function callTool(name: string, args?: Record<string, unknown>): Promise<unknown>;
`;
  if (options.resources) {
    out += `declare const resources: {
  /** Reads a resource. \`server\` picks the namespace when several serve resources. */
  read(uri: string, server?: string): Promise<Array<{ uri: string; mimeType?: string; text?: string; blob?: string }>>;
};
`;
  }
  if (options.prompts) {
    out += `declare const prompts: {
  /** Gets a prompt ("namespace.prompt", or a bare name). */
  get(name: string, args?: Record<string, string>): Promise<{ description?: string; messages: Array<{ role: string; content: unknown }> }>;
};
`;
  }
  return out;
}

function toolDocLines(entry: CatalogEntry, maxChars: number): string[] {
  const lines: string[] = [];
  const { tool } = entry;
  let description = (tool.description ?? '').trim();
  if (description.length > maxChars) description = `${description.slice(0, maxChars)}… (truncated)`;
  if (tool.title !== undefined && tool.title !== '' && tool.title !== tool.name && !description.startsWith(tool.title)) {
    lines.push(...docText(tool.title).split('\n'));
  }
  if (description !== '') lines.push(...docText(description).split('\n'));
  if (entry.toolId !== tool.name) lines.push(`Upstream name: ${docText(entry.qualifiedName)}`);
  const annotations = tool.annotations ?? {};
  if (annotations.readOnlyHint === true) lines.push('Read-only: does not modify anything.');
  else if (annotations.destructiveHint === true) lines.push('Destructive: may modify or delete data.');
  return lines;
}

/** The declaration of one tool method, indented for its namespace. */
export function toolDeclaration(entry: CatalogEntry, indent = '    ', maxChars = DEFAULT_MAX_DESCRIPTION_CHARS): string {
  const args = schemaToTs(entry.tool.inputSchema, { indent });
  const optional = hasNoRequired(entry.tool.inputSchema) ? '?' : '';
  const output = entry.tool.outputSchema !== undefined ? schemaToTs(entry.tool.outputSchema, { indent }) : 'unknown';
  return `${jsDoc(toolDocLines(entry, maxChars), indent)}${indent}${propertyKey(entry.toolId)}(args${optional}: ${args}): Promise<${output}>;\n`;
}

/**
 * Declarations of `tools.<ns>.<tool>` for the given entries, grouped by namespace, optionally with the
 * preamble.
 */
export function generateDeclarations(entries: readonly CatalogEntry[], options: DeclarationOptions = {}): string {
  const maxChars = options.maxDescriptionChars ?? DEFAULT_MAX_DESCRIPTION_CHARS;
  const groups = new Map<string, CatalogEntry[]>();
  for (const entry of entries) {
    const list = groups.get(entry.namespaceId);
    if (list) list.push(entry);
    else groups.set(entry.namespaceId, [entry]);
  }
  let out = options.preamble === false ? '' : preambleDeclarations(options);
  out += 'declare const tools: {\n';
  for (const [namespaceId, list] of groups) {
    const namespace = list[0]!.namespace;
    out += `  /** Tools of "${docText(namespace)}". */\n  ${propertyKey(namespaceId)}: {\n`;
    for (const entry of list) out += toolDeclaration(entry, '    ', maxChars);
    out += '  };\n';
  }
  out += '};\n';
  return out;
}
