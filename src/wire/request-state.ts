/**
 * Sealed `requestState` values for a translator that holds a call open while a 2026-07-28 client answers
 * `input_required` (the proxy's, and codemode-remote's). SDK-free: node:crypto only.
 *
 * A value is `<claims in base64url>.<HMAC-SHA256 in base64url>`, under a key made when the seal is created
 * (so a value never outlives the process that issued it). The claims name the held call and its round, a
 * tag of the tenant, the method and subject it was issued for, and when it expires.
 *
 * @module
 */

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Longest value accepted; anything longer was not issued here. */
const MAX_STATE_LENGTH = 1024;

export interface RequestStateClaims {
  /** The held call's id. */
  call: string;
  /** Which round of the call: a value is good for the round it was issued in only. */
  round: number;
  /** Who it was issued to (hashed into the value, never stored in clear). */
  tenant: string;
  /** The method and subject (tool, prompt or resource) the retry must repeat. */
  method: string;
  /** Epoch milliseconds after which it is refused. */
  expires: number;
}

export class RequestStateSeal {
  readonly #key = randomBytes(32);
  readonly #issuer: string;

  /** `issuer` names who issued the values, in refusal messages ("this proxy", "codemode-remote"). */
  constructor(issuer: string) {
    this.#issuer = issuer;
  }

  seal(claims: RequestStateClaims): string {
    const body = Buffer.from(JSON.stringify({ c: claims.call, r: claims.round, t: tenantTag(claims.tenant), m: claims.method, x: claims.expires })).toString('base64url');
    return `${body}.${this.#mac(body)}`;
  }

  /** The call and round a value names, or why it is refused (altered, foreign, for another method, expired). */
  open(value: string, tenant: string, method: string): { call: string; round: number } | { refused: string } {
    const dot = value.indexOf('.');
    if (dot <= 0 || value.length > MAX_STATE_LENGTH) return { refused: `requestState was not issued by ${this.#issuer} (malformed)` };
    const body = value.slice(0, dot);
    const mac = Buffer.from(value.slice(dot + 1), 'base64url');
    const expected = Buffer.from(this.#mac(body), 'base64url');
    if (mac.length !== expected.length || !timingSafeEqual(mac, expected)) return { refused: `requestState was altered or not issued by ${this.#issuer} (its seal does not match)` };
    let claims: { c?: unknown; r?: unknown; t?: unknown; m?: unknown; x?: unknown };
    try {
      claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as typeof claims;
    } catch {
      return { refused: `requestState was not issued by ${this.#issuer} (malformed)` };
    }
    if (claims.t !== tenantTag(tenant)) return { refused: 'requestState was issued to another client' };
    if (claims.m !== method) return { refused: `requestState was issued for ${String(claims.m)}, not ${method}` };
    if (typeof claims.x !== 'number' || claims.x < Date.now()) return { refused: 'requestState expired: the held call was released' };
    if (typeof claims.c !== 'string' || typeof claims.r !== 'number') return { refused: `requestState was not issued by ${this.#issuer} (malformed)` };
    return { call: claims.c, round: claims.r };
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}

function tenantTag(tenant: string): string {
  return createHash('sha256').update(tenant).digest('base64url').slice(0, 16);
}

/** The method and the name a retry must repeat: `tools/call echo`, `resources/read file:///x`. */
export function subjectOf(method: string, params: Record<string, unknown> | undefined): string {
  const p = params ?? {};
  const name = typeof p.name === 'string' ? p.name : typeof p.uri === 'string' ? p.uri : '';
  return `${method} ${name}`;
}
