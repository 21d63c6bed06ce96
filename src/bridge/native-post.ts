/**
 * The bridge's POST on `node:http`/`node:https` with keep-alive agents, for the per-message hot path.
 *
 * Why not `fetch`: on this machine Node's fetch costs 0.3-0.45 ms more per POST than `node:http` (a Request,
 * a header list, the fetch algorithm, web streams for the body), which is most of the bridge's own latency
 * budget. Why not undici's npm package, as the proxy uses: importing it costs about 140 ms and 30 MiB, and
 * the bridge's start-up time and memory are goals; `node:http` is part of Node.
 *
 * A session of Streamable HTTP without OAuth never loads fetch at all (Node loads its fetch lazily, and that
 * costs about 50 ms of start-up and 12 MiB here): `initialize`, the messages, the standalone GET stream and
 * the `DELETE` all go this way. `fetch` stays for what is off that path: an answer that needs the checks
 * written for web responses (`toWebResponse`), Last-Event-ID resumption, the legacy SSE transport, OAuth;
 * and for everything when the environment names a proxy (`HTTP(S)_PROXY`), which the CLI makes fetch honour
 * (with `NO_PROXY`).
 *
 * @module
 */

import type * as Http from 'node:http';
import type { Agent as HttpAgent, IncomingMessage } from 'node:http';
import type * as Https from 'node:https';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';

const require = createRequire(import.meta.url);

let agents: { http: HttpAgent; https: HttpAgent } | undefined;
let modules: { http: typeof Http; https: typeof Https } | undefined;

/** Whether a message to `url` may take the native path (see the module comment). */
export function nativePostAllowed(url: URL): boolean {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  if (process.env.CODEMODE_REMOTE_FETCH === '1') return false;
  // Any proxy variable: the CLI makes fetch proxy-aware (http.setGlobalProxyFromEnv, or NODE_USE_ENV_PROXY),
  // and NO_PROXY is its to apply; our own agents would go around the proxy.
  const env = process.env;
  return !['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'].some((k) => (env[k] ?? '') !== '');
}

/**
 * POSTs `body` to `url` with `headers`; resolves with the response head (the body is the caller's to read or
 * destroy). Rejects like fetch: with `signal.reason` when aborted, with the socket's error otherwise.
 */
export function nativePost(url: URL, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<IncomingMessage> {
  return nativeRequest('POST', url, headers, body, signal);
}

/** `nativePost` for any method; `body` undefined sends none (GET, DELETE). */
export function nativeRequest(method: string, url: URL, headers: Record<string, string>, body: string | undefined, signal: AbortSignal): Promise<IncomingMessage> {
  // Required on first use, not imported: the bridge's start-up loads neither (its initialize goes by fetch).
  modules ??= { http: require('node:http') as typeof Http, https: require('node:https') as typeof Https };
  agents ??= { http: new modules.http.Agent({ keepAlive: true }), https: new modules.https.Agent({ keepAlive: true }) };
  const secure = url.protocol === 'https:';
  const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
  const out: Record<string, string | number> = { ...headers };
  if (payload !== undefined) out['content-length'] = payload.length;
  return new Promise<IncomingMessage>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const request = (secure ? modules!.https : modules!.http).request(url, { method, headers: out, agent: secure ? agents!.https : agents!.http });
    const onAbort = (): void => {
      request.destroy();
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    request.once('response', (res) => {
      signal.removeEventListener('abort', onAbort);
      // Aborting after the head cuts the body off, as fetch does.
      const cut = (): void => {
        res.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      if (signal.aborted) cut();
      else signal.addEventListener('abort', cut, { once: true });
      res.once('close', () => signal.removeEventListener('abort', cut));
      resolve(res);
    });
    request.once('error', (error) => {
      signal.removeEventListener('abort', onAbort);
      reject(signal.aborted ? signal.reason : error);
    });
    request.end(payload);
  });
}

/** A native response as a web `Response`, for the code paths that take one (errors, unusual answers). */
export function toWebResponse(res: IncomingMessage): Response {
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    if (typeof value === 'string') headers.set(name, value);
    else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
  }
  const status = res.statusCode ?? 502;
  // A null-body status cannot carry a body in a Response; anything the server sent anyway is dropped.
  if (status === 204 || status === 205 || status === 304) {
    res.resume();
    return new Response(null, { status, headers });
  }
  return new Response(Readable.toWeb(res) as ReadableStream<Uint8Array>, { status, headers });
}
