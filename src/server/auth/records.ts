/**
 * What the OAuth proxy stores, and how: each record is JSON sealed with the current signing key's seal
 * key, and opened with the current key or any key being rotated out. A record that no key opens is
 * treated as absent.
 *
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { createLogger } from '../../log.js';
import { seal, unseal } from './keys.js';
import type { SigningKeys } from './keys.js';
import type { OAuthStorage } from './storage.js';
import type { UpstreamTokens } from './upstream.js';

const log = createLogger('oauth');

/** One upstream login, referenced by every codemode token issued from it. Stored sealed under `sess:<id>`. */
export interface SessionRecord {
  clientId: string;
  subject?: string;
  upstream: UpstreamTokens;
  /** Keep the record at least until this time (ms): the latest expiry of any codemode token referencing it. */
  retainUntil: number;
  refreshCount: number;
  updatedAt: number;
}

/** A login in progress, from `/authorize` to the IdP callback. Stored under `txn:<id>`. */
export interface TransactionRecord {
  clientId: string;
  /** False until the user approved this client on the consent page. */
  approved: boolean;
  /** SHA-256 of the cookie that ties the login to the browser that started it. */
  browserBinding?: string;
  redirectUri: string;
  codeChallenge: string;
  state?: string;
  scopes: string[];
  resource?: string;
  upstreamVerifier?: string;
}

/** An authorization code, stored under `code:<sha256 of the code>`. */
export interface CodeRecord {
  sid: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scopes: string[];
  resource?: string;
}

/** A codemode access token, stored under `at:<jti>`. */
export interface AccessRecord {
  sid: string;
  clientId: string;
}

/** A codemode refresh token, stored under `rt:<sha256 of the token>`. */
export interface RefreshRecord {
  sid: string;
  clientId: string;
  scopes: string[];
  rotatedAt?: number;
}

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

/** Sealed JSON records over an {@link OAuthStorage}. */
export class SealedRecords {
  readonly storage: OAuthStorage;
  readonly #keys: SigningKeys;
  /** Keys being rotated out: still accepted for opening stored records, never used to seal. */
  readonly #previousKeys: SigningKeys[];

  constructor(storage: OAuthStorage, keys: SigningKeys, previousKeys: SigningKeys[]) {
    this.storage = storage;
    this.#keys = keys;
    this.#previousKeys = previousKeys;
  }

  #unseal(raw: string): string | undefined {
    for (const keys of [this.#keys, ...this.#previousKeys]) {
      const text = unseal(keys.sealKey, raw);
      if (text !== undefined) return text;
    }
    return undefined;
  }

  async read<T>(key: string): Promise<T | undefined> {
    const raw = await this.storage.get(key);
    if (raw === undefined) return undefined;
    const text = this.#unseal(raw);
    if (text === undefined) {
      log.warn('stored OAuth record cannot be opened (another signing key?); treating it as absent', { key: key.split(':')[0] });
      return undefined;
    }
    return JSON.parse(text) as T;
  }

  /** Reads and deletes in one atomic step (see {@link OAuthStorage.take}). */
  async take<T>(key: string): Promise<T | undefined> {
    const raw = await this.storage.take(key);
    const text = raw === undefined ? undefined : this.#unseal(raw);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  /** `ttlMs` is rounded up to whole milliseconds and to at least one second; undefined: no expiry. */
  async write(key: string, value: unknown, ttlMs: number | undefined): Promise<void> {
    await this.storage.set(key, seal(this.#keys.sealKey, JSON.stringify(value)), ttlMs === undefined ? undefined : Math.max(1000, Math.ceil(ttlMs)));
  }
}
