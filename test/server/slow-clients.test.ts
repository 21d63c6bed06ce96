/**
 * Slow clients against a real `serveHttp` on 127.0.0.1:0, with small timeouts so the test runs fast: a
 * trickling request is cut, while executes whose answers stream for longer than the request timeout
 * (and the session's GET stream) are not.
 */
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CodeMode } from '../../src/codemode/codemode.js';
import { localTools } from '../../src/codemode/sources.js';
import { serveHttp } from '../../src/server/http.js';
import type { CodemodeHttpServer } from '../../src/server/http.js';
import { createCodemodeServer } from '../../src/server/server.js';
import { connectClient, execute } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function serve(): Promise<CodemodeHttpServer> {
  const mode = await CodeMode.create({
    sources: [localTools('t', [{ name: 'sleep', input: { ms: z.number() }, handler: (args) => new Promise((r) => setTimeout(() => r(`slept ${String(args.ms)}`), args.ms as number)) }])],
  });
  const http = await serveHttp(createCodemodeServer({ mode }), { port: 0, headersTimeoutMs: 1_000, requestTimeoutMs: 1_500 });
  cleanups.push(() => http.close({ graceMs: 0 }));
  return http;
}

describe('slow clients on serve --http', () => {
  it('cuts a request body trickling in one byte at a time, while an execute longer than the timeout completes', async () => {
    const http = await serve();
    const c = await connectClient(http.url);
    cleanups.push(() => c.close());

    const start = Date.now();
    const s = connect(http.port, '127.0.0.1');
    s.on('error', () => undefined);
    cleanups.push(() => s.destroy());
    let answer = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (answer += d));
    const closed = new Promise<number>((resolve) => s.once('close', () => resolve(Date.now() - start)));
    s.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${http.port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100000\r\n\r\n{`);
    const trickle = setInterval(() => s.destroyed || s.write(' '), 200);
    cleanups.push(() => clearInterval(trickle));

    // Meanwhile a well-behaved client's execute streams its answer for longer than the request timeout.
    const result = await execute(c, 'return await tools.t.sleep({ ms: 3000 })');
    expect(result.structuredContent).toMatchObject({ result: 'slept 3000' });

    const ms = await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeLessThan(10_000);
    // The session (and its GET stream, open since initialize) outlived the request timeout too.
    await c.ping();
    expect(http.sessionCount).toBe(1);
  }, 30_000);
});
