/** The shared Server-Sent Events parser (src/wire/sse.ts): the bridge reads events, the proxy passes blocks on. */
import { describe, expect, it } from 'vitest';
import { SseParser, readSse } from '../../src/wire/sse.js';
import type { SseEvent } from '../../src/wire/sse.js';

async function events(chunks: string[]): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(enc.encode(c));
      controller.close();
    },
  });
  await readSse(body, (e) => out.push(e));
  return out;
}

describe('readSse', () => {
  it('parses events split across chunks, CRLF and CR line ends, multi-line data, comments, id and retry', async () => {
    const got = await events([': comment\r\nid: 1\r', '\nretry: 500\r\ndata: {"a":', '1}\r\n\r\nevent: endpoint\rdata: /messages?x=1\r\rdata: line1\ndata: line2\n\n', 'data: incomplete']);
    expect(got).toEqual([
      { event: 'message', data: '{"a":1}', id: '1', retry: 500 },
      { event: 'endpoint', data: '/messages?x=1', id: '1', retry: undefined },
      { event: 'message', data: 'line1\nline2', id: '1', retry: undefined },
    ]);
  });

  it('reads one long event in time linear in its size (a 24 MB result in 64 KB chunks)', async () => {
    const piece = 'x'.repeat(64 * 1024);
    const chunks = ['data: {"text":"', ...Array.from({ length: 384 }, () => piece), '"}\r', '\n\r\n'];
    const started = performance.now();
    const got = await events(chunks);
    const ms = performance.now() - started;
    expect(got).toHaveLength(1);
    expect(got[0]!.data).toHaveLength(384 * 64 * 1024 + 11);
    // Rescanning the whole pending line at every chunk took 70 s here; linear takes under 1 s on a quiet machine.
    expect(ms).toBeLessThan(15_000);
  });

  it('dispatches a priming event with empty data so its id is seen', async () => {
    expect(await events(['id: e-1\nretry: 10\ndata: \n\n'])).toEqual([{ event: 'message', data: '', id: 'e-1', retry: 10 }]);
  });
});

describe('SseParser blocks (the proxy forward path)', () => {
  function blocks(chunks: string[]): Array<{ raw: string; data: string | undefined }> {
    const out: Array<{ raw: string; data: string | undefined }> = [];
    const parser = new SseParser({ onBlock: (raw, event) => out.push({ raw, data: event?.data }) });
    for (const c of chunks) parser.feed(c);
    return out;
  }

  it('gives each block as received, line ends kept, comment-only blocks included, the unfinished one not', () => {
    expect(blocks([': ping\n\nid: 1\r', '\ndata: {"a":', '1}\r\n\r', '\nevent: x\rdata: a\rdata: b\r\rdata: tail'])).toEqual([
      { raw: ': ping', data: undefined },
      { raw: 'id: 1\r\ndata: {"a":1}', data: '{"a":1}' },
      { raw: 'event: x\rdata: a\rdata: b', data: 'a\nb' },
    ]);
  });

  it('skips extra blank lines between blocks and ignores empty chunks', () => {
    expect(blocks(['data: 1\n\n\n\n', '', 'data: 2\n', '\n'])).toEqual([
      { raw: 'data: 1', data: '1' },
      { raw: 'data: 2', data: '2' },
    ]);
  });
});
