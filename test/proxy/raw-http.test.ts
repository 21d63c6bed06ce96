/**
 * RawHttpPool (src/proxy/raw-http.ts), the forward path's HTTP/1.1 POST client, against raw TCP servers on
 * 127.0.0.1 that misbehave on purpose: a reused socket that dies before answering, and a chunked answer
 * delivered one byte per TCP write.
 */
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RawHttpPool } from '../../src/proxy/raw-http.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()?.();
});

async function tcp(onSocket: (socket: Socket, index: number) => void): Promise<{ url: URL; server: Server }> {
  let n = 0;
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    onSocket(socket, n++);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`), server };
}

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
  it('reuses a kept-alive socket, and retries once on a fresh one when a reused socket dies before answering', async () => {
    const { url } = await tcp((socket, index) => {
      let served = 0;
      socket.on('data', () => {
        served++;
        if (index === 0 && served === 2) return void socket.destroy();
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok');
      });
    });
    const pool = new RawHttpPool(url);
    cleanups.push(() => pool.close());
    expect((await post(pool)).text).toBe('ok');
    const second = await post(pool);
    expect(second).toMatchObject({ status: 200, text: 'ok', headers: { 'content-type': 'text/plain' } });
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
    expect((await post(pool)).text).toBe('hello, world');
    expect(connections).toBe(1);
  });

  it('reports a refused connection with its errno code, and a non-HTTP answer as an error', async () => {
    const { url, server } = await tcp((socket) => socket.on('data', () => socket.end('SSH-2.0-OpenSSH\r\n\r\n')));
    const pool = new RawHttpPool(url);
    cleanups.push(() => pool.close());
    await expect(post(pool)).rejects.toThrow(/did not answer with HTTP\/1\.1/);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const gone = new RawHttpPool(url);
    cleanups.push(() => gone.close());
    await expect(post(gone)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('refuses header values that would inject headers', async () => {
    const pool = new RawHttpPool(new URL('http://127.0.0.1:9/mcp'));
    cleanups.push(() => pool.close());
    await expect(
      new Promise((resolve, reject) => {
        pool.post({ 'x-a': 'v\r\nx-injected: 1' }, Buffer.from('x'), { head() {}, data: () => true, waitDrain() {}, end: () => resolve(undefined), error: reject });
      }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_CHAR' });
  });
});
