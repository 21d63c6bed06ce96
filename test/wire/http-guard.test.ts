/**
 * The shared HTTP front door: the loopback test, the Host/Origin check, and the socket limits, on real
 * servers and raw sockets on 127.0.0.1:0.
 */
import type { Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createHostOriginGuard,
  createLimitedHttpServer,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  isLoopbackHost,
  resolveHttpServerLimits,
} from '../../src/wire/http-guard.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return (server.address() as AddressInfo).port;
}

function socket(port: number): Socket {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  cleanups.push(() => s.destroy());
  return s;
}

/** Resolves with what the server sent and how long after `start` it closed the connection. */
function closedAfter(s: Socket, start: number): Promise<{ ms: number; data: string }> {
  let data = '';
  s.setEncoding('utf8');
  s.on('data', (c: string) => (data += c));
  return new Promise((resolve) => s.once('close', () => resolve({ ms: Date.now() - start, data })));
}

describe('isLoopbackHost', () => {
  it.each([
    '127.0.0.1',
    '127.1.2.3',
    '127.255.255.254',
    '::1',
    '[::1]',
    '0:0:0:0:0:0:0:1',
    '::ffff:127.0.0.1',
    '[::ffff:127.0.0.1]',
    '::ffff:7f00:1',
    '[::ffff:7f00:1]',
    'localhost',
    'LOCALHOST',
    'localhost.',
  ])('%s is loopback', (host) => expect(isLoopbackHost(host)).toBe(true));

  it.each(['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::ffff:10.0.0.1', 'evil.example', 'localhost.evil.example', '127.0.0.1.evil.example', '1270.0.0.1', ''])(
    '%s is not',
    (host) => expect(isLoopbackHost(host)).toBe(false),
  );
});

describe('createHostOriginGuard', () => {
  const req = (headers: Record<string, string>) => ({ headers, method: 'POST' }) as never;

  it('a loopback bind in any spelling accepts loopback Host names only', () => {
    for (const bindHost of ['127.0.0.1', '::1', '::ffff:127.0.0.1', 'localhost', '127.0.0.2']) {
      const guard = createHostOriginGuard({ bindHost });
      expect(guard.checksHost).toBe(true);
      for (const host of ['localhost:3000', '127.0.0.1:3000', '[::1]:3000', '[::ffff:7f00:1]:80', 'localhost.:3000']) expect(guard.checkHost(req({ host }))).toBeUndefined();
      expect(guard.checkHost(req({ host: 'evil.example' }))).toMatchObject({ status: 403, message: expect.stringMatching(/Invalid Host: evil\.example.*--allowed-host/) });
      expect(guard.checkHost(req({}))?.status).toBe(403);
    }
  });

  it('gives the same verdicts from its cache, and client-chosen Host values do not grow it without bound', () => {
    const guard = createHostOriginGuard({ bindHost: '127.0.0.1' });
    for (let round = 0; round < 3; round++) {
      expect(guard.checkHost(req({ host: 'localhost:3000' }))).toBeUndefined();
      expect(guard.checkHost(req({ host: 'evil.example' }))?.status).toBe(403);
      expect(guard.checkHost(req({ host: 'a b' }))).toMatchObject({ status: 403, message: 'Invalid Host header: a b' });
      // More distinct values than the cache holds, interleaved with the known ones.
      for (let i = 0; i < 200; i++) expect(guard.checkHost(req({ host: `h${round}-${i}.evil.example` }))?.status).toBe(403);
    }
  });

  it('explicit allowed hosts replace the default; a non-loopback bind checks nothing without them', () => {
    const named = createHostOriginGuard({ bindHost: '0.0.0.0', allowedHosts: ['mcp.example.com'] });
    expect(named.checkHost(req({ host: 'mcp.example.com:443' }))).toBeUndefined();
    expect(named.checkHost(req({ host: 'evil.example' }))?.status).toBe(403);
    const open = createHostOriginGuard({ bindHost: '0.0.0.0' });
    expect(open.checksHost).toBe(false);
    expect(open.checkHost(req({ host: 'anything.example' }))).toBeUndefined();
  });
});

describe('socket limits', () => {
  it('have the documented defaults (docs/server.md and docs/proxy.md)', () => {
    expect(resolveHttpServerLimits()).toEqual({ headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, maxConnections: 2_000 });
    expect([DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS]).toEqual([10_000, 30_000, 2_000]);
    const server = createLimitedHttpServer(() => undefined);
    expect([server.headersTimeout, server.requestTimeout, server.maxConnections]).toEqual([10_000, 30_000, 2_000]);
    expect(() => resolveHttpServerLimits({ headersTimeoutMs: 5_000, requestTimeoutMs: 1_000 })).toThrow(/must not exceed the request timeout/);
    expect(() => resolveHttpServerLimits({ maxConnections: 0 })).toThrow(/positive whole number/);
  });

  it('cuts a client that trickles its body, one that trickles its headers, and one that sends nothing', async () => {
    const server = createLimitedHttpServer(
      (req, res) => {
        req.resume();
        req.on('end', () => res.end('done'));
      },
      { headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 },
    );
    const port = await listen(server);
    const start = Date.now();
    const body = socket(port);
    const headers = socket(port);
    const silent = socket(port);
    const results = Promise.all([closedAfter(body, start), closedAfter(headers, start), closedAfter(silent, start)]);
    body.write('POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n');
    headers.write('POST / HTTP/1.1\r\nHost: localhost\r\n');
    const trickle = setInterval(() => {
      if (!body.destroyed) body.write('x');
      if (!headers.destroyed) headers.write('X-Slow: 1\r\n');
    }, 200);
    cleanups.push(() => clearInterval(trickle));
    const [b, h, s] = await results;
    // Each is answered 408 and disconnected soon after its timeout (check interval 1 s, wide margin for load).
    expect(b.data).toMatch(/^HTTP\/1\.1 408/);
    expect(b.ms).toBeGreaterThanOrEqual(1_900);
    expect(b.ms).toBeLessThan(10_000);
    expect(h.data).toMatch(/^HTTP\/1\.1 408/);
    expect(h.ms).toBeLessThan(10_000);
    expect(s.ms).toBeLessThan(10_000);
  });

  it('does not cut a response that streams longer than the request timeout', async () => {
    const server = createLimitedHttpServer(
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let n = 0;
        const t = setInterval(() => {
          res.write(`data: ${n}\n\n`);
          if (++n === 12) {
            clearInterval(t);
            res.end();
          }
        }, 250);
        res.on('close', () => clearInterval(t));
      },
      { headersTimeoutMs: 500, requestTimeoutMs: 1_000 },
    );
    const port = await listen(server);
    const res = await fetch(`http://127.0.0.1:${port}/`);
    const text = await res.text();
    expect(text).toContain('data: 11');
  });

  it('drops connections past the cap', async () => {
    const server = createLimitedHttpServer((_req, res) => res.end('ok'), { maxConnections: 2 });
    const port = await listen(server);
    const a = socket(port);
    const b = socket(port);
    await Promise.all([a, b].map((s) => new Promise((r) => s.once('connect', r))));
    // The server counts a connection once it accepts it, a moment after the client's connect.
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && (await new Promise<number>((r) => server.getConnections((_e, n) => r(n)))) < 2) await new Promise((r) => setTimeout(r, 20));
    const third = socket(port);
    const closed = await closedAfter(third, Date.now());
    expect(closed.data).toBe('');
    expect(a.destroyed).toBe(false);
  });
});
