import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { isCodemodeError } from '../../src/errors.js';
import { Catalog } from '../../src/codemode/catalog.js';
import { toIdentifier } from '../../src/codemode/naming.js';
import { normalizeCode } from '../../src/codemode/normalize.js';
import { SearchIndex, tokenize } from '../../src/codemode/search.js';
import { localTool, localTools } from '../../src/codemode/sources.js';
import { shapeToolResult, toolErrorFromFailure, toolErrorFromResult } from '../../src/codemode/tool-errors.js';
import type { ToolSource } from '../../src/codemode/types.js';

const noop = () => null;

describe('identifiers', () => {
  it('sanitizes deterministically', () => {
    expect(toIdentifier('get-sum')).toBe('get_sum');
    expect(toIdentifier('delete')).toBe('delete_');
    expect(toIdentifier('2fa.check')).toBe('_2fa_check');
    expect(toIdentifier('')).toBe('_');
    expect(toIdentifier('__proto__')).toBe('__proto___');
    expect(toIdentifier('ünïcode tool')).toBe('ünïcode_tool');
    expect(toIdentifier('camelCase$ok')).toBe('camelCase$ok');
  });

  it('rejects two tools of one source that sanitize to the same identifier, naming both', async () => {
    const source = localTools('s', [
      { name: 'my-tool', handler: noop },
      { name: 'my_tool', handler: noop },
    ]);
    const err = await Catalog.load([source]).catch((e: unknown) => e);
    expect(isCodemodeError(err, 'TOOL_NAME_COLLISION')).toBe(true);
    expect((err as Error).message).toContain('"my-tool"');
    expect((err as Error).message).toContain('"my_tool"');
    expect((err as Error).message).toContain('tools.s.my_tool');
  });

  it('rejects namespaces that collide, and duplicate source names', async () => {
    const a = localTools('git-hub', [{ name: 'x', handler: noop }]);
    const b = localTools('git_hub', [{ name: 'y', handler: noop }]);
    const err = await Catalog.load([a, b]).catch((e: unknown) => e);
    expect(isCodemodeError(err, 'TOOL_NAME_COLLISION')).toBe(true);
    expect((err as Error).message).toContain('"git_hub"');
    const dup = await Catalog.load([a, localTools('git-hub', [])]).catch((e: unknown) => e);
    expect(isCodemodeError(dup, 'TOOL_NAME_COLLISION')).toBe(true);
    expect((dup as Error).message).toContain('both named');
  });

  it('rejects two sources whose "source.tool" names coincide because of dots in the names', async () => {
    const err = await Catalog.load([localTools('a', [{ name: 'b.c', handler: noop }]), localTools('a.b', [{ name: 'c', handler: noop }])]).catch(
      (e: unknown) => e,
    );
    expect(isCodemodeError(err, 'TOOL_NAME_COLLISION')).toBe(true);
    expect((err as Error).message).toMatch(/both called "a\.b\.c"/);
  });

  it('rejects a duplicate tool name listed by an upstream', async () => {
    const source: ToolSource = {
      name: 'up',
      listTools: async () => [
        { name: 'a', inputSchema: { type: 'object' } },
        { name: 'a', inputSchema: { type: 'object' } },
      ],
      callTool: async () => ({ value: null }),
    };
    await expect(Catalog.load([source])).rejects.toThrow(/lists the tool "a" twice/);
  });

  it('tolerates sloppy optional fields and rejects nameless tools', async () => {
    const sloppy: ToolSource = {
      name: 'sloppy',
      listTools: async () => [{ name: 'x', description: 42, inputSchema: 'nope', outputSchema: null } as never],
      callTool: async () => ({ value: null }),
    };
    const catalog = await Catalog.load([sloppy]);
    expect(catalog.entries[0]!.tool).toEqual({ name: 'x', inputSchema: { type: 'object' } });
    const nameless: ToolSource = { ...sloppy, listTools: async () => [{ description: 'no name' } as never] };
    await expect(Catalog.load([nameless])).rejects.toThrow(/without a name/);
  });

  it('wraps a listing failure as UPSTREAM_UNAVAILABLE naming the source', async () => {
    const source: ToolSource = { name: 'broken', listTools: async () => Promise.reject(new Error('connection refused')), callTool: async () => ({ value: null }) };
    const err = await Catalog.load([source]).catch((e: unknown) => e);
    expect(isCodemodeError(err, 'UPSTREAM_UNAVAILABLE')).toBe(true);
    expect((err as Error).message).toMatch(/"broken".*connection refused/);
  });

  it('resolves qualified, identifier and unambiguous bare names, and explains ambiguity', async () => {
    const catalog = await Catalog.load([
      localTools('a', [{ name: 'get-x', handler: noop }, { name: 'only-a', handler: noop }]),
      localTools('b', [{ name: 'get-x', handler: noop }]),
    ]);
    const name = (n: string) => {
      const r = catalog.resolve(n);
      return 'entry' in r ? r.entry.qualifiedName : r.error;
    };
    expect(name('a.get-x')).toBe('a.get-x');
    expect(name('b.get_x')).toBe('b.get-x');
    expect(name('only-a')).toBe('a.only-a');
    expect(name('only_a')).toBe('a.only-a');
    expect(name('get-x')).toMatch(/ambiguous.*"a.get-x", "b.get-x"/);
    expect(name('nope')).toMatch(/Unknown tool "nope"/);
    // The sandbox has no search(); the message must not send the model to one.
    expect(name('nope')).not.toMatch(/search\(\)/);
    expect(name('only')).toMatch(/Did you mean "a.only-a"\?/);
    expect(catalog.lookup(['a.get-x', 'missing']).notFound).toEqual(['missing']);
  });
});

describe('local tools', () => {
  it('derives JSON Schema from zod and validates arguments before the handler runs', async () => {
    let calls = 0;
    const source = localTools('m', [
      { name: 'add', description: 'Adds', input: { a: z.number(), b: z.number().describe('second') }, handler: ({ a, b }) => (calls++, (a as number) + (b as number)) },
      { name: 'obj', input: z.object({ q: z.string().optional() }), output: z.object({ n: z.number() }), handler: () => ({ n: 1 }) },
    ]);
    const [add, obj] = await source.listTools();
    expect(add!.inputSchema).toMatchObject({ type: 'object', properties: { a: { type: 'number' }, b: { description: 'second' } }, required: ['a', 'b'] });
    expect(obj!.outputSchema).toMatchObject({ type: 'object', properties: { n: { type: 'number' } } });
    const signal = new AbortController().signal;
    expect(await source.callTool('add', { a: 1, b: 2 }, { signal })).toEqual({ value: 3 });
    const err = await source.callTool('add', { a: 'x', b: 2 }, { signal }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('ToolError');
    expect((err as Error).message).toMatch(/m\.add: invalid arguments/);
    expect(calls).toBe(1);
  });

  it('types handler arguments from zod with localTool', async () => {
    const add = localTool({ name: 'add', input: { a: z.number(), b: z.number() }, handler: ({ a, b }) => a + b });
    const upper = localTool({ name: 'upper', input: z.object({ s: z.string() }), handler: ({ s }) => s.toUpperCase() });
    const source = localTools('t', [add, upper]);
    const signal = new AbortController().signal;
    expect(await source.callTool('add', { a: 2, b: 3 }, { signal })).toEqual({ value: 5 });
    expect(await source.callTool('upper', { s: 'x' }, { signal })).toEqual({ value: 'X' });
  });

  it('refuses malformed definitions', () => {
    expect(() => localTools('m', [{ name: '', handler: noop }])).toThrow(/no name/);
    expect(() => localTools('m', [{ name: 'x' } as never])).toThrow(/no handler/);
    expect(() => localTools('m', [{ name: 'x', handler: noop }, { name: 'x', handler: noop }])).toThrow(/defined twice/);
  });
});

describe('result shaping', () => {
  it('prefers structuredContent, then a single text, else the content array', () => {
    expect(shapeToolResult({ content: [{ type: 'text', text: '{"a":1}' }], structuredContent: { a: 1 } })).toEqual({ a: 1 });
    expect(shapeToolResult({ content: [{ type: 'text', text: 'hello' }] })).toBe('hello');
    const two = [
      { type: 'text' as const, text: 'a' },
      { type: 'image' as const, data: 'AA==', mimeType: 'image/png' },
    ];
    expect(shapeToolResult({ content: two })).toEqual(two);
    expect(shapeToolResult({ content: [] })).toEqual([]);
  });

  it('builds ToolErrors carrying upstream text, structuredContent and the tool; transport failures name the server', () => {
    const e = toolErrorFromResult('gh.get', { isError: true, content: [{ type: 'text', text: 'not found' }], structuredContent: { status: 404 } });
    expect(e.name).toBe('ToolError');
    expect(e.message).toBe('gh.get: not found');
    expect(e.data).toEqual({ tool: 'gh.get', structuredContent: { status: 404 }, content: [{ type: 'text', text: 'not found' }] });
    const t = toolErrorFromFailure('gh.get', 'gh', Object.assign(new Error('Connection closed'), { code: -32000 }), false);
    expect(t.message).toBe('gh.get: calling server "gh" failed: Connection closed');
    expect(t.data.code).toBe(-32000);
  });
});

describe('code normalization', () => {
  it('leaves a plain body alone', () => {
    const n = normalizeCode('const a = 1;\nreturn a;');
    expect(n.code).toBe('const a = 1;\nreturn a;');
    expect(n.typescript).toBe(false);
  });

  it('turns a trailing expression into the return value', () => {
    expect(normalizeCode('const a = 1;\na + 1').code).toBe('const a = 1;\nreturn (a + 1)');
    expect(normalizeCode('await tools.x.y({});').code).toBe('return (await tools.x.y({}));');
    expect(normalizeCode("'use strict'").code).toBe("'use strict'");
  });

  it('calls async arrow functions and function declarations', () => {
    expect(normalizeCode('async () => { return 1; }').code).toBe('return await (async () => { return 1; })()');
    expect(normalizeCode('async function main() { return 2; }').code).toBe('async function main() { return 2; };return await main();');
    expect(normalizeCode('(async function () { return 3; });').code).toBe('return await ((async function () { return 3; }))();');
    expect(normalizeCode('(1, 2)').code).toBe('return ((1, 2))');
    // Helpers, then main: main is called. Several helpers and no main: nothing is guessed.
    expect(normalizeCode('function helper() { return 1; }\nasync function main() { return helper() + 1; }').code).toBe(
      'function helper() { return 1; }\nasync function main() { return helper() + 1; };return await main();',
    );
    expect(normalizeCode('function a() {}\nfunction b() {}').code).toBe('function a() {}\nfunction b() {}');
  });

  it('ignores trailing empty statements and a hashbang line', () => {
    expect(normalizeCode('const x = 1;\nx;;').code).toBe('const x = 1;\nreturn (x);;');
    const bang = normalizeCode('#!/usr/bin/env node\nconst y = 2;\ny');
    expect(bang.code).toBe(`${' '.repeat(19)}\nconst y = 2;\nreturn (y)`);
    expect(bang.mapPosition(3, 9)).toEqual({ line: 3, column: 1 });
  });

  it('strips markdown fences and maps lines back to the submitted text', () => {
    const n = normalizeCode('Here you go:\n```javascript\nconst x = 1;\nx.foo.bar\n```\nthanks');
    expect(n.code).toBe('const x = 1;\nreturn (x.foo.bar)');
    expect(n.mapPosition(2, 9)).toEqual({ line: 4, column: 1 });
    expect(n.mapPosition(2, 12)).toEqual({ line: 4, column: 4 });
    expect(n.mapPosition(2, 3)).toEqual({ line: 4, column: 1 });
  });

  it('unwraps a fence after a label or a comment, and picks the code block among several', () => {
    // Both parse as JavaScript (a label, then tagged templates), so they used to run as such and fail.
    expect(normalizeCode('Code:\n```js\nreturn 42\n```').code).toBe('return 42');
    expect(normalizeCode('// here it is\n```ts\nconst a: number = 1;\na\n```').code).toMatch(/^const a\s+= 1;\nreturn \(a\)$/);
    const several = normalizeCode('Input:\n```json\n{ "a": 1 }\n```\nCode:\n```javascript\nconst x = 2;\nx\n```');
    expect(several.code).toBe('const x = 2;\nreturn (x)');
    expect(several.mapPosition(1, 7)).toEqual({ line: 7, column: 7 });
    expect(normalizeCode('~~~\nreturn 1\n~~~').code).toBe('return 1');
  });

  it('leaves fences inside template text, strings and comments of valid code alone', () => {
    for (const js of [
      'const doc = `\n~~~\nhello\n~~~\n`;\nreturn doc',
      "const s = 'a\\\n```\\\nb';\nreturn s",
      '/*\n```js\nx\n```\n*/\nreturn 1;',
      // A tagged template whose text has an escape that is invalid untagged (acorn's invalidTemplate token).
      'const p = String.raw`C:\\users\n~~~js\nreturn 9\n~~~\n`;\nreturn p',
    ]) {
      expect(normalizeCode(js).code).toBe(js);
    }
    // Many fences among many comments: one sweep, not every fence against every comment (2.7 s before).
    const text = '/* ```js */\n'.repeat(8_000) + '// x\n'.repeat(33_000) + 'return 1';
    const started = performance.now();
    expect(normalizeCode(text).code).toBe(text);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('finds fences in time linear in the text, however it is shaped', () => {
    for (const text of ['```' + 'a'.repeat(200_000), 'x\n```' + 'a'.repeat(200_000), '```js\n' + '`'.repeat(100_000)]) {
      const started = performance.now();
      normalizeCode(text);
      // The old regex took 8.6 s for 100 KB after a fence opener. The bound is wide: acorn alone takes ~0.5 s
      // per parse of 100,000 backticks (two parses here), over 1 s on a loaded machine.
      expect(performance.now() - started).toBeLessThan(3_000);
    }
  });

  it('does not strip a fence inside valid code', () => {
    const code = '/*\n```js\nx\n```\n*/\nreturn 1;';
    expect(normalizeCode(code).code).toBe(code);
  });

  it('strips TypeScript, keeping positions', () => {
    const n = normalizeCode('interface P { a: number }\nconst p: P = { a: 1 } as P;\np.a satisfies number');
    expect(n.typescript).toBe(true);
    expect(n.code.split('\n')).toHaveLength(3);
    expect(n.code).toMatch(/^\s+\nconst p\s+= \{ a: 1 \}\s+;\nreturn \(p\.a\)\s+$/);
    const fenced = normalizeCode('```ts\nconst n: number = await callTool("a", {});\nn\n```');
    expect(fenced.typescript).toBe(true);
    expect(fenced.code).toContain('return (n)');
  });

  it('strips a generic call that is also valid JavaScript, and leaves real comparisons alone', () => {
    const generic = normalizeCode("const r = await callTool<R>('x.ok', {});\nr");
    expect(generic.typescript).toBe(true);
    expect(generic.code).toBe("const r = await callTool   ('x.ok', {});\nreturn (r)");
    expect(normalizeCode('const r = await tools.a.b<{ a: number }>({})').code).toBe('const r = await tools.a.b               ({})');
    // TypeScript would read the last two as generic calls: only calls to the sandbox API are taken as such.
    for (const js of ['if (a < b && c > (d)) x()', 'for (let i = 0; i < n; i++) { if (x > (y)) z() }', 'return [a < b, c > (d)]', 'console.log(i < n, total > (limit * 2));\nreturn 1']) {
      expect(normalizeCode(js)).toMatchObject({ code: js, typescript: false });
    }
  });

  it('passes code that is neither JS nor TS through unchanged, for the sandbox to report', () => {
    expect(normalizeCode('return )(').code).toBe('return )(');
  });
});

describe('search', () => {
  const entriesOf = async () =>
    (
      await Catalog.load([
        localTools('fs', [
          { name: 'read_file', description: 'Read the complete contents of a file from disk.', input: { type: 'object', properties: { path: { type: 'string' } } }, handler: noop },
          { name: 'list_directory', description: 'List files and directories in a folder.', input: { type: 'object', properties: { path: { type: 'string' } } }, handler: noop },
          { name: 'write_file', description: 'Create or overwrite a file.', input: { type: 'object', properties: { path: {}, content: {} } }, handler: noop },
        ]),
        localTools('gh', [
          { name: 'searchIssues', description: 'Search issues and pull requests in a repository.', input: { type: 'object', properties: { repo: { type: 'string', description: 'owner/name' }, query: {} } }, handler: noop },
          { name: 'get_weather', description: 'Weather forecast for a city.', input: { type: 'object', properties: { city: { type: 'string' } } }, handler: noop },
        ]),
      ])
    ).entries;

  it('tokenizes names in every case style', () => {
    expect(tokenize('searchIssues get-weather read_file HTTPServer')).toEqual(['search', 'issue', 'get', 'weather', 'read', 'file', 'http', 'server']);
  });

  it('ranks by name, description and parameter names', async () => {
    const index = new SearchIndex(await entriesOf());
    expect(index.search('read file contents')[0]!.name).toBe('fs.read_file');
    expect(index.search('list folder')[0]!.name).toBe('fs.list_directory');
    expect(index.search('issues in a repo')[0]!.name).toBe('gh.searchIssues');
    expect(index.search('city')[0]!.name).toBe('gh.get_weather');
    expect(index.search('zzz')).toEqual([]);
    expect(index.search('repo')[0]!.name).toBe('gh.searchIssues');
    expect(index.search('forecast')[0]!.name).toBe('gh.get_weather');
    // Only stopwords or punctuation: nothing to rank by, so nothing matches (an empty query lists all tools).
    expect(index.search('the of a')).toEqual([]);
    expect(index.search('.*')).toEqual([]);
    expect(index.search('', { limit: 2 }).map((h) => h.name)).toEqual(['fs.read_file', 'fs.list_directory']);
  });

  it('ranks words in any script, and a long query of unknown words stays fast', async () => {
    const catalog = await Catalog.load([
      localTools('jp', [
        { name: '検索', description: 'ドキュメントを検索する', handler: noop },
        { name: 'weather', description: '天気予報', handler: noop },
      ]),
      localTools('many', Array.from({ length: 300 }, (_, i) => ({ name: `tool_${i}`, description: `Does thing number ${i} with widgets and gadgets.`, handler: noop }))),
    ]);
    const index = new SearchIndex(catalog.entries);
    expect(index.search('検索')[0]!.name).toBe('jp.検索');
    expect(index.search('天気予報')[0]!.name).toBe('jp.weather');
    // Combining marks stay inside their word (Devanagari vowel signs are marks, not separators).
    expect(tokenize('फ़ाइल खोजें')).toEqual(['फ़ाइल', 'खोजें']);
    // 3,000 distinct unknown words: each costs a prefix scan of every tool. Only the first 32 count, and the
    // scan is per query, not cached in a table that fills up (a query like this took 17 s before).
    const words = Array.from({ length: 3_000 }, (_, i) => `zq${i.toString(36)}x`).join(' ');
    for (let round = 0; round < 3; round++) {
      const started = performance.now();
      expect(index.search(words)).toEqual([]);
      expect(performance.now() - started).toBeLessThan(1_000);
    }
  });

  it('returns brief, detailed and full summaries', async () => {
    const index = new SearchIndex(await entriesOf());
    const [brief] = index.search('weather', { detail: 'brief' });
    expect(brief).toMatchObject({ name: 'gh.get_weather', call: 'tools.gh.get_weather', description: 'Weather forecast for a city.' });
    expect(brief!.parameters).toBeUndefined();
    const [detailed] = index.search('weather', { detail: 'detailed' });
    expect(detailed!.parameters).toEqual([{ name: 'city', type: 'string', required: false }]);
    expect(detailed!.declaration).toBeUndefined();
    const [full] = index.search('weather', { detail: 'full' });
    expect(full!.declaration).toContain('get_weather(args?: {');
    expect(full!.inputSchema).toMatchObject({ type: 'object' });
    expect(index.search('file', { limit: 1 })).toHaveLength(1);
  });
});
