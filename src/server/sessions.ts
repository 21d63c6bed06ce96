/**
 * The live MCP sessions of `codemode serve --http`: each bound to the principal that opened it, capped in
 * number overall and per principal, and closed when idle.
 *
 * @module
 */

import type { Request } from 'express';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createLogger } from '../log.js';
import type { CodemodeSession } from './server.js';

const log = createLogger('server');

/** Sessions with no request for this long are closed: 30 minutes. */
export const DEFAULT_SESSION_IDLE_TIMEOUT_MS = 30 * 60_000;
/** Live sessions at once, all principals together: 1,000 (about 60 MB of session state). */
export const DEFAULT_MAX_SESSIONS = 1_000;
/** Live sessions at once for one authenticated principal (a token, a JWT subject, an OAuth user): 100. */
export const DEFAULT_MAX_SESSIONS_PER_PRINCIPAL = 100;

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
  transport: StreamableHTTPServerTransport;
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
