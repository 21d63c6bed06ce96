/**
 * `input_required` for a 2026-07-28 host in front of a 2025 remote (codemode-remote's `backwards` mode).
 *
 * A 2025 server asks for input with a server-to-client request (elicitation, sampling, roots) while it runs a
 * call; a 2026-07-28 host is asked by ending the call's exchange with `resultType: "input_required"`. The
 * relay does the translation at the message level:
 * - the remote's request is held, and the host's call is answered with `input_required`: the request in
 *   `inputRequests`, and a sealed `requestState`;
 * - the host's retry (a new id, with `inputResponses` and that `requestState`) is not sent to the remote: its
 *   answers go to the held requests, and the original call's answer, when it comes, is given the retry's id;
 * - a held call waits at most `ttlMs` for the retry; then its held requests fail, and the call is cancelled.
 *
 * The remote's requests carry no link to a call in 2025, so the newest call in flight is taken, as the proxy
 * does. SDK-free (the bridge's start-up goal).
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import type { JsonRpcId, JsonRpcMessage } from '../wire/jsonrpc.js';
import { RpcCode, errorResponse, isRequest } from '../wire/jsonrpc.js';
import { RequestStateSeal, subjectOf } from '../wire/request-state.js';

/** How long a held call waits for the host's retry: 5 minutes (a person may be answering). */
const HELD_TTL_MS = 5 * 60_000;
/** At most this many calls are held at once; more input requests are refused. */
const MAX_HELD = 64;
/** Calls in flight that are remembered (their answers are matched); the oldest is forgotten past this. */
const MAX_TRACKED_CALLS = 10_000;
/** Input requests one call may collect before the host answers. */
const MAX_PENDING = 16;
/** The single host of a bridge is its only tenant. */
const TENANT = 'host';

interface Pending {
  key: string;
  remoteId: JsonRpcId;
  method: string;
  params: unknown;
  sent: boolean;
}

interface Call {
  readonly id: string;
  /** The id the remote knows the call by (the host's first request id). */
  readonly remoteId: JsonRpcId;
  /** The id the host is waiting on now (its latest retry). */
  hostId: JsonRpcId;
  readonly subject: string;
  round: number;
  /** Whether the host has a request open for this call (false while held for input). */
  waiting: boolean;
  readonly pending: Pending[];
  inputs: number;
  /** The remote's answer, when it came while the call was held. */
  outcome: JsonRpcMessage | undefined;
  timer: NodeJS.Timeout | undefined;
}

interface RelayIo {
  toHost(message: JsonRpcMessage): void;
  toRemote(message: JsonRpcMessage): void;
}

export class InputRelay {
  readonly #io: RelayIo;
  #seal: RequestStateSeal | undefined;
  /** Calls in flight, by the id the remote knows, oldest first. */
  readonly #calls = new Map<JsonRpcId, Call>();
  readonly #held = new Map<string, Call>();

  constructor(io: RelayIo) {
    this.#io = io;
  }

  /**
   * A host message on its way to the remote: returned as it should go (a cancellation renamed to the id the
   * remote knows), or undefined when the relay took it (a retry carrying `requestState`).
   */
  fromHost(message: JsonRpcMessage): JsonRpcMessage | undefined {
    if (message.method === 'notifications/cancelled') {
      const id = message.params?.requestId;
      for (const call of this.#calls.values()) {
        if (call.hostId !== id) continue;
        this.#forget(call);
        return { ...message, params: { ...message.params, requestId: call.remoteId } };
      }
      return message;
    }
    if (!isRequest(message)) return message;
    const state = message.params?.requestState;
    if (state !== undefined) {
      this.#resume(message, state);
      return undefined;
    }
    if (message.method === 'subscriptions/listen' || message.method === 'server/discover') return message;
    if (this.#calls.size >= MAX_TRACKED_CALLS) this.#forget(this.#calls.values().next().value as Call);
    this.#calls.set(message.id, {
      id: randomUUID(),
      remoteId: message.id,
      hostId: message.id,
      subject: subjectOf(message.method, message.params),
      round: 0,
      waiting: true,
      pending: [],
      inputs: 0,
      outcome: undefined,
      timer: undefined,
    });
    return message;
  }

  /**
   * A remote message on its way to the host: returned as it should go (an answer renamed to the host's latest
   * id), or undefined when the relay took it (a request for input, or an answer kept for a held call).
   */
  fromRemote(message: JsonRpcMessage): JsonRpcMessage | undefined {
    const id = message.id;
    if (message.method !== undefined && id !== undefined && id !== null) {
      this.#ask(message as JsonRpcMessage & { id: JsonRpcId; method: string });
      return undefined;
    }
    if (message.method !== undefined || id === undefined || id === null) return message;
    const call = this.#calls.get(id);
    if (call === undefined) return message;
    if (!call.waiting) {
      // Held: the host hears it when it retries (or never, if the hold expires).
      call.outcome = message;
      return undefined;
    }
    this.#forget(call);
    return call.hostId === id ? message : { ...message, id: call.hostId };
  }

  /** Releases every held call (the bridge is closing). */
  close(): void {
    for (const call of [...this.#held.values()]) this.#release(call, 'codemode-remote is closing');
  }

  #ask(request: JsonRpcMessage & { id: JsonRpcId; method: string }): void {
    const call = [...this.#calls.values()].at(-1);
    const refuse = (why: string): void => {
      this.#io.toRemote(errorResponse(request.id, RpcCode.InvalidRequest, `codemode-remote: ${request.method} cannot reach the host: ${why}`));
    };
    if (call === undefined) {
      refuse('it speaks MCP 2026-07-28, where a server asks for input only while answering one of its requests (input_required), and no request is in flight');
      return;
    }
    if (call.pending.length >= MAX_PENDING) {
      refuse(`${MAX_PENDING} input requests of this call already wait for the host`);
      return;
    }
    if (!this.#held.has(call.id) && this.#held.size >= MAX_HELD) {
      refuse(`${MAX_HELD} calls already wait for the host's input`);
      return;
    }
    call.inputs += 1;
    call.pending.push({ key: `input-${call.inputs}`, remoteId: request.id, method: request.method, params: request.params, sent: false });
    if (call.waiting) this.#requestInput(call);
  }

  /** Ends the host's open request for `call` with input_required, and holds the call. */
  #requestInput(call: Call): void {
    if (!call.pending.some((p) => !p.sent)) return;
    for (const p of call.pending) p.sent = true;
    call.round += 1;
    call.waiting = false;
    this.#seal ??= new RequestStateSeal('codemode-remote');
    const requestState = this.#seal.seal({ call: call.id, round: call.round, tenant: TENANT, method: call.subject, expires: Date.now() + HELD_TTL_MS });
    const inputRequests = Object.fromEntries(call.pending.map((p) => [p.key, { method: p.method, ...(p.params !== undefined ? { params: p.params } : {}) }]));
    this.#held.set(call.id, call);
    if (call.timer !== undefined) clearTimeout(call.timer);
    call.timer = setTimeout(() => {
      this.#release(call, `the host did not answer input_required within ${Math.round(HELD_TTL_MS / 1000)} s`);
    }, HELD_TTL_MS);
    call.timer.unref();
    this.#io.toHost({ jsonrpc: '2.0', id: call.hostId, result: { resultType: 'input_required', inputRequests, requestState } });
  }

  #resume(retry: JsonRpcMessage & { id: JsonRpcId; method: string }, state: unknown): void {
    const refuse = (why: string): void =>
      this.#io.toHost(errorResponse(retry.id, RpcCode.InvalidParams, `codemode-remote: ${why}. Send the request again without requestState to start over.`));
    if (typeof state !== 'string') {
      refuse('requestState must be the string codemode-remote gave');
      return;
    }
    this.#seal ??= new RequestStateSeal('codemode-remote');
    const opened = this.#seal.open(state, TENANT, subjectOf(retry.method, retry.params));
    if ('refused' in opened) {
      refuse(opened.refused);
      return;
    }
    const call = this.#held.get(opened.call);
    if (call === undefined || call.round !== opened.round || call.waiting) {
      refuse('requestState was already used (a replay), or its call was released');
      return;
    }
    this.#unhold(call);
    call.round += 1;
    call.hostId = retry.id;
    call.waiting = true;
    const responses = retry.params?.inputResponses;
    const answers = typeof responses === 'object' && responses !== null && !Array.isArray(responses) ? (responses as Record<string, unknown>) : {};
    for (const p of [...call.pending]) {
      const answer = answers[p.key];
      if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) {
        p.sent = false; // not answered: asked again
        continue;
      }
      call.pending.splice(call.pending.indexOf(p), 1);
      this.#io.toRemote({ jsonrpc: '2.0', id: p.remoteId, result: answer as Record<string, unknown> });
    }
    if (call.outcome !== undefined) {
      const outcome = call.outcome;
      this.#forget(call);
      this.#io.toHost({ ...outcome, id: call.hostId });
      return;
    }
    this.#requestInput(call);
  }

  #unhold(call: Call): void {
    if (call.timer !== undefined) clearTimeout(call.timer);
    call.timer = undefined;
    this.#held.delete(call.id);
  }

  #forget(call: Call): void {
    this.#unhold(call);
    this.#calls.delete(call.remoteId);
  }

  /** Gives a held call up: its input requests fail at the remote, and the call is cancelled there. */
  #release(call: Call, why: string): void {
    this.#forget(call);
    for (const p of call.pending.splice(0)) this.#io.toRemote(errorResponse(p.remoteId, RpcCode.InternalError, `codemode-remote: no answer from the host: ${why}`));
    if (call.outcome === undefined) this.#io.toRemote({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: call.remoteId, reason: why } });
  }
}
