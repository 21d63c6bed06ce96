/**
 * The live MCP sessions of `codemode serve --http`: each bound to the principal that opened it, capped in
 * number overall and per principal, and closed when idle.
 *
 * @module
 */

import type { Request } from 'express';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { NodeStreamableHTTPServerTransport } from '@modelcontextprotocol/node';
import { createLogger } from '../log.js';
import type { CodemodeSession } from './server.js';

const log = createLogger('server');

/** Sessions with no request for this long are closed: 30 minutes. */
export const DEFAULT_SESSION_IDLE_TIMEOUT_MS = 30 * 60_000;
/** Live sessions at once, all principals together: 1,000 (about 60 MB of session state). */
export const DEFAULT_MAX_SESSIONS = 1_000;
/** Live sessions at once for one authenticated principal (a token, a JWT subject, an OAuth user): 100. */
export const DEFAULT_MAX_SESSIONS_PER_PRINCIPAL = 100;

/** New sessions one client may open per second, on average: 10 (an `initialize` costs the server about 1.3 ms). */
export const DEFAULT_SESSION_RATE_PER_SECOND = 10;
/** New sessions one client may open in a burst, before the per-second rate applies: 60. */
export const DEFAULT_SESSION_RATE_BURST = 60;
/** Clients whose rate is tracked at once; past it the longest-unseen one is forgotten (it starts over full). */
const MAX_RATE_KEYS = 10_000;

/** The principal of requests without auth (a loopback server, or one behind an authenticating proxy). */
export const ANONYMOUS_PRINCIPAL = 'anonymous';

/**
 * Who sent `req`, as a stable string: the auth's `extra.principal` (static tokens, JWTs), else its client
 * and subject (the OAuth proxy), else `anonymous`. Tokens rotate; the principal does not.
 */
export function principalOf(req: Request): string {
  return principalOfAuth((req as Request & { auth?: AuthInfo }).auth);
}

/** `principalOf` for the auth info an MCP request handler sees (`extra.authInfo`). */
export function principalOfAuth(auth: AuthInfo | undefined): string {
  if (auth === undefined) return ANONYMOUS_PRINCIPAL;
  const extra = auth.extra ?? {};
  if (typeof extra.principal === 'string') return extra.principal;
  const subject = typeof extra.subject === 'string' ? extra.subject : typeof extra.sub === 'string' ? extra.sub : '';
  return `client:${auth.clientId}|${subject}`;
}

export interface SessionEntry {
  transport: NodeStreamableHTTPServerTransport;
  session: CodemodeSession;
  principal: string;
  lastSeen: number;
  /** POSTs in progress (an execute may run for minutes); an idle sweep never closes a busy session. */
  busy: number;
}

export interface SessionLimits {
  /** `null` = no cap. */
  maxSessions: number | null;
  /** Applies to authenticated principals; anonymous sessions count toward `maxSessions` only. `null` = no cap. */
  maxSessionsPerPrincipal: number | null;
  idleTimeoutMs: number | null;
}

/** Why a new session is refused: the HTTP status and the message of the JSON-RPC error. */
export interface SessionRefusal {
  status: 429 | 503;
  message: string;
}

/** How fast one client may open sessions: `perSecond` on average, up to `burst` at once. */
export interface SessionRate {
  perSecond: number;
  burst: number;
}

/**
 * A token bucket per client for new sessions. A client is its principal when authenticated, else its remote
 * address. Each `initialize` costs the shared main thread about 1.3 ms (the SDK's handling and the reply)
 * and leaves a session behind until it expires, so a client that opens them in a loop is refused with 429
 * after its burst, cheaply, instead of taking turns of the event loop from everyone else. The table of
 * clients is bounded (`MAX_RATE_KEYS`), and a client whose bucket is full again holds nothing worth keeping.
 */
export class SessionRateLimiter {
  readonly #rate: SessionRate;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #now: () => number;

  constructor(rate: SessionRate, now: () => number = () => performance.now()) {
    this.#rate = rate;
    this.#now = now;
  }

  /** Takes one session from `client`'s bucket: `undefined` when allowed, else the seconds until one is. */
  take(client: string): number | undefined {
    const now = this.#now();
    const { perSecond, burst } = this.#rate;
    const bucket = this.#buckets.get(client);
    let tokens = burst;
    if (bucket !== undefined) {
      tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
      this.#buckets.delete(client); // re-inserted below: the map's order is least recently seen first
    }
    if (tokens < 1) {
      this.#buckets.set(client, { tokens, at: now });
      return Math.max(1, Math.ceil((1 - tokens) / perSecond));
    }
    this.#buckets.set(client, { tokens: tokens - 1, at: now });
    if (this.#buckets.size > MAX_RATE_KEYS) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
    return undefined;
  }

  /** Clients tracked now (bounded by `MAX_RATE_KEYS`). */
  get size(): number {
    return this.#buckets.size;
  }
}

/** The session table. Reservations count toward the caps while an initialize is in flight. */
export class SessionStore {
  readonly #sessions = new Map<string, SessionEntry>();
  readonly #perPrincipal = new Map<string, number>();
  #total = 0;
  readonly #limits: SessionLimits;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(limits: SessionLimits) {
    this.#limits = limits;
    const idleMs = limits.idleTimeoutMs;
    if (idleMs !== null) {
      this.#sweeper = setInterval(() => this.#sweep(idleMs), Math.max(50, Math.min(idleMs / 2, 60_000)));
      this.#sweeper.unref();
    }
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** The session `id` if `principal` opened it; another principal's session is as good as absent. */
  get(id: string, principal: string): SessionEntry | undefined {
    const entry = this.#sessions.get(id);
    return entry !== undefined && entry.principal === principal ? entry : undefined;
  }

  /**
   * Reserves a slot for a new session of `principal`, or says why not. The caller must `release` the
   * reservation when the session ends (or never starts).
   */
  reserve(principal: string): SessionRefusal | undefined {
    const { maxSessions, maxSessionsPerPrincipal, idleTimeoutMs } = this.#limits;
    const expiry = idleTimeoutMs === null ? 'they never expire on this server' : `idle ones expire after ${Math.round(idleTimeoutMs / 1000)} s`;
    const mine = this.#perPrincipal.get(principal) ?? 0;
    if (principal !== ANONYMOUS_PRINCIPAL && maxSessionsPerPrincipal !== null && mine >= maxSessionsPerPrincipal) {
      return {
        status: 429,
        message: `Too many open sessions for your credentials (the limit is ${maxSessionsPerPrincipal}). Close sessions you no longer use (HTTP DELETE with their Mcp-Session-Id), or reuse one; ${expiry}.`,
      };
    }
    if (maxSessions !== null && this.#total >= maxSessions) {
      return {
        status: 503,
        message: `The server has reached its limit of ${maxSessions} open sessions. Retry later, or close sessions you no longer use (HTTP DELETE with their Mcp-Session-Id); ${expiry}.`,
      };
    }
    this.#total++;
    this.#perPrincipal.set(principal, mine + 1);
    return undefined;
  }

  /** Gives back a slot taken by `reserve`. */
  release(principal: string): void {
    this.#total--;
    const mine = (this.#perPrincipal.get(principal) ?? 1) - 1;
    if (mine <= 0) this.#perPrincipal.delete(principal);
    else this.#perPrincipal.set(principal, mine);
  }

  add(id: string, entry: SessionEntry): void {
    this.#sessions.set(id, entry);
  }

  delete(id: string): void {
    this.#sessions.delete(id);
  }

  /** Stops the sweeper and returns every session, emptied from the table. Idempotent. */
  drain(): SessionEntry[] {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    return all;
  }

  #sweep(idleMs: number): void {
    const cutoff = Date.now() - idleMs;
    for (const [id, entry] of this.#sessions) {
      if (entry.busy <= 0 && entry.lastSeen < cutoff) {
        log.info('closing idle session', { session: id });
        this.#sessions.delete(id);
        void entry.session.close();
      }
    }
  }
}
