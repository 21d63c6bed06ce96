import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CodeMode } from '../../src/codemode/codemode.js';
import { mcpClientSource } from '../../src/codemode/sources.js';
import type { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import { testSandbox } from './helpers.js';
import { connectEverythingHttp, connectStdio, root, serverScript } from './helpers.js';
import type { Connected } from './helpers.js';

const FIXTURE = join(root, 'test/fixtures/codemode-server.ts');

interface FixtureStats {
  calls: Record<string, number>;
  cancellations: Array<{ tool: string; reason: string }>;
  metas: Array<Record<string, unknown> | undefined>;
  maxInFlight: number;
}

/** What the fixture server saw, asked over the same connection (outside code mode). */
async function fixtureStats(conn: Connected): Promise<FixtureStats> {
  const result = await conn.client.callTool({ name: 'stats', arguments: {} });
  return result.structuredContent as unknown as FixtureStats;
}

describe('CodeMode against the stdio fixture server', () => {
  let sandbox: IsolatedVmSandbox;
  let conn: Connected;
  let mode: CodeMode;

  beforeAll(async () => {
    sandbox = testSandbox({ limits: { timeoutMs: 15_000 } });
  });

  afterAll(async () => {
    await sandbox?.close();
  });

  // A fresh server per test keeps the fixture's counters exact.
  async function start(options: { maxToolCalls?: number | null; maxConcurrentToolCalls?: number | null } = {}) {
    conn = await connectStdio([FIXTURE]);
    mode = await CodeMode.create({ sources: [mcpClientSource('fx', conn.client, { transport: 'pipe' })], sandbox, ...options });
  }

  afterEach(async () => {
    await mode?.close();
    await conn?.close();
  });

  it('shapes results: structuredContent, a single text, or the content array', async () => {
    await start();
    const result = await mode.execute(`
      return {
        sum: await tools.fx.add({ a: 2, b: 40 }),
        echo: await tools.fx.echo({ text: 'hi' }),
        multi: await tools.fx.multi(),
        legacy: await tools.fx.legacy(),
      };
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(result.ok && result.value).toEqual({
      sum: { sum: 42 },
      echo: 'hi',
      // A legacy toolResult answer gives its value (the SDK's schema fills in content: [], which hid it).
      legacy: { answer: 42 },
      multi: [
        { type: 'text', text: 'two blocks' },
        { type: 'image', data: 'iVBORw0KGgo=', mimeType: 'image/png' },
      ],
    });
  });

  it('turns an upstream isError into a ToolError with the upstream text, structuredContent and tool', async () => {
    await start();
    const result = await mode.execute(`
      try { await tools.fx.fail({ message: 'quota exceeded' }); return 'no throw'; }
      catch (e) { return { ok: e instanceof ToolError, message: e.message, tool: e.tool, sc: e.structuredContent, content: e.content }; }
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(result.ok && result.value).toEqual({
      ok: true,
      message: 'fx.fail: quota exceeded',
      tool: 'fx.fail',
      sc: { code: 'E_FIXTURE', detail: 'quota exceeded' },
      content: [{ type: 'text', text: 'quota exceeded' }],
    });
    const uncaught = await mode.execute(`await tools.fx.fail({ message: 'nope' })`);
    expect(uncaught.ok).toBe(false);
    expect(!uncaught.ok && uncaught.error).toMatchObject({ kind: 'runtime', name: 'ToolError', tool: 'fx.fail', structuredContent: { code: 'E_FIXTURE' } });
  });

  it('lets exactly 50 calls reach the upstream when 51 are attempted, sequentially and with Promise.all', async () => {
    await start();
    const sequential = await mode.execute(`
      let n = 0;
      try { for (let i = 0; i < 51; i++) { await tools.fx.counter(); n++; } } catch (e) { return { n, name: e.name }; }
      return { n };
    `);
    expect(sequential.ok && sequential.value).toEqual({ n: 50, name: 'ToolCallLimitError' });
    expect((await fixtureStats(conn)).calls.counter).toBe(50);
    const parallel = await mode.execute(`
      const r = await Promise.allSettled(Array.from({ length: 51 }, () => tools.fx.counter()));
      return r.filter((x) => x.status === 'rejected').map((x) => x.reason.name);
    `);
    expect(parallel.ok && parallel.value).toEqual(['ToolCallLimitError']);
    const stats = await fixtureStats(conn);
    expect(stats.calls.counter).toBe(100);
    expect(stats.maxInFlight).toBeLessThanOrEqual(10);
  });

  it('cancels the upstream request on abort (the server sees notifications/cancelled) and reports kind aborted', async () => {
    await start();
    const controller = new AbortController();
    const started = performance.now();
    const pending = mode.execute(`await tools.fx.slow({ ms: 20000, label: 'abort-me' }); return 'finished'`, { signal: controller.signal });
    // Wait until the upstream has the call in flight.
    await expect.poll(async () => (await fixtureStats(conn)).calls.slow ?? 0, { timeout: 10_000 }).toBe(1);
    controller.abort();
    const result = await pending;
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.kind).toBe('aborted');
    await expect.poll(async () => (await fixtureStats(conn)).cancellations.map((c) => c.tool), { timeout: 5_000 }).toEqual(['abort-me']);
    expect(result.toolCalls).toEqual([expect.objectContaining({ tool: 'fx.slow', ok: false, reason: 'cancelled' })]);
  });

  it('sends no notifications/cancelled for calls that already finished when the run ends', async () => {
    await start();
    // Counts what this client sends; the fixture cannot tell a cancellation of a finished request from none.
    const transport = conn.client.transport!;
    const send = transport.send.bind(transport);
    const cancelled: unknown[] = [];
    transport.send = (message, options) => {
      if ('method' in message && message.method === 'notifications/cancelled') cancelled.push(message.params);
      return send(message, options);
    };
    const result = await mode.execute(`for (let i = 0; i < 5; i++) await tools.fx.echo({ text: 'x' + i }); return 'done'`);
    expect(result.ok && result.value).toBe('done');
    // Let any listener fired by the run's end run and write.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(cancelled).toEqual([]);
    // A call still running at the end is cancelled, exactly once.
    const forgotten = await mode.execute(`tools.fx.slow({ ms: 20000, label: 'late' }); await tools.fx.echo({ text: 'x' }); return 'done'`);
    expect(forgotten.ok && forgotten.value).toBe('done');
    await expect.poll(() => cancelled.length, { timeout: 5_000 }).toBe(1);
  });

  it('cancels upstream calls still pending when the block returns', async () => {
    await start();
    const result = await mode.execute(`tools.fx.slow({ ms: 20000, label: 'forgotten' }); await tools.fx.echo({ text: 'x' }); return 'done'`);
    expect(result.ok && result.value).toBe('done');
    expect(result.warnings.join(' ')).toMatch(/forget an `await`/);
    await expect.poll(async () => (await fixtureStats(conn)).cancellations.map((c) => c.tool), { timeout: 5_000 }).toEqual(['forgotten']);
  });

  it('bounds concurrency at the upstream with maxConcurrentToolCalls', async () => {
    await start({ maxConcurrentToolCalls: 2 });
    const result = await mode.execute(`return (await Promise.all([1,2,3,4,5,6].map(() => tools.fx.slow({ ms: 150 })))).length`);
    expect(result.ok && result.value).toBe(6);
    expect((await fixtureStats(conn)).maxInFlight).toBe(2);
  });

  it('reads resources and gets prompts inside the sandbox', async () => {
    await start();
    expect(mode.hasResources).toBe(true);
    expect(mode.hasPrompts).toBe(true);
    expect(mode.declarations()).toContain('declare const resources');
    const result = await mode.execute(`
      const greeting = await resources.read('fixture://greeting');
      const item = await resources.read('fixture://items/7');
      const prompt = await prompts.get('greet', { name: 'Ada' });
      const qualified = await prompts.get('fx.greet', { name: 'Bob' });
      let missing;
      try { await resources.read('fixture://nothing'); } catch (e) { missing = { name: e.name, message: e.message }; }
      return { greeting: greeting[0].text, item: JSON.parse(item[0].text), prompt: prompt.messages[0].content.text, q: qualified.messages[0].content.text, missing };
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(result.ok && result.value).toMatchObject({
      greeting: 'hello from a resource',
      item: { id: '7' },
      prompt: 'Say hello to Ada.',
      q: 'Say hello to Bob.',
      missing: { name: 'ToolError' },
    });
    expect(result.toolCalls.map((c) => c.tool)).toEqual([
      'resources/read fixture://greeting',
      'resources/read fixture://items/7',
      'prompts/get greet',
      'prompts/get fx.greet',
      'resources/read fixture://nothing',
    ]);
  });

  it('applies toolCallTimeoutMs to upstream calls, cancelling them upstream', async () => {
    conn = await connectStdio([FIXTURE]);
    mode = await CodeMode.create({ sources: [mcpClientSource('fx', conn.client)], sandbox, toolCallTimeoutMs: 200 });
    const started = performance.now();
    const result = await mode.execute(`try { await tools.fx.slow({ ms: 10000, label: 'timed-out' }); } catch (e) { return { name: e.name, message: e.message }; }`);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(result.ok && result.value).toMatchObject({ name: 'ToolError', message: expect.stringMatching(/^fx\.slow: calling server "fx" failed: .*timed out/i) });
    await expect.poll(async () => (await fixtureStats(conn)).cancellations.map((c) => c.tool), { timeout: 5_000 }).toEqual(['timed-out']);
  });

  it("does not let the SDK's 60 s request timeout cut a call short, and passes a cancellation signal", async () => {
    await start();
    const seenOptions: Array<{ timeout?: number; signal?: AbortSignal }> = [];
    const original = conn.client.request.bind(conn.client);
    conn.client.request = ((request: unknown, schema: unknown, options?: { timeout?: number; signal?: AbortSignal }) => {
      seenOptions.push({ ...options });
      return (original as (...args: unknown[]) => unknown)(request, schema, options);
    }) as typeof conn.client.request;
    const result = await mode.execute(`return await tools.fx.echo({ text: 'x' })`);
    expect(result.ok && result.value).toBe('x');
    expect(seenOptions).toHaveLength(1);
    expect(seenOptions[0]!.timeout).toBeGreaterThan(60_000);
    expect(seenOptions[0]!.signal).toBeInstanceOf(AbortSignal);
  });

  it('turns a transport failure into a ToolError naming the server and the cause', async () => {
    await start();
    const result = await mode.execute(`
      try { await tools.fx.crash(); } catch (e) { return { name: e.name, message: e.message, tool: e.tool }; }
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    const value = (result.ok ? result.value : {}) as { name: string; message: string; tool: string };
    expect(value.name).toBe('ToolError');
    expect(value.tool).toBe('fx.crash');
    expect(value.message).toMatch(/^fx\.crash: calling server "fx" failed: .*(closed|Connection)/i);
  });
});

describe.each([
  ['stdio', () => connectStdio([serverScript('@modelcontextprotocol/server-everything'), 'stdio'])],
  ['Streamable HTTP', connectEverythingHttp],
] as const)('CodeMode against server-everything over %s', (_transport, connect) => {
  let sandbox: IsolatedVmSandbox;
  let conn: Connected;
  let mode: CodeMode;
  let started = 0;

  beforeAll(async () => {
    sandbox = testSandbox({ limits: { timeoutMs: 15_000 } });
    conn = await connect();
    const source = mcpClientSource('everything', conn.client);
    const callTool = source.callTool.bind(source);
    // Counts calls as they go upstream, so the abort test can wait for one to be in flight.
    source.callTool = (name, args, options) => {
      started++;
      return callTool(name, args, options);
    };
    mode = await CodeMode.create({ sources: [source], sandbox });
  }, 30_000);

  afterAll(async () => {
    await mode?.close();
    await conn?.close();
    await sandbox?.close();
  });

  it('calls real tools by identifier and by upstream name', async () => {
    const result = await mode.execute(`
      const sum = await tools.everything.get_sum({ a: 2, b: 3 });
      const weather = await callTool('everything.get-structured-content', { location: 'Chicago' });
      const echo = await tools.everything.echo({ message: 'hi' });
      const sumByUpstreamName = await tools.everything['get-sum']({ a: 1, b: 1 });
      const image = await tools.everything.get_tiny_image();
      return { sum, weather, echo, imageTypes: image.map((b) => b.type), sumByUpstreamName };
    `);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    if (!result.ok) return;
    const value = result.value as { sum: unknown; weather: { temperature: number }; echo: string; imageTypes: string[]; sumByUpstreamName: unknown };
    expect(String(value.sum)).toMatch(/5/);
    expect(String(value.sumByUpstreamName)).toMatch(/2/);
    expect(value.weather).toMatchObject({ temperature: expect.any(Number), conditions: expect.any(String) });
    expect(value.echo).toMatch(/hi/);
    expect(value.imageTypes).toContain('image');
    expect(result.toolCalls.every((c) => c.ok)).toBe(true);
  });

  it('finds real tools with search and get_schema', () => {
    expect(mode.search('sum of two numbers')[0]?.name).toBe('everything.get-sum');
    expect(mode.search('weather for a city', { detail: 'detailed' })[0]).toMatchObject({
      name: 'everything.get-structured-content',
      parameters: [{ name: 'location', required: true }],
    });
    const schema = mode.getSchema(['everything.echo', 'get_sum', 'everything.nope']);
    expect(schema.tools.map((t) => t.name)).toEqual(['everything.echo', 'everything.get-sum']);
    expect(schema.declarations).toContain('echo(args: {');
    expect(schema.notFound).toEqual(['everything.nope']);
  });

  it('surfaces upstream validation failures as ToolErrors', async () => {
    const result = await mode.execute(`try { await tools.everything.get_sum({ a: 'x' }); } catch (e) { return { name: e.name, message: e.message }; }`);
    expect(result.ok && (result.value as { name: string }).name).toBe('ToolError');
  });

  it('aborts during a long-running upstream operation', async () => {
    const controller = new AbortController();
    const t0 = performance.now();
    const before = started;
    const pending = mode.execute(`await tools.everything.trigger_long_running_operation({ duration: 30, steps: 3 }); return 'finished'`, { signal: controller.signal });
    await expect.poll(() => started, { timeout: 10_000 }).toBe(before + 1);
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    const result = await pending;
    expect(performance.now() - t0).toBeLessThan(12_000);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.kind).toBe('aborted');
    expect(result.toolCalls).toEqual([expect.objectContaining({ tool: 'everything.trigger-long-running-operation', ok: false, reason: 'cancelled' })]);
    // The connection stays usable after the cancellation.
    const after = await mode.execute('return await tools.everything.echo({ message: "still here" })');
    expect(after.ok && after.value).toMatch(/still here/);
  });
});
