/**
 * Upstream sessions: the stored upstream tokens behind codemode JWTs, refreshed transparently when due
 * (once across every instance sharing the storage, under a per-session lock), optionally re-checked at
 * the IdP, and ended when the IdP rejects the refresh.
 *
 * @module
 */
import { ServerError, InvalidTokenError, TemporarilyUnavailableError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import type { SealedRecords, SessionRecord } from './records.js';
import { UpstreamGrantRevokedError } from './upstream.js';
import type { UpstreamClient, UpstreamTokens } from './upstream.js';

const log = createLogger('oauth');

/** Kept past the last referencing token so clock skew between instances cannot orphan a token. */
export const SESSION_RETENTION_GRACE_MS = 60_000;
/** The refresh lease outlives the upstream request timeout (10 s), so a slow refresh is not run twice. */
const REFRESH_LOCK_TTL_MS = 20_000;
const REFRESH_LOCK_POLL_MS = 25;
/** After a rejected refresh, re-read storage this many times, this far apart, before ending the session. */
const REREAD_ATTEMPTS = 4;
const REREAD_INTERVAL_MS = 100;

/** The sessions of one OAuth proxy. */
export class UpstreamSessions {
  readonly #records: SealedRecords;
  readonly #upstream: UpstreamClient;
  readonly #thresholdMs: number;
  readonly #validationIntervalMs: number | undefined;
  /** In-process queue per session, in front of the storage lease, so local waiters don't poll the store. */
  readonly #localLocks = new Map<string, Promise<void>>();
  #closed = false;

  /**
   * `thresholdMs`: refresh this long before the upstream token expires. `validationIntervalMs`: ask the
   * IdP whether the token still works at most this often per session (undefined: never).
   */
  constructor(records: SealedRecords, upstream: UpstreamClient, thresholdMs: number, validationIntervalMs: number | undefined) {
    this.#records = records;
    this.#upstream = upstream;
    this.#thresholdMs = thresholdMs;
    this.#validationIntervalMs = validationIntervalMs;
  }

  /** Lock waiters give up once closed. */
  close(): void {
    this.#closed = true;
  }

  async save(sid: string, session: SessionRecord): Promise<void> {
    await this.#records.write(`sess:${sid}`, session, session.retainUntil - Date.now());
  }

  /**
   * Asks the IdP (its userinfo endpoint) whether the upstream token still works, at most once per
   * interval per session across all instances. A refused token (the user revoked the app) is refreshed;
   * if that fails too, the request gets 401. An unreachable IdP does not fail requests: expiry rules still hold.
   * Without a validation interval, returns `session` as it is.
   */
  async validateUpstream(sid: string, session: SessionRecord): Promise<SessionRecord> {
    if (this.#validationIntervalMs === undefined) return session;
    const key = `val:${sid}`;
    if ((await this.#records.storage.get(key)) !== undefined) return session;
    const verdict = await this.#upstream.checkToken(session.upstream.accessToken);
    if (verdict === 'unknown') return session;
    let current = session;
    if (verdict === 'invalid') {
      log.info('upstream token refused by the IdP; refreshing', { subject: session.subject });
      current = await this.ensureFresh(sid, session.upstream.accessToken);
    }
    await this.#records.storage.set(key, '1', this.#validationIntervalMs);
    return current;
  }

  #needsRefresh(session: SessionRecord, now = Date.now()): boolean {
    const exp = session.upstream.expiresAt;
    return exp !== undefined && now + this.#thresholdMs >= exp;
  }

  /** Loads the session; refreshes the upstream token (once, under a per-session lock) when it is due. */
  async ensureFresh(sid: string, rejectedToken?: string): Promise<SessionRecord> {
    // `rejectedToken`: an upstream access token the IdP refused although it has not expired (revoked).
    const due = (s: SessionRecord): boolean => this.#needsRefresh(s) || s.upstream.accessToken === rejectedToken;
    const first = await this.#records.read<SessionRecord>(`sess:${sid}`);
    if (first === undefined) throw new InvalidTokenError('The sign-in session has ended; sign in again');
    if (!due(first)) return first;
    return this.withLock(sid, async () => {
      // Another request (here or on another instance) may have refreshed while we waited.
      const current = await this.#records.read<SessionRecord>(`sess:${sid}`);
      if (current === undefined) throw new InvalidTokenError('The sign-in session has ended; sign in again');
      if (!due(current)) return current;
      const expired = (s: SessionRecord): boolean =>
        (s.upstream.expiresAt !== undefined && Date.now() >= s.upstream.expiresAt) || s.upstream.accessToken === rejectedToken;
      const refreshToken = current.upstream.refreshToken;
      if (refreshToken === undefined) {
        if (!expired(current)) return current; // inside the threshold but nothing to refresh with: still valid
        throw new InvalidTokenError('The upstream token expired and the IdP gave no refresh token; sign in again');
      }
      let fresh: UpstreamTokens;
      try {
        fresh = await this.#upstream.refresh(refreshToken);
      } catch (err) {
        // Re-read before giving up: another instance may have refreshed (and rotated the refresh token)
        // meanwhile, e.g. after our lease lapsed. A rejected refresh token is the tell-tale sign, and that
        // instance may still be saving, so look a few times, briefly.
        const looks = err instanceof UpstreamGrantRevokedError ? REREAD_ATTEMPTS : 1;
        for (let look = 0; look < looks; look++) {
          if (look > 0) await new Promise((resolve) => setTimeout(resolve, REREAD_INTERVAL_MS));
          const again = await this.#records.read<SessionRecord>(`sess:${sid}`);
          if (again === undefined) break;
          if (again.upstream.accessToken !== current.upstream.accessToken && !due(again)) return again;
        }
        if (err instanceof UpstreamGrantRevokedError) {
          log.warn('upstream refresh token rejected; session ended', { subject: current.subject, reason: err.message });
          await this.#records.storage.delete(`sess:${sid}`);
          throw new InvalidTokenError('The upstream sign-in has ended (the IdP rejected the refresh); sign in again');
        }
        if (!expired(current)) return current; // an early refresh failed, but the token still works
        log.warn('upstream refresh failed', { subject: current.subject, error: describeError(err) });
        throw new ServerError('The upstream identity provider could not refresh the session; try again shortly');
      }
      const updated: SessionRecord = {
        ...current,
        upstream: {
          ...fresh,
          // Providers that don't rotate refresh tokens omit them from the refresh response.
          ...(fresh.refreshToken === undefined && { refreshToken, ...(current.upstream.refreshExpiresAt !== undefined && { refreshExpiresAt: current.upstream.refreshExpiresAt }) }),
        },
        refreshCount: current.refreshCount + 1,
        updatedAt: Date.now(),
      };
      await this.save(sid, updated);
      log.debug('upstream token refreshed', { subject: updated.subject, refreshes: updated.refreshCount });
      return updated;
    });
  }

  /**
   * Runs `fn` holding the session's lock: an in-process queue, then a storage lease (a Redis key when on
   * Redis) so that instances sharing the store refresh once. Every session write goes through here so a
   * refresh and a token issue cannot overwrite each other's update.
   */
  async withLock<T>(sid: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#localLocks.get(sid) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    const tail = previous.then(() => mine);
    this.#localLocks.set(sid, tail);
    await previous;
    try {
      const deadline = Date.now() + REFRESH_LOCK_TTL_MS;
      let release = await this.#records.storage.tryLock(`session:${sid}`, REFRESH_LOCK_TTL_MS);
      while (release === undefined) {
        if (this.#closed) throw new ServerError('The OAuth proxy is closed');
        if (Date.now() >= deadline) throw new TemporarilyUnavailableError('Timed out waiting for another instance to refresh the session; try again');
        await new Promise((resolve) => setTimeout(resolve, REFRESH_LOCK_POLL_MS));
        release = await this.#records.storage.tryLock(`session:${sid}`, REFRESH_LOCK_TTL_MS);
      }
      try {
        return await fn();
      } finally {
        await release();
      }
    } finally {
      done();
      if (this.#localLocks.get(sid) === tail) this.#localLocks.delete(sid);
    }
  }
}
