/**
 * Tool discovery: BM25 ranking over tool names, titles, descriptions and parameter names, with three
 * levels of detail so a model can skim first and read schemas only for the tools it picks.
 *
 * @module
 */

import type { CatalogEntry } from './catalog.js';
import { toolDeclaration } from './declarations.js';
import { schemaToTs } from './schema-to-ts.js';
import type { JsonSchema } from './types.js';

/** How much a search hit tells: a line, the parameters, or the full declaration and schemas. */
export type SearchDetail = 'brief' | 'detailed' | 'full';

export const DEFAULT_SEARCH_LIMIT = 10;
/** Upper bound on `limit`, so one search cannot dump an enormous catalog into a context window. */
export const MAX_SEARCH_LIMIT = 100;
/** Upper bound on the names one `get_schema` asks for, like `MAX_SEARCH_LIMIT`. */
export const MAX_SCHEMA_NAMES = 100;

export interface SearchOptions {
  detail?: SearchDetail;
  /** At most this many hits (default 10, max 100). */
  limit?: number;
}

export interface ParameterSummary {
  name: string;
  type: string;
  required: boolean;
  description?: string;
}

/** One search hit. Fields beyond `brief` appear at higher detail levels. */
export interface ToolSummary {
  /** `namespace.tool`, as `callTool` accepts it. */
  name: string;
  /** How to call it: `tools.<ns>.<tool>`. */
  call: string;
  /** First sentence of the description (brief), or all of it (detailed, full). */
  description: string;
  score: number;
  /** detailed, full */
  parameters?: ParameterSummary[];
  /** full: the TypeScript declaration of the method. */
  declaration?: string;
  /** full */
  inputSchema?: JsonSchema;
  /** full */
  outputSchema?: JsonSchema;
}

const K1 = 1.2;
const B = 0.75;

/** Words too common to rank by; in a small catalog BM25's IDF alone does not silence them. */
const STOPWORDS = new Set([
  'a', 'an', 'the', 'of', 'in', 'on', 'to', 'for', 'and', 'or', 'with', 'by', 'from', 'at', 'as', 'is', 'are',
  'be', 'it', 'its', 'this', 'that', 'i', 'me', 'my', 'we', 'you', 'your', 'can', 'do', 'how', 'what', 'which',
]);

/**
 * Lowercase word tokens without stopwords; splits camelCase, snake_case, kebab-case and dotted names.
 * Every regex here is linear: `([A-Z]+)([A-Z][a-z])` backtracked over runs of capitals, and a 64 KB
 * description of "ABAB..." held the main thread for 9 s while the catalog was indexed.
 */
export function tokenize(text: string): string[] {
  return text
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z])(?=[A-Z][a-z])/g, '$1 ')
    .toLowerCase()
    .split(/[^\p{L}\p{M}\p{N}]+/u)
    .filter((t) => t.length > 0 && !STOPWORDS.has(t))
    .map(stem);
}

/**
 * Query terms used for ranking; the rest of a longer query is ignored. Each term that matches no token exactly
 * costs a scan of every tool's tokens, so an unbounded query could hold the host for seconds.
 */
const MAX_QUERY_TERMS = 32;
/**
 * Characters of a query read at all: 32 words fit easily. The rest is cut before tokenizing, which took
 * 2.3 s of the main thread for a 3.9 MB query.
 */
export const MAX_QUERY_CHARS = 2_000;

/** A query term that matches no token exactly may match token prefixes ("repo" in "repository"), at this weight. */
const PREFIX_WEIGHT = 0.5;
const MIN_PREFIX_LENGTH = 3;

/** A light plural/verb-suffix stemmer: enough to match "files" with "file" and "listing" with "list". */
function stem(token: string): string {
  if (token.length > 4 && token.endsWith('ies')) return `${token.slice(0, -3)}y`;
  if (token.length > 5 && token.endsWith('ing')) return token.slice(0, -3);
  if (token.length > 3 && token.endsWith('es') && /(ss|x|ch|sh)es$/.test(token)) return token.slice(0, -2);
  if (token.length > 3 && token.endsWith('s') && !token.endsWith('ss')) return token.slice(0, -1);
  return token;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function properties(schema: JsonSchema): Array<[string, unknown]> {
  return isObject(schema.properties) ? Object.entries(schema.properties) : [];
}

/** Field weights, applied by repeating tokens (a simple BM25F). */
function documentTokens(entry: CatalogEntry): string[] {
  const { tool } = entry;
  const tokens: string[] = [];
  const add = (text: string | undefined, weight: number) => {
    if (!text) return;
    const words = tokenize(text);
    for (let i = 0; i < weight; i++) tokens.push(...words);
  };
  add(tool.name, 3);
  add(entry.namespace, 1);
  add(tool.title, 2);
  add(tool.description, 1);
  for (const [name, sub] of properties(tool.inputSchema)) {
    add(name, 2);
    if (isObject(sub) && typeof sub.description === 'string') add(sub.description, 1);
  }
  return tokens;
}

function firstSentence(text: string): string {
  const trimmed = text.trim();
  const match = /^[\s\S]*?[.!?](?=\s|$)/.exec(trimmed);
  let sentence = (match ? match[0] : trimmed).split('\n')[0]!.trim();
  if (sentence.length > 160) sentence = `${sentence.slice(0, 157)}...`;
  return sentence;
}

export function parameterSummaries(schema: JsonSchema): ParameterSummary[] {
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  return properties(schema).map(([name, sub]) => {
    const summary: ParameterSummary = { name, type: schemaToTs(sub, { maxDepth: 2 }).replace(/\s+/g, ' '), required: required.has(name) };
    if (isObject(sub) && typeof sub.description === 'string') summary.description = sub.description;
    return summary;
  });
}

/** Summarizes one entry at a detail level. */
export function summarize(entry: CatalogEntry, detail: SearchDetail, score = 0): ToolSummary {
  const description = entry.tool.description ?? entry.tool.title ?? '';
  const summary: ToolSummary = {
    name: entry.qualifiedName,
    call: `tools.${entry.path}`,
    description: detail === 'brief' ? firstSentence(description) : description,
    score: Math.round(score * 1000) / 1000,
  };
  if (detail !== 'brief') summary.parameters = parameterSummaries(entry.tool.inputSchema);
  if (detail === 'full') {
    summary.declaration = toolDeclaration(entry, '');
    summary.inputSchema = entry.tool.inputSchema;
    if (entry.tool.outputSchema !== undefined) summary.outputSchema = entry.tool.outputSchema;
  }
  return summary;
}

/** A BM25 index over a catalog's entries. */
export class SearchIndex {
  private readonly docs: Array<{ entry: CatalogEntry; tf: Map<string, number>; length: number }>;
  private readonly df = new Map<string, number>();
  private readonly avgLength: number;

  constructor(entries: readonly CatalogEntry[]) {
    this.docs = entries.map((entry) => {
      const tokens = documentTokens(entry);
      const tf = new Map<string, number>();
      for (const t of tokens) tf.set(t, (tf.get(t) ?? 0) + 1);
      for (const t of tf.keys()) this.df.set(t, (this.df.get(t) ?? 0) + 1);
      return { entry, tf, length: tokens.length };
    });
    this.avgLength = this.docs.reduce((sum, d) => sum + d.length, 0) / Math.max(1, this.docs.length);
  }

  /** How many documents have a token starting with `term` (once per term and query). */
  private prefixDf(term: string): number {
    let df = 0;
    for (const d of this.docs) {
      for (const token of d.tf.keys()) {
        if (token.startsWith(term)) {
          df++;
          break;
        }
      }
    }
    return df;
  }

  /**
   * Ranks tools for a query. An empty query lists tools in catalog order; a query with no words to rank by
   * (only stopwords or punctuation) matches nothing unless it names a tool. A query naming a tool exactly
   * (`ns.tool` or `tool`) ranks it first. Only the first 32 distinct words of the first 2,000 characters count.
   */
  search(query: string, options: SearchOptions = {}): ToolSummary[] {
    const detail = options.detail ?? 'brief';
    const limit = Math.max(1, Math.min(MAX_SEARCH_LIMIT, Math.floor(options.limit ?? DEFAULT_SEARCH_LIMIT)));
    const read = query.length > MAX_QUERY_CHARS ? query.slice(0, MAX_QUERY_CHARS) : query;
    const q = read.trim().toLowerCase();
    if (q === '') return this.docs.slice(0, limit).map((d) => summarize(d.entry, detail));
    const terms = [...new Set(tokenize(read))].slice(0, MAX_QUERY_TERMS);
    const n = this.docs.length;
    // Terms that match no token exactly rank by prefix; their document frequency is computed once per query.
    const prefixDf = new Map<string, number>();
    for (const term of terms) if (!this.df.has(term) && term.length >= MIN_PREFIX_LENGTH) prefixDf.set(term, this.prefixDf(term));
    const scored = this.docs.map((doc) => {
      let score = 0;
      for (const term of terms) {
        let f = doc.tf.get(term) ?? 0;
        let df = this.df.get(term) ?? 0;
        if (df === 0) {
          const pdf = prefixDf.get(term);
          if (pdf === undefined || pdf === 0) continue;
          df = pdf;
          f = 0;
          for (const [token, count] of doc.tf) if (token.startsWith(term)) f += count * PREFIX_WEIGHT;
        }
        if (f === 0) continue;
        const idf = Math.log(1 + (n - df + 0.5) / (df + 0.5));
        score += (idf * f * (K1 + 1)) / (f + K1 * (1 - B + (B * doc.length) / (this.avgLength || 1)));
      }
      const { tool } = doc.entry;
      if (q === tool.name.toLowerCase() || q === doc.entry.qualifiedName.toLowerCase() || q === doc.entry.path.toLowerCase()) score += 100;
      return { doc, score };
    });
    return scored
      .filter((s) => s.score > 0)
      .sort((a, b) => b.score - a.score)
      .slice(0, limit)
      .map((s) => summarize(s.doc.entry, detail, s.score));
  }
}
