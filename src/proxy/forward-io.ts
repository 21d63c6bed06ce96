/**
 * The message-level pieces of the HTTP forward path (`forward.ts`): reading bodies, writing JSON
 * answers, finding the JSON-RPC answer in an upstream response, and filtering a `tools/list` answer
 * (JSON or an event stream) on its way down. Stateless: nothing here knows sessions.
 *
 * @module
 */

import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { CodemodeError } from '../errors.js';
import type { JsonRpcId } from '../wire/jsonrpc.js';
import { wireErrorMessage } from '../wire/jsonrpc.js';
import { writeJsonRpcError } from '../wire/http-guard.js';
import { SseParser } from '../wire/sse.js';
import { readAll } from '../wire/body.js';

export { readAll };

/** Downstream request headers that are part of the protocol and therefore forwarded; nothing else is. */
export const PROTOCOL_HEADERS = ['accept', 'content-type', 'mcp-protocol-version', 'last-event-id'] as const;
/** Upstream response headers passed down (the session id is translated separately). */
export const RESPONSE_HEADERS = ['content-type', 'cache-control', 'mcp-protocol-version'] as const;
export const ACCEPT_BOTH = 'application/json, text/event-stream';

export type Json = Record<string, unknown>;

/** The body of `req`, or undefined (after answering 413) when it is larger than `limit` bytes. */
export function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const declared = Number(req.headers['content-length']);
    const tooLarge = () => {
      writeJsonRpcError(res, 413, -32600, `Request body too large: the limit is ${limit} bytes.`);
      req.resume();
      resolve(undefined);
    };
    if (Number.isFinite(declared) && declared > limit) return tooLarge();
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeListener('data', onData);
        chunks.length = 0;
        tooLarge();
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/** Answers with a JSON body, or just ends the response when its head went out already. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** The JSON-RPC error for an upstream failure, as the SDK path phrases it (`data.reason` = the code). */
export function wireErrorOf(local: CodemodeError): { code: number; message: string; data: unknown } {
  if (local.cause instanceof McpError && local.code === 'UPSTREAM_PROTOCOL') {
    return { code: local.cause.code, message: wireErrorMessage(local.cause), data: local.cause.data };
  }
  return { code: ErrorCode.InternalError, message: local.message, data: { reason: local.code } };
}

function filterTools(message: unknown, isHidden: (name: string) => string | undefined): unknown {
  const result = (message as { result?: { tools?: unknown } }).result;
  if (result === undefined || !Array.isArray(result.tools)) return message;
  const tools = (result.tools as Array<{ name?: unknown }>).filter((t) => typeof t.name !== 'string' || isHidden(t.name) === undefined);
  return { ...(message as Json), result: { ...result, tools } };
}

/**
 * Reads the JSON-RPC answer to request `id` from a JSON or SSE response, with the raw SSE events up to and
 * including it (to replay them downstream as they were).
 */
export async function readAnswer(res: IncomingMessage, id: JsonRpcId): Promise<{ message: unknown; sse: string | undefined }> {
  const type = res.headers['content-type'] ?? '';
  if (type.includes('text/event-stream')) {
    let raw = '';
    let found: object | undefined;
    const parser = new SseParser({
      onBlock: (text, event) => {
        if (found !== undefined) return;
        raw += `${text}\n\n`;
        if (event === undefined || event.data === '') return;
        const message = JSON.parse(event.data) as unknown;
        if (typeof message === 'object' && message !== null && (message as Json).id === id && ('result' in message || 'error' in message)) found = message;
      },
    });
    res.setEncoding('utf8');
    for await (const chunk of res as AsyncIterable<string>) {
      parser.feed(chunk);
      if (found !== undefined) {
        res.destroy();
        return { message: found, sse: raw };
      }
    }
    throw new SyntaxError('the event stream ended without a JSON-RPC answer');
  }
  if (!type.includes('application/json')) {
    res.resume();
    throw new StreamableHTTPError(-1, `Unexpected content type: ${type === '' ? '(none)' : type}`);
  }
  const message = JSON.parse((await readAll(res)).toString('utf8')) as unknown;
  return { message, sse: undefined };
}

/**
 * Passes an upstream answer down with the tools hidden by `isHidden` removed from the `tools/list` answers
 * to `listIds`. Event streams go event by event, everything but those answers untouched; a JSON body is
 * read whole. The response head must have been written.
 */
export function pipeFilteredLists(up: IncomingMessage, res: ServerResponse, listIds: Set<JsonRpcId>, isHidden: (name: string) => string | undefined): void {
  const type = String(up.headers['content-type'] ?? '');
  if (type.includes('text/event-stream')) {
    const parser = new SseParser({
      onBlock: (raw, event) => {
        let text = raw;
        if (event !== undefined && event.data !== '') {
          try {
            const message = JSON.parse(event.data) as Json;
            if (listIds.has(message.id as JsonRpcId) && 'result' in message) {
              const keep = raw.split(/\r\n|\n|\r/).filter((line) => !line.startsWith('data'));
              text = [...keep, `data: ${JSON.stringify(filterTools(message, isHidden))}`].join('\n');
            }
          } catch {
            // Not JSON: passed on untouched.
          }
        }
        res.write(`${text}\n\n`);
      },
    });
    up.setEncoding('utf8');
    up.on('data', (chunk: string) => parser.feed(chunk));
    up.once('end', () => res.end());
    return;
  }
  void readAll(up).then(
    (buf) => {
      let out = buf.toString('utf8');
      try {
        const parsed = JSON.parse(out) as unknown;
        out = JSON.stringify(Array.isArray(parsed) ? parsed.map((m) => filterTools(m, isHidden)) : filterTools(parsed, isHidden));
      } catch {
        // Not JSON: passed on untouched.
      }
      res.end(out);
    },
    () => res.destroy(),
  );
}
