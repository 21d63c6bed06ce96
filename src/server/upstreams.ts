/**
 * Connecting every configured upstream at once. One failing upstream is reported (with the proxy's
 * classified reason) and the others keep serving; `strict` turns any failure into a refusal to start.
 *
 * @module
 */

import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { CodemodeError, describeError, isCodemodeError } from '../errors.js';
import { createLogger } from '../log.js';
import { describeUpstream } from '../proxy/config.js';
import type { UpstreamConfig } from '../proxy/config.js';
import { connectUpstream } from '../proxy/upstream.js';
import type { UpstreamConnection } from '../proxy/upstream.js';

const log = createLogger('server');

export type UpstreamState = 'connected' | 'failed' | 'closed';

/** What `/healthz`, the server instructions and the CLI report about one upstream. */
export interface UpstreamStatus {
  name: string;
  /** The command line or URL. */
  target: string;
  state: UpstreamState;
  /** Why it failed or closed. */
  error?: string;
  /** The error code (`UPSTREAM_UNAVAILABLE`, `UPSTREAM_AUTH`, ...) when it failed. */
  code?: string;
}

export interface ConnectUpstreamsOptions {
  /** Refuse to start when any upstream fails (closes the ones that connected, then throws). */
  strict?: boolean;
  /** Per-upstream connect timeout in ms (the proxy's default otherwise). */
  connectTimeoutMs?: number;
  signal?: AbortSignal;
  /** Called when an upstream announces `tools/list_changed`. */
  onToolsChanged?: (name: string) => void;
  /** Receives each stdio child's stderr line by line, prefixed with its name. Default: our stderr. */
  onStderr?: (line: string) => void;
}

/** The live upstreams of one server or run. */
export class Upstreams {
  readonly #connections = new Map<string, UpstreamConnection>();
  readonly #status = new Map<string, UpstreamStatus>();
  #closing: Promise<void> | undefined;

  /** Connected upstreams by name, in config order. */
  get connections(): ReadonlyMap<string, UpstreamConnection> {
    return this.#connections;
  }

  /** The state of every configured upstream. */
  status(): UpstreamStatus[] {
    return [...this.#status.values()].map((s) => ({ ...s }));
  }

  /** Upstreams that failed to connect or closed since. */
  failures(): UpstreamStatus[] {
    return this.status().filter((s) => s.state !== 'connected');
  }

  /** @internal */
  add(name: string, target: string, outcome: { connection: UpstreamConnection } | { error: unknown }): void {
    if ('connection' in outcome) {
      this.#connections.set(name, outcome.connection);
      this.#status.set(name, { name, target, state: 'connected' });
      const client: Client = outcome.connection.client;
      const previous = client.onclose;
      client.onclose = () => {
        previous?.();
        const status = this.#status.get(name);
        if (this.#closing === undefined && status?.state === 'connected') {
          status.state = 'closed';
          status.error = 'the connection closed (the server exited or dropped the session)';
          log.warn(`upstream "${name}" closed; its tools now fail until codemode restarts`, { target });
        }
      };
    } else {
      const err = outcome.error;
      this.#status.set(name, {
        name,
        target,
        state: 'failed',
        error: describeError(err),
        ...(isCodemodeError(err) ? { code: err.code } : {}),
      });
    }
  }

  /** Marks a connected upstream as failed (for example when listing its tools failed) and closes it. */
  async drop(name: string, error: unknown): Promise<void> {
    const connection = this.#connections.get(name);
    this.#connections.delete(name);
    const status = this.#status.get(name);
    if (status !== undefined) {
      status.state = 'failed';
      status.error = describeError(error);
      if (isCodemodeError(error)) status.code = error.code;
    }
    await connection?.close();
  }

  /** Closes every upstream session (HTTP DELETE / ends the child processes). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const all = [...this.#connections.values()];
      await Promise.allSettled(all.map((c) => c.close()));
      for (const status of this.#status.values()) if (status.state === 'connected') status.state = 'closed';
    })();
    return this.#closing;
  }
}

function lineWriter(name: string, sink: (line: string) => void): (chunk: string) => void {
  let buffer = '';
  return (chunk) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      sink(`[${name}] ${buffer.slice(0, nl)}\n`);
      buffer = buffer.slice(nl + 1);
    }
    // A child that never ends a line must not make us hold its output forever.
    if (buffer.length > 8_192) {
      sink(`[${name}] ${buffer}\n`);
      buffer = '';
    }
  };
}

/**
 * Connects every upstream in parallel. Failures are logged one per line with their cause; with
 * `strict` the first report throws after closing whatever connected.
 *
 * @throws CodemodeError `UPSTREAM_UNAVAILABLE` (strict mode only) naming every failed upstream.
 *
 * @example
 * ```ts
 * const upstreams = await connectUpstreams(config.servers);
 * for (const s of upstreams.failures()) console.error(`${s.name}: ${s.error}`);
 * ```
 */
export async function connectUpstreams(servers: Record<string, UpstreamConfig>, options: ConnectUpstreamsOptions = {}): Promise<Upstreams> {
  const upstreams = new Upstreams();
  const sink = options.onStderr ?? ((line: string) => void process.stderr.write(line));
  const entries = Object.entries(servers);
  const outcomes = await Promise.all(
    entries.map(async ([name, config]) => {
      try {
        const connection = await connectUpstream(config, {
          ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
          ...(options.signal !== undefined ? { signal: options.signal } : {}),
          onStderr: lineWriter(name, sink),
          configure: (client) => {
            client.setNotificationHandler(ToolListChangedNotificationSchema, () => options.onToolsChanged?.(name));
          },
        });
        return { connection };
      } catch (error) {
        return { error };
      }
    }),
  );
  entries.forEach(([name, config], i) => upstreams.add(name, describeUpstream(config), outcomes[i]!));
  const failed = upstreams.failures();
  for (const f of failed) {
    log.error(`upstream "${f.name}" is unavailable: ${f.error ?? 'unknown error'}`, { target: f.target });
  }
  if (failed.length > 0 && options.strict) {
    await upstreams.close();
    throw new CodemodeError(
      'UPSTREAM_UNAVAILABLE',
      `${failed.length} of ${entries.length} upstream server${entries.length === 1 ? '' : 's'} failed to start (strict mode): ` +
        failed.map((f) => `"${f.name}": ${(f.error ?? 'unknown error').replace(/\.$/, '')}`).join('; ') +
        '. Fix or remove them, or start without --strict to serve the others.',
    );
  }
  if (failed.length > 0 && failed.length < entries.length) {
    log.warn(`serving the other ${entries.length - failed.length} upstream(s); calls to the failed ones report why`);
  }
  return upstreams;
}
