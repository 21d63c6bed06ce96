/**
 * Reading a Node body (an HTTP request or response) whole, with or without a byte cap. SDK-free, for the proxy
 * and the bridge alike.
 *
 * @module
 */

import type { Readable } from 'node:stream';

/** Reads a request or response body fully. */
export function readAll(stream: Readable): Promise<Buffer>;
/** Reads a body of at most `maxBytes`; a longer one is cut off (the stream destroyed) and gives `undefined`. */
export function readAll(stream: Readable, maxBytes: number): Promise<Buffer | undefined>;
export function readAll(stream: Readable, maxBytes = Number.POSITIVE_INFINITY): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > maxBytes) {
        stream.removeListener('data', onData);
        chunks.length = 0;
        stream.destroy();
        resolve(undefined);
        return;
      }
      chunks.push(c);
    };
    stream.on('data', onData);
    stream.once('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    stream.once('error', reject);
    stream.once('aborted', () => reject(Object.assign(new Error('the connection closed mid-answer'), { code: 'ECONNRESET' })));
  });
}
