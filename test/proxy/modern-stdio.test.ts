/**
 * `codemode proxy` over stdio with a 2026-07-28 host (issue 14): the built bin as a child process, the v2
 * SDK client pinned to 2026-07-28 (or in legacy mode) over its stdio, and real upstreams: server-everything
 * (2025, stdio), the v2 2026-only fixture over stdio and over Streamable HTTP. Needs `npm run build`.
 */
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import type { CallToolResult } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EVERYTHING, NODE, fixtureStdioConfig, spawnServer } from './helpers.js';
import type { ChildServer } from './helpers.js';

const MODERN = '2026-07-28';
const CLI = fileURLToPath(new URL('../../dist/cli/codemode.js', import.meta.url));
const MODERN_ONLY = fileURLToPath(new URL('../fixtures/modern-upstream.ts', import.meta.url));
const MODERN_STDIO = [NODE, '--experimental-strip-types', '--no-warnings', MODERN_ONLY, '--stdio'];

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

let modernHttp: ChildServer;
beforeAll(async () => {
  modernHttp = await spawnServer(['--experimental-strip-types', '--no-warnings', MODERN_ONLY, '--port', '0'], /listening on (http:\/\/\S+?\/mcp)/, {}, 30_000);
}, 40_000);
afterAll(async () => {
  await modernHttp?.stop();
});

/** A v2 client through `codemode proxy <args>` over stdio; counts tool-list changes and answers elicitations. */
async function throughProxy(args: string[], mode: 'legacy' | { pin: string } = { pin: MODERN }) {
  let changes = 0;
  const asked: unknown[] = [];
  const client = new Client(
    { name: 'stdio-host', version: '1.0.0' },
    { versionNegotiation: { mode }, capabilities: { elicitation: { form: {} } }, listChanged: { tools: { autoRefresh: false, onChanged: () => void changes++ } } },
  );
  client.setRequestHandler('elicitation/create', (request) => {
    asked.push(request.params);
    return { action: 'accept', content: { name: 'Kim' } };
  });
  cleanups.push(() => client.close());
  await client.connect(new StdioClientTransport({ command: NODE, args: ['--no-node-snapshot', CLI, 'proxy', ...args], stderr: 'ignore' }));
  return { client, asked, changes: () => changes };
}

async function heard(changes: () => number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (changes() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  expect(changes()).toBeGreaterThan(0);
}

describe('codemode proxy --stdio: a 2026-07-28 host', () => {
  it('in front of a 2025 upstream (server-everything): discover, list with --ignore-tool, progress, input_required, cancellation', async () => {
    const { client, asked } = await throughProxy(['--stdio', '--ignore-tool', 'get-env', '--', NODE, EVERYTHING, 'stdio']);
    expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);
    expect(client.getServerVersion()?.name).toMatch(/everything/i);
    const names = (await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name);
    expect(names).toContain('get-sum');
    expect(names).not.toContain('get-env');
    await expect(client.callTool({ name: 'get-env', arguments: {} })).rejects.toThrow(/hidden by ignoreTools/);
    const steps: number[] = [];
    await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } }, { onprogress: (p) => steps.push(p.progress) });
    // Progress reaches the host, in order. The last step is not asserted: on a loaded machine
    // server-everything's final progress comes after its result, and a client calling it directly misses it
    // too (18 of 30 calls with both CPUs busy, against 11 of 30 through this proxy).
    expect(steps.length).toBeGreaterThanOrEqual(2);
    expect(steps.slice(0, 2)).toEqual([1, 2]);
    const elicited = (await client.callTool({ name: 'trigger-elicitation-request', arguments: {} })) as CallToolResult;
    expect(asked).toHaveLength(1);
    expect(JSON.stringify(elicited.content)).toContain('Name: Kim');
    const controller = new AbortController();
    const long = client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 20, steps: 20 } }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 200);
    await expect(long).rejects.toThrow();
    expect(JSON.stringify((await client.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } })).content)).toContain('3');
  }, 60_000);

  const modernCells: Array<[string, () => string[]]> = [
    ['a 2026-07-28 stdio upstream (piped)', () => ['--stdio', '--ignore-tool', 'whoami', '--', ...MODERN_STDIO]],
    ['a 2026-07-28 HTTP upstream (one POST per request)', () => [modernHttp.url, '--ignore-tool', 'whoami']],
  ];
  for (const [name, args] of modernCells) {
    it(`in front of ${name}: list, call, tool error with structuredContent, input_required passed through, progress, cancellation, list_changed`, async () => {
      const { client, asked, changes } = await throughProxy(args());
      expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);
      expect(client.getServerVersion()?.name).toBe('modern-upstream');
      const names = (await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(['echo', 'ask', 'fail']));
      expect(names).not.toContain('whoami');
      await expect(client.callTool({ name: 'whoami', arguments: {} })).rejects.toThrow(/hidden by ignoreTools/);
      expect(((await client.callTool({ name: 'echo', arguments: { text: 'é ok' } })) as CallToolResult).structuredContent).toMatchObject({ text: 'é ok' });
      expect(await client.callTool({ name: 'fail', arguments: {} })).toMatchObject({ isError: true, structuredContent: { reason: 'on purpose', code: 7 } });
      const greeted = (await client.callTool({ name: 'ask', arguments: {} })) as CallToolResult;
      expect(asked).toMatchObject([{ message: 'Your name?' }]);
      expect(greeted.content).toEqual([{ type: 'text', text: 'hello Kim' }]);
      // An x-mcp-header parameter reaches an HTTP upstream as its Mcp-Param header (stdio carries no headers).
      const regional = (await client.callTool({ name: 'regional', arguments: { region: 'Zürich' } })) as CallToolResult;
      const mirrored = name.includes('HTTP') ? `=?base64?${Buffer.from('Zürich').toString('base64')}?=` : 'none';
      expect(regional.content).toEqual([{ type: 'text', text: `region Zürich, header ${mirrored}` }]);
      const steps: number[] = [];
      await client.callTool({ name: 'slow', arguments: { durationMs: 300, intervalMs: 100 } }, { onprogress: (p) => steps.push(p.progress) });
      expect(steps.length).toBeGreaterThanOrEqual(2);
      const controller = new AbortController();
      const pending = client.callTool({ name: 'slow', arguments: { durationMs: 20_000, intervalMs: 50 } }, { signal: controller.signal });
      setTimeout(() => controller.abort(), 300);
      await expect(pending).rejects.toThrow();
      const cancelledRuns = async (): Promise<string[]> => JSON.parse(((await client.callTool({ name: 'cancelled', arguments: {} })) as CallToolResult & { content: Array<{ text: string }> }).content[0]!.text) as string[];
      const deadline = Date.now() + 10_000;
      while ((await cancelledRuns()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await cancelledRuns()).toHaveLength(1);
      await client.callTool({ name: 'add_tool', arguments: { name: `stdio_${Date.now()}` } });
      await heard(changes);
    }, 60_000);
  }

  it('in front of a 2025 upstream (the conformance fixture): a cancelled call is cancelled upstream, and the next call is served', async () => {
    const fixture = fixtureStdioConfig();
    const { client } = await throughProxy(['--stdio', '--', fixture.command, ...fixture.args]);
    const controller = new AbortController();
    const slow = client.callTool({ name: 'slow_progress', arguments: { durationMs: 20_000, intervalMs: 100 } }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    await expect(slow).rejects.toThrow();
    // The host's abort is not enough: the upstream itself must have seen the call cancelled.
    let seen = '[]';
    const until = Date.now() + 10_000;
    while (!seen.includes('slow_progress') && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 100));
      seen = ((await client.callTool({ name: 'cancelled_calls', arguments: {} })) as CallToolResult).content.map((c) => (c.type === 'text' ? c.text : '')).join('');
    }
    expect(seen).toContain('slow_progress');
  }, 60_000);

  it('a 2025 host of the same command still gets its 2025 session', async () => {
    const { client } = await throughProxy(['--stdio', '--', NODE, EVERYTHING, 'stdio'], 'legacy');
    expect(client.getNegotiatedProtocolVersion()).toBe('2025-11-25');
    expect(JSON.stringify((await client.callTool({ name: 'get-sum', arguments: { a: 20, b: 22 } })).content)).toContain('42');
  }, 60_000);
});
