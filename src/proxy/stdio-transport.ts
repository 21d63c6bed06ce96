/**
 * A client transport that starts an MCP server as a child process and talks JSON-RPC over its stdin/stdout.
 *
 * The SDK ships one, but it hides what a proxy needs to fail loudly: the exit code and signal of a server
 * that dies during `initialize`, the tail of its stderr, and the first line it wrote to stdout that was not
 * JSON-RPC. This one keeps those facts so `connectUpstream` can put them into the error message.
 *
 * @module
 */

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { LineReader } from '../wire/line-reader.js';

const log = createLogger('proxy');

/** How much of the child's stderr is kept for error messages. */
export const STDERR_TAIL_BYTES = 4096;
/**
 * Largest single message accepted from an upstream by default: 32 MiB. Past it, the message is discarded
 * as it streams in (never fully buffered), and the request it answers fails with a clear error; the
 * connection stays up. Large enough for big legitimate results (a 20 MB file), small enough that one
 * upstream answer cannot stall the event loop for seconds or hold a GB (a 200 MB result did both).
 */
export const DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES = 32 * 1024 * 1024;
/**
 * Undelivered notifications held before the child's stdout is paused: 1,000 messages or 4 MiB, whichever
 * comes first. Reading resumes below half of both. The child then blocks on its own write, which is the
 * backpressure a flooding upstream deserves; it costs us nothing.
 */
export const NOTIFICATION_QUEUE_HIGH_WATER = 1000;
export const NOTIFICATION_QUEUE_HIGH_WATER_BYTES = 4 * 1024 * 1024;
/** Notifications delivered per event-loop turn: enough to keep up, few enough that other work runs between. */
export const NOTIFICATION_BATCH = 256;
/** `notifications/message` (upstream logs) delivered per second; the rest are dropped and counted. */
export const MAX_LOG_NOTIFICATIONS_PER_SECOND = 100;

/** Requests remembered for naming a size error; the oldest is forgotten past this many. */
const MAX_TRACKED_REQUESTS = 10_000;

type Id = string | number;

function idOf(message: JSONRPCMessage): Id | undefined {
  const id = (message as { id?: unknown }).id;
  return typeof id === 'string' || typeof id === 'number' ? id : undefined;
}

/** Where the envelope id of an oversized line can be told apart from text inside it: first or last. */
const HEAD_ID = /^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")/;
const TAIL_ID = /"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*\}\s*$/;

/** The JSON-RPC id of a line we could not keep, from its head or tail, when it names one unambiguously. */
export function oversizedLineId(head: string, tail: string): Id | undefined {
  const m = HEAD_ID.exec(head) ?? TAIL_ID.exec(tail);
  if (m === null) return undefined;
  try {
    const id: unknown = JSON.parse(m[1]!);
    return typeof id === 'string' || typeof id === 'number' ? id : undefined;
  } catch {
    return undefined;
  }
}

function mb(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** The error answer a request gets when its upstream result was too large to accept. */
export function oversizedAnswer(id: Id, method: string, bytes: number | undefined, maxBytes: number): JSONRPCMessage {
  const size = bytes === undefined ? '' : ` (${mb(bytes)})`;
  return {
    jsonrpc: '2.0',
    id,
    error: {
      code: ErrorCode.InternalError,
      message:
        `The upstream result for ${method}${size} exceeded the ${mb(maxBytes)} limit for one upstream message, so codemode discarded it. ` +
        'Ask the tool for less (filter, paginate or narrow the query), or raise the limit (maxMessageBytes; --max-upstream-message on the command line).',
    },
  };
}

/** How long `close()` waits after closing stdin before it sends SIGTERM, and again before SIGKILL. */
export const STDIO_CLOSE_GRACE_MS = 2000;

export interface StdioTransportOptions {
  command: string;
  args?: readonly string[];
  env: Record<string, string>;
  cwd?: string | undefined;
  /** Receives the child's stderr as it arrives (the tail is kept regardless). Default: our stderr. */
  onStderr?: ((chunk: string) => void) | undefined;
  /** Largest message accepted from the child, in bytes. Default `DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES`. */
  maxMessageBytes?: number | undefined;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What the transport refused or merged to stay bounded (for tests, logs and diagnostics). */
export interface StdioTransportStats {
  /** Progress notifications replaced by a later one for the same token before delivery. */
  coalescedProgress: number;
  /** `notifications/message` dropped past `MAX_LOG_NOTIFICATIONS_PER_SECOND`. */
  droppedLogMessages: number;
  /** Messages over `maxMessageBytes`, discarded. */
  oversizedMessages: number;
  /** Times the child's stdout was paused because notifications piled up. */
  pauses: number;
}

interface Queued {
  message: JSONRPCMessage | undefined;
  bytes: number;
  /** False for a progress notification not yet checked against the JSON-RPC schema. */
  checked: boolean;
}

/** Stdio client transport that remembers why its child went away. */
export class StdioUpstreamTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: ((message: JSONRPCMessage) => void) | undefined;

  /** Set when the child exited (or could not be spawned). */
  exitInfo: ExitInfo | undefined;
  /** The spawn error (ENOENT, EACCES, ...), when the command could not be started. */
  spawnError: NodeJS.ErrnoException | undefined;
  /** The first stdout line that was not a JSON-RPC message, if any. */
  firstBadLine: string | undefined;
  readonly stats: StdioTransportStats = { coalescedProgress: 0, droppedLogMessages: 0, oversizedMessages: 0, pauses: 0 };

  readonly #options: StdioTransportOptions;
  readonly #maxMessageBytes: number;
  readonly #reader: LineReader;
  #child: ChildProcess | undefined;
  #prestarted: Promise<void> | undefined;
  #prestartTaken = false;
  #stderrTail = '';
  #closed = false;
  #exited: Promise<void> | undefined;
  /** Requests we sent and have not seen answered: id -> method (names the method in a size error). */
  readonly #pending = new Map<Id, string>();
  /** Messages waiting for delivery, in arrival order; `message` is cleared once delivered. */
  #notes: Queued[] = [];
  #noteHead = 0;
  #noteBytes = 0;
  #noteCount = 0;
  /** Queued progress notifications by token, so a later one replaces the earlier in place. */
  readonly #progressAt = new Map<unknown, Queued>();
  #drainScheduled = false;
  #paused = false;
  #logWindowStart = 0;
  #logsInWindow = 0;
  #logsDropped = 0;
  /** One wait for stdin's `drain`, shared by every blocked send (a listener per send leaked, issue 17). */
  #stdinDrain: { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } | undefined;

  constructor(options: StdioTransportOptions) {
    this.#options = options;
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES;
    this.#reader = new LineReader({ maxLineBytes: this.#maxMessageBytes });
  }

  /** The last few KB the child wrote to stderr, trimmed. */
  get stderrTail(): string {
    return this.#stderrTail.trim();
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Notifications received and not yet delivered. */
  get queuedNotifications(): number {
    return this.#noteCount;
  }

  /**
   * Spawns the child now, before a client connects: the next `start()` (the client's) returns this same
   * promise instead of spawning. Lets the caller load its client code while the child boots. Only the first
   * `start()` after it is covered.
   */
  prestart(): Promise<void> {
    if (this.#prestarted === undefined) {
      this.#prestarted = this.start();
      this.#prestarted.catch(() => undefined); // reported to whoever calls start() next
    }
    return this.#prestarted;
  }

  start(): Promise<void> {
    if (this.#prestarted !== undefined && !this.#prestartTaken) {
      this.#prestartTaken = true;
      return this.#prestarted;
    }
    if (this.#child !== undefined) throw new Error('StdioUpstreamTransport already started');
    return new Promise<void>((resolve, reject) => {
      const child = spawn(this.#options.command, [...(this.#options.args ?? [])], {
        env: this.#options.env,
        cwd: this.#options.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        windowsHide: true,
      });
      this.#child = child;
      let spawned = false;
      this.#exited = new Promise<void>((resolveExit) => {
        child.once('close', (code, signal) => {
          this.exitInfo = { code, signal };
          resolveExit();
          this.#finish();
        });
      });
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (!spawned) {
          this.spawnError = err;
          this.exitInfo ??= { code: null, signal: null };
          reject(err);
          this.#finish();
          return;
        }
        this.onerror?.(err);
      });
      child.once('spawn', () => {
        spawned = true;
        resolve();
      });
      // Writing to a child that already died raises EPIPE on stdin; the close event reports the real cause.
      child.stdin?.on('error', (err) => this.onerror?.(err));
      child.stdin?.on('drain', () => {
        const wait = this.#stdinDrain;
        this.#stdinDrain = undefined;
        wait?.resolve();
      });
      child.stdout?.on('data', (chunk: Buffer) => this.#onStdout(chunk));
      child.stdout?.on('end', () => {
        for (const event of this.#reader.end()) if (event.kind === 'line') this.#onLine(event.line, event.bytes);
      });
      child.stdout?.on('error', (err) => this.onerror?.(err));
      child.stderr?.on('data', (chunk: Buffer) => {
        const text = chunk.toString('utf8');
        this.#stderrTail = (this.#stderrTail + text).slice(-STDERR_TAIL_BYTES);
        const sink = this.#options.onStderr ?? ((t: string) => process.stderr.write(t));
        try {
          sink(text);
        } catch {
          // A broken stderr sink must not take the transport down.
        }
      });
    });
  }

  #onStdout(chunk: Buffer): void {
    if (this.#closed) return;
    for (const event of this.#reader.push(chunk)) {
      if (event.kind === 'line') this.#onLine(event.line, event.bytes);
      else this.#onOversized(event.bytes, oversizedLineId(event.head, event.tail));
      if (this.#closed) return;
    }
    if (!this.#drainScheduled) this.#drain();
  }

  #onLine(line: string, bytes: number): void {
    if (line.trim() === '') return;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      this.#bad(line);
      return;
    }
    const r = raw as { method?: unknown; id?: unknown; params?: { progressToken?: unknown } } | null;
    // Progress is validated when delivered: in a flood most are replaced before then, and schema-checking
    // each one was most of the flood's cost.
    if (r !== null && typeof r === 'object' && r.method === 'notifications/progress' && r.id === undefined) {
      this.#enqueue(raw as JSONRPCMessage, bytes, false);
      return;
    }
    const parsed = JSONRPCMessageSchema.safeParse(raw);
    if (!parsed.success) {
      this.#bad(line);
      return;
    }
    this.#enqueue(parsed.data, bytes);
  }

  #bad(line: string): void {
    const err = new Error(`not a JSON-RPC message: ${JSON.stringify(line.slice(0, 200))}`);
    this.firstBadLine ??= describeError(err).slice(0, 300);
    this.onerror?.(err);
  }

  #onOversized(bytes: number, id: Id | undefined): void {
    this.stats.oversizedMessages++;
    const method = id === undefined ? undefined : this.#pending.get(id);
    if (id !== undefined && method !== undefined) {
      this.#pending.delete(id);
      log.warn(`upstream sent a ${mb(bytes)} answer to ${method}, over the ${mb(this.#maxMessageBytes)} limit; the request fails, the connection stays`, {
        command: this.#options.command,
      });
      this.#enqueue(oversizedAnswer(id, method, bytes, this.#maxMessageBytes), 0);
      return;
    }
    this.onerror?.(new Error(`the upstream sent a ${mb(bytes)} message, over the ${mb(this.#maxMessageBytes)} limit for one message; it was discarded`));
  }

  /**
   * Queues a message in arrival order. Order matters: the proxy forwards a request's notifications on
   * that request's stream, which closes with its response. Progress is coalesced per token (only the
   * latest matters, and it keeps the earlier one's place), and upstream logs are rate-limited.
   */
  #enqueue(message: JSONRPCMessage, bytes: number, checked = true): void {
    const method = (message as { method?: unknown }).method;
    const id = idOf(message);
    if (id === undefined && method === 'notifications/progress') {
      const token = (message as { params?: { progressToken?: unknown } }).params?.progressToken;
      const queued = this.#progressAt.get(token);
      if (queued !== undefined && queued.message !== undefined) {
        this.stats.coalescedProgress++;
        this.#noteBytes += bytes - queued.bytes;
        queued.message = message;
        queued.bytes = bytes;
        queued.checked = checked;
        return;
      }
      const entry: Queued = { message, bytes, checked };
      this.#progressAt.set(token, entry);
      this.#push(entry);
      return;
    }
    if (id === undefined && method === 'notifications/message' && !this.#admitLog()) return;
    if (id !== undefined && method === undefined) this.#pending.delete(id);
    this.#push({ message, bytes, checked });
  }

  #push(entry: Queued): void {
    this.#notes.push(entry);
    this.#noteCount++;
    this.#noteBytes += entry.bytes;
    if (!this.#paused && (this.#noteCount >= NOTIFICATION_QUEUE_HIGH_WATER || this.#noteBytes >= NOTIFICATION_QUEUE_HIGH_WATER_BYTES)) {
      // Stop reading: the child blocks on its own write until we caught up. Nothing else waits for it.
      this.#paused = true;
      this.stats.pauses++;
      this.#child?.stdout?.pause();
    }
  }

  /** Rate-limits upstream log notifications; a summary of what was dropped is logged once per window. */
  #admitLog(): boolean {
    const now = Date.now();
    if (now - this.#logWindowStart >= 1000) {
      if (this.#logsDropped > 0) {
        log.warn(`dropped ${this.#logsDropped} log notification(s) from upstream (more than ${MAX_LOG_NOTIFICATIONS_PER_SECOND}/s)`, {
          command: this.#options.command,
        });
      }
      this.#logWindowStart = now;
      this.#logsInWindow = 0;
      this.#logsDropped = 0;
    }
    if (this.#logsInWindow < MAX_LOG_NOTIFICATIONS_PER_SECOND) {
      this.#logsInWindow++;
      return true;
    }
    this.#logsDropped++;
    this.stats.droppedLogMessages++;
    return false;
  }

  #scheduleDrain(): void {
    if (this.#drainScheduled || this.#closed) return;
    this.#drainScheduled = true;
    setImmediate(() => this.#drain());
  }

  /**
   * Delivers queued messages in order, up to `NOTIFICATION_BATCH` notifications per event-loop turn, and
   * yields between turns so other sessions' work runs during a flood. A response or server request that
   * follows a notification waits for the next turn: the SDK runs notification handlers a microtask after
   * delivery but responses at once, so a progress notification followed by its response would otherwise
   * reach the protocol after the response (and be dropped as "unknown progress token"). With the queue
   * bounded, a response waits at most a few turns behind a flood, never behind all of it.
   */
  #drain(): void {
    this.#drainScheduled = false;
    if (this.#closed) return;
    let notifications = 0;
    while (this.#noteHead < this.#notes.length) {
      const entry = this.#notes[this.#noteHead]!;
      const message = entry.message;
      if (message === undefined) {
        this.#noteHead++;
        continue;
      }
      const isNotification = idOf(message) === undefined;
      if ((!isNotification && notifications > 0) || notifications >= NOTIFICATION_BATCH) {
        this.#scheduleDrain();
        break;
      }
      this.#noteHead++;
      entry.message = undefined;
      this.#noteCount--;
      this.#noteBytes -= entry.bytes;
      if (isNotification) {
        notifications++;
        const token = (message as { params?: { progressToken?: unknown } }).params?.progressToken;
        if (token !== undefined && this.#progressAt.get(token) === entry) this.#progressAt.delete(token);
      }
      let deliver = message;
      if (!entry.checked) {
        const parsed = JSONRPCMessageSchema.safeParse(message);
        if (!parsed.success) {
          this.#bad(JSON.stringify(message).slice(0, 200));
          continue;
        }
        deliver = parsed.data;
      }
      this.onmessage?.(deliver);
      if (this.#closed) return;
    }
    if (this.#noteHead === this.#notes.length || this.#noteHead > 4096) {
      this.#notes = this.#notes.slice(this.#noteHead);
      this.#noteHead = 0;
    }
    if (this.#paused && this.#noteCount <= NOTIFICATION_QUEUE_HIGH_WATER / 2 && this.#noteBytes <= NOTIFICATION_QUEUE_HIGH_WATER_BYTES / 2) {
      this.#paused = false;
      this.#child?.stdout?.resume();
    }
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reader.clear();
    this.#notes = [];
    this.#noteHead = 0;
    this.#noteCount = 0;
    this.#noteBytes = 0;
    this.#progressAt.clear();
    this.#pending.clear();
    if (this.#logsDropped > 0) {
      log.warn(`dropped ${this.#logsDropped} log notification(s) from upstream (more than ${MAX_LOG_NOTIFICATIONS_PER_SECOND}/s)`, {
        command: this.#options.command,
      });
      this.#logsDropped = 0;
    }
    const wait = this.#stdinDrain;
    this.#stdinDrain = undefined;
    wait?.reject(new Error('stdio upstream is not running'));
    this.onclose?.();
  }

  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.#child?.stdin;
    if (stdin === undefined || stdin === null || this.#closed || stdin.destroyed) {
      return Promise.reject(new Error('stdio upstream is not running'));
    }
    this.#track(message);
    if (stdin.write(serializeMessage(message)) && this.#stdinDrain === undefined) return Promise.resolve();
    if (this.#stdinDrain === undefined) {
      let resolve!: () => void;
      let reject!: (error: Error) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // Nobody may await it (a notification sent without waiting): never an unhandled rejection.
      promise.catch(() => undefined);
      this.#stdinDrain = { promise, resolve, reject };
    }
    return this.#stdinDrain.promise;
  }

  /** Remembers requests we send (to name them in a size error), forgetting cancelled ones, within a bound. */
  #track(message: JSONRPCMessage): void {
    const id = idOf(message);
    if (id !== undefined && 'method' in message) {
      this.#pending.set(id, message.method);
      // An upstream that never answers must not grow this map: forget the oldest past the bound.
      if (this.#pending.size > MAX_TRACKED_REQUESTS) this.#pending.delete(this.#pending.keys().next().value!);
    } else if ('method' in message && message.method === 'notifications/cancelled') {
      const cancelled = (message.params as { requestId?: unknown } | undefined)?.requestId;
      if (typeof cancelled === 'string' || typeof cancelled === 'number') this.#pending.delete(cancelled);
    }
  }

  /** Sends `signal` to the child now (used when a connection attempt failed: there is nothing to wait for). */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.#child !== undefined && this.exitInfo === undefined) this.#child.kill(signal);
  }

  /** Ends stdin, then escalates to SIGTERM and SIGKILL if the child does not exit. Idempotent. */
  async close(): Promise<void> {
    const child = this.#child;
    if (child === undefined || this.exitInfo !== undefined) {
      this.#finish();
      return;
    }
    const exited = this.#exited ?? Promise.resolve();
    const waitExit = (ms: number): Promise<boolean> =>
      new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), ms);
        void exited.then(() => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    // A paused stdout would keep a child blocked on its write and never reach EOF: let it flow out.
    child.stdout?.resume();
    try {
      child.stdin?.end();
    } catch {
      // Already closed.
    }
    if (!(await waitExit(STDIO_CLOSE_GRACE_MS))) {
      child.kill('SIGTERM');
      if (!(await waitExit(STDIO_CLOSE_GRACE_MS))) {
        child.kill('SIGKILL');
        await waitExit(STDIO_CLOSE_GRACE_MS);
      }
    }
    this.#finish();
  }
}
