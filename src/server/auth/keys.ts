/**
 * Signing keys for codemode-issued JWTs and the key that seals upstream tokens at rest.
 * Keys come from config or `CODEMODE_OAUTH_SIGNING_KEY`; there is deliberately no default.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, createSecretKey, hkdfSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { CodemodeError } from '../../errors.js';

export type JwtAlgorithm = 'HS256' | 'ES256' | 'RS256' | 'EdDSA';

export interface SigningKeys {
  alg: JwtAlgorithm;
  signKey: KeyObject;
  verifyKey: KeyObject;
  /** AES-256-GCM key for sealing stored records, derived from the signing key so one secret suffices. */
  sealKey: Buffer;
}

/** At least 256 bits for HS256 (RFC 7518 §3.2). */
const MIN_SECRET_BYTES = 32;

/** Env var read when the config gives no signing key. */
export const SIGNING_KEY_ENV = 'CODEMODE_OAUTH_SIGNING_KEY';

/**
 * Loads the signing key: a PKCS#8 PEM private key (EC P-256 -> ES256, RSA -> RS256, Ed25519 -> EdDSA) or
 * a shared secret of at least 32 bytes (HS256). Every instance behind one load balancer needs the same key.
 */
export function loadSigningKeys(configured: string | undefined): SigningKeys {
  const material = configured ?? process.env[SIGNING_KEY_ENV];
  if (material === undefined || material.trim() === '') {
    throw new CodemodeError(
      'INVALID_CONFIG',
      `The OAuth proxy needs a signing key: set oauth.signingKey or ${SIGNING_KEY_ENV} to a secret of at least ${MIN_SECRET_BYTES} bytes ` +
        '(e.g. `openssl rand -base64 48`) or a PKCS#8 PEM private key. There is no built-in default on purpose.',
    );
  }
  const ikm = Buffer.from(material, 'utf8');
  const sealKey = Buffer.from(hkdfSync('sha256', ikm, Buffer.from('codemode-oauth-proxy'), Buffer.from('storage-seal-v1'), 32));
  if (material.includes('-----BEGIN')) {
    let signKey: KeyObject;
    try {
      signKey = createPrivateKey(material);
    } catch (err) {
      throw new CodemodeError('INVALID_CONFIG', 'The OAuth signing key looks like PEM but is not a readable private key (use PKCS#8 PEM)', { cause: err });
    }
    const type = signKey.asymmetricKeyType;
    let alg: JwtAlgorithm;
    if (type === 'ec' && signKey.asymmetricKeyDetails?.namedCurve === 'prime256v1') alg = 'ES256';
    else if (type === 'rsa' && (signKey.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) alg = 'RS256';
    else if (type === 'ed25519') alg = 'EdDSA';
    else throw new CodemodeError('INVALID_CONFIG', `Unsupported OAuth signing key type ${type}: use EC P-256, RSA >= 2048 bits, Ed25519 or an HS256 secret`);
    return { alg, signKey, verifyKey: createPublicKey(signKey), sealKey };
  }
  if (ikm.length < MIN_SECRET_BYTES) {
    throw new CodemodeError('INVALID_CONFIG', `The OAuth signing secret is ${ikm.length} bytes; HS256 needs at least ${MIN_SECRET_BYTES} (e.g. \`openssl rand -base64 48\`)`);
  }
  const secret = createSecretKey(ikm);
  return { alg: 'HS256', signKey: secret, verifyKey: secret, sealKey };
}

const SEAL_PREFIX = 'v1.';

/** Encrypts a stored record so a leaked Redis dump or state directory does not leak upstream tokens. */
export function seal(key: Buffer, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return SEAL_PREFIX + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
}

/** Undefined when the record was sealed with another key or altered. */
export function unseal(key: Buffer, sealed: string): string | undefined {
  if (!sealed.startsWith(SEAL_PREFIX)) return undefined;
  const raw = Buffer.from(sealed.slice(SEAL_PREFIX.length), 'base64url');
  if (raw.length < 28) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}
