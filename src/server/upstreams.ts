/**
 * Connecting every configured upstream at once. One failing upstream is reported (with the proxy's
 * classified reason) and the others keep serving; `strict` turns any failure into a refusal to start.
 *
 * @module
 */

import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { CodemodeError, describeError, isCodemodeError } from '../errors.js';
import { createLogger } from '../log.js';
import { describeUpstream, isStdioConfig } from '../proxy/config.js';
import type { UpstreamConfig } from '../proxy/config.js';
import { connectUpstream, DEFAULT_CONNECT_TIMEOUT_MS } from '../proxy/upstream.js';
import type { UpstreamConnection } from '../proxy/upstream.js';
import type { UpstreamClient } from '../proxy/negotiated-client.js';
import type { ToolSource } from '../codemode/types.js';

const log = createLogger('server');

/**
 * A burst of `tools/list_changed` is one change: the first announcement waits this long for the rest of
 * the burst (250 ms), then the catalog is refreshed once.
 */
export const TOOLS_CHANGED_DEBOUNCE_MS = 250;
/**
 * And an upstream that never stops announcing gets at most one refresh per second: a storm of 15,000
 * announcements in 5 s used to mean 15,000 log lines and back-to-back catalog rebuilds.
 */
export const TOOLS_CHANGED_MIN_INTERVAL_MS = 1000;
/** Most tools one upstream may list (50,000 still pass); more is reported as a failed upstream. */
export const DEFAULT_MAX_CATALOG_TOOLS = 50_000;
/** Largest catalog one upstream may list, in bytes of its tools' JSON (64 MiB); more is a failed upstream. */
export const DEFAULT_MAX_CATALOG_BYTES = 64 * 1024 * 1024;

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
  /**
   * Called when an upstream announced `tools/list_changed`, once per burst (see
   * `TOOLS_CHANGED_DEBOUNCE_MS`, `TOOLS_CHANGED_MIN_INTERVAL_MS`), with how many announcements it covers.
   */
  onToolsChanged?: (name: string, announcements: number) => void;
  /** Largest single message accepted from an upstream, in bytes (the proxy's 32 MiB default otherwise). */
  maxMessageBytes?: number;
  /** Receives each stdio child's stderr line by line, prefixed with its name. Default: our stderr. */
  onStderr?: (line: string) => void;
  /** Called while each stdio upstream boots (see `NegotiatedConnectOptions.whileBooting`). */
  whileBooting?: () => void;
  /** Called once per upstream when its connection attempt has spawned its process, or ended without one. */
  onStarted?: (name: string) => void;
}

/** The live upstreams of one server or run. */
export class Upstreams {
  readonly #connections = new Map<string, UpstreamConnection<UpstreamClient>>();
  readonly #status = new Map<string, UpstreamStatus>();
  readonly #deadlines = new Map<string, number>();
  /** Cancels pending `tools/list_changed` timers, so nothing fires after close. */
  readonly #cancels = new Set<() => void>();
  #closing: Promise<void> | undefined;

  /**
   * When the connect budget of upstream `name` runs out (`performance.now()` time): listing its tools at
   * start-up must finish by then too, so a slow or huge catalog cannot hold start-up past the timeout.
   */
  deadlineOf(name: string): number {
    return this.#deadlines.get(name) ?? performance.now();
  }

  /** @internal */
  setDeadline(name: string, at: number): void {
    this.#deadlines.set(name, at);
  }

  /** @internal */
  onClose(cancel: () => void): void {
    this.#cancels.add(cancel);
  }

  /** Connected upstreams by name, in config order. */
  get connections(): ReadonlyMap<string, UpstreamConnection<UpstreamClient>> {
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
  add(name: string, target: string, outcome: { connection: UpstreamConnection<UpstreamClient> } | { error: unknown }): void {
    if ('connection' in outcome) {
      this.#connections.set(name, outcome.connection);
      this.#status.set(name, { name, target, state: 'connected' });
      const client = outcome.connection.client;
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
      for (const cancel of this.#cancels) cancel();
      this.#cancels.clear();
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
 * Turns a stream of `tools/list_changed` announcements into at most one call per burst, and at most one
 * per `TOOLS_CHANGED_MIN_INTERVAL_MS`, with the number of announcements it covers.
 */
function coalescer(name: string, fire: (count: number) => void): { notify(): void; cancel(): void } {
  let count = 0;
  let timer: NodeJS.Timeout | undefined;
  let lastFired = -Infinity;
  let cancelled = false;
  return {
    notify() {
      if (cancelled) return;
      count++;
      if (timer !== undefined) return;
      const wait = Math.max(TOOLS_CHANGED_DEBOUNCE_MS, lastFired + TOOLS_CHANGED_MIN_INTERVAL_MS - performance.now());
      timer = setTimeout(() => {
        timer = undefined;
        if (cancelled) return;
        const n = count;
        count = 0;
        lastFired = performance.now();
        log.info(`upstream "${name}" announced ${n} tool-list change${n === 1 ? '' : 's'}; refreshing the catalog once`);
        fire(n);
      }, wait);
      timer.unref();
    },
    cancel() {
      cancelled = true;
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

export interface FetchCatalogOptions {
  /** `performance.now()` time by which the listing must be done (see `Upstreams.deadlineOf`). */
  deadlineAt: number;
  /** Default `DEFAULT_MAX_CATALOG_TOOLS`. */
  maxTools?: number;
  /** Default `DEFAULT_MAX_CATALOG_BYTES`. */
  maxBytes?: number;
}

/**
 * Lists an upstream's tools within its connect budget and size caps. An upstream over them is a failed
 * upstream with a clear reason, never a start-up that hangs or a catalog that stalls everyone later.
 *
 * @throws CodemodeError `UPSTREAM_TIMEOUT` past the deadline; `UPSTREAM_PROTOCOL` over a cap.
 *
 * @example
 * ```ts
 * const tools = await fetchCatalog('github', (signal) => source.listTools({ signal }), { deadlineAt: upstreams.deadlineOf('github') });
 * ```
 */
export async function fetchCatalog<T>(name: string, list: (signal: AbortSignal) => Promise<T[]>, options: FetchCatalogOptions): Promise<T[]> {
  const remaining = Math.max(1, Math.round(options.deadlineAt - performance.now()));
  const maxTools = options.maxTools ?? DEFAULT_MAX_CATALOG_TOOLS;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_CATALOG_BYTES;
  let tools: T[];
  try {
    tools = await list(AbortSignal.timeout(remaining));
  } catch (error) {
    if (error instanceof Error && (error.name === 'TimeoutError' || /timed out/i.test(error.message))) {
      throw new CodemodeError(
        'UPSTREAM_TIMEOUT',
        `upstream "${name}" connected but did not finish listing its tools within the connect timeout; it is left out. Raise connectTimeoutMs if its catalog is slow to build.`,
        { cause: error },
      );
    }
    throw error;
  }
  if (tools.length > maxTools) {
    throw new CodemodeError(
      'UPSTREAM_PROTOCOL',
      `upstream "${name}" lists ${tools.length} tools, more than the ${maxTools}-tool catalog limit; it is left out. Trim its tools (many servers have a toolset option); the limit is fixed.`,
    );
  }
  // Each page was already bounded by the per-message cap, so measuring the whole is bounded work too.
  let bytes = 0;
  for (const tool of tools) {
    bytes += JSON.stringify(tool).length;
    if (bytes > maxBytes) {
      throw new CodemodeError(
        'UPSTREAM_PROTOCOL',
        `upstream "${name}" lists a catalog over the ${Math.round(maxBytes / 1024 / 1024)} MiB limit (tool descriptions and schemas); it is left out. Trim its tools (many servers have a toolset option); the limit is fixed.`,
      );
    }
  }
  return tools;
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
      upstreams.setDeadline(name, performance.now() + (options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS));
      const changes = coalescer(name, (count) => options.onToolsChanged?.(name, count));
      upstreams.onClose(() => changes.cancel());
      let told = false;
      const started = () => {
        if (told) return;
        told = true;
        options.onStarted?.(name);
      };
      if (!isStdioConfig(config)) started(); // nothing to spawn
      try {
        // Both eras: 2026-07-28 where the upstream offers it, 2025-11-25 otherwise.
        const connection = await connectUpstream(config, {
          protocol: 'auto',
          ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
          ...(options.signal !== undefined ? { signal: options.signal } : {}),
          ...(options.maxMessageBytes !== undefined ? { maxMessageBytes: options.maxMessageBytes } : {}),
          onStderr: lineWriter(name, sink),
          ...(options.whileBooting !== undefined ? { whileBooting: options.whileBooting } : {}),
          onSpawn: started,
          configure: (client) => {
            client.setNotificationHandler(ToolListChangedNotificationSchema, () => changes.notify());
          },
        });
        return { connection };
      } catch (error) {
        return { error };
      } finally {
        started();
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

/**
 * Wraps a source so its first `listTools` is served from a list fetched earlier (no second round trip at
 * start-up); later calls (refresh) go upstream, under the same catalog caps and within `timeoutMs`, so a
 * `tools/list_changed` that brings a huge or endless catalog fails that refresh and the previous one stays.
 */
export function prefetched(name: string, source: ToolSource, tools: Awaited<ReturnType<ToolSource['listTools']>>, timeoutMs: number): ToolSource {
  let first: typeof tools | undefined = tools;
  return Object.assign(Object.create(source) as ToolSource, {
    listTools: (opts?: { signal?: AbortSignal }) => {
      if (first !== undefined) {
        const out = first;
        first = undefined;
        return Promise.resolve(out);
      }
      return fetchCatalog(
        name,
        (signal) => source.listTools({ signal: opts?.signal === undefined ? signal : AbortSignal.any([signal, opts.signal]) }),
        { deadlineAt: performance.now() + timeoutMs },
      );
    },
  });
}

/** Makes calls to an upstream that went away fail with the reason we know, not the SDK's "Not connected". */
export function guarded(source: ToolSource, upstreams: Upstreams): ToolSource {
  return Object.assign(Object.create(source) as ToolSource, {
    callTool: (...args: Parameters<ToolSource['callTool']>) => {
      const status = upstreams.status().find((s) => s.name === source.name);
      if (status !== undefined && status.state !== 'connected') {
        return Promise.reject(new Error(`${status.error ?? status.state}; restart codemode to reconnect it`));
      }
      return source.callTool(...args);
    },
  });
}

/**
 * Upstream connections under way, started before the rest of the server exists: the command line starts
 * its servers' processes before it loads the sandbox and the MCP server code, so their boot and its own
 * overlap (see `startUpstreams`).
 */
export interface StartingUpstreams {
  /** Every upstream connected or failed, as `connectUpstreams` reports it; rejects as it does in strict mode. */
  readonly ready: Promise<Upstreams>;
  /** Whether `ready` has settled. */
  readonly settled: boolean;
  /** Every stdio upstream's process was spawned (or its attempt ended): from here on it boots on its own. */
  readonly spawned: Promise<void>;
  /** Hears each burst of tool-list changes (see `ConnectUpstreamsOptions.onToolsChanged`); set it when there is a catalog to refresh. */
  onToolsChanged: ((name: string, announcements: number) => void) | undefined;
  /** For a caller that will not use them: closes the connections once they finished starting. Idempotent. */
  abandon(): Promise<void>;
}

/**
 * Starts `connectUpstreams` now and returns at once; give the result to `createCodemodeServerFromConfig`
 * (`upstreams`) with the same config.
 *
 * @example
 * ```ts
 * const starting = startUpstreams(config.servers, { connectTimeoutMs: 30_000 });
 * const { createCodemodeServerFromConfig } = await import('codemode/server'); // loads while they boot
 * const server = await createCodemodeServerFromConfig(config, { upstreams: starting, connectTimeoutMs: 30_000 });
 * ```
 */
export function startUpstreams(servers: Record<string, UpstreamConfig>, options: Omit<ConnectUpstreamsOptions, 'onToolsChanged'> = {}): StartingUpstreams {
  let settled = false;
  let abandoned: Promise<void> | undefined;
  let waiting = Object.keys(servers).length;
  let allSpawned!: () => void;
  const spawned = new Promise<void>((resolve) => (allSpawned = resolve));
  if (waiting === 0) allSpawned();
  const starting: StartingUpstreams = {
    ready: connectUpstreams(servers, {
      ...options,
      onToolsChanged: (name, count) => starting.onToolsChanged?.(name, count),
      onStarted: (name) => {
        options.onStarted?.(name);
        if (--waiting === 0) allSpawned();
      },
    }),
    get settled() {
      return settled;
    },
    spawned,
    onToolsChanged: undefined,
    abandon() {
      abandoned ??= starting.ready.then(
        (u) => u.close(),
        () => undefined,
      );
      return abandoned;
    },
  };
  // Strict mode rejects before anyone may await it; the awaiting caller still sees the rejection.
  starting.ready.then(
    () => (settled = true),
    () => (settled = true),
  );
  return starting;
}

