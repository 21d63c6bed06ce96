/**
 * Redis-backed {@link OAuthStorage}: the choice when several codemode instances sit behind a load
 * balancer. Every instance sees the same clients, codes and upstream sessions, and the refresh lock
 * is a Redis lease, so one upstream refresh happens per session across all instances.
 *
 * The `redis` package is imported only when this storage is created.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { CodemodeError, describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import type { OAuthStorage, ReleaseLock } from './storage.js';

const log = createLogger('oauth');

/** Deletes the lock only if we still own it, so a late release cannot drop another holder's lease. */
const RELEASE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/** What the storage needs of a connected client: raw commands. */
interface RedisCommandClient {
  sendCommand(args: string[]): Promise<unknown>;
  close(): Promise<unknown>;
}

export interface RedisOAuthStorageOptions {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). */
  url: string;
  /** Prefix of every key, so one Redis can serve several deployments. Default `codemode:oauth:`. */
  keyPrefix?: string;
  /** Give up connecting after this long. Default 5000 ms. */
  connectTimeoutMs?: number;
}

const DEFAULT_REDIS_CONNECT_TIMEOUT_MS = 5_000;
const REDIS_WARN_INTERVAL_MS = 30_000;

/**
 * Redis storage. Create it with {@link RedisOAuthStorage.connect}; needs Redis >= 6.2 (GETDEL).
 *
 * @example
 * ```ts
 * const storage = await RedisOAuthStorage.connect({ url: 'redis://127.0.0.1:6379' });
 * const proxy = createOAuthProxy({ ..., storage });
 * // on shutdown: await proxy.close(); await storage.close();
 * ```
 */
export class RedisOAuthStorage implements OAuthStorage {
  readonly #client: RedisCommandClient;
  readonly #prefix: string;
  #closed = false;

  private constructor(client: RedisCommandClient, prefix: string) {
    this.#client = client;
    this.#prefix = prefix;
  }

  /** Connects, failing with `UPSTREAM_UNAVAILABLE` when Redis cannot be reached in time. */
  static async connect(options: RedisOAuthStorageOptions): Promise<RedisOAuthStorage> {
    const { createClient } = await import('redis');
    const timeout = options.connectTimeoutMs ?? DEFAULT_REDIS_CONNECT_TIMEOUT_MS;
    let connected = false;
    const client = createClient({
      url: options.url,
      // While disconnected, fail requests at once (a 500 the client retries) instead of queueing them unboundedly.
      disableOfflineQueue: true,
      // The first connect fails fast (a wrong URL should not hang start-up); later drops reconnect with backoff.
      socket: { connectTimeout: timeout, reconnectStrategy: (retries: number) => (connected ? Math.min(50 * 2 ** retries, 2000) : false) },
    });
    let lastError: unknown;
    let lastWarnAt = 0;
    client.on('error', (err: unknown) => {
      lastError = err;
      // Reconnect attempts fail every ~2 s during an outage: say so once per interval, not on every attempt.
      if (connected && Date.now() - lastWarnAt >= REDIS_WARN_INTERVAL_MS) {
        lastWarnAt = Date.now();
        log.warn('Redis OAuth storage connection error; reconnecting', { error: describeError(err) });
      }
    });
    try {
      await client.connect();
      connected = true;
    } catch (err) {
      await client.destroy?.();
      throw new CodemodeError(
        'UPSTREAM_UNAVAILABLE',
        `Could not connect to Redis for OAuth storage: ${describeError(lastError ?? err)}. Check the redis URL and that redis-server is running.`,
        { cause: err },
      );
    }
    return new RedisOAuthStorage(client as unknown as RedisCommandClient, options.keyPrefix ?? 'codemode:oauth:');
  }

  #key(key: string): string {
    return this.#prefix + key;
  }

  #check(): void {
    if (this.#closed) throw new CodemodeError('CLOSED', 'The Redis OAuth storage is closed');
  }

  async get(key: string): Promise<string | undefined> {
    this.#check();
    const value = await this.#client.sendCommand(['GET', this.#key(key)]);
    return typeof value === 'string' ? value : undefined;
  }

  async set(key: string, value: string, ttlMs?: number): Promise<void> {
    this.#check();
    if (ttlMs === undefined) {
      await this.#client.sendCommand(['SET', this.#key(key), value]);
      return;
    }
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
      throw new CodemodeError('INVALID_ARGUMENT', `OAuth storage TTL must be a positive number of milliseconds, got ${ttlMs}`);
    }
    await this.#client.sendCommand(['SET', this.#key(key), value, 'PX', String(Math.ceil(ttlMs))]);
  }

  async take(key: string): Promise<string | undefined> {
    this.#check();
    const value = await this.#client.sendCommand(['GETDEL', this.#key(key)]);
    return typeof value === 'string' ? value : undefined;
  }

  async delete(key: string): Promise<void> {
    this.#check();
    await this.#client.sendCommand(['DEL', this.#key(key)]);
  }

  async tryLock(key: string, ttlMs: number): Promise<ReleaseLock | undefined> {
    this.#check();
    const lockKey = this.#key(`lock:${key}`);
    const token = randomBytes(16).toString('hex');
    const ok = await this.#client.sendCommand(['SET', lockKey, token, 'NX', 'PX', String(Math.ceil(ttlMs))]);
    if (ok !== 'OK') return undefined;
    return async () => {
      if (this.#closed) return;
      await this.#client.sendCommand(['EVAL', RELEASE_SCRIPT, '1', lockKey, token]).catch(() => undefined);
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#client.close().catch(() => undefined);
  }
}
