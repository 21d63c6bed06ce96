/**
 * codemode-remote carries a 2026-07-28 host (issue 14, the bridge's same-era cell, and the fallback of an
 * `auto` host to a 2025-only remote). Real processes: the v2 SDK client over stdio to the built bridge,
 * which talks Streamable HTTP to `codemode serve --http` (both eras), to the v2 2026-only fixture, or to the
 * conformance fixture (the v1 SDK: 2025 only). Needs the built bins (`npm run build`).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/client';
import type { CallToolResult } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnBridge } from '../fixtures/bridge-host.js';
import { spawnServer, startFixtureHttp } from '../proxy/helpers.js';
import type { ChildServer } from '../proxy/helpers.js';
import { listUntil } from '../server/helpers.js';
import type { BridgeHost } from '../fixtures/bridge-host.js';
import { startMrtrUpstream } from '../fixtures/mrtr-upstream.js';
import { expectCancelWhileAsked, expectSep2322, expectStreamFidelity } from '../fixtures/mrtr-checks.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/codemode.js');
const REMOTE = join(ROOT, 'dist/cli/codemode-remote.js');
const CHANGING = fileURLToPath(new URL('../server/fixtures/changing-server.mjs', import.meta.url));
const MODERN = '2026-07-28';
const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientCapabilities': {},
  'io.modelcontextprotocol/clientInfo': { name: 'raw-host', version: '1.0.0' },
};

const servers: ChildServer[] = [];
const cleanups: Array<() => Promise<unknown> | unknown> = [];
const dir = mkdtempSync(join(tmpdir(), 'cm-remote-eras-'));
let modernUrl = '';
let modernOnlyUrl = '';
let fixtureUrl = '';
const MODERN_ONLY = fileURLToPath(new URL('../fixtures/modern-upstream.ts', import.meta.url));

/** Starts a server that prints "listening on <url>" on stderr (a codemode bin, or the 2026-only fixture). */
async function listening(args: string[]): Promise<string> {
  const server = await spawnServer(args, /listening on (http:\/\/\S+?\/mcp)/, {}, 30_000);
  servers.push(server);
  return server.url;
}

beforeAll(async () => {
  const config = join(dir, 'mcp.json');
  writeFileSync(config, JSON.stringify({ mcpServers: { changing: { command: process.execPath, args: [CHANGING] } } }));
  [modernUrl, modernOnlyUrl] = await Promise.all([
    listening(['--no-node-snapshot', CLI, 'serve', '--http', '--port', '0', '--expose-tools', '--config', config, '--log-level', 'warn']),
    listening(['--experimental-strip-types', '--no-warnings', MODERN_ONLY, '--port', '0']),
  ]);
  // A server of the 2025 era only (the v1 SDK): `codemode proxy` speaks 2026-07-28 too now, so it no longer is one.
  const fixture = await startFixtureHttp();
  servers.push(fixture);
  fixtureUrl = fixture.url;
}, 60_000);

afterEach(async () => {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()?.()).catch(() => undefined);
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()));
  rmSync(dir, { recursive: true, force: true });
});

type Mode = 'legacy' | 'auto' | { pin: string };

/** A v2 SDK client in `mode`, through a fresh bridge to `url`; counts tool-list changes it hears. */
async function throughBridge(url: string, mode: Mode, extra: string[] = []): Promise<{ client: Client; changes: () => number }> {
  let changes = 0;
  const client = new Client(
    { name: 'bridge-eras', version: '1.0.0' },
    { versionNegotiation: { mode }, listChanged: { tools: { autoRefresh: false, onChanged: () => void changes++ } } },
  );
  cleanups.push(() => client.close());
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [REMOTE, url, ...extra], stderr: 'ignore' }));
  return { client, changes: () => changes };
}

async function execute(client: Client, code: string, options: { signal?: AbortSignal } = {}): Promise<CallToolResult> {
  return (await client.callTool({ name: 'execute', arguments: { code } }, options)) as CallToolResult;
}

describe('codemode-remote and a 2026-07-28 host', () => {
  for (const mode of [{ pin: MODERN }, 'auto'] as const) {
    it(`${typeof mode === 'string' ? mode : 'pinned'} host, remote with both eras: 2026-07-28 end to end (list with --ignore-tool, execute, tool error, list_changed on subscriptions/listen)`, async () => {
      const { client, changes } = await throughBridge(modernUrl, mode, ['--ignore-tool', 'search']);
      expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);
      const names = (await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(['execute', 'get_schema', 'changing__add_tool']));
      expect(names).not.toContain('search');
      expect((await execute(client, 'return 6 * 7')).structuredContent).toMatchObject({ result: 42 });
      const failed = await execute(client, "throw new TypeError('boom')");
      expect(failed.isError).toBe(true);
      expect(failed.structuredContent).toMatchObject({ error: { message: expect.stringContaining('boom') } });

      // The remote hears an upstream's change and tells the listen stream the bridge holds open.
      const name = `fresh_${typeof mode === 'string' ? mode : 'pinned'}`;
      expect((await execute(client, `return await tools.changing.add_tool({ name: '${name}' })`)).structuredContent).toMatchObject({ result: `added ${name}` });
      const deadline = Date.now() + 15_000;
      while (changes() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      expect(changes()).toBeGreaterThan(0);
      expect((await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name)).toContain(`changing__${name}`);
    });
  }

  it('a tool parameter declared with x-mcp-header is mirrored into its Mcp-Param header, in Base64 form when not plain ASCII', async () => {
    const { client } = await throughBridge(modernOnlyUrl, { pin: MODERN });
    await client.listTools(undefined, { cacheMode: 'bypass' });
    const text = async (region: string): Promise<string> => ((await client.callTool({ name: 'regional', arguments: { region } })) as CallToolResult & { content: Array<{ text: string }> }).content[0]!.text;
    expect(await text('eu-west1')).toBe('region eu-west1, header eu-west1');
    expect(await text('Zürich')).toBe(`region Zürich, header =?base64?${Buffer.from('Zürich').toString('base64')}?=`);
  });

  it('cancelling a 2026-07-28 call through the bridge stops the execute before its next tool call', async () => {
    const { client } = await throughBridge(modernUrl, { pin: MODERN });
    const controller = new AbortController();
    const pending = execute(client, "await new Promise((r) => setTimeout(r, 1500)); return await tools.changing.add_tool({ name: 'late' });", { signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    await expect(pending).rejects.toThrow();
    // A control with the same wait, started after it: by the time it has made its call, an uncancelled run
    // would have made its own.
    expect((await execute(client, "await new Promise((r) => setTimeout(r, 1500)); return await tools.changing.add_tool({ name: 'control' });")).structuredContent).toMatchObject({
      result: 'added control',
    });
    const names = await listUntil(client, 'changing__control');
    expect(names).toContain('changing__control');
    expect(names).not.toContain('changing__late');
  });


  it("the remote's own JSON-RPC errors reach the host intact, under the host's id; a request without its version after 2026 messages is refused by the bridge", async () => {
    const host: BridgeHost = spawnBridge([modernUrl]);
    cleanups.push(() => host.kill());
    // No client capabilities in the envelope: the remote's -32602, with its message. (The host's `request`
    // resolves only on an answer with its own id.)
    const noCapabilities = await host.request('tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN } }, 15_000);
    expect(noCapabilities).toMatchObject({ error: { code: -32602, message: expect.stringContaining('clientCapabilities') } });
    const unsupported = await host.request('tools/list', { _meta: { ...ENVELOPE, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } }, 15_000);
    expect(unsupported).toMatchObject({ error: { code: -32022 } });
    const ok = await host.request('tools/list', { _meta: ENVELOPE }, 15_000);
    expect((ok.result?.tools as Array<{ name: string }>).map((t) => t.name)).toContain('execute');
    const bare = await host.request('tools/list', {}, 15_000);
    expect(bare).toMatchObject({ error: { code: -32600, message: expect.stringMatching(/2026-07-28.*carries no protocol version/) } });
  });
});

describe('codemode-remote translates for a 2025 host in front of a 2026-07-28-only remote', () => {
  const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

  it('initialize is answered from server/discover; list, calls with trace context, the envelope, ping, logging/setLevel and list_changed work', async () => {
    const { client, changes } = await throughBridge(modernOnlyUrl, 'legacy');
    expect(client.getNegotiatedProtocolVersion()).toBe('2025-11-25');
    expect(client.getServerVersion()).toMatchObject({ name: 'modern-upstream' });
    expect(client.getServerCapabilities()).toMatchObject({ tools: { listChanged: true } });
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(expect.arrayContaining(['echo', 'add_tool', 'whoami']));
    const echoed = (await client.callTool({ name: 'echo', arguments: { text: 'hi' }, _meta: { traceparent: TRACEPARENT } })) as CallToolResult;
    expect(echoed.structuredContent).toEqual({ text: 'hi', traceparent: TRACEPARENT });
    await client.ping();
    await client.setLoggingLevel('debug');
    // Every request carries the envelope built from the host's initialize, and the level it set.
    const envelope = JSON.parse(((await client.callTool({ name: 'whoami', arguments: {} })) as CallToolResult & { content: Array<{ text: string }> }).content[0]!.text) as Record<string, unknown>;
    expect(envelope).toMatchObject({
      'io.modelcontextprotocol/protocolVersion': MODERN,
      'io.modelcontextprotocol/clientInfo': { name: 'bridge-eras' },
      'io.modelcontextprotocol/logLevel': 'debug',
    });
    await client.callTool({ name: 'add_tool', arguments: { name: 'late_tool' } });
    const deadline = Date.now() + 15_000;
    while (changes() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(changes()).toBeGreaterThan(0);
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('late_tool');
    await expect(client.callTool({ name: 'nope', arguments: {} })).rejects.toThrow(/Unknown tool: nope/);
    // The x-mcp-header parameter of a listed tool goes in its Mcp-Param header for this host too.
    const regional = (await client.callTool({ name: 'regional', arguments: { region: 'Zürich' } })) as CallToolResult & { content: Array<{ text: string }> };
    expect(regional.content[0]!.text).toBe(`region Zürich, header =?base64?${Buffer.from('Zürich').toString('base64')}?=`);
  });

  it('answers carry no 2026-only fields (resultType, cache hints); the remote still creates no session', async () => {
    const host: BridgeHost = spawnBridge([modernOnlyUrl]);
    cleanups.push(() => host.kill());
    const init = await host.initialize();
    expect(init.result).toMatchObject({ protocolVersion: '2025-06-18', serverInfo: { name: 'modern-upstream' } });
    const listed = await host.request('tools/list', {}, 15_000);
    expect(listed.result).toBeDefined();
    expect(listed.result).not.toHaveProperty('resultType');
    expect(listed.result).not.toHaveProperty('ttlMs');
    expect(listed.result).not.toHaveProperty('cacheScope');
    expect(host.stdout.filter((m) => typeof m.id === 'string' && m.id.startsWith('codemode-remote-'))).toEqual([]);
  });
  it("the remote's input_required reaches the 2025 host as elicitation/create, and the request is sent again with the answer", async () => {
    const asked: unknown[] = [];
    const client = new Client({ name: 'old-host', version: '1.0.0' }, { versionNegotiation: { mode: 'legacy' }, capabilities: { elicitation: { form: {} } } });
    client.setRequestHandler('elicitation/create', (request) => {
      asked.push(request.params);
      return { action: 'accept', content: { name: 'Noor' } };
    });
    cleanups.push(() => client.close());
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [REMOTE, modernOnlyUrl], stderr: 'ignore' }));
    expect(client.getNegotiatedProtocolVersion()).toBe('2025-11-25');
    const greeted = (await client.callTool({ name: 'ask', arguments: {} })) as CallToolResult & { content: Array<{ text: string }> };
    expect(asked).toMatchObject([{ message: 'Your name?' }]);
    expect(greeted.content).toEqual([{ type: 'text', text: 'hello Noor' }]);
    // A host that declines gets the tool's own answer to that.
    client.removeRequestHandler('elicitation/create');
    client.setRequestHandler('elicitation/create', () => ({ action: 'decline' }));
    expect(((await client.callTool({ name: 'ask', arguments: {} })) as CallToolResult & { content: Array<{ text: string }> }).content[0]!.text).toBe('no name (decline)');
  });

  it('SEP-2322 rules: a remote that answers initialize with "method not found" is discovered; the retry goes under a new id with requestState unchanged; an unrelated call carries neither', async () => {
    const remote = await startMrtrUpstream();
    cleanups.push(() => remote.close());
    const client = new Client({ name: 'old-host', version: '1.0.0' }, { versionNegotiation: { mode: 'legacy' }, capabilities: { elicitation: { form: {} } } });
    client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { confirmed: true } }));
    cleanups.push(() => client.close());
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [REMOTE, remote.url], stderr: 'ignore' }));
    expect(client.getServerVersion()?.name).toBe('mrtr-upstream');
    await expectSep2322(client, remote);
    await expectStreamFidelity(client);
  });

  it('a host that cancels a call while it is asked for input: the input request is withdrawn, nothing is retried', async () => {
    const remote = await startMrtrUpstream();
    cleanups.push(() => remote.close());
    await expectCancelWhileAsked(async (elicit) => {
      const client = new Client({ name: 'old-host', version: '1.0.0' }, { versionNegotiation: { mode: 'legacy' }, capabilities: { elicitation: { form: {} } } });
      client.setRequestHandler('elicitation/create', elicit as never);
      cleanups.push(() => client.close());
      await client.connect(new StdioClientTransport({ command: process.execPath, args: [REMOTE, remote.url], stderr: 'ignore' }));
      return client;
    }, remote);
  });
});

describe('codemode-remote translates for a 2026-07-28 host in front of a 2025-only remote', () => {
  for (const mode of [{ pin: MODERN }, 'auto'] as const) {
    it(`${typeof mode === 'string' ? mode : 'pinned'} host: discovery from initialize, list, calls, errors, an elicitation as input_required, list_changed on subscriptions/listen`, async () => {
      let changes = 0;
      const asked: unknown[] = [];
      const client = new Client(
        { name: 'bridge-eras', version: '1.0.0' },
        { versionNegotiation: { mode }, capabilities: { elicitation: { form: {} } }, listChanged: { tools: { autoRefresh: false, onChanged: () => void changes++ } } },
      );
      client.setRequestHandler('elicitation/create', (request) => {
        asked.push(request.params);
        return { action: 'accept', content: { username: 'grace', email: 'grace@example.com' } };
      });
      cleanups.push(() => client.close());
      await client.connect(new StdioClientTransport({ command: process.execPath, args: [REMOTE, fixtureUrl], stderr: 'ignore' }));
      expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);
      expect(client.getServerVersion()).toMatchObject({ name: 'codemode-conformance-fixture' });
      expect((await client.listTools(undefined, { cacheMode: 'bypass' })).tools.map((t) => t.name)).toEqual(expect.arrayContaining(['echo', 'notify', 'test_elicitation']));
      // A 2025 session exists upstream: the fixture sees its id.
      const who = (await client.callTool({ name: 'whoami', arguments: {} })) as CallToolResult & { content: Array<{ text: string }> };
      expect(JSON.parse(who.content[0]!.text)).toMatchObject({ sessionId: expect.any(String) });
      expect(await client.callTool({ name: 'structured', arguments: { isError: true } })).toMatchObject({ isError: true, structuredContent: { count: expect.any(Number) } });
      await expect(client.callTool({ name: 'nope', arguments: {} })).rejects.toThrow(/Unknown tool: nope/);

      // The remote's elicitation/create during the call reaches the host as input_required; its retry answers it.
      const elicited = (await client.callTool({ name: 'test_elicitation', arguments: { message: 'who are you?' } })) as CallToolResult & { content: Array<{ text: string }> };
      expect(asked).toMatchObject([{ message: 'who are you?' }]);
      expect(JSON.stringify(elicited.content)).toContain('grace');

      await client.callTool({ name: 'notify', arguments: {} });
      const deadline = Date.now() + 15_000;
      while (changes === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      expect(changes).toBeGreaterThan(0);
    });
  }

  it('requestState through the bridge: a retry answers the held request; an altered or replayed one is refused by name', async () => {
    const host: BridgeHost = spawnBridge([fixtureUrl]);
    cleanups.push(() => host.kill());
    const envelope = { ...ENVELOPE, 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } };
    const params = { name: 'test_elicitation', arguments: { message: 'name?' }, _meta: envelope };
    const first = await host.request('tools/call', params, 15_000);
    const result = first.result as { resultType: string; requestState: string; inputRequests: Record<string, { method: string }> };
    expect(result.resultType).toBe('input_required');
    const [key, asked] = Object.entries(result.inputRequests)[0]!;
    expect(asked.method).toBe('elicitation/create');
    const answer = { [key]: { action: 'accept', content: { username: 'lin', email: 'lin@example.com' } } };
    const altered = `${result.requestState.slice(0, -2)}${result.requestState.endsWith('AA') ? 'BB' : 'AA'}`;
    const refused = await host.request('tools/call', { ...params, requestState: altered, inputResponses: answer }, 15_000);
    expect(refused.error).toMatchObject({ code: -32602, message: expect.stringMatching(/altered|not issued/) });
    const done = await host.request('tools/call', { ...params, requestState: result.requestState, inputResponses: answer }, 15_000);
    expect(done.result).toMatchObject({ resultType: 'complete' });
    expect(JSON.stringify(done.result)).toContain('lin');
    const replay = await host.request('tools/call', { ...params, requestState: result.requestState, inputResponses: answer }, 15_000);
    expect(replay.error).toMatchObject({ code: -32602, message: expect.stringMatching(/already used/) });
  });

  it('a stateless 2025 server (it answers server/discover itself, with method not found) is translated too', async () => {
    // The v1 SDK's stateless mode: a server and transport per POST, no session.
    const http = createServer((req, res) => {
      const server = new McpServer({ name: 'stateless-2025', version: '1.0.0' });
      server.registerTool('ping_me', { description: 'Answers pong' }, () => ({ content: [{ type: 'text', text: 'pong' }] }));
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.once('close', () => void server.close());
      void server.connect(transport).then(() => transport.handleRequest(req, res));
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => http.close(resolve)));
    const { client } = await throughBridge(`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`, { pin: MODERN });
    expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);
    const pong = (await client.callTool({ name: 'ping_me', arguments: {} })) as CallToolResult & { content: Array<{ text: string }> };
    expect(pong.content[0]!.text).toBe('pong');
  });

  it('the answers a raw 2026-07-28 host sees: server/discover, resultType and the list cache hint; a legacy host still gets 2025 directly', async () => {
    const host: BridgeHost = spawnBridge([fixtureUrl]);
    cleanups.push(() => host.kill());
    const discovered = await host.request('server/discover', { _meta: ENVELOPE }, 15_000);
    expect(discovered.result).toMatchObject({ supportedVersions: [MODERN], resultType: 'complete', capabilities: { tools: {} }, _meta: { 'io.modelcontextprotocol/serverInfo': { name: expect.any(String) } } });
    const listed = await host.request('tools/list', { _meta: ENVELOPE }, 15_000);
    expect(listed.result).toMatchObject({ resultType: 'complete', ttlMs: 0, cacheScope: 'private' });
    expect((listed.result!.tools as Array<{ name: string }>).map((t) => t.name)).toContain('echo');
    const called = await host.request('tools/call', { name: 'echo', arguments: { text: 'hi' }, _meta: ENVELOPE }, 15_000);
    expect(called.result).toMatchObject({ resultType: 'complete' });
    expect(called.result).not.toHaveProperty('ttlMs');

    const legacy = await throughBridge(fixtureUrl, 'legacy');
    expect(legacy.client.getNegotiatedProtocolVersion()).toBe('2025-11-25');
    expect((await legacy.client.listTools()).tools.map((t) => t.name)).toContain('echo');
  });
});

