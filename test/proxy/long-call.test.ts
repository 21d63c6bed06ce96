/**
 * SLOW TEST (about 90 s of real time, by design): a 90-second tool call with progress every 5 s goes
 * through the proxy, once to a stdio upstream and once to a Streamable HTTP upstream, at the same time.
 * The SDK caps requests at 60 s by default; the proxy must not, and progress must flow all the way down.
 * The downstream client uses a 20 s timeout reset by progress, so only progress keeps its call alive.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { createProxy } from '../../src/proxy/proxy.js';
import { serveProxyHttp } from '../../src/proxy/http.js';
import { fixtureStdioConfig, startFixtureHttp } from './helpers.js';

const DURATION_MS = 90_000;
const INTERVAL_MS = 5_000;
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.().catch(() => undefined);
});

async function longCall(target: unknown): Promise<{ result: CallToolResult; progress: Progress[]; ms: number }> {
  const host = await serveProxyHttp(createProxy(target, { onStderr: () => undefined }));
  cleanups.push(() => host.close());
  const client = new Client({ name: 'long', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(host.url)));
  cleanups.push(() => client.close());
  const progress: Progress[] = [];
  const started = performance.now();
  const result = (await client.callTool({ name: 'slow_progress', arguments: { durationMs: DURATION_MS, intervalMs: INTERVAL_MS } }, undefined, {
    timeout: 20_000,
    resetTimeoutOnProgress: true,
    onprogress: (p) => void progress.push(p),
  })) as CallToolResult;
  return { result, progress, ms: performance.now() - started };
}

describe('a 90 s tool call with progress (slow: 90 s real time)', () => {
  it(
    'completes through the proxy, stdio and Streamable HTTP upstreams, with progress all the way',
    async () => {
      const up = await startFixtureHttp();
      cleanups.push(() => up.stop());
      const [viaStdio, viaHttp] = await Promise.all([longCall(fixtureStdioConfig()), longCall({ url: up.url })]);
      for (const run of [viaStdio, viaHttp]) {
        expect(run.result.isError).toBeUndefined();
        expect((run.result.content[0] as { text: string }).text).toMatch(/^done after 9\d{4} ms and 18 steps$/);
        expect(run.ms).toBeGreaterThanOrEqual(DURATION_MS);
        expect(run.progress).toHaveLength(DURATION_MS / INTERVAL_MS);
        expect(run.progress.at(-1)).toMatchObject({ progress: DURATION_MS, total: DURATION_MS, message: 'step 18' });
      }
    },
    DURATION_MS + 30_000,
  );
});
