/**
 * Upstream bounds on the server side (issue 17, defects 12 and 15): a `tools/list_changed` storm is one
 * coalesced refresh (and one log line) per burst, and a catalog over the caps is a failed upstream with a
 * clear status, while a well-behaved upstream next to it serves. Real stdio processes throughout.
 */
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { setLogLevel, setLogSink, getLogLevel } from '../../src/log.js';
import { parseServersConfig } from '../../src/server/config.js';
import { createCodemodeServerFromConfig } from '../../src/server/server.js';
import { connectUpstreams, DEFAULT_MAX_CATALOG_TOOLS } from '../../src/server/upstreams.js';

const HOSTILE = fileURLToPath(new URL('../fixtures/hostile-stdio-upstream.mjs', import.meta.url));
const entry = (env: Record<string, string> = {}) => ({ command: process.execPath, args: [HOSTILE], env });

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()?.()).catch(() => undefined);
});

/** Log lines at info level and above, from here to the end of the test. */
function captureLogs(): string[] {
  const lines: string[] = [];
  const level = getLogLevel();
  setLogLevel('info');
  const restore = setLogSink((line) => void lines.push(line));
  cleanups.push(() => {
    restore();
    setLogLevel(level);
  });
  return lines;
}

function textOf(result: unknown): string {
  return ((result as { content?: Array<{ text?: string }> }).content ?? []).map((c) => c.text ?? '').join('');
}

describe('a tools/list_changed storm', () => {
  it('is coalesced into a few refreshes with a count, logged once each, while the neighbour keeps answering', async () => {
    const lines = captureLogs();
    const calls: number[] = [];
    const upstreams = await connectUpstreams(
      { bad: entry(), good: entry() },
      { onToolsChanged: (name, count) => void (name === 'bad' && calls.push(count)), onStderr: () => undefined },
    );
    cleanups.push(() => upstreams.close());
    const bad = upstreams.connections.get('bad')!;
    const good = upstreams.connections.get('good')!;
    const storm = bad.client.request({ method: 'tools/call', params: { name: 'storm', arguments: { count: 10_000 } } }, CallToolResultSchema, { timeout: 60_000 });
    let maxMs = 0;
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      expect(textOf(await good.client.request({ method: 'tools/call', params: { name: 'echo', arguments: { text: `n${i}` } } }, CallToolResultSchema))).toBe(`n${i}`);
      maxMs = Math.max(maxMs, performance.now() - started);
    }
    expect(textOf(await storm)).toBe('stormed 10000');
    // The last burst is announced after the debounce (and at most one refresh a second).
    await new Promise((r) => setTimeout(r, 1500));
    expect(calls.length).toBeGreaterThanOrEqual(1);
    expect(calls.length).toBeLessThanOrEqual(15);
    const deadline = Date.now() + 5000;
    while (calls.reduce((a, b) => a + b, 0) < 10_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(calls.reduce((a, b) => a + b, 0)).toBe(10_000);
    const logged = lines.filter((l) => l.includes('refreshing the catalog'));
    expect(logged).toHaveLength(calls.length);
    expect(logged.at(-1)).toMatch(/upstream "bad" announced \d+ tool-list changes?; refreshing the catalog once/);
    expect(maxMs).toBeLessThan(2000);
  });
});

describe('a catalog over the caps', () => {
  it(`(more than ${DEFAULT_MAX_CATALOG_TOOLS} tools) is a failed upstream with a clear status; the other one serves`, async () => {
    const config = parseServersConfig(JSON.stringify({ mcpServers: { huge: entry({ HOSTILE_EXTRA_TOOLS: String(DEFAULT_MAX_CATALOG_TOOLS + 1) }), good: entry() } }), {
      file: '/tmp/upstream-bounds.json',
    });
    const server = await createCodemodeServerFromConfig(config, { connectTimeoutMs: 20_000, onStderr: () => undefined });
    cleanups.push(() => server.close({ graceMs: 0 }));
    const status = server.stats().upstreams;
    expect(status.find((s) => s.name === 'good')).toMatchObject({ state: 'connected' });
    const huge = status.find((s) => s.name === 'huge');
    expect(huge).toMatchObject({ state: 'failed', code: 'UPSTREAM_PROTOCOL' });
    expect(huge?.error).toMatch(/lists 50008 tools, more than the 50000-tool catalog limit; it is left out/);
    expect(server.mode.catalog.entries.map((e) => e.namespace)).not.toContain('huge');
  });
});

describe('a catalog that grows over the caps after start-up', () => {
  it('fails that refresh and keeps the previous catalog; the server keeps serving', async () => {
    const lines = captureLogs();
    const config = parseServersConfig(JSON.stringify({ mcpServers: { bad: entry() } }), { file: '/tmp/upstream-bounds.json' });
    const server = await createCodemodeServerFromConfig(config, { connectTimeoutMs: 20_000, onStderr: () => undefined });
    cleanups.push(() => server.close({ graceMs: 0 }));
    const before = server.mode.catalog.entries.length;
    const grown = await server.mode.execute(`return await tools.bad.grow({ count: ${DEFAULT_MAX_CATALOG_TOOLS + 1} });`);
    expect(grown).toMatchObject({ ok: true });
    const deadline = Date.now() + 15_000;
    while (!lines.some((l) => l.includes('could not refresh the tool catalog')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(lines.find((l) => l.includes('could not refresh the tool catalog'))).toMatch(/more than the 50000-tool catalog limit/);
    expect(server.mode.catalog.entries.length).toBe(before);
    const echoed = await server.mode.execute(`return await tools.bad.echo({ text: 'still serving' });`);
    expect(JSON.stringify(echoed)).toContain('still serving');
  });
});

describe('an oversized upstream result', () => {
  it('is a ToolError in the guest naming the (configured) limit, and the next call on that upstream works', async () => {
    const config = parseServersConfig(JSON.stringify({ mcpServers: { bad: entry() } }), { file: '/tmp/upstream-bounds.json' });
    const server = await createCodemodeServerFromConfig(config, { connectTimeoutMs: 20_000, onStderr: () => undefined, maxUpstreamMessageBytes: 4 * 1024 * 1024 });
    cleanups.push(() => server.close({ graceMs: 0 }));
    const outcome = await server.mode.execute(
      `try { await tools.bad.big({ mb: 5 }); return 'no error'; } catch (e) { return [e.name, e.message, await tools.bad.echo({ text: 'after' })]; }`,
    );
    expect(outcome).toMatchObject({ ok: true });
    const [name, message, after] = (outcome as { value: [string, string, unknown] }).value;
    expect(name).toBe('ToolError');
    expect(message).toMatch(/The upstream result for tools\/call \(5\.0 MiB\) exceeded the 4\.0 MiB limit/);
    expect(JSON.stringify(after)).toContain('after');
  });
});

describe('a tool description of 512 KB', () => {
  it('is trimmed as the catalog loads, and the trim is reported (session instructions, server stats) while the neighbour serves', async () => {
    const config = parseServersConfig(JSON.stringify({ mcpServers: { bad: entry({ HOSTILE_DESCRIPTION_KB: '512' }), good: entry() } }));
    const started = performance.now();
    const server = await createCodemodeServerFromConfig(config, { connectTimeoutMs: 20_000, onStderr: () => undefined });
    cleanups.push(() => server.close({ graceMs: 0 }));
    // Before the fix this never finished; the margin is wide for a loaded machine.
    expect(performance.now() - started).toBeLessThan(20_000);
    const bad = server.stats().upstreams.find((u) => u.name === 'bad');
    expect(bad).toMatchObject({ state: 'connected', trimmed: 1 });
    expect(server.stats().upstreams.find((u) => u.name === 'good')).not.toHaveProperty('trimmed');
    const echo = server.mode.catalog.entries.find((e) => e.qualifiedName === 'bad.echo');
    expect(echo?.tool.description?.length).toBeLessThan(11_000);
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    const session = await server.connect(serverSide);
    cleanups.push(() => session.close());
    const client = new Client({ name: 't', version: '1' });
    await client.connect(clientSide);
    cleanups.push(() => client.close());
    expect(client.getInstructions()).toMatch(/- bad: 7 tools \(its catalog exceeded codemode's caps: 1 change, e\.g\. The description of "echo"/);
    const hits = await client.callTool({ name: 'search', arguments: { query: 'ABCDEFGH echo' } });
    expect(textOf(hits)).toContain('bad.echo');
    expect(textOf(await client.callTool({ name: 'execute', arguments: { code: "return await tools.good.echo({ text: 'fine' });" } }))).toContain('fine');
  }, 60_000);
});
