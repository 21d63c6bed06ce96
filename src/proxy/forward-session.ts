/**
 * One downstream session of the HTTP forward path (`forward.ts`): its upstream session, what is needed to
 * recreate that session, and the idle clock.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { createLogger } from '../log.js';
import type { Json } from './forward-io.js';

const log = createLogger('proxy');

/** What a session needs from the forwarder that owns it. */
export interface ForwardSessionOwner {
  /** Replays the stored `initialize` to get a fresh upstream session. */
  reinitialize(session: ForwardSession): Promise<void>;
  /** Ends the upstream session and forgets the downstream one. */
  endSession(session: ForwardSession): Promise<void>;
}

/** A forwarded downstream session: its upstream session and what is needed to recreate it. */
export class ForwardSession {
  readonly id = randomUUID();
  upstreamId: string | undefined;
  readonly headers: Record<string, string>;
  readonly initialize: Json;
  protocolVersion: string | undefined;
  inflight = 0;
  last = Date.now();
  closed = false;
  #renewing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #owner: ForwardSessionOwner;

  constructor(owner: ForwardSessionOwner, headers: Record<string, string>, initialize: Json) {
    this.#owner = owner;
    this.headers = headers;
    this.initialize = initialize;
  }

  startIdleClock(idleMs: number | null): void {
    if (idleMs === null) return;
    const check = (): void => {
      const quiet = Date.now() - this.last;
      if (this.inflight > 0 || quiet < idleMs) {
        this.#timer = setTimeout(check, Math.max(50, idleMs - quiet));
        this.#timer.unref();
        return;
      }
      log.info('closing idle proxy session', { idleMs });
      void this.close();
    };
    this.#timer = setTimeout(check, idleMs);
    this.#timer.unref();
  }

  /** Re-initializes the upstream session (once for concurrent callers that saw the same dead session). */
  renew(dead: string | undefined): Promise<void> {
    if (this.upstreamId !== dead) return Promise.resolve();
    this.#renewing ??= this.#owner.reinitialize(this).finally(() => {
      this.#renewing = undefined;
    });
    return this.#renewing;
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    return this.#owner.endSession(this);
  }
}
