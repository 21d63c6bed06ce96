/**
 * RawHttpPool (src/proxy/raw-http.ts), the forward path's undici-backed POST client, against raw TCP
 * servers on 127.0.0.1 that misbehave on purpose: a kept-alive socket closed while idle, a reused socket
 * that dies after the request was written, a chunked answer delivered one byte per TCP write, a non-HTTP
 * answer, a refused connection, and header injection.
 */
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RawHttpPool } from '../../src/proxy/raw-http.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()?.();
});

/** The raw bytes each test server received, per socket. */
const received: string[] = [];

async function tcp(onSocket: (socket: Socket, index: number) => void): Promise<{ url: URL; server: Server }> {
  let n = 0;
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    const index = n++;
    received[index] = '';
    socket.on('data', (d: Buffer) => {
      received[index] += d.toString('latin1');
    });
    onSocket(socket, index);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  received.length = 0;
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`), server };
}

/** undici makes a connection available again once its bookkeeping after an answer is done (a turn later). */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function post(pool: RawHttpPool, body = 'x'): Promise<{ status: number; headers: Record<string, string>; text: string }> {
  return new Promise((resolve, reject) => {
    let status = 0;
    let headers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    pool.post({ 'content-type': 'application/json' }, Buffer.from(body), {
      head(s, h) {
        status = s;
        headers = h;
      },
      data(c) {
        chunks.push(Buffer.from(c));
        return true;
      },
      waitDrain() {},
      end() {
        resolve({ status, headers, text: Buffer.concat(chunks).toString('utf8') });
      },
      error(e) {
        reject(e);
      },
    });
  });
}

describe('RawHttpPool', () => {
  it('reuses a kept-alive socket, and does not reuse one the upstream closed while idle', async () => {
    const { url } = await tcp((socket, index) => {
      let served = 0;
      socket.on('data', () => {
        served++;
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-socket: ${index}\r\ncontent-length: 2\r\n\r\nok`);
        // Socket 0 closes right after its second answer: the FIN arrives just behind the answer, and the
        // next POST is sent at once, which is the stale keep-alive race.
        if (index === 0 && served === 2) socket.end();
      });
    });
    const pool = new RawHttpPool(url);
    cleanups.push(() => pool.close());
    expect(await post(pool)).toMatchObject({ status: 200, text: 'ok', headers: { 'content-type': 'text/plain', 'x-socket': '0' } });
    await turn();
    expect((await post(pool)).headers['x-socket']).toBe('0');
    await turn();
    const third = await post(pool);
    expect(third).toMatchObject({ status: 200, text: 'ok', headers: { 'x-socket': '1' } });
    expect(received.length).toBe(2);
    expect(received[0]?.match(/POST \/mcp HTTP\/1\.1/g)).toHaveLength(2);
  });

  it('reports, and does not retry, a POST whose reused socket dies after the request was written', async () => {
    const { url } = await tcp((socket, index) => {
      let served = 0;
      socket.on('data', () => {
        served++;
        if (index === 0 && served === 2) return void socket.destroy();
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      });
    });
    const pool = new RawHttpPool(url);
    cleanups.push(() => pool.close());
    expect((await post(pool, 'first')).text).toBe('ok');
    await turn();
    // The upstream got the request and may have run it: a retry could run it twice.
    await expect(post(pool, 'second')).rejects.toMatchObject({ code: expect.stringMatching(/^(UND_ERR_SOCKET|ECONNRESET)$/) });
    expect(received.length).toBe(1);
    expect(received[0]).toContain('second');
  });

  it('decodes a chunked answer that arrives one byte at a time, then reuses the socket', async () => {
    const body = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n';
    let connections = 0;
    const { url } = await tcp((socket) => {
      connections++;
      socket.on('data', () => {
        let i = 0;
        const drip = (): void => {
          if (i >= body.length || socket.destroyed) return;
          socket.write(body[i++] as string);
          setImmediate(drip);
        };
        drip();
      });
    });
    const pool = new RawHttpPool(url);
    cleanups.push(() => pool.close());
    expect(await post(pool)).toMatchObject({ status: 200, text: 'hello, world' });
    await turn();
    expect((await post(pool)).text).toBe('hello, world');
    expect(connections).toBe(1);
  });

  it('reports a refused connection with its errno code, and a non-HTTP answer as an error', async () => {
    const { url, server } = await tcp((socket) => socket.on('data', () => socket.end('SSH-2.0-OpenSSH\r\n\r\n')));
    const pool = new RawHttpPool(url);
    cleanups.push(() => pool.close());
    await expect(post(pool)).rejects.toMatchObject({ message: expect.stringMatching(/did not answer with HTTP\/1\.1: Response does not match/), code: expect.stringMatching(/^HPE_/) });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const gone = new RawHttpPool(url);
    cleanups.push(() => gone.close());
    await expect(post(gone)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('refuses header values that would inject headers, before writing anything', async () => {
    const { url } = await tcp((socket) => socket.on('data', () => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n')));
    const pool = new RawHttpPool(url);
    cleanups.push(() => pool.close());
    for (const value of ['v\r\nx-injected: 1', 'v\nx-injected: 1', 'v\0']) {
      await expect(
        new Promise((resolve, reject) => {
          pool.post({ 'x-a': value }, Buffer.from('x'), { head() {}, data: () => true, waitDrain() {}, end: () => resolve(undefined), error: reject });
        }),
      ).rejects.toMatchObject({ code: 'UND_ERR_INVALID_ARG' });
    }
    await expect(
      new Promise((resolve, reject) => {
        pool.post({ 'x-a\r\nx-injected': '1' }, Buffer.from('x'), { head() {}, data: () => true, waitDrain() {}, end: () => resolve(undefined), error: reject });
      }),
    ).rejects.toMatchObject({ code: 'UND_ERR_INVALID_ARG' });
    expect(received.join('')).toBe('');
  });

  it('pauses reading while the consumer is full, and resumes on drain', async () => {
    const size = 4 * 1024 * 1024;
    const { url } = await tcp((socket) => socket.on('data', () => socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n${'a'.repeat(size)}`)));
    const pool = new RawHttpPool(url);
    cleanups.push(() => pool.close());
    let got = 0;
    let pauses = 0;
    let paused = false;
    let dataWhilePaused = 0;
    await new Promise<void>((resolve, reject) => {
      pool.post({}, Buffer.from('x'), {
        head() {},
        data(c) {
          if (paused) dataWhilePaused++;
          got += c.length;
          return false;
        },
        waitDrain(resume) {
          pauses++;
          paused = true;
          setTimeout(() => {
            paused = false;
            resume();
          }, 1);
        },
        end: resolve,
        error: reject,
      });
    });
    expect(got).toBe(size);
    expect(pauses).toBeGreaterThan(1);
    expect(dataWhilePaused).toBe(0);
  });

  it('close() is idempotent and refuses later posts', async () => {
    const pool = new RawHttpPool(new URL('http://127.0.0.1:9/mcp'));
    await pool.close();
    await pool.close();
    await expect(post(pool)).rejects.toThrow(/closed/);
  });
});
