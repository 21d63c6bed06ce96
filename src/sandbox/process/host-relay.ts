/**
 * The parent's side of a host call a worker relays: the host function runs here, and its value goes back
 * to the worker as a reply the guest can receive.
 *
 * @module
 */

import { describeError } from '../../errors.js';
import { describeHostError, hostResultJson, isPlainHostResult } from '../host-functions.js';
import type { HostFunction } from '../types.js';
import type { FromWorker, ToWorker } from './protocol.js';

/** The reply to call `call`: the value as plain data or checked JSON text, or an error naming `label`. */
export function replyFor(call: number, value: unknown, label: string): ToWorker {
  if (value === undefined) return { t: 'reply', call, ok: true };
  // Plain data goes as itself: the IPC channel stringifies the message anyway, and JSON text inside it would
  // be stringified twice (once to text, once escaped into the message). On this thread, which every session
  // shares, a 2 MB tool result cost about 14 ms less this way; the worker makes the guest's copy.
  if (isPlainHostResult(value)) return { t: 'reply', call, ok: true, value };
  let json: string | undefined;
  try {
    json = hostResultJson(value);
  } catch (err) {
    let reason: string;
    try {
      reason = describeError(err);
    } catch {
      reason = 'it could not be serialized';
    }
    return {
      t: 'reply',
      call,
      ok: false,
      error: describeHostError(new Error(`${label} returned a value that cannot be copied into the sandbox: ${reason}`)),
    };
  }
  return json === undefined ? { t: 'reply', call, ok: true } : { t: 'reply', call, ok: true, json };
}

/** The run a relayed call belongs to, as far as the relay needs it. */
interface RelayJob {
  paths: string[][];
  controller: AbortController | undefined;
  hostCalls: number;
  pending: number;
}

/**
 * Runs host function `fn` for a call the worker relayed, counting it on `job`, and hands the reply (value
 * or error) to `send`. A sync throw, a rejection and a thrown non-Error all become error replies. The
 * call's signal is the job's: it aborts when the run ends.
 */
export function relayHostCall(job: RelayJob, fn: HostFunction, message: Extract<FromWorker, { t: 'call' }>, send: (reply: ToWorker) => void): void {
  job.controller ??= new AbortController();
  const context = { signal: job.controller.signal };
  job.hostCalls++;
  job.pending++;
  void (async () => {
    let reply: ToWorker;
    try {
      // `await` inside try: a sync throw, a rejection and a thrown non-Error all become error replies.
      const value: unknown = await fn(message.args as unknown[], context);
      reply = replyFor(message.call, value, job.paths[message.fn]?.join('.') ?? 'host function');
    } catch (err) {
      reply = { t: 'reply', call: message.call, ok: false, error: describeHostError(err) };
    } finally {
      job.pending--;
    }
    send(reply);
  })();
}
