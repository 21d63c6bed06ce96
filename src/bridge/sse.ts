/**
 * A small Server-Sent Events reader (WHATWG "event stream" format): enough for MCP's Streamable HTTP
 * and legacy SSE transports. Written here rather than loaded from the SDK so the bridge starts
 * without the SDK's schema modules (start-up time is a goal of codemode-remote).
 *
 * @module
 */

export interface SseEvent {
  event: string;
  data: string;
  id: string | undefined;
  retry: number | undefined;
}

/**
 * Reads events from a response body until it ends or `signal` aborts. Calls `onEvent` for every
 * dispatched event (including ones with empty data, so callers see priming events' ids).
 */
export async function readSse(body: ReadableStream<Uint8Array>, onEvent: (event: SseEvent) => void, signal?: AbortSignal): Promise<void> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = (): void => {
    reader.cancel().catch(() => undefined);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let event = '';
  let data: string[] = [];
  let id: string | undefined;
  let retry: number | undefined;
  let sawField = false;
  const dispatch = (): void => {
    if (sawField) onEvent({ event: event || 'message', data: data.join('\n'), id, retry });
    event = '';
    data = [];
    retry = undefined;
    sawField = false;
  };
  const line = (text: string): void => {
    if (text === '') return dispatch();
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    sawField = true;
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') {
      if (!value.includes('\0')) id = value;
    } else if (field === 'retry') {
      if (/^\d+$/.test(value)) retry = Number(value);
    }
  };
  // The unfinished line, as pieces: appending to one string and rescanning it from the start made a
  // long line (one big result event) quadratic in its length.
  let parts: string[] = [];
  let pendingCr = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let start = 0;
      if (pendingCr) {
        // The CR that ended the previous chunk was the first half of a CRLF.
        pendingCr = false;
        if (value.charCodeAt(0) === 10) start = 1;
      }
      for (let i = start; i < value.length; i++) {
        const ch = value.charCodeAt(i);
        if (ch !== 10 && ch !== 13) continue;
        parts.push(value.slice(start, i));
        const text = parts.length === 1 ? parts[0]! : parts.join('');
        parts = [];
        line(text);
        if (ch === 13) {
          if (i === value.length - 1) pendingCr = true;
          else if (value.charCodeAt(i + 1) === 10) i++;
        }
        start = i + 1;
      }
      if (start < value.length) parts.push(value.slice(start));
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.releaseLock();
  }
}
