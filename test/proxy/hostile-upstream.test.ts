/**
 * A hostile or broken upstream is a tenant too (issue 17, defects 11, 13, 14 and 15): each attack runs
 * against a real misbehaving stdio process while a well-behaved upstream process, on its own connection
 * in this same event loop, keeps answering. Both are reached through `connectUpstream` (the SDK client).
 *
 * Assertions are on behaviour: what the call answers, whether the connection survives, how much memory
 * this process grew by, and whether a warning was emitted. Latency bounds are wide (a busy 2-core
 * machine); the benchmark, not these tests, holds the tight goals.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { connectUpstream } from '../../src/proxy/upstream.js';
import type { UpstreamConnection } from '../../src/proxy/upstream.js';
import { NODE, spawnServer } from './helpers.js';

const HOSTILE = fileURLToPath(new URL('../fixtures/hostile-stdio-upstream.mjs', import.meta.url));
const HOSTILE_HTTP = fileURLToPath(new URL('../fixtures/hostile-http-upstream.mjs', import.meta.url));

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.().catch(() => undefined);
});

async function upstream(options: Parameters<typeof connectUpstream>[1] = {}): Promise<UpstreamConnection> {
  const connection = await connectUpstream({ command: NODE, args: [HOSTILE] }, { onStderr: () => undefined, ...options });
  cleanups.push(() => connection.close());
  return connection;
}

function textOf(result: unknown): string {
  return ((result as { content?: Array<{ text?: string }> }).content ?? []).map((c) => c.text ?? '').join('');
}

/**
 * Calls the well-behaved upstream's echo back to back until `stop`, and samples this process's RSS and
 * event-loop delay: what another session sharing the server would see.
 */
function watch(good: UpstreamConnection): { stop(): Promise<{ calls: number; maxCallMs: number; peakRssMb: number; maxDelayMs: number }> } {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  let running = true;
  let calls = 0;
  let maxCallMs = 0;
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  const loop = (async () => {
    for (let i = 0; running && i < 100_000; i++) {
      const started = performance.now();
      expect(textOf(await good.client.callTool({ name: 'echo', arguments: { text: `ping ${i}` } }))).toBe(`ping ${i}`);
      maxCallMs = Math.max(maxCallMs, performance.now() - started);
      calls++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      clearInterval(sampler);
      delay.disable();
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      const seen = { calls, maxCallMs, peakRssMb: peakRss / 1024 / 1024, maxDelayMs: delay.max / 1e6 };
      // Measurements for the issue notes: CODEMODE_TEST_REPORT=1 npx vitest run test/proxy/hostile-upstream.test.ts
      if (process.env.CODEMODE_TEST_REPORT === '1') process.stderr.write(`[hostile-upstream] ${JSON.stringify(seen)}\n`);
      return seen;
    },
  };
}

describe('a hostile stdio upstream next to a well-behaved one', () => {
  it('a character split across pipe reads arrives whole', async () => {
    const bad = await upstream();
    const text = 'prix: 5€ 😀 ü';
    expect(textOf(await bad.client.callTool({ name: 'split', arguments: { text } }))).toBe(text);
  });

  it('a progress flood that respects backpressure neither grows memory nor delays the answer or the neighbour', async () => {
    const bad = await upstream();
    const good = await upstream();
    const baseRssMb = process.memoryUsage().rss / 1024 / 1024;
    if (process.env.CODEMODE_TEST_REPORT === '1') process.stderr.write(`[hostile-upstream] base RSS ${baseRssMb.toFixed(0)} MB\n`);
    const watcher = watch(good);
    let progressEvents = 0;
    const started = performance.now();
    const result = await bad.client.callTool({ name: 'flood', arguments: { ms: 8000, method: 'progress' } }, undefined, {
      onprogress: () => void progressEvents++,
      timeout: 60_000,
    });
    const callMs = performance.now() - started;
    const seen = await watcher.stop();
    expect(textOf(result)).toMatch(/^flooded \d+$/);
    const sent = Number(textOf(result).split(' ')[1]);
    // The answer comes when the flood ends, not after a backlog: 8 s of flooding, generous slack.
    expect(callMs).toBeLessThan(20_000);
    expect(progressEvents).toBeGreaterThan(0);
    expect(progressEvents).toBeLessThanOrEqual(sent);
    expect(seen.calls).toBeGreaterThan(10);
    expect(seen.maxCallMs).toBeLessThan(2000);
    // Unbounded, this grew by about 50 MB/s (+300 MB at 6 s, still growing: about +400 MB by the end of this
    // 8 s flood). Bounded, the peak is heap churn that does not grow with the flood's length (+135 MB at 6 s,
    // +145 MB at 12 s, +189 MB in a later idle run; +214 MB once in fresh-clone CI, GC behind on a busy machine).
    // 300 MB sits between the two.
    expect(seen.peakRssMb - baseRssMb).toBeLessThan(300);
  });

  it('a log-message flood is rate-limited, and the answer and the neighbour are not held up', async () => {
    const bad = await upstream();
    const good = await upstream();
    let logs = 0;
    bad.client.fallbackNotificationHandler = async (n) => {
      if (n.method === 'notifications/message') logs++;
    };
    const baseRssMb = process.memoryUsage().rss / 1024 / 1024;
    if (process.env.CODEMODE_TEST_REPORT === '1') process.stderr.write(`[hostile-upstream] base RSS ${baseRssMb.toFixed(0)} MB\n`);
    const watcher = watch(good);
    const started = performance.now();
    const result = await bad.client.callTool({ name: 'flood', arguments: { ms: 4000, method: 'message' } }, undefined, { timeout: 60_000 });
    const callMs = performance.now() - started;
    const seen = await watcher.stop();
    const sent = Number(textOf(result).split(' ')[1]);
    expect(callMs).toBeLessThan(12_000);
    expect(sent).toBeGreaterThan(1000);
    // 100 per second reach the client; the rest are counted and dropped.
    expect(logs).toBeGreaterThan(0);
    expect(logs).toBeLessThanOrEqual(100 * Math.ceil(callMs / 1000 + 1));
    expect(seen.maxCallMs).toBeLessThan(2000);
    expect(seen.peakRssMb - baseRssMb).toBeLessThan(200);
  });

  it('a 200 MiB result fails that call with a size error as it streams in; the connection and the neighbour carry on', async () => {
    const bad = await upstream();
    const good = await upstream();
    const baseRssMb = process.memoryUsage().rss / 1024 / 1024;
    if (process.env.CODEMODE_TEST_REPORT === '1') process.stderr.write(`[hostile-upstream] base RSS ${baseRssMb.toFixed(0)} MB\n`);
    const watcher = watch(good);
    const error = await bad.client.callTool({ name: 'big', arguments: { mb: 200 } }, undefined, { timeout: 60_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const seen = await watcher.stop();
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).message).toMatch(/upstream result for tools\/call \(200\.0 MiB\) exceeded the 32\.0 MiB limit/);
    // The same connection still answers.
    expect(textOf(await bad.client.callTool({ name: 'echo', arguments: { text: 'after' } }))).toBe('after');
    // Buffered whole, this held 1.1 GB and stalled the loop for 7 s.
    expect(seen.peakRssMb - baseRssMb).toBeLessThan(250);
    expect(seen.maxDelayMs).toBeLessThan(1500);
    expect(seen.calls).toBeGreaterThan(3);
  });

  it('a smaller cap is configurable, and a result under it passes', async () => {
    const bad = await upstream({ maxMessageBytes: 2 * 1024 * 1024 });
    expect(textOf(await bad.client.callTool({ name: 'big', arguments: { mb: 1 } }))).toHaveLength(1024 * 1024);
    const error = await bad.client.callTool({ name: 'big', arguments: { mb: 3 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as McpError).message).toMatch(/exceeded the 2\.0 MiB limit/);
  });

  it('a flood of server-to-client requests while it does not read adds one drain listener, not one per write', async () => {
    const bad = await upstream();
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    cleanups.push(async () => void process.off('warning', onWarning));
    const result = await bad.client.callTool({ name: 'asks', arguments: { count: 20_000 } }, undefined, { timeout: 60_000 });
    expect(textOf(result)).toBe('asked 20000');
    await new Promise((r) => setTimeout(r, 50));
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    expect(textOf(await bad.client.callTool({ name: 'echo', arguments: { text: 'still here' } }))).toBe('still here');
  });
});

describe('a hostile Streamable HTTP upstream', () => {
  /** The hostile HTTP fixture, in its own process (its work must not share the loop being measured). */
  async function hostileHttp(): Promise<string> {
    const server = await spawnServer([HOSTILE_HTTP], /listening on (http:\S+)/);
    cleanups.push(() => server.stop());
    return server.url;
  }

  it('a progress flood on the SSE answer neither grows memory nor holds up the answer or a stdio neighbour', async () => {
    const url = await hostileHttp();
    const bad = await connectUpstream({ url, transport: 'http' });
    cleanups.push(() => bad.close());
    const good = await upstream();
    const baseRssMb = process.memoryUsage().rss / 1024 / 1024;
    const watcher = watch(good);
    let progress = 0;
    const started = performance.now();
    const result = await bad.client.callTool({ name: 'flood', arguments: { ms: 4000 } }, undefined, { onprogress: () => void progress++, timeout: 60_000 });
    const callMs = performance.now() - started;
    const seen = await watcher.stop();
    expect(textOf(result)).toMatch(/^flooded \d+$/);
    expect(progress).toBeGreaterThan(0);
    expect(callMs).toBeLessThan(12_000);
    expect(seen.maxCallMs).toBeLessThan(2000);
    // A regression guard rather than a before/after: over HTTP the SDK pulls events as it handles them, so
    // this was bounded before too (+222 MB peak, flat from 4 s to 10 s: heap churn, not a backlog).
    expect(seen.peakRssMb - baseRssMb).toBeLessThan(300);
  });

  for (const sse of [false, true]) {
    it(`a 100 MiB ${sse ? 'SSE event' : 'JSON body'} fails that call with a size error; the session carries on`, async () => {
      const url = await hostileHttp();
      const bad = await connectUpstream({ url, transport: 'http' });
      cleanups.push(() => bad.close());
      const baseRssMb = process.memoryUsage().rss / 1024 / 1024;
      let peakRss = process.memoryUsage().rss;
      const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
      cleanups.push(async () => clearInterval(sampler));
      const error = await bad.client.callTool({ name: 'big', arguments: { mb: 100, sse } }, undefined, { timeout: 60_000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      clearInterval(sampler);
      expect(error).toBeInstanceOf(McpError);
      expect((error as McpError).message).toMatch(/upstream result for tools\/call exceeded the 32\.0 MiB limit/);
      expect(textOf(await bad.client.callTool({ name: 'echo', arguments: { text: 'after' } }))).toBe('after');
      if (process.env.CODEMODE_TEST_REPORT === '1') process.stderr.write(`[hostile-upstream] http sse=${sse} peak RSS +${(peakRss / 1024 / 1024 - baseRssMb).toFixed(0)} MB\n`);
      // Buffered whole (the SDK's response.json() or SSE parser), this held several copies of 100 MiB.
      expect(peakRss / 1024 / 1024 - baseRssMb).toBeLessThan(200);
    });
  }
});
