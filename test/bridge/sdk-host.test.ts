/**
 * The bridge under a real MCP host implementation: the SDK's Client over StdioClientTransport, which
 * is how most hosts launch it. Needs the built bridge.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { BRIDGE_BIN } from '../fixtures/bridge-host.js';
import type { UpstreamFixture } from '../fixtures/bridge-upstream.js';
import { startUpstream } from '../fixtures/bridge-upstream.js';

const clients: Client[] = [];
const upstreams: UpstreamFixture[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

function host(url: string): { client: Client; transport: StdioClientTransport } {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BRIDGE_BIN, url, '--auth', 'none', '--silent'],
    env: { ...(process.env as Record<string, string>), CODEMODE_CONFIG_DIR: '/nonexistent-codemode-test' },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'sdk-host', version: '1.0.0' }, { capabilities: { elicitation: {} } });
  clients.push(client);
  return { client, transport };
}

describe('an SDK Client as the host', () => {
  it('connects, lists and calls tools, and gets tool errors with their structure', async () => {
    const up = await startUpstream();
    upstreams.push(up);
    const { client, transport } = host(up.url);
    await client.connect(transport);
    expect(client.getServerVersion()?.name).toBe('bridge-fixture');
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain('echo');
    const result = await client.callTool({ name: 'echo', arguments: { message: 'sdk' } });
    expect(result.content).toEqual([{ type: 'text', text: 'echo: sdk' }]);
    const failed = await client.callTool({ name: 'fail', arguments: {} });
    expect(failed).toMatchObject({ isError: true, structuredContent: { reason: 'because' } });
  });

  it('sees the real cause in the McpError when the upstream is unusable', async () => {
    const up = await startUpstream();
    upstreams.push(up);
    const { client, transport } = host(up.url.replace('/mcp', '/'));
    const err = await client.connect(transport).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).message).toMatch(/HTTP 404.*not an MCP endpoint/);
  });
});
