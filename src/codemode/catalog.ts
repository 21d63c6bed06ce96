/**
 * The tool catalog: every source's tools under deterministic identifiers, with the lookups the sandbox
 * API and discovery need. Built once per `CodeMode` (and again on `refresh()`).
 *
 * @module
 */

import { CodemodeError } from '../errors.js';
import { boundTool } from './catalog-limits.js';
import type { CatalogWarning } from './catalog-limits.js';
import { toIdentifier } from './naming.js';
import { capText, MAX_ECHO_CHARS } from './text-caps.js';
import type { ToolDefinition, ToolSource } from './types.js';

/** One tool in the catalog. */
export interface CatalogEntry {
  readonly source: ToolSource;
  /** The source's name, as given. */
  readonly namespace: string;
  /** The namespace's identifier in `tools.<ns>`. */
  readonly namespaceId: string;
  /** The tool's identifier in `tools.<ns>.<tool>`. */
  readonly toolId: string;
  /** `namespace.tool` with the original names: what records, spans and errors show. */
  readonly qualifiedName: string;
  /** `namespaceId.toolId`: the path under `tools`. */
  readonly path: string;
  readonly tool: ToolDefinition;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks one listed tool and drops malformed optional fields, so a sloppy source cannot break the
 * declarations, search or the execute description.
 */
function normalizeTool(source: string, raw: unknown): ToolDefinition {
  if (!isObject(raw) || typeof raw.name !== 'string' || raw.name === '') {
    throw new CodemodeError('UPSTREAM_PROTOCOL', `Source "${source}" listed a tool without a name. Every tool needs a non-empty string name.`);
  }
  const tool: ToolDefinition = {
    name: raw.name,
    inputSchema: isObject(raw.inputSchema) ? raw.inputSchema : { type: 'object' },
  };
  if (typeof raw.title === 'string') tool.title = raw.title;
  if (typeof raw.description === 'string') tool.description = raw.description;
  if (isObject(raw.outputSchema)) tool.outputSchema = raw.outputSchema;
  if (isObject(raw.annotations)) tool.annotations = raw.annotations;
  return tool;
}

/** Result of resolving a name passed to `callTool`. */
export type Resolution = { entry: CatalogEntry } | { error: string };

export class Catalog {
  readonly entries: readonly CatalogEntry[];
  readonly sources: readonly ToolSource[];
  /**
   * What was trimmed or left out as the catalog loaded (oversized descriptions, titles and schemas, tools
   * with unusable names), in source order. Empty for a well-behaved catalog.
   */
  readonly warnings: readonly CatalogWarning[];
  /** The longest accepted spelling of any tool name: a longer name matches nothing, without a lookup. */
  readonly maxNameChars: number;
  /** Every accepted spelling of a tool name; `null` marks a spelling that is ambiguous. */
  private readonly aliases = new Map<string, CatalogEntry | null>();
  private readonly byQualified = new Map<string, CatalogEntry>();

  private constructor(sources: readonly ToolSource[], entries: CatalogEntry[], warnings: CatalogWarning[]) {
    this.sources = sources;
    this.entries = entries;
    this.warnings = warnings;
    let longest = 0;
    for (const e of entries) longest = Math.max(longest, e.qualifiedName.length, e.path.length);
    this.maxNameChars = longest;
    for (const entry of entries) {
      this.byQualified.set(entry.qualifiedName, entry);
      // Exact qualified spellings win over everything, so they are set unconditionally.
      this.aliases.set(entry.qualifiedName, entry);
      this.aliases.set(entry.path, entry);
    }
    for (const entry of entries) {
      for (const alias of [entry.tool.name, entry.toolId]) {
        if (this.byQualified.has(alias)) continue;
        const seen = this.aliases.get(alias);
        if (seen === undefined) this.aliases.set(alias, entry);
        else if (seen !== entry) this.aliases.set(alias, null);
      }
    }
  }

  /**
   * Lists every source's tools and checks that identifiers are unique.
   *
   * @throws CodemodeError `TOOL_NAME_COLLISION` when two namespaces or two tools of one namespace map to
   * the same identifier; `INVALID_CONFIG` when a source has no name or two sources share one.
   */
  static async load(sources: readonly ToolSource[], signal?: AbortSignal): Promise<Catalog> {
    const namespaces = new Map<string, string>();
    for (const source of sources) {
      if (typeof source.name !== 'string' || source.name === '') {
        throw new CodemodeError('INVALID_CONFIG', 'Every tool source needs a non-empty name: it becomes the namespace in tools.<name>.');
      }
      const id = toIdentifier(source.name);
      const other = namespaces.get(id);
      if (other !== undefined) {
        throw new CodemodeError(
          'TOOL_NAME_COLLISION',
          other === source.name
            ? `Two tool sources are both named "${source.name}". Give each source a distinct name.`
            : `Tool sources "${other}" and "${source.name}" both become the namespace identifier "${id}". Rename one of them.`,
        );
      }
      namespaces.set(id, source.name);
    }
    const lists = await Promise.all(
      sources.map(async (source) => {
        try {
          return await source.listTools({ signal });
        } catch (err) {
          throw new CodemodeError('UPSTREAM_UNAVAILABLE', `Listing the tools of "${source.name}" failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
      }),
    );
    const entries: CatalogEntry[] = [];
    const warnings: CatalogWarning[] = [];
    sources.forEach((source, i) => {
      const namespaceId = toIdentifier(source.name);
      const ids = new Map<string, string>();
      const list = lists[i];
      if (!Array.isArray(list)) {
        throw new CodemodeError('UPSTREAM_PROTOCOL', `Source "${source.name}" listed its tools as ${typeof list}, not an array.`);
      }
      for (const raw of list) {
        const tool = boundTool(source.name, normalizeTool(source.name, raw), warnings);
        if (tool === undefined) continue;
        const toolId = toIdentifier(tool.name);
        const other = ids.get(toolId);
        if (other !== undefined) {
          throw new CodemodeError(
            'TOOL_NAME_COLLISION',
            other === tool.name
              ? `Source "${source.name}" lists the tool "${tool.name}" twice. Tool names must be unique within a source.`
              : `Tools "${other}" and "${tool.name}" of source "${source.name}" both become the identifier tools.${namespaceId}.${toolId}. Rename or hide one of them.`,
          );
        }
        ids.set(toolId, tool.name);
        entries.push({
          source,
          namespace: source.name,
          namespaceId,
          toolId,
          qualifiedName: `${source.name}.${tool.name}`,
          path: `${namespaceId}.${toolId}`,
          tool,
        });
      }
    });
    // Names may contain dots, so "a" + "b.c" and "a.b" + "c" are both "a.b.c": callTool, records and spans
    // could not tell them apart. Same for a qualified name that spells another tool's tools-path.
    const spellings = new Map<string, CatalogEntry>();
    for (const entry of entries) {
      for (const spelling of new Set([entry.qualifiedName, entry.path])) {
        const other = spellings.get(spelling);
        if (other !== undefined && other !== entry) {
          throw new CodemodeError(
            'TOOL_NAME_COLLISION',
            `Tool "${entry.tool.name}" of source "${entry.namespace}" and tool "${other.tool.name}" of source "${other.namespace}" are both called "${spelling}". ` +
              'Rename a source (or hide one of the tools) so that every "source.tool" name is distinct.',
          );
        }
        spellings.set(spelling, entry);
      }
    }
    return new Catalog(sources, entries, warnings);
  }

  /**
   * Finds a tool by `namespace.tool` (upstream names or identifiers), or by a bare tool name when only one
   * source has it.
   */
  resolve(name: string): Resolution {
    if (name.length > this.maxNameChars) return { error: `Unknown tool "${capText(name, MAX_ECHO_CHARS)}": no tool has a name that long.` };
    const hit = this.aliases.get(name);
    if (hit) return { entry: hit };
    if (hit === null) {
      const options = this.entries.filter((e) => e.tool.name === name || e.toolId === name).map((e) => `"${e.qualifiedName}"`);
      return { error: `Tool name "${name}" is ambiguous: it exists in several sources. Use one of ${options.join(', ')}.` };
    }
    const last = name.toLowerCase().split('.').pop() ?? name.toLowerCase();
    const near = this.entries
      .filter((e) => e.qualifiedName.toLowerCase().includes(last))
      .slice(0, 3)
      .map((e) => `"${e.qualifiedName}"`);
    return {
      error:
        `Unknown tool "${name}".${near.length > 0 ? ` Did you mean ${near.join(', ')}?` : ''} ` +
        'Use the names of the tool declarations ("namespace.tool", or tools.<namespace>.<tool>); the discovery tools outside this code find more.',
    };
  }

  /** Looks up tools by qualified name, path or unambiguous bare name; names that match nothing are returned too. */
  lookup(names: readonly string[]): { found: CatalogEntry[]; notFound: string[] } {
    const found: CatalogEntry[] = [];
    const notFound: string[] = [];
    for (const name of names) {
      if (name.length > this.maxNameChars) {
        notFound.push(capText(name, MAX_ECHO_CHARS));
        continue;
      }
      const hit = this.aliases.get(name);
      if (hit) {
        if (!found.includes(hit)) found.push(hit);
      } else if (hit === null) {
        for (const e of this.entries) if ((e.tool.name === name || e.toolId === name) && !found.includes(e)) found.push(e);
      } else notFound.push(name);
    }
    return { found, notFound };
  }
}
