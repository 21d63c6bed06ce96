/**
 * Where the OAuth proxy keeps its state: registered clients, pending logins, authorization codes,
 * refresh tokens and the upstream token sessions that codemode JWTs reference.
 *
 * The interface is a small string key-value store with expiry, an atomic take and a lease lock, so
 * that one Redis (or one directory) can back several server instances behind a load balancer.
 *
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CodemodeError } from '../../errors.js';

/** Releases a lock taken with {@link OAuthStorage.tryLock}. Releasing twice, or after expiry, is harmless. */
export type ReleaseLock = () => Promise<void>;

/**
 * The storage contract of the OAuth proxy. Values are opaque strings (the proxy seals sensitive ones
 * before they get here). `ttlMs` undefined means "no expiry".
 *
 * @example
 * ```ts
 * const storage = new MemoryOAuthStorage();
 * await storage.set('k', 'v', 60_000);
 * const release = await storage.tryLock('refresh:abc', 10_000);
 * if (release) try { ... } finally { await release(); }
 * ```
 */
export interface OAuthStorage {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  /** Reads and deletes in one atomic step: of several concurrent callers, at most one gets the value. */
  take(key: string): Promise<string | undefined>;
  delete(key: string): Promise<void>;
  /** Tries once to take a lease on `key`. Resolves to a release function, or undefined when someone else holds it. */
  tryLock(key: string, ttlMs: number): Promise<ReleaseLock | undefined>;
  /** Idempotent. */
  close(): Promise<void>;
}

function checkTtl(ttlMs: number | undefined): void {
  if (ttlMs !== undefined && (!Number.isFinite(ttlMs) || ttlMs <= 0)) {
    throw new CodemodeError('INVALID_ARGUMENT', `OAuth storage TTL must be a positive number of milliseconds, got ${ttlMs}`);
  }
}

interface MemoryEntry {
  value: string;
  expiresAt: number | undefined;
}

/** Sweep expired entries at most this often, so a long-running server does not accumulate dead codes. */
const MEMORY_SWEEP_INTERVAL_MS = 60_000;

/**
 * Process-local storage, the default. Fine for one instance; tokens do not survive a restart.
 *
 * @example
 * ```ts
 * const proxy = createOAuthProxy({ ..., storage: new MemoryOAuthStorage() });
 * ```
 */
export class MemoryOAuthStorage implements OAuthStorage {
  readonly #entries = new Map<string, MemoryEntry>();
  readonly #locks = new Map<string, { token: string; expiresAt: number }>();
  #lastSweep = Date.now();

  async get(key: string): Promise<string | undefined> {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    checkTtl(ttlMs);
    this.#entries.set(key, { value, expiresAt: ttlMs === undefined ? undefined : Date.now() + ttlMs });
    this.#sweep();
  }

  async take(key: string): Promise<string | undefined> {
    // No await between read and delete: that is what makes it atomic within the process.
    const entry = this.#entries.get(key);
    this.#entries.delete(key);
    if (entry === undefined || (entry.expiresAt !== undefined && entry.expiresAt <= Date.now())) return undefined;
    return entry.value;
  }

  async delete(key: string): Promise<void> {
    this.#entries.delete(key);
  }

  async tryLock(key: string, ttlMs: number): Promise<ReleaseLock | undefined> {
    checkTtl(ttlMs);
    const now = Date.now();
    const held = this.#locks.get(key);
    if (held !== undefined && held.expiresAt > now) return undefined;
    const token = randomBytes(16).toString('hex');
    this.#locks.set(key, { token, expiresAt: now + ttlMs });
    return async () => {
      if (this.#locks.get(key)?.token === token) this.#locks.delete(key);
    };
  }

  async close(): Promise<void> {
    this.#entries.clear();
    this.#locks.clear();
  }

  #sweep(): void {
    const now = Date.now();
    if (now - this.#lastSweep < MEMORY_SWEEP_INTERVAL_MS) return;
    this.#lastSweep = now;
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt !== undefined && entry.expiresAt <= now) this.#entries.delete(key);
    }
  }
}

const FILE_SWEEP_INTERVAL_MS = 10 * 60_000;
/** A temp or claimed file this old belongs to a write or take that was interrupted. */
const LEFTOVER_AGE_MS = 60_000;

interface FileEntry {
  v: string;
  exp: number | null;
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/**
 * Storage in a directory, one file per key (named by the key's SHA-256), written atomically with mode
 * 0600. It survives restarts and can be shared by several processes on one host. Locks are lock files
 * created with O_EXCL; a lock whose lease ran out is taken over. Expired entries are removed when read.
 *
 * @example
 * ```ts
 * const storage = new FileOAuthStorage('/var/lib/codemode/oauth');
 * ```
 */
export class FileOAuthStorage implements OAuthStorage {
  readonly #dir: string;
  readonly #sweepIntervalMs: number;
  #ready: Promise<void> | undefined;
  #lastSweep = Date.now();
  #sweeping: Promise<number> | undefined;
  #closed = false;

  /** `sweepIntervalMs`: how often writes trigger a background sweep of expired files. Default 10 minutes. */
  constructor(dir: string, options: { sweepIntervalMs?: number } = {}) {
    if (dir.trim() === '') throw new CodemodeError('INVALID_CONFIG', 'FileOAuthStorage needs a directory path');
    this.#dir = dir;
    this.#sweepIntervalMs = options.sweepIntervalMs ?? FILE_SWEEP_INTERVAL_MS;
  }

  /**
   * Deletes expired entries and leftovers of interrupted writes. Most keys (one per issued access token)
   * are never read after they expire, so without this the directory would only grow. Returns how many
   * files were removed. Runs by itself from `set`; exposed for operators and tests.
   */
  sweep(): Promise<number> {
    this.#sweeping ??= this.#sweep().finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  async #sweep(): Promise<number> {
    this.#lastSweep = Date.now();
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch {
      return 0;
    }
    let removed = 0;
    const now = Date.now();
    for (const name of names) {
      if (this.#closed) break;
      const file = join(this.#dir, name);
      let stale = false;
      if (name.endsWith('.tmp') || name.endsWith('.taken')) {
        stale = await stat(file).then((st) => now - st.mtimeMs > LEFTOVER_AGE_MS, () => false);
      } else if (name.endsWith('.json')) {
        const entry = await this.#readEntry(file).catch(() => undefined);
        stale = entry !== undefined && entry.exp !== null && entry.exp <= now;
      }
      if (stale && (await unlink(file).then(() => true, () => false))) removed++;
    }
    return removed;
  }

  #path(key: string, suffix = '.json'): string {
    return join(this.#dir, createHash('sha256').update(key).digest('hex') + suffix);
  }

  async #ensureDir(): Promise<void> {
    this.#ready ??= mkdir(this.#dir, { recursive: true, mode: 0o700 }).then(() => undefined);
    return this.#ready;
  }

  async #readEntry(file: string): Promise<FileEntry | undefined> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    try {
      const entry = JSON.parse(text) as FileEntry;
      return typeof entry.v === 'string' ? entry : undefined;
    } catch {
      return undefined; // a torn or foreign file reads as absent rather than failing every request
    }
  }

  async get(key: string): Promise<string | undefined> {
    const file = this.#path(key);
    const entry = await this.#readEntry(file);
    if (entry === undefined) return undefined;
    if (entry.exp !== null && entry.exp <= Date.now()) {
      await unlink(file).catch(() => undefined);
      return undefined;
    }
    return entry.v;
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    checkTtl(ttlMs);
    await this.#ensureDir();
    const file = this.#path(key);
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    const entry: FileEntry = { v: value, exp: ttlMs === undefined ? null : Date.now() + ttlMs };
    await writeFile(tmp, JSON.stringify(entry), { mode: 0o600 });
    await rename(tmp, file);
    if (Date.now() - this.#lastSweep >= this.#sweepIntervalMs && this.#sweeping === undefined) void this.sweep();
  }

  async take(key: string): Promise<string | undefined> {
    const file = this.#path(key);
    // rename is atomic: of several processes racing, exactly one moves the file away.
    const claimed = `${file}.${randomBytes(6).toString('hex')}.taken`;
    try {
      await rename(file, claimed);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    try {
      const entry = await this.#readEntry(claimed);
      if (entry === undefined || (entry.exp !== null && entry.exp <= Date.now())) return undefined;
      return entry.v;
    } finally {
      await unlink(claimed).catch(() => undefined);
    }
  }

  async delete(key: string): Promise<void> {
    await unlink(this.#path(key)).catch((err: unknown) => {
      if (!isErrno(err, 'ENOENT')) throw err;
    });
  }

  async tryLock(key: string, ttlMs: number): Promise<ReleaseLock | undefined> {
    checkTtl(ttlMs);
    await this.#ensureDir();
    const file = this.#path(key, '.lock');
    const token = randomBytes(16).toString('hex');
    const body = JSON.stringify({ token, exp: Date.now() + ttlMs });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await open(file, 'wx', 0o600);
        try {
          await handle.writeFile(body);
        } finally {
          await handle.close();
        }
        return async () => {
          const current = await readFile(file, 'utf8').catch(() => '');
          if (current === body) await unlink(file).catch(() => undefined);
        };
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err;
      }
      // Held: take it over only when its lease has run out (its holder crashed or hung).
      const current = await readFile(file, 'utf8').catch(() => '');
      let exp: number;
      try {
        exp = (JSON.parse(current) as { exp?: number }).exp ?? 0;
      } catch {
        // Being written right now, or left empty by a holder that crashed mid-write: stale after a lease's worth of time.
        const mtime = await stat(file).then((s) => s.mtimeMs, () => 0);
        exp = mtime + ttlMs;
      }
      if (exp > Date.now()) return undefined;
      await unlink(file).catch(() => undefined);
    }
    return undefined;
  }

  async close(): Promise<void> {
    // Nothing is held open between calls; let a running sweep stop early and finish.
    this.#closed = true;
    await this.#sweeping;
  }
}
