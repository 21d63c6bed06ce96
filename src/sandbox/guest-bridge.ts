/**
 * The host's side of the guest bridges: what happens when the guest calls a host function, writes to the
 * console or sets a timer (the three References the bootstrap holds, see prepared-isolate.ts).
 *
 * Every handler here runs on a message from untrusted code, so none of them throws, and host calls answer
 * with envelope strings (see bootstrap.ts) that never reject across the boundary (ARCHITECTURE §4, rule 4).
 *
 * @module
 */

import { describeError } from '../errors.js';
import { truncateUtf8 } from './caps.js';
import { describeHostError, hostResultJson } from './host-functions.js';
import { coolEventLoop, keepEventLoopHot } from './hot-poll.js';
import type { PreparedIsolate } from './prepared-isolate.js';
import type { RunState } from './run-state.js';
import type { LogLevel } from './types.js';
import { MAX_TIMER_DELAY_MS } from '../wire/timers.js';

const LOG_LEVELS: ReadonlySet<string> = new Set<LogLevel>(['log', 'info', 'warn', 'error', 'debug']);

function okEnvelope(value: unknown, state: RunState, index: number): string {
  if (value === undefined) return 'u';
  let json: string | undefined;
  try {
    json = hostResultJson(value);
  } catch (err) {
    const label = state.paths[index]?.join('.') ?? 'host function';
    return errorEnvelope(new Error(`${label} returned a value that cannot be copied into the sandbox: ${describeError(err)}`));
  }
  return json === undefined ? 'u' : `v${json}`;
}

/** Describes a host error for the guest. Never throws, whatever getters or proxies `err` carries. */
function errorEnvelope(err: unknown): string {
  try {
    return `e${JSON.stringify(describeHostError(err))}`;
  } catch {
    return 'e{"name":"Error","message":"host function failed"}';
  }
}

/** Answers a guest call. Never throws: the guest is waiting on `id` and gets an envelope either way. */
function reply(prepared: PreparedIsolate, id: number, envelope: string): void {
  const settle = prepared.settle;
  if (settle === undefined || prepared.disposed) return;
  try {
    settle.applyIgnored(undefined, [id, envelope]);
  } catch {
    /* the isolate went away meanwhile */
  }
}

/** An async host function that settles within this is "fast", and the event loop stays hot after it. */
const FAST_ANSWER_MS = 0.05;

/**
 * The guest waits (applySyncPromise) for this promise, which resolves with the envelope if the host function
 * settles within the current turn of the event loop (sync functions, cached answers: one round trip), or
 * with '' at the next turn, in which case the envelope follows through `reply` when the function settles.
 * So the guest is blocked for one host turn at most and `Promise.all` calls still run concurrently.
 * It never rejects: a rejection here would cross the boundary.
 */
export function answerGuestCall(prepared: PreparedIsolate, id: number, index: number, argsJson: string): string | Promise<string> {
  const startedAt = performance.now();
  const started = startHostCall(prepared, index, argsJson);
  const state = prepared.state;
  const hotPollMs = state?.hotPollMs ?? 0;
  // A synchronous answer goes straight back (applySyncPromise accepts a plain value). After a fast one, the
  // guest resumes and code that calls in a loop calls again within microseconds: keep the loop hot for that
  // (hot-poll.ts).
  if (typeof started === 'string') {
    if (state !== undefined) {
      if (performance.now() - startedAt < FAST_ANSWER_MS) keepEventLoopHot(state, hotPollMs);
      else coolEventLoop(state);
    }
    return started;
  }
  // The host function is working (I/O, timers): spinning meanwhile would only take CPU from it.
  if (state !== undefined) coolEventLoop(state);
  return new Promise<string>((resolve) => {
    let answered = false;
    const immediate = setImmediate(() => {
      answered = true;
      resolve('');
    });
    void started.then((envelope) => {
      if (answered) {
        reply(prepared, id, envelope);
      } else {
        answered = true;
        clearImmediate(immediate);
        // Only after a fast function: after one that waited on I/O, other threads and processes are being
        // woken, and a spinning main thread delayed them (measured with a stdio echo tool).
        if (state !== undefined && performance.now() - startedAt < FAST_ANSWER_MS) keepEventLoopHot(state, hotPollMs);
        resolve(envelope);
      }
    });
  });
}

/**
 * Starts one host call: the envelope itself when the host function returned synchronously (or the call was
 * refused), else a promise of it. Never throws, and the promise never rejects.
 */
function startHostCall(prepared: PreparedIsolate, index: number, argsJson: string): string | Promise<string> {
  const state = prepared.state;
  if (state === undefined || state.settled) return errorEnvelope(new Error('The sandbox run has ended; host calls after that are refused.'));
  const fn = state.functions[index];
  if (typeof fn !== 'function' || typeof argsJson !== 'string') return errorEnvelope(new Error('Unknown host function.'));
  const maxPending = state.limits.maxPendingHostCalls;
  if (maxPending !== null && state.pending >= maxPending) {
    return errorEnvelope(new Error(`Too many host calls pending at once (limit ${maxPending}); await some before starting more.`));
  }
  state.hostCalls++;
  let result: unknown;
  try {
    const args: unknown = JSON.parse(argsJson);
    state.context ??= { signal: (state.controller = new AbortController()).signal };
    result = fn(Array.isArray(args) ? args : [], state.context);
  } catch (err) {
    return errorEnvelope(err);
  }
  if (!isThenable(result)) return okEnvelope(result, state, index);
  state.pending++;
  return settleHostCall(state, result, index);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  try {
    return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
  } catch {
    return false;
  }
}

async function settleHostCall(state: RunState, pending: PromiseLike<unknown>, index: number): Promise<string> {
  try {
    // Awaited inside try: a rejection and a rejected non-Error both become error envelopes.
    return okEnvelope(await pending, state, index);
  } catch (err) {
    return errorEnvelope(err);
  } finally {
    state.pending--;
  }
}

/** Guest timers are host timers owned by the run: capped in number and all cleared when the run settles. */
const MAX_TIMERS = 1000;
export function timerFromGuest(prepared: PreparedIsolate, id: unknown, delayMs: unknown): void {
  const state = prepared.state;
  if (state === undefined || state.settled || typeof id !== 'number' || typeof delayMs !== 'number') return;
  if (delayMs < 0) {
    const existing = state.timers.get(id);
    if (existing !== undefined) clearTimeout(existing);
    state.timers.delete(id);
    return;
  }
  if (state.timers.size >= MAX_TIMERS) return;
  const handle = setTimeout(() => {
    state.timers.delete(id);
    if (state.settled || prepared.disposed) return;
    try {
      prepared.fire?.applyIgnored(undefined, [id]);
    } catch {
      /* the isolate went away meanwhile */
    }
  }, Math.min(delayMs, MAX_TIMER_DELAY_MS));
  state.timers.set(id, handle);
}

export function logFromGuest(prepared: PreparedIsolate, level: unknown, message: unknown): void {
  const state = prepared.state;
  if (state === undefined || state.logsClosed) return;
  state.logMessagesReceived++;
  state.onLogMessage?.();
  if (level === '') {
    // The guest's own cap dropped a line (it sends this marker once).
    state.guestTruncatedLogs = true;
    return;
  }
  if (typeof level !== 'string' || !LOG_LEVELS.has(level) || typeof message !== 'string') return;
  const { maxLogLines, maxLogBytes } = state.limits;
  if (maxLogLines !== null && state.logs.length >= maxLogLines) {
    state.hostDroppedLogLines++;
    return;
  }
  // The guest cuts lines by characters (all it can count cheaply); the cap is in UTF-8 bytes, which a line of
  // "€" takes three times over: cut it here to the bytes left (work bounded by the guest's character cap).
  let text = message;
  let bytes = Buffer.byteLength(text);
  const left = maxLogBytes === null ? Number.POSITIVE_INFINITY : maxLogBytes - state.logBytes;
  if (bytes > left) {
    if (left <= 0) {
      state.hostDroppedLogLines++;
      return;
    }
    text = truncateUtf8(text, left);
    bytes = Buffer.byteLength(text);
    state.guestTruncatedLogs = true;
  }
  state.logBytes += bytes;
  state.logs.push({ level: level as LogLevel, message: text });
}
