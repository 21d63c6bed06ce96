/**
 * OAuth state on disk, one JSON file per (server URL, resource, headers) under
 * `$CODEMODE_CONFIG_DIR` (default `~/.config/codemode/remote`). Files are 0600 in a 0700 directory
 * and written atomically (temp file + rename), so a crash or a second bridge never leaves half a
 * token file. The format is versioned and read leniently, so tokens survive upgrades.
 *
 * Cross-process leases (a lock file created with O_EXCL, with stale detection by pid and age)
 * serialize logins and refreshes between bridges, so two bridges neither run two logins nor burn a
 * rotating refresh token twice.
 *
 * @module
 */

import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CodemodeError } from '../errors.js';

export interface StoredTokens {
  access_token: string;
  token_type?: string;
  refresh_token?: string;
  expires_in?: number;
  scope?: string;
  id_token?: string;
}

export interface StoredState {
  version: 1;
  serverUrl: string;
  resource?: string;
  tokens?: StoredTokens;
  /** Epoch ms when the access token expires (computed when it was saved). */
  expiresAt?: number;
  clientInformation?: Record<string, unknown>;
  discoveryState?: Record<string, unknown>;
  /** The callback port the registered client's redirect URI names. */
  callbackPort?: number;
}

/** The default storage directory. */
export function defaultConfigDir(): string {
  return join(homedir(), '.config', 'codemode', 'remote');
}

/** The storage key: a hash of everything that makes two sessions different principals. */
export function storageKey(serverUrl: string, resource: string | undefined, headers: Record<string, string>): string {
  const h = Object.entries(headers)
    .map(([k, v]) => [k.toLowerCase(), v] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256')
    .update(JSON.stringify([serverUrl, resource ?? '', h]))
    .digest('hex')
    .slice(0, 32);
}

/** Writes `data` to `file` atomically with mode 0600. */
export function writeFileAtomic(file: string, data: string): void {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, data, { mode: 0o600 });
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing to clean
    }
    throw err;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One server's stored OAuth state.
 *
 * @example
 * ```ts
 * const store = new TokenStore(defaultConfigDir(), storageKey(url, undefined, {}), url);
 * const release = await store.lease('login', { timeoutMs: 300_000 });
 * try { store.update({ tokens }); } finally { release(); }
 * ```
 */
export class TokenStore {
  readonly file: string;

  constructor(
    readonly dir: string,
    readonly key: string,
    private readonly serverUrl: string,
    private readonly resource?: string,
  ) {
    this.file = join(dir, `${key}.json`);
  }

  read(): StoredState {
    const empty: StoredState = { version: 1, serverUrl: this.serverUrl, resource: this.resource };
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return empty;
    }
    try {
      const parsed = JSON.parse(text) as Partial<StoredState>;
      if (typeof parsed !== 'object' || parsed === null) return empty;
      return { ...empty, ...parsed, version: 1 };
    } catch {
      return empty; // a corrupt file is treated as absent and will be overwritten atomically
    }
  }

  /** Merges `patch` into the stored state (read-modify-write; callers hold a lease when it matters). */
  update(patch: Partial<StoredState>): StoredState {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const next: StoredState = { ...this.read(), ...patch, version: 1 };
    for (const [k, v] of Object.entries(patch)) if (v === undefined) delete (next as unknown as Record<string, unknown>)[k];
    writeFileAtomic(this.file, `${JSON.stringify(next, null, 2)}\n`);
    return next;
  }

  /**
   * Takes the cross-process lease `name` (e.g. 'login', 'refresh'). Waits while another live
   * process holds it; a lease whose process died, or older than `staleMs`, is broken.
   * Returns the release function.
   */
  async lease(name: string, opts: { timeoutMs: number; staleMs?: number; signal?: AbortSignal; pollMs?: number }): Promise<() => void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const lock = join(this.dir, `${this.key}.${name}.lock`);
    const staleMs = opts.staleMs ?? opts.timeoutMs + 60_000;
    const until = Date.now() + opts.timeoutMs;
    const pollMs = opts.pollMs ?? 100;
    for (;;) {
      opts.signal?.throwIfAborted();
      try {
        const fd = openSync(lock, 'wx', 0o600);
        const nonce = randomBytes(8).toString('hex');
        try {
          writeSync(fd, JSON.stringify({ pid: process.pid, at: Date.now(), nonce }));
        } finally {
          closeSync(fd);
        }
        let released = false;
        return () => {
          if (released) return;
          released = true;
          try {
            // Only remove our own lock: if it was broken as stale, it may belong to someone else now.
            if ((JSON.parse(readFileSync(lock, 'utf8')) as { nonce?: string }).nonce === nonce) unlinkSync(lock);
          } catch {
            // already gone
          }
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let stale: boolean;
      try {
        const holder = JSON.parse(readFileSync(lock, 'utf8')) as { pid?: number; at?: number };
        stale = (typeof holder.pid === 'number' && !pidAlive(holder.pid)) || (typeof holder.at === 'number' && Date.now() - holder.at > staleMs);
      } catch {
        // Unreadable: either being written right now or garbage. Judge by the file's age.
        try {
          stale = Date.now() - statSync(lock).mtimeMs > 5_000;
        } catch {
          continue; // vanished: try again at once
        }
      }
      if (stale) {
        try {
          unlinkSync(lock);
        } catch {
          // someone else broke it first
        }
        continue;
      }
      if (Date.now() >= until) throw new CodemodeError('AUTH_FAILED', `another codemode-remote process holds the ${name} lease (${lock}) and did not finish in time`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }
}
