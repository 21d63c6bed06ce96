/**
 * Hosting a proxy over Streamable HTTP: one endpoint (`/mcp`), one proxy session per MCP session.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import type { Proxy, ProxySession } from './proxy.js';

const log = createLogger('proxy');

export interface ServeProxyHttpOptions {
  /** Interface to bind. Default `127.0.0.1`. Loopback hosts get DNS-rebinding protection (Host header check). */
  host?: string;
  /** Port; `0` (the default) picks a free one. */
  port?: number;
  /** Endpoint path. Default `/mcp`. */
  path?: string;
  /** Extra Host header values to accept (for a non-loopback bind behind a known name). */
  allowedHosts?: string[];
}

export interface ProxyHttpServer {
  /** The endpoint URL, e.g. `http://127.0.0.1:41234/mcp`. */
  readonly url: string;
  readonly port: number;
  /** Stops listening and closes every session. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `proxy` over Streamable HTTP.
 *
 * @example
 * ```ts
 * const proxy = createProxy({ command: 'npx', args: ['-y', '@modelcontextprotocol/server-everything'] });
 * const http = await serveProxyHttp(proxy, { port: 3000 });
 * console.error(`proxy at ${http.url}`);
 * ```
 */
export async function serveProxyHttp(proxy: Proxy, options: ServeProxyHttpOptions = {}): Promise<ProxyHttpServer> {
  const host = options.host ?? '127.0.0.1';
  const path = options.path ?? '/mcp';
  const app = createMcpExpressApp({ host, ...(options.allowedHosts !== undefined ? { allowedHosts: options.allowedHosts } : {}) });
  const transports = new Map<string, { transport: StreamableHTTPServerTransport; session: ProxySession }>();

  app.all(path, async (req, res) => {
    try {
      const sid = req.headers['mcp-session-id'];
      if (typeof sid === 'string') {
        const entry = transports.get(sid);
        if (entry === undefined) {
          // The spec's answer for a session we don't know: the client must initialize again.
          res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: `Session not found: ${sid}` }, id: null });
          return;
        }
        if (req.method === 'GET') entry.session.standaloneStreamOpened();
        await entry.transport.handleRequest(req, res, req.body);
        return;
      }
      if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
        res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: send initialize first (no Mcp-Session-Id header)' }, id: null });
        return;
      }
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          // Runs while handling the initialize request below, after `session` is set.
          transports.set(id, { transport, session });
        },
      });
      const previousOnclose = transport.onclose;
      const session = await proxy.connect(transport, { idleTimeout: true, awaitStandaloneStream: true });
      // Protocol.connect wrapped onclose; chain ours after it so the map never keeps a dead session.
      const wrapped = transport.onclose;
      transport.onclose = () => {
        if (transport.sessionId !== undefined) transports.delete(transport.sessionId);
        (wrapped ?? previousOnclose)?.();
      };
      await transport.handleRequest(req, res, req.body);
    } catch (error) {
      log.error('proxy HTTP request failed', { error: describeError(error) });
      if (!res.headersSent) res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal error in the proxy' }, id: null });
    }
  });

  const server = await new Promise<HttpServer>((resolve, reject) => {
    const s = app.listen(options.port ?? 0, host, (error?: Error) => (error === undefined ? resolve(s) : reject(error)));
    s.once('error', reject);
  }).catch((error: unknown) => {
    throw new CodemodeError('INVALID_ARGUMENT', `Cannot listen on ${host}:${options.port ?? 0}: ${describeError(error)}`, { cause: error });
  });
  const port = (server.address() as AddressInfo).port;
  const displayHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${displayHost}:${port}${path}`,
    port,
    close() {
      closing ??= (async () => {
        await proxy.close();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closing;
    },
  };
}
