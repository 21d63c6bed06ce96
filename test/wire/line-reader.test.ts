/**
 * The shared line reader: UTF-8 across chunk boundaries, CRLF, and the byte cap with a head and tail.
 */
import { describe, expect, it } from 'vitest';
import { LineReader } from '../../src/wire/line-reader.js';

function lines(reader: LineReader, chunks: Buffer[]): string[] {
  const out: string[] = [];
  for (const c of chunks) for (const e of reader.push(c)) out.push(e.kind === 'line' ? e.line : `<oversized ${e.bytes}>`);
  return out;
}

describe('LineReader', () => {
  it('keeps a multi-byte character split across chunks whole', () => {
    const bytes = Buffer.from('a€b\n😀\n', 'utf8');
    // Split after every byte: every character's sequence is cut somewhere.
    const chunks = [...bytes].map((b) => Buffer.from([b]));
    expect(lines(new LineReader({ maxLineBytes: 100 }), chunks)).toEqual(['a€b', '😀']);
  });

  it('drops a trailing CR, skips nothing, and returns an unterminated last line at end()', () => {
    const reader = new LineReader({ maxLineBytes: 100 });
    expect(lines(reader, [Buffer.from('one\r\n\ntw'), Buffer.from('o\r\nthr')])).toEqual(['one', '', 'two']);
    expect(reader.end()).toEqual([{ kind: 'line', line: 'thr', bytes: 3 }]);
    expect(reader.end()).toEqual([]);
  });

  it('counts the cap in UTF-8 bytes, not characters', () => {
    const reader = new LineReader({ maxLineBytes: 9 });
    // Three € are 9 bytes (fits); four are 12 (does not).
    expect(lines(reader, [Buffer.from('€€€\n€€€€\n')])).toEqual(['€€€', '<oversized 12>']);
  });

  it('holds no more than the cap of an oversized line, and reports its head and tail', () => {
    const reader = new LineReader({ maxLineBytes: 1024, keepBytes: 64 });
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const events = [];
    events.push(...reader.push(Buffer.from('{"result":{"text":"')));
    for (let i = 0; i < 100; i++) {
      events.push(...reader.push(chunk));
      expect(reader.bufferedBytes).toBeLessThanOrEqual(1024 + 64);
      expect(reader.discarding).toBe(true);
    }
    events.push(...reader.push(Buffer.from('"}},"jsonrpc":"2.0","id":42}\n{"jsonrpc":"2.0","id":43,"result":{}}\n')));
    expect(events).toHaveLength(2);
    const [big, next] = events;
    expect(big).toMatchObject({ kind: 'oversized', bytes: 19 + 100 * 64 * 1024 + 28 });
    if (big?.kind !== 'oversized') throw new Error('unreachable');
    expect(big.head.startsWith('{"result":{"text":"xxx')).toBe(true);
    expect(big.head.length).toBe(64);
    expect(big.tail.endsWith('"}},"jsonrpc":"2.0","id":42}')).toBe(true);
    expect(next).toEqual({ kind: 'line', line: '{"jsonrpc":"2.0","id":43,"result":{}}', bytes: 37 });
    expect(reader.discarding).toBe(false);
  });

  it('does not start an oversized tail inside a character', () => {
    const reader = new LineReader({ maxLineBytes: 8, keepBytes: 4 });
    const [e] = reader.push(Buffer.from('€€€€€\n'));
    expect(e).toMatchObject({ kind: 'oversized', bytes: 15 });
    if (e?.kind !== 'oversized') throw new Error('unreachable');
    expect(e.tail).toBe('€');
    expect(e.head).toBe('€');
  });
});
