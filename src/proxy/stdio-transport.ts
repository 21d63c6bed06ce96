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
import { deserializeMessage, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describeError } from '../errors.js';

/** How much of the child's stderr is kept for error messages. */
export const STDERR_TAIL_BYTES = 4096;
/**
 * Largest single message accepted from a stdio upstream: 256 MiB. The SDK's own reader stops at 10 MiB and
 * re-concatenates its buffer on every chunk; large tool results must pass, so this reader keeps chunks
 * and joins them once per line.
 */
export const STDIO_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/** Splits a byte stream into newline-terminated JSON-RPC messages. */
class LineReader {
  #chunks: Buffer[] = [];
  #size = 0;
  readonly #lines: string[] = [];

  append(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      const line = this.#chunks.length === 0 ? piece.toString('utf8') : Buffer.concat([...this.#chunks, piece]).toString('utf8');
      this.#chunks = [];
      this.#size = 0;
      this.#lines.push(line.endsWith('\r') ? line.slice(0, -1) : line);
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.#size += chunk.length - start;
      if (this.#size > STDIO_MAX_MESSAGE_BYTES) {
        this.#chunks = [];
        this.#size = 0;
        throw new Error(`stdio upstream sent a message larger than ${STDIO_MAX_MESSAGE_BYTES} bytes`);
      }
      this.#chunks.push(chunk.subarray(start));
    }
  }

  /** The next message, `null` when none is complete; throws (after consuming it) on a line that is not JSON-RPC. */
  readMessage(): JSONRPCMessage | null {
    for (;;) {
      const line = this.#lines.shift();
      if (line === undefined) return null;
      if (line.trim() === '') continue;
      try {
        return deserializeMessage(line);
      } catch {
        throw new Error(`not a JSON-RPC message: ${JSON.stringify(line.slice(0, 200))}`);
      }
    }
  }

  clear(): void {
    this.#chunks = [];
    this.#size = 0;
    this.#lines.length = 0;
  }
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
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
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

  readonly #options: StdioTransportOptions;
  readonly #readBuffer = new LineReader();
  #child: ChildProcess | undefined;
  #stderrTail = '';
  #closed = false;
  #deferred = false;
  #exited: Promise<void> | undefined;

  constructor(options: StdioTransportOptions) {
    this.#options = options;
  }

  /** The last few KB the child wrote to stderr, trimmed. */
  get stderrTail(): string {
    return this.#stderrTail.trim();
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  start(): Promise<void> {
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
      child.stdout?.on('data', (chunk: Buffer) => this.#onStdout(chunk));
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
    try {
      this.#readBuffer.append(chunk);
    } catch (err) {
      this.onerror?.(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (!this.#deferred) this.#drain();
  }

  /**
   * Delivers buffered messages. After a notification, the rest wait for the next macrotask: the SDK runs
   * notification handlers a microtask later but responses at once, so a progress notification followed
   * by its response in the same chunk would otherwise reach the protocol after the response (and be
   * dropped as "unknown progress token").
   */
  #drain(): void {
    this.#deferred = false;
    for (;;) {
      let message: JSONRPCMessage | null;
      try {
        message = this.#readBuffer.readMessage();
      } catch (err) {
        // ReadBuffer drops the offending line; remember it for the error message and keep reading.
        this.firstBadLine ??= describeError(err).slice(0, 300);
        this.onerror?.(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      if (message === null) return;
      this.onmessage?.(message);
      if (!('id' in message) && !this.#closed) {
        this.#deferred = true;
        setImmediate(() => this.#drain());
        return;
      }
    }
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#readBuffer.clear();
    this.onclose?.();
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const stdin = this.#child?.stdin;
      if (stdin === undefined || stdin === null || this.#closed || stdin.destroyed) {
        reject(new Error('stdio upstream is not running'));
        return;
      }
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once('drain', resolve);
    });
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
