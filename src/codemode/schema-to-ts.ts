/**
 * JSON Schema to TypeScript type text, for the declarations a model reads before writing code.
 *
 * The output must always compile under `tsc --strict`: anything this converter cannot express faithfully
 * (remote `$ref`, cycles, nesting past the depth cap, unknown keywords) degrades to `unknown`, never to
 * invalid syntax. Local `$ref`s are inlined, so a schema that reuses definitions could multiply out without
 * bound: past a size budget, further sub-schemas are `unknown` too.
 *
 * @module
 */

import { propertyKey } from './naming.js';

/** Nesting depth past which a sub-schema is rendered as `unknown`. */
export const DEFAULT_SCHEMA_MAX_DEPTH = 8;

/**
 * Sub-schemas converted per call before the rest become `unknown`. The three reference servers' largest
 * tool needs under 100; five levels of 20 properties that each `$ref` the next level would need 3.2 million
 * (3.8 MB of text before this budget).
 */
export const DEFAULT_SCHEMA_MAX_NODES = 2_000;

/** Characters of property documentation per call; past it, properties are declared without their JSDoc. */
const MAX_DOC_CHARS = 200_000;

/**
 * Characters of literal types and property names per call. A sub-schema is one node however long its enum or
 * property names are, and `$ref` repeats them: a 152 KB schema of one 1,000-value enum referenced 1,990 times
 * gave 98 MB. Past this, further sub-schemas are `unknown` and further properties an index signature.
 */
const MAX_TEXT_CHARS = 200_000;

export interface SchemaToTsOptions {
  /** Nesting depth past which sub-schemas become `unknown`. */
  maxDepth?: number;
  /** Sub-schemas converted before the rest become `unknown`. */
  maxNodes?: number;
  /** Indentation of the first line's nested members. */
  indent?: string;
}

interface Ctx {
  root: unknown;
  maxDepth: number;
  /** Sub-schemas that may still be converted. */
  nodesLeft: number;
  /** Property documentation that may still be written. */
  docCharsLeft: number;
  /** Literal types and property names that may still be written. */
  textCharsLeft: number;
  /** `$ref`s being expanded on the current path: seeing one again is a cycle. */
  refStack: string[];
}

type Schema = Record<string, unknown>;

function isObject(value: unknown): value is Schema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Resolves a local JSON pointer (`#/$defs/Foo`, `#/definitions/Foo`, `#`). */
function resolvePointer(root: unknown, ref: string): unknown {
  if (ref === '#') return root;
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    // A fragment is percent-encoded; a key such as "100%" that is not valid encoding is taken as written.
    let decoded = raw;
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      /* not percent-encoding */
    }
    const key = decoded.replace(/~1/g, '/').replace(/~0/g, '~');
    if (isObject(node)) node = node[key];
    else if (Array.isArray(node) && /^\d+$/.test(key)) node = node[Number(key)];
    else return undefined;
  }
  return node;
}

/** A JSON value as a TypeScript literal type. */
function literalType(value: unknown, depth = 0): string {
  if (value === null) return 'null';
  if (typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'number';
  if (depth > 4) return 'unknown';
  if (Array.isArray(value)) return `readonly [${value.map((v) => literalType(v, depth + 1)).join(', ')}]`;
  if (isObject(value)) {
    const members = Object.entries(value).map(([k, v]) => `${propertyKey(k)}: ${literalType(v, depth + 1)}`);
    return members.length === 0 ? 'Record<string, never>' : `{ ${members.join('; ')} }`;
  }
  return 'unknown';
}

/** True when `type` has a top-level `|`, `&` or `readonly`, so it needs parentheses as an array element. */
function needsParens(type: string): boolean {
  if (type.startsWith('readonly ')) return true;
  let depth = 0;
  for (let i = 0; i < type.length; i++) {
    const ch = type[i]!;
    if (ch === '"') {
      // Skip a string literal (property keys and literal types are JSON-quoted).
      for (i++; i < type.length && type[i] !== '"'; i++) if (type[i] === '\\') i++;
    } else if (ch === '/' && type[i + 1] === '*') {
      // Skip a JSDoc block: descriptions may hold any bracket or quote (docText escapes "*/" inside them).
      const end = type.indexOf('*/', i + 2);
      if (end < 0) return true;
      i = end + 1;
    } else if (ch === '(' || ch === '[' || ch === '{' || ch === '<') depth++;
    else if (ch === ')' || ch === ']' || ch === '}' || ch === '>') depth--;
    else if (depth === 0 && (ch === '|' || ch === '&')) return true;
  }
  return false;
}

/** Wraps a union or intersection so it can be used as an array element or union member. */
function group(type: string): string {
  return needsParens(type) ? `(${type})` : type;
}

function union(types: string[]): string {
  const unique = [...new Set(types)];
  if (unique.includes('unknown')) return 'unknown';
  const parts = unique.filter((t) => t !== 'never');
  if (parts.length === 0) return 'never';
  return parts.length === 1 ? parts[0]! : parts.map(group).join(' | ');
}

function intersection(types: string[]): string {
  const parts = [...new Set(types)].filter((t) => t !== 'unknown');
  if (parts.length === 0) return 'unknown';
  return parts.length === 1 ? parts[0]! : parts.map(group).join(' & ');
}

/** Escapes text for a JSDoc block: `*\/` would end the comment early. */
export function docText(text: string): string {
  return text.replace(/\*\//g, '*\\/').replace(/\r\n?/g, '\n');
}

/** JSDoc lines (without the comment markers) for a schema's description, format, default and so on. */
export function schemaDocLines(schema: unknown): string[] {
  if (!isObject(schema)) return [];
  const lines: string[] = [];
  const add = (text: string) => lines.push(...docText(text).split('\n'));
  if (typeof schema.title === 'string' && schema.title !== schema.description) add(schema.title);
  if (typeof schema.description === 'string' && schema.description.trim() !== '') add(schema.description.trim());
  const tags: string[] = [];
  if (typeof schema.format === 'string') tags.push(`@format ${schema.format}`);
  if (schema.default !== undefined) tags.push(`@default ${safeJson(schema.default)}`);
  for (const key of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minLength', 'maxLength', 'minItems', 'maxItems', 'pattern'] as const) {
    const v = schema[key];
    // zod's .int() writes the safe-integer range as bounds; @integer already says it, in 1 token, not 60.
    if (typeof v === 'number' && Math.abs(v) === Number.MAX_SAFE_INTEGER) continue;
    if (typeof v === 'number' || typeof v === 'string') tags.push(`@${key} ${typeof v === 'string' ? v : String(v)}`);
  }
  if (schema.type === 'integer') tags.push('@integer');
  if (Array.isArray(schema.examples) && schema.examples.length > 0) tags.push(`@example ${safeJson(schema.examples[0])}`);
  if (schema.deprecated === true) tags.push('@deprecated');
  for (const tag of tags) add(tag);
  return lines;
}

function safeJson(value: unknown): string {
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 200 ? `${text.slice(0, 200)}…` : text;
  } catch {
    return String(value);
  }
}

/** A JSDoc block at `indent`, or '' when there is nothing to say. */
export function jsDoc(lines: string[], indent: string): string {
  if (lines.length === 0) return '';
  if (lines.length === 1) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} *${l === '' ? '' : ` ${l}`}`).join('\n')}\n${indent} */\n`;
}

function convert(schema: unknown, ctx: Ctx, depth: number, indent: string): string {
  if (schema === true || schema === undefined) return 'unknown';
  if (schema === false) return 'never';
  if (!isObject(schema)) return 'unknown';
  if (depth > ctx.maxDepth) return 'unknown';
  if (ctx.nodesLeft <= 0 || ctx.textCharsLeft <= 0) return 'unknown';
  ctx.nodesLeft--;

  if (typeof schema.$ref === 'string') {
    const ref = schema.$ref;
    if (ctx.refStack.includes(ref)) return 'unknown';
    const target = resolvePointer(ctx.root, ref);
    if (target === undefined) return 'unknown';
    ctx.refStack.push(ref);
    try {
      const { $ref: _ignored, ...rest } = schema;
      const resolved = convert(target, ctx, depth + 1, indent);
      // Siblings of $ref (2019+) narrow the referenced schema.
      return Object.keys(rest).some((k) => TYPE_KEYWORDS.has(k)) ? intersection([resolved, convert(rest, ctx, depth, indent)]) : resolved;
    } finally {
      ctx.refStack.pop();
    }
  }

  let type: string;
  if ('const' in schema) type = chargeText(ctx, literalType(schema.const));
  else if (Array.isArray(schema.enum)) type = schema.enum.length === 0 ? 'never' : chargeText(ctx, enumType(schema.enum, ctx));
  else type = baseType(schema, ctx, depth, indent);

  const combos: string[] = [];
  for (const key of ['anyOf', 'oneOf'] as const) {
    const list = schema[key];
    if (Array.isArray(list) && list.length > 0) combos.push(union(list.map((s) => convert(s, ctx, depth + 1, indent))));
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length > 0) {
    combos.push(intersection(schema.allOf.map((s) => convert(s, ctx, depth + 1, indent))));
  }
  if (combos.length > 0) type = intersection([type, ...combos]);
  if (schema.nullable === true && type !== 'unknown') type = union([type, 'null']);
  return type;
}

/** Counts literal text against the budget; text past it becomes `unknown`. */
function chargeText(ctx: Ctx, text: string): string {
  if (text.length > ctx.textCharsLeft) {
    ctx.textCharsLeft = 0;
    return 'unknown';
  }
  ctx.textCharsLeft -= text.length;
  return text;
}

/** An enum's union, built only while it fits what is left of the budget. */
function enumType(values: unknown[], ctx: Ctx): string {
  const parts: string[] = [];
  let length = 0;
  for (const v of values) {
    const literal = literalType(v);
    length += literal.length + 3;
    if (length > ctx.textCharsLeft) return 'unknown';
    parts.push(literal);
  }
  return union(parts);
}

const TYPE_KEYWORDS = new Set(['type', 'properties', 'items', 'prefixItems', 'enum', 'const', 'anyOf', 'oneOf', 'allOf', 'additionalProperties']);

function baseType(schema: Schema, ctx: Ctx, depth: number, indent: string): string {
  const declared = schema.type;
  let types: string[];
  if (typeof declared === 'string') types = [declared];
  else if (Array.isArray(declared)) types = declared.filter((t): t is string => typeof t === 'string');
  else if (isObject(schema.properties) || schema.additionalProperties !== undefined || Array.isArray(schema.required)) types = ['object'];
  else if (schema.items !== undefined || schema.prefixItems !== undefined) types = ['array'];
  else return 'unknown';
  if (types.length === 0) return 'unknown';
  return union(types.map((t) => typeName(t, schema, ctx, depth, indent)));
}

function typeName(type: string, schema: Schema, ctx: Ctx, depth: number, indent: string): string {
  switch (type) {
    case 'string':
      return 'string';
    case 'number':
    case 'integer':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'null':
      return 'null';
    case 'array':
      return arrayType(schema, ctx, depth, indent);
    case 'object':
      return objectType(schema, ctx, depth, indent);
    default:
      return 'unknown';
  }
}

function arrayType(schema: Schema, ctx: Ctx, depth: number, indent: string): string {
  // 2020-12 tuples use prefixItems (+ items for the rest); draft-07 uses an items array (+ additionalItems).
  const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : Array.isArray(schema.items) ? schema.items : undefined;
  if (prefix !== undefined) {
    const rest = Array.isArray(schema.prefixItems) ? schema.items : schema.additionalItems;
    const minItems = typeof schema.minItems === 'number' ? schema.minItems : prefix.length;
    const elements = prefix.map((s, i) => `${convert(s, ctx, depth + 1, indent)}${i >= minItems ? '?' : ''}`);
    if (rest !== false) elements.push(`...${group(convert(rest, ctx, depth + 1, indent))}[]`);
    return `[${elements.join(', ')}]`;
  }
  const item = convert(schema.items, ctx, depth + 1, indent);
  return `${group(item)}[]`;
}

function objectType(schema: Schema, ctx: Ctx, depth: number, indent: string): string {
  const props = isObject(schema.properties) ? schema.properties : {};
  const required = new Set(Array.isArray(schema.required) ? schema.required.filter((r): r is string => typeof r === 'string') : []);
  const inner = `${indent}  `;
  let body = '';
  let cut = false;
  for (const [name, sub] of Object.entries(props)) {
    const key = propertyKey(name);
    if (key.length > ctx.textCharsLeft) {
      // Out of budget: the remaining properties are still allowed, as an index signature.
      ctx.textCharsLeft = 0;
      cut = true;
      break;
    }
    ctx.textCharsLeft -= key.length;
    if (ctx.docCharsLeft > 0) {
      const doc = jsDoc(schemaDocLines(sub), inner);
      ctx.docCharsLeft -= doc.length;
      body += doc;
    }
    body += `${inner}${key}${required.has(name) ? '' : '?'}: ${convert(sub, ctx, depth + 1, inner)};\n`;
  }
  if (cut) return `{\n${body}${inner}[key: string]: unknown;\n${indent}}`;
  const extra = schema.additionalProperties;
  const hasPatterns = isObject(schema.patternProperties) && Object.keys(schema.patternProperties).length > 0;
  const hasProps = Object.keys(props).length > 0;
  if (extra !== undefined && extra !== false) {
    // An index signature must admit every declared property's type, so with declared properties it is `unknown`.
    const valueType = hasProps || hasPatterns ? 'unknown' : convert(extra, ctx, depth + 1, inner);
    body += `${inner}[key: string]: ${valueType};\n`;
  } else if (hasPatterns) {
    body += `${inner}[key: string]: unknown;\n`;
  } else if (!hasProps) {
    return extra === false ? 'Record<string, never>' : 'Record<string, unknown>';
  }
  return `{\n${body}${indent}}`;
}

/**
 * Converts a JSON Schema into TypeScript type text. Local `$ref`s are inlined; cycles, depth past
 * `maxDepth` and sub-schemas past `maxNodes` become `unknown`.
 *
 * @example
 * ```ts
 * schemaToTs({ type: 'object', properties: { q: { type: 'string' } }, required: ['q'] });
 * // '{\n  q: string;\n}'
 * ```
 */
export function schemaToTs(schema: unknown, options: SchemaToTsOptions = {}): string {
  const ctx: Ctx = {
    root: schema,
    maxDepth: options.maxDepth ?? DEFAULT_SCHEMA_MAX_DEPTH,
    nodesLeft: options.maxNodes ?? DEFAULT_SCHEMA_MAX_NODES,
    docCharsLeft: MAX_DOC_CHARS,
    textCharsLeft: MAX_TEXT_CHARS,
    refStack: [],
  };
  return convert(schema, ctx, 0, options.indent ?? '');
}

/** True when a schema of an arguments object has no required properties (so the argument is optional). */
export function hasNoRequired(schema: unknown): boolean {
  return !isObject(schema) || !Array.isArray(schema.required) || schema.required.length === 0;
}
