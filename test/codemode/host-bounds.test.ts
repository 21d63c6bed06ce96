/**
 * Issue 17: the host's own work on data a guest (or an upstream, or a client) controls is bounded by the
 * caps, not by the input. Each test drives the real CodeMode with a real sandbox and asserts what reached
 * the host and how big the answers are; time bounds are wide (ten times or more the old cost's inverse),
 * as timing goals live in the benchmarks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundedPrettyJson, MAX_INDENT_LEVELS } from '../../src/codemode/bounded-json.js';
import { MAX_TOOL_DESCRIPTION_CHARS, MAX_SCHEMA_STRING_CHARS } from '../../src/codemode/catalog-limits.js';
import { CodeMode } from '../../src/codemode/codemode.js';
import { createCodeModeTools, formatExecuteResult } from '../../src/codemode/mcp-tools.js';
import { normalizeCode } from '../../src/codemode/normalize.js';
import { normalizeCodeOffThread, offThreadStats } from '../../src/codemode/normalize-off-thread.js';
import { MAX_QUERY_CHARS } from '../../src/codemode/search.js';
import { localTools } from '../../src/codemode/sources.js';
import { discardedStrippers, scanNesting, stripTypeScript } from '../../src/codemode/strip-types.js';
import { MAX_ERROR_NAME_CHARS, MAX_TOOL_LABEL_CHARS } from '../../src/codemode/text-caps.js';
import type { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import { testSandbox } from './helpers.js';

function textOf(result: { content: unknown[] }, i = 0): string {
  return (result.content[i] as { text: string }).text;
}

function timed<T>(fn: () => T): { value: T; ms: number } {
  const started = performance.now();
  const value = fn();
  return { value, ms: performance.now() - started };
}

describe('host-side bounds on guest data', () => {
  let sandbox: IsolatedVmSandbox;
  let mode: CodeMode;
  const reached: string[] = [];

  beforeAll(async () => {
    sandbox = testSandbox();
    mode = await CodeMode.create({
      sources: [localTools('t', [{ name: 'echo', description: 'Echoes its arguments.', handler: (args) => (reached.push('echo'), args) }])],
      sandbox,
    });
  });

  afterAll(async () => {
    await mode.close();
    await sandbox.close();
  });

  describe('result formatting (defect 1)', () => {
    it('formats a deeply nested 1 MB result in time and memory bounded by the text cap', async () => {
      const result = await mode.execute('let v = new Array(500000).fill(0); for (let i = 0; i < 198; i++) v = [v]; return v;');
      expect(result.ok).toBe(true);
      // JSON.stringify(value, null, 2) made this a 200-million-character string: 2.4 s and 200 MB per execute.
      const { value: formatted, ms } = timed(() => formatExecuteResult(result, { maxResultTextChars: 20_000 }));
      const text = textOf(formatted);
      expect(text.length).toBeLessThan(20_300);
      expect(text).toMatch(/\n… \[result truncated: showing the first \d+ characters\. Return less data/);
      // Indentation stops growing: the deepest lines are indented MAX_INDENT_LEVELS levels, not 199.
      expect(Math.max(...text.split('\n').map((l) => l.length - l.trimStart().length))).toBe(2 * MAX_INDENT_LEVELS);
      expect(ms).toBeLessThan(1_000);
    });

    it('cuts an ordinary multi-MB result without formatting all of it', () => {
      const rows = Array.from({ length: 200_000 }, (_, i) => ({ id: i, name: `item ${i}`, tags: ['a', 'b'] }));
      const result = { ok: true as const, value: rows, logs: [], toolCalls: [], warnings: [], stats: { durationMs: 0, queuedMs: 0, toolCalls: 0, droppedLogLines: 0 } };
      const { value, ms } = timed(() => formatExecuteResult(result, { maxResultTextChars: 1_000 }));
      expect(textOf(value)).toBe(`${JSON.stringify(rows, null, 2).slice(0, 1_000)}\n… [result truncated: showing the first 1000 characters. Return less data: pick fields, filter, or slice arrays in the code.]`);
      // The whole value still travels as structured content.
      expect((value.structuredContent as { result: unknown[] }).result).toHaveLength(200_000);
      expect(ms).toBeLessThan(200);
    });

    it('writes what JSON.stringify(value, null, 2) writes while it fits, and never half a surrogate pair', () => {
      const date = new Date(0);
      const values: unknown[] = [
        null, 1, -0, NaN, 'é "q" \n', true, [], {}, [undefined, () => 1, Symbol('s')], { a: undefined, b: [1, { c: 'd' }], date },
        { __proto__: null, x: 1 }, [[[[1]]]], { 'key "q"': { toJSON: () => 'J' } },
      ];
      for (const v of values) expect(boundedPrettyJson(v, 1e6)).toEqual({ text: JSON.stringify(v, null, 2), truncated: false });
      expect(boundedPrettyJson(undefined, 100).text).toBe('undefined');
      const cyclic: Record<string, unknown> = { a: 1 };
      cyclic.self = cyclic;
      expect(boundedPrettyJson(cyclic, 1e6).text).toBe('{\n  "a": 1,\n  "self": "[Circular]"\n}');
      // '"😀😀...': the quote puts a high surrogate at every even index.
      for (const max of [2, 3, 4, 999, 1000]) {
        const { text, truncated } = boundedPrettyJson('😀'.repeat(2000), max);
        expect(truncated).toBe(true);
        expect(text.length).toBeLessThanOrEqual(max);
        expect(text).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
      }
      // A 100-million-character string costs what the cap costs.
      const huge = 'x'.repeat(1e8);
      huge.slice(0, 1); // repeat() builds a rope; a string from the sandbox arrives flat, so flatten it untimed
      const { value, ms } = timed(() => boundedPrettyJson(huge, 50));
      expect(value).toEqual({ text: `"${'x'.repeat(49)}`, truncated: true });
      expect(ms).toBeLessThan(500); // wide: well under 1 ms when idle
    });

    it('caps the logs text without joining every line first', () => {
      const logs = Array.from({ length: 100_000 }, (_, i) => ({ level: 'log' as const, message: `line ${i} ${'y'.repeat(100)}` }));
      const result = { ok: true as const, value: 1, logs, toolCalls: [], warnings: [], stats: { durationMs: 0, queuedMs: 0, toolCalls: 0, droppedLogLines: 0 } };
      const tail = textOf(formatExecuteResult(result, { maxLogTextChars: 500 }), 1);
      expect(tail.length).toBeLessThan(700);
      expect(tail).toMatch(/\[logs truncated: showing the first 500 characters\. Log less\.\]$/);
    });
  });

  describe('TypeScript stripping (defect 2)', () => {
    const arrows = 'const f = ' + '(a: number) => '.repeat(1_000) + '1;\nreturn f;';
    // 5,000 type arguments trap amaro's WebAssembly ("memory access out of bounds"); the scan refuses them first,
    // so the test hands them to amaro directly. A chain of 20,000 assignments is not nesting the scan counts: it
    // reaches amaro and traps it, and that instance is discarded.
    const trap = 'let x: ' + 'Array <'.repeat(5_000) + 'number' + '>'.repeat(5_000) + ' = [];\nreturn x;';
    const assignments = 'let x: number;\nx = ' + 'x = '.repeat(20_000) + '1;\nreturn x;';
    const ternaries = 'const x: number = ' + 'a ? b : '.repeat(5_000) + 'c;\nreturn x;';

    it('refuses code nested too deep for the stripper with a syntax error at its position, before anything runs', async () => {
      const result = await mode.execute(`await tools.t.echo({});\n${arrows}`);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.error).toMatchObject({ kind: 'syntax', line: 2, column: expect.any(Number) });
      expect(result.error.message).toMatch(/nests more than 200 levels deep/);
      expect(result.toolCalls).toEqual([]);
      expect(scanNesting(arrows)).toBeDefined();
    });

    it('still strips valid TypeScript after ten poison attempts in the same process', async () => {
      const before = discardedStrippers();
      for (let i = 0; i < 10; i++) {
        const poison = [arrows, assignments, ternaries, trap][i % 4]!;
        expect(normalizeCode(poison).typescript).toBe(false);
        const valid = normalizeCode('const n: number = 41;\nn + 1');
        expect(valid.typescript).toBe(true);
        expect(valid.code).toBe('const n         = 41;\nreturn (n + 1)');
        // Let the event loop turn: a process-pool sandbox reads a worker's silence during a long blocked
        // stretch of this test as a hung worker.
        await new Promise((resolve) => setImmediate(resolve));
      }
      // The assignment chains really reached amaro and broke it; each broken instance was replaced.
      expect(discardedStrippers()).toBeGreaterThanOrEqual(before + 3);
      expect(scanNesting(ternaries)).toBeDefined();
      expect(scanNesting(trap)).toBeDefined();
      for (let i = 0; i < 3; i++) {
        expect(() => stripTypeScript(trap)).toThrow(/memory access out of bounds/);
        expect(stripTypeScript('let y: string = "s";')).toBe('let y         = "s";');
      }
      const result = await mode.execute('const n: number = await tools.t.echo({ n: 2 }).then((r: { n: number }) => r.n);\nreturn n * 21;');
      expect(result.ok ? result.value : result.error).toBe(42);
    });

    it('prepares code off the main thread in execute, and recovers there from traps', async () => {
      const before = offThreadStats().strippersDiscarded;
      // The event loop keeps turning while the worker parses and strips (and reloads amaro after a trap).
      let maxGapMs = 0;
      let last = performance.now();
      const ticker = setInterval(() => {
        const now = performance.now();
        maxGapMs = Math.max(maxGapMs, now - last);
        last = now;
      }, 2);
      const backticks = '```js\n' + '`'.repeat(100_000); // acorn alone takes ~0.5 s per parse of this
      const slow = await mode.execute(backticks);
      clearInterval(ticker);
      expect(slow.ok).toBe(false);
      expect(maxGapMs).toBeLessThan(400); // wide: ~1 s of main-thread parsing before, a few ms now
      for (let i = 0; i < 10; i++) {
        const poisoned = await mode.execute(i % 2 === 0 ? assignments : arrows);
        expect(poisoned.ok).toBe(false);
        const valid = await mode.execute('const n: number = 20;\nreturn n + 2;');
        expect(valid.ok ? valid.value : valid.error).toBe(22);
      }
      expect(offThreadStats().strippersDiscarded).toBeGreaterThanOrEqual(before + 5);
      expect(offThreadStats().workersStarted).toBe(1);
      const direct = await normalizeCodeOffThread('const s: string = "x";\ns');
      expect(direct).toMatchObject({ typescript: true, code: 'const s         = "x";\nreturn (s)' });
      // A slow preparation does not hold up another one: the second worker takes it.
      const order: string[] = [];
      await Promise.all([
        normalizeCodeOffThread('```js\n' + '`'.repeat(200_000)).then(() => order.push('slow')),
        normalizeCodeOffThread('const q: number = 1;\nq').then(() => order.push('quick')),
      ]);
      expect(order).toEqual(['quick', 'slow']);
      // amaro's own syntax reports come back with their code, so hints still work.
      expect((await normalizeCodeOffThread('enum E { A }\nreturn E.A;')).typescriptHint).toMatch(/enum/);
    });

    it('lets real code through the nesting scan', () => {
      const real = [
        'const xs = [1, 2, 3]\nconst ys = xs.map((x) => x * 2)\nconst zs = ys.filter((y) => y > 2)\n'.repeat(200),
        'const m: Map<string, Array<Record<string, number>>> = new Map();\nfor (let i = 0; i < 10; i++) { if (i < 5 && i > 2) m.set(String(i), []); }\n'.repeat(200),
        'const s = `a ${`b ${"(("}`} ((`;\nconst r = /[(({]+/g;\n// (((((\n/* {{{{ */\n'.repeat(300),
        'const curry = (a: number) =>\n  (b: number) =>\n    (c: number) => a + b + c;\n'.repeat(300),
        'const a = 1\nconst b = a < 2\nconst c = b ? a < 3 : a > 4\nlet d: Array<number> = []\n'.repeat(300),
        'function f(a?: number, b?: string): number { return a ?? b?.length ?? 0 }\nconst t = f()\n  ? 1\n  : 2\nlet o: { p?: string } = {}\n'.repeat(300),
      ];
      for (const code of real) expect(scanNesting(code)).toBeUndefined();
    });
  });

  describe('guest-chosen strings (defect 3)', () => {
    it('caps the labels of refused and unknown tool calls and bounds their records', async () => {
      const result = await mode.execute(`
        for (let i = 0; i < 120; i++) { try { await callTool('z'.repeat(100000) + i, {}); } catch {} }
        try { await resources.read('u'.repeat(100000)); } catch {}
        return 1;`);
      expect(result.ok).toBe(true);
      expect(result.toolCalls.length).toBeGreaterThan(50);
      for (const call of result.toolCalls) expect(call.tool.length).toBeLessThan(MAX_TOOL_LABEL_CHARS + 40);
      expect(result.toolCalls[0]!.tool).toMatch(/^z{256}… \[99745 more characters\]$/);
      const formatted = formatExecuteResult(result);
      // Before: 120 labels of 100,000 characters (12 MB) in every answer.
      expect(JSON.stringify(formatted).length).toBeLessThan(60_000);
    });

    it('caps the name and message of what the guest threw', async () => {
      const result = await mode.execute(`const e = new Error('m'.repeat(100000)); e.name = 'N'.repeat(1000000); throw e;`);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.error.name!.length).toBeLessThan(MAX_ERROR_NAME_CHARS + 40);
      expect(result.error.message.length).toBeLessThan(8_100);
      expect(JSON.stringify(formatExecuteResult(result)).length).toBeLessThan(30_000);
    });
  });

  describe('discovery inputs (defect 4)', () => {
    it('reads a bounded prefix of a huge query and echoes a capped one', async () => {
      const [, search] = createCodeModeTools(mode);
      const query = 'qzx '.repeat(1_000_000); // 4 MB
      const { ms } = timed(() => mode.search(query));
      expect(ms).toBeLessThan(300); // 2.3 s before
      const answer = await search!.handler({ query });
      expect(textOf(answer).length).toBeLessThan(400);
      expect(textOf(answer)).toMatch(/^No tools match "qzx qzx/);
      // Words past the prefix do not count.
      expect(mode.search(`${'qzx '.repeat(MAX_QUERY_CHARS / 4)}echo`)).toEqual([]);
      expect(mode.search('echo').map((r) => r.name)).toEqual(['t.echo']);
    });

    it('bounds get_schema names in count and echo', async () => {
      const [, , getSchema] = createCodeModeTools(mode);
      await expect(getSchema!.handler({ tools: Array.from({ length: 101 }, () => 't.echo') })).rejects.toThrow(/at most 100/);
      const answer = await getSchema!.handler({ tools: ['t.echo', 'n'.repeat(1_000_000)] });
      expect(textOf(answer).length).toBeLessThan(2_000);
      expect((answer.structuredContent as { notFound: string[] }).notFound[0]!.length).toBeLessThan(300);
      expect(() => mode.getSchema(Array.from({ length: 101 }, () => 'x'))).toThrow(/at most 100/);
    });
  });

  describe('hostile catalogs (defect 12)', () => {
    it('trims huge descriptions and schemas as the catalog loads, reports them, and keeps well-behaved tools whole', async () => {
      const upper = 'AB'.repeat(256 * 1024); // 512 KB of capitals: 64 KB of these took 9 s to index before
      const hostile = localTools('hostile', [
        { name: 'big', title: upper, description: upper, input: { type: 'object', properties: { q: { type: 'string', description: upper } } }, handler: () => 1 },
        { name: 'huge', description: 'x'.repeat(5_000_000), handler: () => 2 },
        { name: 'wide', input: { type: 'object', properties: Object.fromEntries(Array.from({ length: 30_000 }, (_, i) => [`p${i}`, { type: 'string' }])) }, handler: () => 3 },
      ]);
      const good = localTools('good', [{ name: 'ok', description: 'A well-behaved tool.', input: { type: 'object', properties: { n: { type: 'number', description: 'A number.' } } }, handler: () => 4 }]);
      const started = performance.now();
      const m = await CodeMode.create({ sources: [hostile, good], sandbox });
      try {
        const tools = createCodeModeTools(m);
        m.search('capitals AB', { detail: 'full' });
        await tools[2]!.handler({ tools: ['hostile.big', 'hostile.huge', 'hostile.wide'], detail: 'full' });
        expect(performance.now() - started).toBeLessThan(5_000); // 512 KB never finished in 15 s before
        const big = m.catalog.entries.find((e) => e.tool.name === 'big')!.tool;
        expect(big.description!.length).toBeLessThan(MAX_TOOL_DESCRIPTION_CHARS + 40);
        expect(big.description).toMatch(/… \[\d+ more characters\]$/);
        const q = (big.inputSchema.properties as Record<string, { description: string }>).q!;
        expect(q.description.length).toBeLessThan(MAX_SCHEMA_STRING_CHARS + 40);
        expect(m.catalog.entries.find((e) => e.tool.name === 'wide')!.tool.inputSchema).toEqual({ type: 'object' });
        expect(m.catalog.warnings.map((w) => [w.source, w.tool, w.kind])).toEqual([
          ['hostile', 'big', 'description_truncated'],
          ['hostile', 'big', 'title_truncated'],
          ['hostile', 'big', 'schema_trimmed'],
          ['hostile', 'huge', 'description_truncated'],
          ['hostile', 'wide', 'schema_replaced'],
        ]);
        const ok = m.catalog.entries.find((e) => e.tool.name === 'ok')!.tool;
        expect(ok.description).toBe('A well-behaved tool.');
        expect(m.search('well behaved')[0]!.name).toBe('good.ok');
        const result = await m.execute('return [await tools.hostile.big({}), await tools.hostile.wide({ p1: "x" }), await tools.good.ok({ n: 1 })];');
        expect(result).toMatchObject({ ok: true, value: [1, 3, 4] });
      } finally {
        await m.close();
      }
    });

    it('caps the text of a detailed search, however deep and wide the schemas are', async () => {
      let schema: Record<string, unknown> = { type: 'string', enum: Array.from({ length: 15_000 }, (_, i) => `v${i}`) };
      for (let i = 0; i < 30; i++) schema = { type: 'object', properties: { deeper: schema } };
      const tools = Array.from({ length: 100 }, (_, i) => ({ name: `t${i}`, description: 'Deep tool.', input: schema, handler: () => i }));
      const m = await CodeMode.create({ sources: [localTools('deep', tools)], sandbox });
      try {
        const [, search] = createCodeModeTools(m, { inlineDeclarationsMaxChars: 0 });
        const answer = await search!.handler({ query: 'deep tool', detail: 'full', limit: 100 });
        // Pretty-printed whole, these hits were about 100 MB of text.
        expect(textOf(answer).length).toBeLessThan(201_000);
        expect(textOf(answer)).toMatch(/\[search results truncated: showing the first \d+ characters\. Ask with detail "brief"/);
        expect((answer.structuredContent as { results: unknown[] }).results).toHaveLength(100);
      } finally {
        await m.close();
      }
    });

    it('leaves out a tool whose name is too long to use, and says so', async () => {
      const m = await CodeMode.create({ sources: [localTools('s', [{ name: 'n'.repeat(10_000), handler: () => 1 }, { name: 'fine', handler: () => 2 }])], sandbox });
      try {
        expect(m.catalog.entries.map((e) => e.tool.name)).toEqual(['fine']);
        expect(m.catalog.warnings).toEqual([expect.objectContaining({ source: 's', kind: 'tool_dropped' })]);
        expect(m.catalog.warnings[0]!.message.length).toBeLessThan(400);
      } finally {
        await m.close();
      }
    });
  });
});
