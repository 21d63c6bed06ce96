import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
import { CodeMode, MAX_CODE_CHARS } from '../../src/codemode/codemode.js';
import { localTools } from '../../src/codemode/sources.js';
import { ToolError } from '../../src/codemode/tool-errors.js';
import type { ToolSource } from '../../src/codemode/types.js';
import { isCodemodeError } from '../../src/errors.js';
import type { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import { testSandbox } from './helpers.js';

/** Host-side counters of the local tools, reset per test where it matters. */
const seen = { ping: 0, slowStarted: 0, slowAborted: 0, inFlight: 0, maxInFlight: 0 };

function source() {
  return localTools('local', [
    { name: 'ping', description: 'Answers pong.', handler: () => (seen.ping++, 'pong') },
    { name: 'add', input: { a: z.number(), b: z.number() }, output: z.object({ sum: z.number() }), handler: ({ a, b }) => ({ sum: (a as number) + (b as number) }) },
    {
      name: 'boom',
      handler: () => {
        throw new ToolError('local.boom: exploded', { tool: 'local.boom', structuredContent: { code: 42 } });
      },
    },
    {
      name: 'throws-plain',
      handler: () => {
        throw new Error('plain failure');
      },
    },
    {
      // Waits until `target` calls are in flight at once (or 3 s pass), so concurrency tests do not depend on timing.
      name: 'barrier',
      input: { target: z.number() },
      handler: async ({ target }) => {
        seen.inFlight++;
        seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
        try {
          const deadline = Date.now() + 3_000;
          while (seen.inFlight < (target as number) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
          return seen.inFlight;
        } finally {
          // Leave the count raised a moment, so a call admitted too early would still see the others.
          await new Promise((r) => setTimeout(r, 5));
          seen.inFlight--;
        }
      },
    },
    {
      name: 'slow',
      input: { ms: z.number() },
      handler: async ({ ms }, { signal }) => {
        seen.slowStarted++;
        seen.inFlight++;
        seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight);
        try {
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(resolve, ms as number);
            signal.addEventListener('abort', () => {
              clearTimeout(timer);
              seen.slowAborted++;
              reject(new Error('aborted'));
            });
          });
          return 'done';
        } finally {
          seen.inFlight--;
        }
      },
    },
  ]);
}

function reset() {
  for (const key of Object.keys(seen) as Array<keyof typeof seen>) seen[key] = 0;
}

describe('CodeMode.execute with local tools', () => {
  let sandbox: IsolatedVmSandbox;
  let mode: CodeMode;

  beforeAll(async () => {
    sandbox = testSandbox({ limits: { timeoutMs: 10_000 } });
    mode = await CodeMode.create({ sources: [source()], sandbox });
  });

  afterAll(async () => {
    await mode?.close();
    await sandbox?.close();
  });

  it('calls tools through tools.<ns>.<tool> and callTool, shaping values', async () => {
    const result = await mode.execute(`
      const a = await tools.local.ping();
      const b = await tools.local.add({ a: 2, b: 3 });
      const c = await callTool('local.add', { a: 1, b: 1 });
      const d = await callTool('add', { a: 0, b: 5 });
      console.log('got', a);
      return { a, b, c, d };
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    if (!result.ok) return;
    expect(result.value).toEqual({ a: 'pong', b: { sum: 5 }, c: { sum: 2 }, d: { sum: 5 } });
    expect(result.logs).toEqual([{ level: 'log', message: 'got pong' }]);
    expect(result.toolCalls.map((c) => [c.tool, c.ok])).toEqual([
      ['local.ping', true],
      ['local.add', true],
      ['local.add', true],
      ['local.add', true],
    ]);
    expect(result.stats.toolCalls).toBe(4);
  });

  it('accepts arrow functions, fences, TypeScript, and a trailing expression', async () => {
    const arrow = await mode.execute('async () => { return await tools.local.add({ a: 1, b: 2 }); }');
    expect(arrow).toMatchObject({ ok: true, value: { sum: 3 } });
    const fenced = await mode.execute('```js\nconst r = await tools.local.add({ a: 2, b: 2 })\nr.sum\n```');
    expect(fenced).toMatchObject({ ok: true, value: 4 });
    const ts = await mode.execute('interface S { sum: number }\nconst r = (await tools.local.add({ a: 5, b: 5 })) as S;\nconst n: number = r.sum;\nn * 2');
    expect(ts).toMatchObject({ ok: true, value: 20 });
  });

  it('reports runtime and syntax errors at positions in the submitted code', async () => {
    const runtime = await mode.execute('```js\nconst x = 1;\nconst y = null;\ny.foo\n```');
    expect(runtime.ok).toBe(false);
    if (runtime.ok) return;
    expect(runtime.error).toMatchObject({ kind: 'runtime', name: 'TypeError', line: 4 });
    const syntax = await mode.execute('const a = 1;\nconst = 2;');
    expect(syntax.ok).toBe(false);
    if (syntax.ok) return;
    expect(syntax.error.kind).toBe('syntax');
    expect(syntax.error.line).toBe(2);
  });

  it('explains TypeScript that cannot be stripped', async () => {
    const result = await mode.execute('enum Color { Red }\nconst c: Color = Color.Red;\nreturn c;');
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error).toMatchObject({ kind: 'syntax', message: expect.stringMatching(/TypeScript enum is not supported.*write enums as objects/) });
  });

  it('makes tool failures catchable ToolErrors carrying tool and structuredContent', async () => {
    const result = await mode.execute(`
      const out = [];
      try { await tools.local.boom(); } catch (e) {
        out.push({ isToolError: e instanceof ToolError, isError: e instanceof Error, name: e.name, message: e.message, tool: e.tool, sc: e.structuredContent });
      }
      try { await tools.local.throws_plain(); } catch (e) { out.push({ isToolError: e instanceof ToolError, message: e.message, tool: e.tool }); }
      try { await tools.local.add({ a: 'x', b: 1 }); } catch (e) { out.push({ isToolError: e instanceof ToolError, message: e.message }); }
      try { await callTool('nope', {}); } catch (e) { out.push({ isToolError: e instanceof ToolError, message: e.message }); }
      try { await tools.local.add([1, 2]); } catch (e) { out.push({ message: e.message }); }
      return out;
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    if (!result.ok) return;
    const [boom, plain, invalid, unknown, badArgs] = result.value as Array<Record<string, unknown>>;
    expect(boom).toEqual({ isToolError: true, isError: true, name: 'ToolError', message: 'local.boom: exploded', tool: 'local.boom', sc: { code: 42 } });
    expect(plain).toEqual({ isToolError: true, message: 'local.throws-plain: plain failure', tool: 'local.throws-plain' });
    expect(invalid!.isToolError).toBe(true);
    expect(invalid!.message).toMatch(/invalid arguments/);
    expect(unknown!.isToolError).toBe(true);
    expect(unknown!.message).toMatch(/Unknown tool "nope"/);
    expect(badArgs!.message).toMatch(/arguments must be an object/);
    expect(result.toolCalls.map((c) => c.reason ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'unknown_tool', 'invalid_arguments']);
    expect(result.toolCalls.map((c) => c.ok)).toEqual([false, false, false, false, false]);
  });

  it('fails a call whose value cannot cross into the sandbox as a ToolError, recorded as failed', async () => {
    const odd = await CodeMode.create({
      sources: [
        localTools('odd', [
          { name: 'map', handler: () => new Map([[1, 2]]) },
          { name: 'big', handler: () => ({ n: 10n }) },
          {
            name: 'cycle',
            handler: () => {
              const c: Record<string, unknown> = { a: 1 };
              c.self = c;
              return c;
            },
          },
        ]),
      ],
      sandbox,
    });
    try {
      const result = await odd.execute(`
        const out = [];
        for (const f of [tools.odd.map, tools.odd.big, tools.odd.cycle]) {
          try { await f(); out.push('no error'); } catch (e) { out.push({ isToolError: e instanceof ToolError, tool: e.tool, message: e.message }); }
        }
        return out;`);
      expect(result.ok && result.value).toEqual([
        { isToolError: true, tool: 'odd.map', message: expect.stringMatching(/^odd\.map: its result cannot be copied into the sandbox: the value is a Map/) },
        { isToolError: true, tool: 'odd.big', message: expect.stringMatching(/"n" is a BigInt/) },
        // A cycle is too deep for the plain-data check; JSON.stringify then reports it.
        { isToolError: true, tool: 'odd.cycle', message: expect.stringMatching(/circular/i) },
      ]);
      expect(result.toolCalls.map((c) => c.ok)).toEqual([false, false, false]);
    } finally {
      await odd.close();
    }
  });

  it('reports an uncaught ToolError with its tool and structured content', async () => {
    const result = await mode.execute('await tools.local.boom();');
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error).toMatchObject({ kind: 'runtime', name: 'ToolError', tool: 'local.boom', structuredContent: { code: 42 } });
  });

  it('does not take the error kind or tool from errors the guest forges', async () => {
    const limit = await mode.execute(`const e = new Error('fake'); e.name = 'ToolCallLimitError'; throw e;`);
    expect(!limit.ok && limit.error).toMatchObject({ kind: 'runtime', name: 'ToolCallLimitError' });
    const forged = await mode.execute(`throw { name: 'ToolError', message: 'm', tool: 'local.boom', structuredContent: { fake: true } };`);
    expect(!forged.ok && forged.error.kind).toBe('runtime');
    expect(!forged.ok && forged.error.tool).toBeUndefined();
    expect(!forged.ok && forged.error.structuredContent).toBeUndefined();
    // A real failed call keeps its fields, even when the guest rethrows the error.
    const real = await mode.execute(`try { await tools.local.boom(); } catch (e) { throw e; }`);
    expect(!real.ok && real.error).toMatchObject({ name: 'ToolError', tool: 'local.boom', structuredContent: { code: 42 } });
    // So does a handler's ToolError that names its tool its own way.
    const named = await CodeMode.create({
      sources: [localTools('inv', [{ name: 'get', handler: () => { throw new ToolError('not found', { tool: 'get', structuredContent: { missing: 'sku-1' } }); } }])],
      sandbox,
    });
    try {
      const own = await named.execute('await tools.inv.get()');
      expect(!own.ok && own.error).toMatchObject({ name: 'ToolError', tool: 'get', structuredContent: { missing: 'sku-1' } });
    } finally {
      await named.close();
    }
  });

  it('runs exactly 50 host calls when 51 are attempted sequentially; call 51 throws a catchable ToolCallLimitError', async () => {
    reset();
    const result = await mode.execute(`
      let done = 0;
      for (let i = 0; i < 51; i++) {
        try { await tools.local.ping(); done++; }
        catch (e) { return { done, name: e.name, isLimit: e instanceof ToolCallLimitError, isToolError: e instanceof ToolError, limit: e.limit, message: e.message }; }
      }
      return { done };
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    if (!result.ok) return;
    expect(result.value).toMatchObject({ done: 50, name: 'ToolCallLimitError', isLimit: true, isToolError: false, limit: 50 });
    expect((result.value as { message: string }).message).toMatch(/at most 50 tool calls/);
    expect(seen.ping).toBe(50);
    expect(result.stats.toolCalls).toBe(51);
    expect(result.toolCalls.at(-1)).toMatchObject({ tool: 'local.ping', ok: false, reason: 'limit' });
  });

  it('runs exactly 50 host calls when 51 are attempted with Promise.all', async () => {
    reset();
    const result = await mode.execute(`
      const settled = await Promise.allSettled(Array.from({ length: 51 }, () => tools.local.ping()));
      return { ok: settled.filter((s) => s.status === 'fulfilled').length, rejected: settled.filter((s) => s.status === 'rejected').map((s) => s.reason.name) };
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(result.ok && result.value).toEqual({ ok: 50, rejected: ['ToolCallLimitError'] });
    expect(seen.ping).toBe(50);
  });

  it('counts failed and unknown calls toward the cap, and reports an uncaught limit error as tool_call_limit', async () => {
    reset();
    const result = await mode.execute(`
      for (let i = 0; i < 10; i++) { try { await callTool('missing.tool', {}); } catch {} }
      for (let i = 0; i < 10; i++) { try { await tools.local.boom(); } catch {} }
      for (let i = 0; i < 31; i++) await tools.local.ping();
    `);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.kind).toBe('tool_call_limit');
    expect(result.error.message).toMatch(/at most 50/);
    expect(seen.ping).toBe(30);
  });

  it('lifts the cap with maxToolCalls: null and honours a custom cap', async () => {
    reset();
    const unlimited = await CodeMode.create({ sources: [source()], sandbox, maxToolCalls: null });
    const three = await CodeMode.create({ sources: [source()], sandbox, maxToolCalls: 3 });
    try {
      const many = await unlimited.execute('for (let i = 0; i < 120; i++) await tools.local.ping(); return 1');
      expect(many).toMatchObject({ ok: true, value: 1 });
      expect(seen.ping).toBe(120);
      const capped = await three.execute('for (let i = 0; i < 4; i++) await tools.local.ping();');
      expect(capped.ok).toBe(false);
      expect(!capped.ok && capped.error.message).toMatch(/at most 3 tool calls/);
      expect(seen.ping).toBe(123);
    } finally {
      await unlimited.close();
      await three.close();
    }
    await expect(CodeMode.create({ sources: [], sandbox, maxToolCalls: 0 })).rejects.toThrow(/positive integer or null/);
    await expect(CodeMode.create({ sources: [], limits: { timeoutMs: -1 } })).rejects.toThrow(/timeoutMs must be a positive number/);
  });

  it('counts every server a bare resources.read or prompts.get asks toward the cap, and names each failure', async () => {
    // Three sources that serve resources and prompts; only the last has the resource, none the prompt.
    const asked: string[] = [];
    const resourceSource = (name: string, has: boolean, failure: string): ToolSource => ({
      name,
      listTools: async () => [],
      callTool: () => Promise.reject(new Error('no tools')),
      readResource: async (uri) => {
        asked.push(`${name} ${uri}`);
        if (!has) throw new Error(failure);
        return { contents: [{ uri, text: `from ${name}` }] };
      },
      getPrompt: async (prompt) => {
        asked.push(`${name} prompt ${prompt}`);
        throw new Error(`${failure} (prompt)`);
      },
    });
    const sources = [resourceSource('a', false, 'EACCES permission denied'), resourceSource('b', false, 'not found'), resourceSource('c', true, 'no prompts')];
    const capped = await CodeMode.create({ sources, sandbox, maxToolCalls: 5 });
    try {
      const result = await capped.execute(`
        const out = [];
        for (let i = 0; i < 6; i++) {
          try { out.push((await resources.read('x://real'))[0].text); } catch (e) { out.push(e.name); }
        }
        return out;`);
      // Each read asks a, b, then c: three calls toward the cap of 5. The second read gets two servers in and
      // is refused at the third; every later read is refused before it asks anyone.
      expect(result).toMatchObject({ ok: true, value: ['from c', 'ToolCallLimitError', 'ToolCallLimitError', 'ToolCallLimitError', 'ToolCallLimitError', 'ToolCallLimitError'] });
      expect(asked).toEqual(['a x://real', 'b x://real', 'c x://real', 'a x://real', 'b x://real']);
      expect(result.stats.toolCalls).toBe(10);
      asked.length = 0;
      const prompt = await capped.execute(`try { await prompts.get('greet', {}); } catch (e) { return e.message; }`);
      expect(prompt.ok && prompt.value).toMatch(/no server could answer \(asked 3\): "a": EACCES permission denied \(prompt\); "b": not found \(prompt\); "c": no prompts \(prompt\)/);
      expect(asked).toEqual(['a prompt greet', 'b prompt greet', 'c prompt greet']);
    } finally {
      await capped.close();
    }
  });

  it('bounds parallel calls with maxConcurrentToolCalls', async () => {
    reset();
    const bounded = await CodeMode.create({ sources: [source()], sandbox, maxConcurrentToolCalls: 3 });
    try {
      const result = await bounded.execute('return (await Promise.all(Array.from({ length: 9 }, () => tools.local.barrier({ target: 3 })))).length');
      expect(result).toMatchObject({ ok: true, value: 9 });
      expect(seen.maxInFlight).toBe(3);
    } finally {
      await bounded.close();
    }
    reset();
    const result = await mode.execute('return (await Promise.all(Array.from({ length: 8 }, () => tools.local.barrier({ target: 8 })))).length');
    expect(result).toMatchObject({ ok: true, value: 8 });
    expect(seen.maxInFlight).toBe(8);
  });

  it('cancels calls still pending when the block returns, and hints at a forgotten await', async () => {
    reset();
    const result = await mode.execute('tools.local.slow({ ms: 5000 }); tools.local.slow({ ms: 5000 }); return "early"');
    expect(result).toMatchObject({ ok: true, value: 'early' });
    if (!result.ok) return;
    expect(result.warnings.join(' ')).toMatch(/2 tool calls were still running.*cancelled.*forget an `await`/);
    expect(result.toolCalls).toEqual([
      expect.objectContaining({ tool: 'local.slow', ok: false, reason: 'cancelled' }),
      expect.objectContaining({ tool: 'local.slow', ok: false, reason: 'cancelled' }),
    ]);
    await expect.poll(() => seen.slowAborted).toBe(2);
  });

  it('aborts through the signal: disposes the run, cancels the in-flight call, resolves with kind aborted', async () => {
    reset();
    const controller = new AbortController();
    const started = performance.now();
    const pending = mode.execute('await tools.local.slow({ ms: 20000 }); return 1', { signal: controller.signal });
    await expect.poll(() => seen.slowStarted).toBe(1);
    controller.abort();
    const result = await pending;
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.kind).toBe('aborted');
    await expect.poll(() => seen.slowAborted).toBe(1);
    expect(result.toolCalls).toEqual([expect.objectContaining({ tool: 'local.slow', ok: false, reason: 'cancelled' })]);
  });

  it('resolves with kind aborted at once for an already aborted signal, calling no tool', async () => {
    reset();
    const result = await mode.execute('await tools.local.ping(); return 1', { signal: AbortSignal.abort() });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.kind).toBe('aborted');
    expect(seen.ping).toBe(0);
  });

  it('picks up a changed tool list on refresh()', async () => {
    let names = ['first'];
    const dynamic = {
      name: 'dyn',
      listTools: async () => names.map((name) => ({ name, inputSchema: { type: 'object' } })),
      callTool: async (name: string) => ({ value: name }),
    };
    const refreshing = await CodeMode.create({ sources: [dynamic], sandbox });
    try {
      expect(refreshing.declarations()).toContain('first(args?');
      names = ['second'];
      await refreshing.refresh();
      expect(refreshing.declarations()).not.toContain('first(');
      expect(await refreshing.execute('return await tools.dyn.second()')).toMatchObject({ ok: true, value: 'second' });
      names = ['a-b', 'a_b'];
      await expect(refreshing.refresh()).rejects.toThrow(/both become the identifier/);
      expect(refreshing.search('second')[0]?.name).toBe('dyn.second');
    } finally {
      await refreshing.close();
    }
  });

  it('exposes awkwardly named tools as own keys, by identifier and by upstream name', async () => {
    const odd = localTools('my-ns', [
      { name: 'toString', handler: () => 'ts' },
      { name: '__proto__', handler: () => 'proto' },
      { name: 'get-x', handler: () => 'x' },
    ]);
    const oddMode = await CodeMode.create({ sources: [odd], sandbox });
    try {
      const result = await oddMode.execute(`return [
        await tools.my_ns.toString(), await tools.my_ns.__proto___(), await tools.my_ns.get_x(),
        await tools['my-ns']['get-x'](), await tools.my_ns['__proto__'](),
      ]`);
      expect(result.ok, JSON.stringify(result)).toBe(true);
      expect(result.ok && result.value).toEqual(['ts', 'proto', 'x', 'x', 'proto']);
    } finally {
      await oddMode.close();
    }
  });

  it('lists parallel calls in call order, and keeps caps separate per execution', async () => {
    const [a, b] = await Promise.all([
      mode.execute(`
        const slow = tools.local.slow({ ms: 150 });
        const fast = tools.local.add({ a: 1, b: 1 });
        await Promise.all([slow, fast]);
        for (let i = 0; i < 45; i++) await tools.local.ping();
        return 'a';
      `),
      mode.execute('for (let i = 0; i < 45; i++) await tools.local.ping(); return "b"'),
    ]);
    expect(a).toMatchObject({ ok: true, value: 'a' });
    expect(b).toMatchObject({ ok: true, value: 'b' });
    expect(a.toolCalls.slice(0, 2).map((c) => c.tool)).toEqual(['local.slow', 'local.add']);
    expect(a.toolCalls[0]!.ms).toBeGreaterThanOrEqual(a.toolCalls[1]!.ms);
    expect(a.stats.toolCalls).toBe(47);
    expect(b.stats.toolCalls).toBe(45);
  });

  it('answers code longer than MAX_CODE_CHARS with a syntax failure the model can read, before parsing it', async () => {
    const started = performance.now();
    const result = await mode.execute('```' + 'a'.repeat(MAX_CODE_CHARS));
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(result).toMatchObject({ ok: false, error: { kind: 'syntax', message: expect.stringMatching(/at most 200000 are accepted/) }, toolCalls: [] });
    expect(await mode.execute(`return ${JSON.stringify('x'.repeat(1_000))}.length`)).toMatchObject({ ok: true, value: 1_000 });
  });

  it('refuses misuse with typed errors', async () => {
    await expect(mode.execute(42 as unknown as string)).rejects.toSatisfy((e: unknown) => isCodemodeError(e, 'INVALID_ARGUMENT'));
    const closed = await CodeMode.create({ sources: [source()], sandbox });
    await closed.close();
    await closed.close();
    await expect(closed.execute('return 1')).rejects.toSatisfy((e: unknown) => isCodemodeError(e, 'CLOSED'));
    for (const limit of [Number.NaN, 0, -1, 2.5, '3' as unknown as number]) {
      expect(() => mode.search('ping', { limit })).toThrow(/positive whole number of results/);
    }
    expect(mode.search('ping', { limit: 1 })).toHaveLength(1);
    expect(() => mode.search('ping', { detail: 'everything' as 'full' })).toThrow(/detail must be "brief", "detailed" or "full"/);
    expect(() => mode.getSchema(['local.ping'], 'all' as 'full')).toThrow(/detail must be/);
  });
});

describe('CodeMode with the default sandbox', () => {
  it('ends executions in flight with kind aborted when closed, cancelling their tool calls', async () => {
    reset();
    const mode = await CodeMode.create({ sources: [source()] });
    const pending = mode.execute('await tools.local.slow({ ms: 20000 }); return 1');
    await expect.poll(() => seen.slowStarted).toBe(1);
    await mode.close();
    const result = await pending;
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.kind).toBe('aborted');
    await expect.poll(() => seen.slowAborted).toBe(1);
  });

  it('creates an IsolatedVmSandbox with the given limits and closes it', async () => {
    const mode = await CodeMode.create({ sources: [source()], limits: { timeoutMs: 300 } });
    try {
      const ok = await mode.execute('return await tools.local.ping()');
      expect(ok).toMatchObject({ ok: true, value: 'pong' });
      const slow = await mode.execute('while (true) {}');
      expect(slow.ok).toBe(false);
      expect(!slow.ok && slow.error.kind).toBe('timeout');
    } finally {
      await mode.close();
    }
  });
});
