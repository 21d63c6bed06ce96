/**
 * Static bearer tokens, shared by `codemode serve --http` and `codemode proxy --http`: constant-time
 * matching, a stable principal per token (so sessions can be bound to whoever opened them), and RFC 6750
 * `WWW-Authenticate` challenges. Plain `node:http` types, no SDK.
 *
 * @module
 */

import { createHash, timingSafeEqual } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { CodemodeError } from '../errors.js';

/** The environment variable static tokens are read from by default (comma or whitespace separated). */
export const DEFAULT_AUTH_TOKENS_ENV = 'CODEMODE_AUTH_TOKENS';

/**
 * Splits a token list from an environment variable (commas, whitespace or newlines).
 *
 * @example
 * ```ts
 * parseTokenList('a, b\nc'); // ['a', 'b', 'c']
 * ```
 */
export function parseTokenList(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter((t) => t !== '');
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}

/** What `BearerTokens.check` found in an `Authorization` header. */
export type BearerCheck =
  | { kind: 'missing' }
  | { kind: 'malformed' }
  /** `principal` names the token without revealing it: `static:` and 16 hex digits of its SHA-256. */
  | { kind: 'static'; token: string; principal: string }
  /** A well-formed bearer token that is none of the static ones (a JWT verifier may still accept it). */
  | { kind: 'unknown'; token: string };

/** A set of accepted static tokens. */
export interface BearerTokens {
  readonly count: number;
  check(authorization: string | undefined): BearerCheck;
}

/**
 * @example
 * ```ts
 * const tokens = createBearerTokens(parseTokenList(process.env.CODEMODE_AUTH_TOKENS));
 * tokens.check('Bearer s3cret'); // { kind: 'static', token: 's3cret', principal: 'static:…' }
 * ```
 */
export function createBearerTokens(tokens: readonly string[]): BearerTokens {
  const hashes = tokens.filter((t) => t !== '').map(digest);
  return {
    count: hashes.length,
    check(header) {
      if (header === undefined || header.trim() === '') return { kind: 'missing' };
      const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
      if (!match) return { kind: 'malformed' };
      const token = match[1]!;
      const hash = digest(token);
      // Compare against every token in constant time, so timing reveals neither which nor how much matched.
      let found = false;
      for (const h of hashes) found = timingSafeEqual(h, hash) || found;
      return found ? { kind: 'static', token, principal: `static:${hash.toString('hex').slice(0, 16)}` } : { kind: 'unknown', token };
    },
  };
}

/**
 * Answers 401 (or 403) with an RFC 6750 challenge; without `error` it is the plain "credentials needed" one.
 */
export function writeBearerChallenge(res: ServerResponse, realm: string, status: 401 | 403, error?: { code: string; description: string }): void {
  if (res.headersSent) return;
  const parts = [`realm=${quote(realm)}`];
  if (error !== undefined) parts.push(`error=${quote(error.code)}`, `error_description=${quote(error.description)}`);
  const body = JSON.stringify({ error: error?.code ?? 'unauthorized', error_description: error?.description ?? 'This endpoint needs a bearer token: send "Authorization: Bearer <token>".' });
  res
    .writeHead(status, { 'WWW-Authenticate': `Bearer ${parts.join(', ')}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) })
    .end(body);
}

/**
 * A request check for static tokens only (the proxy's auth): answers 401 itself and returns undefined,
 * or returns the caller's principal.
 *
 * @throws CodemodeError `INVALID_CONFIG` when `tokens` is empty.
 */
export function createStaticBearerAuth(tokens: readonly string[], realm = 'codemode'): { readonly count: number; authenticate(authorization: string | undefined, res: ServerResponse): string | undefined } {
  const set = createBearerTokens(tokens);
  if (set.count === 0) throw new CodemodeError('INVALID_CONFIG', 'Bearer-token auth needs at least one token; the token list is empty.');
  return {
    count: set.count,
    authenticate(authorization, res) {
      const found = set.check(authorization);
      if (found.kind === 'static') return found.principal;
      if (found.kind === 'missing') writeBearerChallenge(res, realm, 401);
      else if (found.kind === 'malformed') writeBearerChallenge(res, realm, 401, { code: 'invalid_request', description: 'The Authorization header must be "Bearer <token>".' });
      else writeBearerChallenge(res, realm, 401, { code: 'invalid_token', description: 'The bearer token is not valid.' });
      return undefined;
    },
  };
}
