import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/codemode/catalog.js';
import { generateDeclarations } from '../../src/codemode/declarations.js';
import { schemaToTs } from '../../src/codemode/schema-to-ts.js';
import { localTools, mcpClientSource } from '../../src/codemode/sources.js';
import type { JsonSchema } from '../../src/codemode/types.js';
import { connectStdio, root, serverScript } from './helpers.js';
import type { Connected } from './helpers.js';

const run = promisify(execFile);

/** Compiles the given files with the project's tsc under --strict; returns tsc's output ('' when clean). */
async function tscStrict(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'codemode-decl-'));
  try {
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { strict: true, noEmit: true, target: 'ES2022', lib: ['ES2022'], types: [], noUncheckedIndexedAccess: true, skipLibCheck: false },
        files: Object.keys(files),
      }),
    );
    try {
      await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', dir], { timeout: 60_000 });
      return '';
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      return `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('schemaToTs', () => {
  it('renders required and optional properties, quoting keys that are not identifiers', () => {
    const ts = schemaToTs({
      type: 'object',
      properties: { name: { type: 'string' }, 'max-count': { type: 'integer' }, '2x': { type: 'boolean' } },
      required: ['name'],
      additionalProperties: false,
    });
    expect(ts).toContain('name: string;');
    expect(ts).toContain('"max-count"?: number;');
    expect(ts).toContain('"2x"?: boolean;');
  });

  it('puts description, format and default into JSDoc, escaping comment terminators', () => {
    const ts = schemaToTs({
      type: 'object',
      properties: { when: { type: 'string', format: 'date-time', default: 'now', description: 'Start time */ evil' } },
    });
    expect(ts).toContain('@format date-time');
    expect(ts).toContain('@default "now"');
    expect(ts).toContain('Start time *\\/ evil');
  });

  it('handles enum, const, nullable, type arrays, anyOf, oneOf and allOf', () => {
    expect(schemaToTs({ enum: ['a', 'b', 3, null] })).toBe('"a" | "b" | 3 | null');
    expect(schemaToTs({ const: 'fixed' })).toBe('"fixed"');
    expect(schemaToTs({ type: 'string', nullable: true })).toBe('string | null');
    expect(schemaToTs({ type: ['string', 'number'] })).toBe('string | number');
    expect(schemaToTs({ anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'number' } }] })).toBe('string | number[]');
    expect(schemaToTs({ oneOf: [{ const: 1 }, { const: 2 }] })).toBe('1 | 2');
    const all = schemaToTs({ allOf: [{ type: 'object', properties: { a: { type: 'string' } } }, { type: 'object', properties: { b: { type: 'number' } } }] });
    expect(all).toMatch(/a\?: string;[\s\S]*& \{[\s\S]*b\?: number;/);
  });

  it('renders arrays, union element arrays, and tuples in both drafts', () => {
    expect(schemaToTs({ type: 'array', items: { type: ['string', 'null'] } })).toBe('(string | null)[]');
    expect(schemaToTs({ type: 'array', prefixItems: [{ type: 'string' }, { type: 'number' }], items: false })).toBe('[string, number]');
    expect(schemaToTs({ type: 'array', items: [{ type: 'string' }], additionalItems: { type: 'boolean' } })).toBe('[string, ...boolean[]]');
    expect(schemaToTs({ type: 'array', prefixItems: [{ type: 'string' }, { type: 'number' }], minItems: 1, items: false })).toBe('[string, number?]');
  });

  it('renders additionalProperties as an index signature', () => {
    expect(schemaToTs({ type: 'object', additionalProperties: { type: 'number' } })).toBe('{\n  [key: string]: number;\n}');
    expect(schemaToTs({ type: 'object' })).toBe('Record<string, unknown>');
    expect(schemaToTs({ type: 'object', additionalProperties: false })).toBe('Record<string, never>');
    const mixed = schemaToTs({ type: 'object', properties: { a: { type: 'string' } }, additionalProperties: { type: 'number' } });
    expect(mixed).toContain('[key: string]: unknown;');
  });

  it('inlines local $refs, and turns cycles, remote refs and excess depth into unknown', () => {
    const tree = {
      $defs: { Node: { type: 'object', properties: { value: { type: 'number' }, children: { type: 'array', items: { $ref: '#/$defs/Node' } } }, required: ['value'] } },
      $ref: '#/$defs/Node',
    };
    const ts = schemaToTs(tree);
    expect(ts).toContain('value: number;');
    expect(ts).toContain('children?: unknown[];');
    expect(schemaToTs({ $ref: 'https://example.com/s.json' })).toBe('unknown');
    expect(schemaToTs({ definitions: { A: { type: 'string' } }, $ref: '#/definitions/A' })).toBe('string');
    let deep: JsonSchema = { type: 'string' };
    for (let i = 0; i < 20; i++) deep = { type: 'object', properties: { x: deep }, required: ['x'] };
    const rendered = schemaToTs(deep, { maxDepth: 3 });
    expect(rendered).toContain('x: unknown;');
    expect(rendered).not.toContain('string');
  });

  it('parenthesizes union elements even when a description holds brackets or quotes', () => {
    const ops = {
      type: 'array',
      items: {
        oneOf: [
          { type: 'object', properties: { op: { const: 'set' }, value: { type: 'string', description: 'must be >= 1 (or "x' } } },
          { type: 'object', properties: { op: { const: 'delete' } } },
        ],
      },
    };
    const rendered = schemaToTs(ops);
    expect(rendered.startsWith('({')).toBe(true);
    expect(rendered.endsWith('})[]')).toBe(true);
    expect(schemaToTs({ type: 'array', items: { type: ['object', 'null'], properties: { a: { description: 'see (note' } } } })).toMatch(/^\(\{[\s\S]*\} \| null\)\[\]$/);
  });

  it('takes a $ref key that is not valid percent-encoding as written, instead of throwing', () => {
    expect(schemaToTs({ $defs: { '100%': { type: 'number' } }, type: 'object', properties: { p: { $ref: '#/$defs/100%' } } })).toBe('{\n  p?: number;\n}');
    expect(schemaToTs({ $defs: { 'a b': { type: 'string' } }, $ref: '#/$defs/a%20b' })).toBe('string');
  });

  it('bounds the output when shared $refs would multiply out, by turning the excess into unknown', () => {
    // Five levels of 20 properties, each a $ref to the next level: 20^5 expansions if inlined fully.
    const $defs: Record<string, unknown> = { L5: { type: 'string', description: 'leaf' } };
    for (let level = 4; level >= 0; level--) {
      const properties: Record<string, unknown> = {};
      for (let i = 0; i < 20; i++) properties[`p${i}`] = { $ref: `#/$defs/L${level + 1}`, description: 'a field with some words' };
      $defs[`L${level}`] = { type: 'object', properties };
    }
    const started = performance.now();
    const rendered = schemaToTs({ $defs, $ref: '#/$defs/L0' }, { maxDepth: 20 });
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(rendered.length).toBeLessThan(400_000);
    expect(rendered).toContain('p0?: {');
    expect(rendered).toContain('p19?: unknown;');
    expect(schemaToTs({ $defs, $ref: '#/$defs/L3' }, { maxDepth: 20 })).not.toContain('unknown');
  });

  it('bounds the output when long enums, consts or property names are repeated through $ref', () => {
    const values = Array.from({ length: 1000 }, (_, i) => `${'v'.repeat(90)}${i}`);
    const refs = (target: string, n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, { $ref: target }]));
    const cases = [
      { type: 'object', $defs: { E: { enum: values } }, properties: refs('#/$defs/E', 1990) },
      { type: 'object', $defs: { C: { const: { k: values } } }, properties: refs('#/$defs/C', 1990) },
      { type: 'object', $defs: { O: { type: 'object', properties: { ['n'.repeat(100_000)]: { type: 'string' } } } }, properties: refs('#/$defs/O', 990) },
    ];
    for (const schema of cases) {
      // Each gave 67-98 MB before literal text and property names counted against a budget.
      const rendered = schemaToTs(schema);
      expect(rendered.length).toBeLessThan(300_000);
      expect(rendered).toContain('p0?: ');
    }
    // A cut object still admits the properties it could not list.
    const cut = schemaToTs({ type: 'object', properties: { ['a'.repeat(250_000)]: { type: 'string' }, b: { type: 'number' } }, required: ['b'] });
    expect(cut).toBe('{\n  [key: string]: unknown;\n}');
  });

  it('compiles under tsc --strict for a zoo of awkward schemas, and the types are not just unknown', async () => {
    const zoo: Record<string, unknown> = {
      type: 'object',
      properties: {
        s: { type: 'string', format: 'uri', default: 'x' },
        n: { type: ['number', 'null'] },
        e: { enum: ['a', "it's", 'quote"d', 1, true, null] },
        c: { const: { nested: [1, 'two'] } },
        t: { type: 'array', prefixItems: [{ type: 'string' }, { type: 'integer' }], items: { type: 'boolean' } },
        r: { $ref: '#/properties/s' },
        cyc: { $ref: '#' },
        o: { type: 'object', properties: { 'a b': { type: 'string' }, 'c-d': {} }, additionalProperties: { type: 'number' } },
        m: { type: 'object', additionalProperties: { anyOf: [{ type: 'string' }, { type: 'array', items: { oneOf: [{ type: 'string' }, { type: 'number' }] } }] } },
        all: { allOf: [{ type: 'object', properties: { a: { type: 'string' } } }, { type: 'object', properties: { b: { type: 'number' } } }] },
        weird: { type: 'object', properties: { constructor: { type: 'string' }, __proto__x: { type: 'string' }, '': { type: 'string' } } },
        nothing: false,
        anything: true,
      },
      required: ['s', 'e'],
    };
    const source = localTools('zoo-src', [
      { name: 'zoo', description: 'All the shapes. Ends a comment: */', input: zoo, output: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] }, handler: () => ({ ok: true }) },
      { name: 'no-args', handler: () => 1 },
      { name: 'delete', input: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] }, handler: () => null },
    ]);
    const catalog = await Catalog.load([source]);
    const decl = generateDeclarations(catalog.entries, { resources: true, prompts: true });
    const usage = `
async function use() {
  const r = await tools.zoo_src.zoo({ s: 'x', e: "it's", t: ['a', 1, true, false] });
  const ok: boolean = r.ok;
  await tools.zoo_src.no_args();
  await tools.zoo_src.delete_({ id: '1' });
  // @ts-expect-error id is required and typed
  await tools.zoo_src.delete_({ id: 1 });
  // @ts-expect-error e is an enum
  await tools.zoo_src.zoo({ s: 'x', e: 'nope' });
  const v: unknown = await callTool('zoo-src.zoo', { s: 'x', e: 'a' });
  const contents = await resources.read('file:///x');
  const first: string | undefined = contents[0]?.text;
  const p = await prompts.get('greet', { name: 'a' });
  try { await tools.zoo_src.no_args(); } catch (e) { if (e instanceof ToolError) { const t: string = e.tool; void t; } if (e instanceof ToolCallLimitError) { const l: number = e.limit; void l; } }
  return [ok, v, first, p.messages.length];
}
void use;
`;
    const out = await tscStrict({ 'decl.ts': decl, 'usage.ts': usage });
    expect(out, `${out}\n---\n${decl}`).toBe('');
  }, 60_000);
});

describe('declarations of real MCP servers', () => {
  const servers: Connected[] = [];
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'codemode-fs-'));
    servers.push(await connectStdio([serverScript('@modelcontextprotocol/server-everything'), 'stdio']));
    servers.push(await connectStdio([serverScript('@modelcontextprotocol/server-filesystem'), dir]));
    servers.push(await connectStdio([serverScript('@modelcontextprotocol/server-memory')], { MEMORY_FILE_PATH: join(dir, 'memory.jsonl') }));
  }, 30_000);

  afterAll(async () => {
    await Promise.allSettled(servers.map((s) => s.close()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('compiles the declarations of server-everything, server-filesystem and server-memory with tsc --strict --noEmit', async () => {
    const [everything, filesystem, memory] = servers;
    const catalog = await Catalog.load([
      mcpClientSource('everything', everything!.client),
      mcpClientSource('filesystem', filesystem!.client),
      mcpClientSource('memory', memory!.client),
    ]);
    const byNs = (ns: string) => catalog.entries.filter((e) => e.namespace === ns).length;
    expect(byNs('everything')).toBeGreaterThanOrEqual(8);
    expect(byNs('filesystem')).toBeGreaterThanOrEqual(8);
    expect(byNs('memory')).toBeGreaterThanOrEqual(6);
    const decl = generateDeclarations(catalog.entries, { resources: true, prompts: true });
    expect(decl).toContain('get_sum(args: {');
    expect(decl).toContain('Upstream name: everything.get-sum');
    // Uses real tools with the right and the wrong argument types.
    const usage = `
async function use() {
  const sum = await tools.everything.get_sum({ a: 1, b: 2 });
  const weather = await tools.everything.get_structured_content({ location: 'Chicago' });
  const t: number = weather.temperature;
  const files = await tools.filesystem.list_directory({ path: '/tmp' });
  const graph = await tools.memory.read_graph();
  // @ts-expect-error a must be a number
  await tools.everything.get_sum({ a: '1', b: 2 });
  // @ts-expect-error location is an enum
  await tools.everything.get_structured_content({ location: 'Paris' });
  await tools.memory.create_entities({ entities: [{ name: 'a', entityType: 'person', observations: ['x'] }] });
  return [sum, t, files, graph];
}
void use;
`;
    const out = await tscStrict({ 'decl.ts': decl, 'usage.ts': usage });
    expect(out, out).toBe('');
  }, 90_000);
});

describe('schemaDocLines', () => {
  it("leaves out zod's safe-integer bounds (@integer says it) but keeps real bounds", async () => {
    const { schemaDocLines } = await import('../../src/codemode/schema-to-ts.js');
    const safe = schemaDocLines({ type: 'integer', minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER });
    expect(safe).toEqual(['@integer']);
    expect(schemaDocLines({ type: 'integer', minimum: 0, maximum: 100 })).toEqual(['@minimum 0', '@maximum 100', '@integer']);
  });
});
