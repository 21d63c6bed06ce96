/**
 * The OAuth proxy: an OAuth 2.1 authorization server facing MCP clients that delegates login to an
 * upstream IdP, keeps the upstream tokens server-side and hands clients short codemode JWTs whose
 * `jti` references the stored upstream session. Upstream tokens are refreshed transparently on use,
 * so a client that sat idle for hours keeps working without a new login.
 *
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import express from 'express';
import type { Request, RequestHandler, Response, Router } from 'express';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';
import { mcpAuthRouter, createOAuthMetadata, getOAuthProtectedResourceMetadataUrl } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import type { AuthorizationParams, OAuthServerProvider, OAuthTokenVerifier } from '@modelcontextprotocol/sdk/server/auth/provider.js';
import type { OAuthRegisteredClientsStore } from '@modelcontextprotocol/sdk/server/auth/clients.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { OAuthClientInformationFull, OAuthTokenRevocationRequest, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import {
  InvalidGrantError,
  InvalidScopeError,
  InvalidTargetError,
  InvalidTokenError,
  ServerError,
  TemporarilyUnavailableError,
} from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { CodemodeError, describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { loadSigningKeys, seal, unseal } from './keys.js';
import type { SigningKeys } from './keys.js';
import { MemoryOAuthStorage } from './storage.js';
import type { OAuthStorage } from './storage.js';
import { UpstreamClient, UpstreamGrantRevokedError } from './upstream.js';
import type { UpstreamConfig, UpstreamTokens } from './upstream.js';

const log = createLogger('oauth');

export const DEFAULT_ACCESS_TOKEN_EXPIRY_SECONDS = 3600;
export const DEFAULT_REFRESH_TOKEN_EXPIRY_SECONDS = 30 * 24 * 3600;
/** A login started at the upstream must come back within this long. */
const TRANSACTION_TTL_MS = 10 * 60_000;
/** Authorization codes are single-use and short-lived (RFC 6749 §4.1.2 recommends at most 10 minutes). */
const AUTHORIZATION_CODE_TTL_MS = 5 * 60_000;
/** A rotated refresh token stays usable this long, so a client that retried a lost response is not logged out. */
const REFRESH_ROTATION_GRACE_MS = 30_000;
/** Kept past the last referencing token so clock skew between instances cannot orphan a token. */
const SESSION_RETENTION_GRACE_MS = 60_000;
/** The refresh lease outlives the upstream request timeout (10 s), so a slow refresh is not run twice. */
const REFRESH_LOCK_TTL_MS = 20_000;
const REFRESH_LOCK_POLL_MS = 25;
/** After a rejected refresh, re-read storage this many times, this far apart, before ending the session. */
const REREAD_ATTEMPTS = 4;
const REREAD_INTERVAL_MS = 100;
/** How long past the refresh-token lifetime an unused registered client is kept. */
const CLIENT_IDLE_EXTRA_S = 7 * 24 * 3600;

/**
 * Options of {@link createOAuthProxy}.
 */
export interface OAuthProxyOptions {
  /** Public base URL of this authorization server (what clients see, e.g. the load balancer's URL). */
  issuerUrl: string | URL;
  /** Public URL of the protected MCP endpoint, e.g. `https://mcp.example.com/mcp`. Codemode JWTs carry it as `aud`. */
  resourceUrl: string | URL;
  upstream: UpstreamConfig;
  /** HS256 secret (>= 32 bytes) or PKCS#8 PEM private key. Falls back to `CODEMODE_OAUTH_SIGNING_KEY`. Required. */
  signingKey?: string;
  /** Keys being rotated out: tokens and stored records made with them stay valid; new ones use `signingKey`. */
  previousSigningKeys?: string[];
  /** Default: in-memory (single instance, lost on restart). Use Redis for several instances. */
  storage?: OAuthStorage;
  /** Lifetime of codemode access tokens, independent of the upstream `expires_in`. Default 3600. */
  accessTokenExpirySeconds?: number;
  /** Lifetime of codemode refresh tokens (capped by the upstream refresh token's own expiry). Default 30 days. */
  refreshTokenExpirySeconds?: number;
  /** Refresh the upstream token this many seconds before it expires. Default 0. */
  tokenExpiryThresholdSeconds?: number;
  /**
   * Also ask the IdP's userinfo endpoint whether the upstream token still works, at most once per this
   * many seconds per session, so a revoked upstream grant is noticed before the token expires. Default: off
   * (validity follows the upstream expiry).
   */
  upstreamValidationIntervalSeconds?: number;
  /** Scopes clients may request; advertised in metadata. Requests outside it are refused. Default: any. */
  scopesSupported?: string[];
  /** Path of the upstream redirect URI on this server (register `${issuer origin}${callbackPath}` at the IdP). Default `/oauth/callback`. */
  callbackPath?: string;
  resourceName?: string;
  /** The SDK's per-IP rate limits on /authorize, /token, /register. `false` turns them off (tests). */
  rateLimit?: false;
  /**
   * Show a consent page naming the client and its redirect URI before forwarding to the upstream IdP.
   * Default true. The MCP security guidance requires it for proxies with one static upstream client:
   * without it, any dynamically registered client could silently ride a user's existing IdP consent.
   */
  consent?: boolean;
  /** Put the upstream access token into `AuthInfo.extra.upstreamAccessToken` for tools that call the IdP's API. Default true. */
  exposeUpstreamToken?: boolean;
}

/** What {@link createOAuthProxy} returns. */
export interface OAuthProxy {
  /** Mount at the application root: AS metadata (+ OIDC alias), protected-resource metadata, /register, /authorize, /token, /revoke and the IdP callback. */
  readonly router: Router;
  /** Bearer middleware for the MCP endpoint: 401 with `WWW-Authenticate: ... resource_metadata=...` on failure. */
  readonly requireAuth: RequestHandler;
  /** Verifies a codemode JWT, loads and (if needed) refreshes the upstream token. Rejects with the SDK's `InvalidTokenError`. */
  verifyAccessToken(token: string): Promise<AuthInfo>;
  readonly provider: OAuthServerProvider;
  readonly resourceMetadataUrl: string;
  /** The redirect URI to register at the upstream IdP. */
  readonly callbackUrl: string;
  /** Idempotent; closes the storage only when the proxy created it. */
  close(): Promise<void>;
}

/** One upstream login, referenced by every codemode token issued from it. Stored sealed under `sess:<id>`. */
interface SessionRecord {
  clientId: string;
  subject?: string;
  upstream: UpstreamTokens;
  /** Keep the record at least until this time (ms): the latest expiry of any codemode token referencing it. */
  retainUntil: number;
  refreshCount: number;
  updatedAt: number;
}

interface TransactionRecord {
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

interface CodeRecord {
  sid: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scopes: string[];
  resource?: string;
}

interface AccessRecord {
  sid: string;
  clientId: string;
}

interface RefreshRecord {
  sid: string;
  clientId: string;
  scopes: string[];
  rotatedAt?: number;
}

function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

function positiveSeconds(name: string, value: number | undefined, fallback: number, allowZero = false): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new CodemodeError('INVALID_CONFIG', `oauth.${name} must be a ${allowZero ? 'non-negative' : 'positive'} number of seconds, got ${value}`);
  }
  return value;
}

function comparableResource(value: string): string {
  const hash = value.indexOf('#');
  return (hash === -1 ? value : value.slice(0, hash)).replace(/\/$/, '');
}

/** A readable reason for a rejected JWT that never echoes the token. */
function joseReason(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'Token has expired; refresh it or sign in again';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `Token claim check failed (${err.claim}): it was not issued for this server`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'Token algorithm not accepted';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'Token signature is invalid';
  if (err instanceof joseErrors.JWTInvalid || err instanceof joseErrors.JWSInvalid) return 'Token is malformed';
  return 'Token is invalid';
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Pages are framed by nobody (clickjacking on a consent button) and run no script. */
function sendPage(res: Response, status: number, html: string): void {
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cache-Control', 'no-store');
  res.status(status).type('html').send(html);
}

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>` +
    '<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}code{word-break:break-all}button{margin-right:.5rem;padding:.4rem 1rem}</style>' +
    `</head><body>${body}</body></html>`;
}

function messagePage(message: string): string {
  return page('codemode sign-in', `<h1>codemode sign-in</h1><p>${escapeHtml(message)}</p>`);
}

function consentPage(client: OAuthClientInformationFull, txn: TransactionRecord, txnId: string, action: string): string {
  // client_name is chosen by whoever registered the client: show it, but lead with where the tokens go.
  const name = typeof client.client_name === 'string' && client.client_name !== '' ? client.client_name : client.client_id;
  const scopes = txn.scopes.length > 0 ? `<p>Scopes: <code>${escapeHtml(txn.scopes.join(' '))}</code></p>` : '';
  return page(
    'Authorize MCP client',
    '<h1>Authorize MCP client?</h1>' +
      `<p>An application calling itself <strong>${escapeHtml(name)}</strong> wants to use this codemode server as you.</p>` +
      `<p>Tokens will be sent to <code>${escapeHtml(txn.redirectUri)}</code>. Approve only if you started this sign-in from that application.</p>` +
      scopes +
      `<form method="post" action="${escapeHtml(action)}"><input type="hidden" name="txn" value="${escapeHtml(txnId)}">` +
      '<button type="submit" name="action" value="approve">Approve</button><button type="submit" name="action" value="deny">Deny</button></form>',
  );
}

class OAuthProxyProvider implements OAuthServerProvider {
  readonly #storage: OAuthStorage;
  readonly #keys: SigningKeys;
  /** Keys being rotated out: still accepted for verifying JWTs and opening stored records, never used to sign. */
  readonly #previousKeys: SigningKeys[];
  readonly #upstream: UpstreamClient;
  readonly #issuer: string;
  readonly #audience: string;
  readonly #callbackUrl: string;
  readonly #accessTtlS: number;
  readonly #refreshTtlS: number;
  readonly #thresholdMs: number;
  readonly #scopesSupported: string[] | undefined;
  readonly #exposeUpstream: boolean;
  readonly #consent: boolean;
  readonly #validationIntervalMs: number | undefined;
  readonly #consentPath: string;
  /** In-process queue per session, in front of the storage lease, so local waiters don't poll the store. */
  readonly #localLocks = new Map<string, Promise<void>>();
  #closed = false;

  constructor(options: OAuthProxyOptions, storage: OAuthStorage, keys: SigningKeys, upstream: UpstreamClient, callbackUrl: string, consentPath: string) {
    this.#storage = storage;
    this.#keys = keys;
    this.#previousKeys = (options.previousSigningKeys ?? []).map((k) => loadSigningKeys(k));
    this.#upstream = upstream;
    this.#issuer = new URL(options.issuerUrl).href;
    this.#audience = new URL(options.resourceUrl).href;
    this.#callbackUrl = callbackUrl;
    this.#accessTtlS = positiveSeconds('accessTokenExpirySeconds', options.accessTokenExpirySeconds, DEFAULT_ACCESS_TOKEN_EXPIRY_SECONDS);
    this.#refreshTtlS = positiveSeconds('refreshTokenExpirySeconds', options.refreshTokenExpirySeconds, DEFAULT_REFRESH_TOKEN_EXPIRY_SECONDS);
    this.#thresholdMs = positiveSeconds('tokenExpiryThresholdSeconds', options.tokenExpiryThresholdSeconds, 0, true) * 1000;
    this.#scopesSupported = options.scopesSupported;
    this.#exposeUpstream = options.exposeUpstreamToken !== false;
    this.#consent = options.consent !== false;
    this.#validationIntervalMs =
      options.upstreamValidationIntervalSeconds === undefined ? undefined : positiveSeconds('upstreamValidationIntervalSeconds', options.upstreamValidationIntervalSeconds, 0) * 1000;
    this.#consentPath = consentPath;
  }

  close(): void {
    this.#closed = true;
  }

  // ---- sealed JSON records ----

  #unseal(raw: string): string | undefined {
    for (const keys of [this.#keys, ...this.#previousKeys]) {
      const text = unseal(keys.sealKey, raw);
      if (text !== undefined) return text;
    }
    return undefined;
  }

  /** Verifies with the current key, then with each previous one; the algorithm is pinned per key. */
  async #verifyJwt(token: string, options: { ignoreExpiry?: boolean } = {}): Promise<JWTPayload> {
    let lastError: unknown;
    for (const keys of [this.#keys, ...this.#previousKeys]) {
      try {
        const { payload } = await jwtVerify(token, keys.verifyKey, {
          algorithms: [keys.alg],
          issuer: this.#issuer,
          audience: this.#audience,
          requiredClaims: ['exp', 'iat', 'jti', 'sub'],
          typ: 'at+jwt', // RFC 9068: an ID token or other JWT signed with the same key is not an access token
          ...(options.ignoreExpiry === true && { clockTolerance: Number.MAX_SAFE_INTEGER }),
        });
        return payload;
      } catch (err) {
        lastError = err;
        // Only a key mismatch moves on to the next key; a claim failure is final.
        if (!(err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JOSEAlgNotAllowed)) break;
      }
    }
    throw lastError;
  }

  async #read<T>(key: string): Promise<T | undefined> {
    const raw = await this.#storage.get(key);
    if (raw === undefined) return undefined;
    const text = this.#unseal(raw);
    if (text === undefined) {
      log.warn('stored OAuth record cannot be opened (another signing key?); treating it as absent', { key: key.split(':')[0] });
      return undefined;
    }
    return JSON.parse(text) as T;
  }

  async #take<T>(key: string): Promise<T | undefined> {
    const raw = await this.#storage.take(key);
    const text = raw === undefined ? undefined : this.#unseal(raw);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  async #write(key: string, value: unknown, ttlMs: number | undefined): Promise<void> {
    await this.#storage.set(key, seal(this.#keys.sealKey, JSON.stringify(value)), ttlMs === undefined ? undefined : Math.max(1000, Math.ceil(ttlMs)));
  }

  async #saveSession(sid: string, session: SessionRecord): Promise<void> {
    await this.#write(`sess:${sid}`, session, session.retainUntil - Date.now());
  }

  // ---- clients (dynamic registration, shared across instances through the storage) ----

  /**
   * Registered clients expire when unused for this long (longer than any refresh token they could hold),
   * so open registration cannot grow the store without bound. Each token issue extends it.
   */
  #clientTtlMs(): number {
    return (this.#refreshTtlS + CLIENT_IDLE_EXTRA_S) * 1000;
  }

  readonly clientsStore: OAuthRegisteredClientsStore = {
    getClient: async (clientId: string) => this.#read<OAuthClientInformationFull>(`client:${clientId}`),
    registerClient: async (client) => {
      const full = client as OAuthClientInformationFull;
      await this.#write(`client:${full.client_id}`, full, this.#clientTtlMs());
      return full;
    },
  };

  // ---- authorization ----

  #checkResource(resource: URL | string | undefined): void {
    if (resource === undefined) return;
    const href = typeof resource === 'string' ? resource : resource.href;
    if (comparableResource(href) !== comparableResource(this.#audience)) {
      throw new InvalidTargetError(`This server issues tokens only for ${this.#audience}`);
    }
  }

  #checkScopes(scopes: string[]): void {
    if (this.#scopesSupported === undefined) return;
    const unknown = scopes.filter((s) => !this.#scopesSupported!.includes(s));
    if (unknown.length > 0) throw new InvalidScopeError(`Unsupported scope(s): ${unknown.join(' ')}`);
  }

  async authorize(client: OAuthClientInformationFull, params: AuthorizationParams, res: Response): Promise<void> {
    this.#checkResource(params.resource);
    const scopes = (params.scopes ?? []).filter((s) => s !== '');
    this.#checkScopes(scopes);
    const txnId = randomToken();
    const upstreamVerifier = this.#upstream.usesPkce ? randomToken(48) : undefined;
    // With consent on, the login is bound to this browser by a cookie: a consent form or callback
    // replayed from another browser (an attacker who started the flow himself) is refused.
    const nonce = this.#consent ? randomToken(24) : undefined;
    const txn: TransactionRecord = {
      clientId: client.client_id,
      redirectUri: params.redirectUri,
      codeChallenge: params.codeChallenge,
      scopes,
      approved: !this.#consent,
      ...(params.state !== undefined && { state: params.state }),
      ...(params.resource !== undefined && { resource: params.resource.href }),
      ...(upstreamVerifier !== undefined && { upstreamVerifier }),
      ...(nonce !== undefined && { browserBinding: sha256(nonce) }),
    };
    await this.#write(`txn:${txnId}`, txn, TRANSACTION_TTL_MS);
    if (nonce === undefined) {
      res.redirect(302, await this.#upstreamUrl(txnId, txn));
      return;
    }
    res.append('Set-Cookie', this.#bindingCookie(txnId, nonce, TRANSACTION_TTL_MS / 1000));
    sendPage(res, 200, consentPage(client, txn, txnId, this.#consentPath));
  }

  #cookieName(txnId: string): string {
    return `codemode_oauth_${txnId.slice(0, 16)}`;
  }

  #bindingCookie(txnId: string, value: string, maxAgeS: number): string {
    const secure = this.#issuer.startsWith('https:') ? '; Secure' : '';
    return `${this.#cookieName(txnId)}=${value}; Max-Age=${maxAgeS}; Path=/; HttpOnly; SameSite=Lax${secure}`;
  }

  #boundToThisBrowser(req: Request, txnId: string, txn: TransactionRecord): boolean {
    if (txn.browserBinding === undefined) return true;
    const name = this.#cookieName(txnId);
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const [k, ...v] = part.trim().split('=');
      if (k === name && sha256(v.join('=')) === txn.browserBinding) return true;
    }
    return false;
  }

  async #upstreamUrl(txnId: string, txn: TransactionRecord): Promise<string> {
    try {
      return await this.#upstream.authorizeUrl({
        redirectUri: this.#callbackUrl,
        state: txnId,
        ...(txn.upstreamVerifier !== undefined && { codeChallenge: sha256(txn.upstreamVerifier) }),
      });
    } catch (err) {
      log.error('cannot start upstream login', { error: describeError(err) });
      throw new TemporarilyUnavailableError('The upstream identity provider is unavailable; try again later');
    }
  }

  /** POST of the consent page: approve forwards to the upstream IdP, deny returns access_denied to the client. */
  async handleConsent(req: Request, res: Response): Promise<void> {
    res.setHeader('Cache-Control', 'no-store');
    const body = (req.body ?? {}) as Record<string, unknown>;
    const txnId = typeof body.txn === 'string' ? body.txn : '';
    const txn = txnId === '' ? undefined : await this.#read<TransactionRecord>(`txn:${txnId}`);
    if (txn === undefined) {
      sendPage(res, 400, messagePage('This sign-in request expired or was already used. Start the sign-in again from your MCP client.'));
      return;
    }
    if (!this.#boundToThisBrowser(req, txnId, txn)) {
      sendPage(res, 403, messagePage('This approval did not come from the browser that started the sign-in. Start the sign-in again from your MCP client.'));
      return;
    }
    if (body.action !== 'approve') {
      await this.#storage.delete(`txn:${txnId}`);
      const back = new URL(txn.redirectUri);
      back.searchParams.set('error', 'access_denied');
      back.searchParams.set('error_description', 'The user denied access');
      if (txn.state !== undefined) back.searchParams.set('state', txn.state);
      res.redirect(302, back.href);
      return;
    }
    await this.#write(`txn:${txnId}`, { ...txn, approved: true }, TRANSACTION_TTL_MS);
    res.redirect(302, await this.#upstreamUrl(txnId, txn));
  }

  /** The IdP callback: finish the upstream login, store the upstream tokens, send the client its code. */
  async handleCallback(req: Request, res: Response): Promise<void> {
    res.setHeader('Cache-Control', 'no-store');
    const q = req.query;
    const state = typeof q.state === 'string' ? q.state : undefined;
    const txn = state === undefined || state === '' ? undefined : await this.#take<TransactionRecord>(`txn:${state}`);
    if (txn === undefined) {
      sendPage(res, 400, messagePage('This login link expired or was already used. Start the sign-in again from your MCP client.'));
      return;
    }
    if (!txn.approved || !this.#boundToThisBrowser(req, state!, txn)) {
      sendPage(res, 403, messagePage('This sign-in was not approved in this browser. Start the sign-in again from your MCP client.'));
      return;
    }
    if (txn.browserBinding !== undefined) res.append('Set-Cookie', this.#bindingCookie(state!, '', 0));
    const back = new URL(txn.redirectUri);
    if (txn.state !== undefined) back.searchParams.set('state', txn.state);
    const fail = (error: string, description: string): void => {
      back.searchParams.set('error', error);
      back.searchParams.set('error_description', description);
      res.redirect(302, back.href);
    };
    if (typeof q.error === 'string') {
      fail(q.error === 'access_denied' ? 'access_denied' : 'server_error', `The upstream identity provider refused the login (${q.error})`);
      return;
    }
    if (typeof q.code !== 'string' || q.code === '') {
      fail('server_error', 'The upstream identity provider returned no authorization code');
      return;
    }
    let sid: string;
    try {
      const tokens = await this.#upstream.exchangeCode({
        code: q.code,
        redirectUri: this.#callbackUrl,
        ...(txn.upstreamVerifier !== undefined && { codeVerifier: txn.upstreamVerifier }),
      });
      const identity = await this.#upstream.identity(tokens.accessToken, tokens.idToken);
      sid = randomToken();
      const now = Date.now();
      const session: SessionRecord = {
        clientId: txn.clientId,
        ...(identity.subject !== undefined && { subject: identity.subject }),
        upstream: tokens,
        retainUntil: now + AUTHORIZATION_CODE_TTL_MS + SESSION_RETENTION_GRACE_MS,
        refreshCount: 0,
        updatedAt: now,
      };
      await this.#saveSession(sid, session);
      log.info('user signed in', { subject: identity.subject, client: txn.clientId });
    } catch (err) {
      log.warn('upstream login failed', { error: describeError(err) });
      fail(err instanceof UpstreamGrantRevokedError ? 'access_denied' : 'server_error', 'Signing in at the upstream identity provider failed; try again');
      return;
    }
    const code = randomToken();
    const record: CodeRecord = {
      sid,
      clientId: txn.clientId,
      redirectUri: txn.redirectUri,
      codeChallenge: txn.codeChallenge,
      scopes: txn.scopes,
      ...(txn.resource !== undefined && { resource: txn.resource }),
    };
    await this.#write(`code:${sha256(code)}`, record, AUTHORIZATION_CODE_TTL_MS);
    back.searchParams.set('code', code);
    res.redirect(302, back.href);
  }

  async challengeForAuthorizationCode(client: OAuthClientInformationFull, authorizationCode: string): Promise<string> {
    const record = await this.#read<CodeRecord>(`code:${sha256(authorizationCode)}`);
    if (record === undefined || record.clientId !== client.client_id) throw new InvalidGrantError('Invalid or expired authorization code');
    return record.codeChallenge;
  }

  async exchangeAuthorizationCode(
    client: OAuthClientInformationFull,
    authorizationCode: string,
    _codeVerifier?: string,
    redirectUri?: string,
    resource?: URL,
  ): Promise<OAuthTokens> {
    // take: a code is redeemed at most once, even by two instances racing.
    const record = await this.#take<CodeRecord>(`code:${sha256(authorizationCode)}`);
    if (record === undefined || record.clientId !== client.client_id) throw new InvalidGrantError('Invalid or expired authorization code');
    if (redirectUri !== undefined && redirectUri !== record.redirectUri) throw new InvalidGrantError('redirect_uri does not match the authorization request');
    this.#checkResource(resource);
    return this.#issue(record.sid, client.client_id, record.scopes);
  }

  async exchangeRefreshToken(client: OAuthClientInformationFull, refreshToken: string, scopes?: string[], resource?: URL): Promise<OAuthTokens> {
    const key = `rt:${sha256(refreshToken)}`;
    const record = await this.#read<RefreshRecord>(key);
    if (record === undefined || record.clientId !== client.client_id) throw new InvalidGrantError('Invalid or expired refresh token; sign in again');
    const now = Date.now();
    if (record.rotatedAt !== undefined && now - record.rotatedAt > REFRESH_ROTATION_GRACE_MS) {
      throw new InvalidGrantError('Refresh token was already used; sign in again');
    }
    this.#checkResource(resource);
    const granted = scopes ?? record.scopes;
    const widened = granted.filter((s) => !record.scopes.includes(s));
    if (widened.length > 0) throw new InvalidScopeError(`Refresh cannot add scopes: ${widened.join(' ')}`);
    // A dead upstream login must fail here with invalid_grant, which makes the client start a new login.
    try {
      await this.#ensureFresh(record.sid);
    } catch (err) {
      if (err instanceof InvalidTokenError) throw new InvalidGrantError(err.message);
      throw err;
    }
    if (record.rotatedAt === undefined) await this.#write(key, { ...record, rotatedAt: now }, REFRESH_ROTATION_GRACE_MS);
    return this.#issue(record.sid, client.client_id, granted);
  }

  async #issue(sid: string, clientId: string, scopes: string[]): Promise<OAuthTokens> {
    return this.#withSessionLock(sid, async () => {
      const session = await this.#read<SessionRecord>(`sess:${sid}`);
      if (session === undefined) throw new InvalidGrantError('The sign-in session has ended; sign in again');
      const now = Date.now();
      const up = session.upstream;
      const upstreamRefreshable = up.refreshToken !== undefined && (up.refreshExpiresAt === undefined || up.refreshExpiresAt > now);
      let accessTtlS = this.#accessTtlS;
      // Without an upstream refresh token nothing can extend the session: never outlive the upstream token.
      if (!upstreamRefreshable && up.expiresAt !== undefined) accessTtlS = Math.min(accessTtlS, Math.floor((up.expiresAt - now) / 1000));
      if (accessTtlS <= 0) throw new InvalidGrantError('The upstream token has expired and cannot be refreshed; sign in again');
      const jti = randomToken(18);
      const scope = scopes.join(' ');
      const exp = Math.floor(now / 1000) + accessTtlS;
      const jwt = await new SignJWT({ client_id: clientId, ...(scope !== '' && { scope }) })
        .setProtectedHeader({ alg: this.#keys.alg, typ: 'at+jwt' })
        .setIssuer(this.#issuer)
        .setAudience(this.#audience)
        .setSubject(session.subject ?? clientId)
        .setJti(jti)
        .setIssuedAt(Math.floor(now / 1000))
        .setExpirationTime(exp)
        .sign(this.#keys.signKey);
      const access: AccessRecord = { sid, clientId };
      await this.#write(`at:${jti}`, access, accessTtlS * 1000);
      let retainUntil = exp * 1000;
      const tokens: OAuthTokens = { access_token: jwt, token_type: 'Bearer', expires_in: accessTtlS, ...(scope !== '' && { scope }) };
      // A refresh token is useful only when the session can outlive the current upstream token.
      if (upstreamRefreshable || up.expiresAt === undefined) {
        let refreshTtlS = this.#refreshTtlS;
        if (upstreamRefreshable && up.refreshExpiresAt !== undefined) refreshTtlS = Math.min(refreshTtlS, Math.floor((up.refreshExpiresAt - now) / 1000));
        if (refreshTtlS > 0) {
          const refreshToken = randomToken();
          const record: RefreshRecord = { sid, clientId, scopes };
          await this.#write(`rt:${sha256(refreshToken)}`, record, refreshTtlS * 1000);
          tokens.refresh_token = refreshToken;
          retainUntil = Math.max(retainUntil, now + refreshTtlS * 1000);
        }
      }
      const registered = await this.#read<OAuthClientInformationFull>(`client:${clientId}`);
      if (registered !== undefined) await this.#write(`client:${clientId}`, registered, this.#clientTtlMs());
      // The upstream token must outlive every codemode token that references it.
      retainUntil += SESSION_RETENTION_GRACE_MS;
      if (retainUntil > session.retainUntil) {
        session.retainUntil = retainUntil;
        await this.#saveSession(sid, session);
      }
      return tokens;
    });
  }

  // ---- verification and transparent upstream refresh ----

  async verifyAccessToken(token: string): Promise<AuthInfo> {
    if (this.#closed) throw new ServerError('The OAuth proxy is closed');
    let payload: JWTPayload;
    try {
      payload = await this.#verifyJwt(token);
    } catch (err) {
      throw new InvalidTokenError(joseReason(err));
    }
    const access = await this.#read<AccessRecord>(`at:${payload.jti}`);
    if (access === undefined) throw new InvalidTokenError('Token was revoked or its sign-in session ended; sign in again');
    let session = await this.#ensureFresh(access.sid);
    if (this.#validationIntervalMs !== undefined) session = await this.#validateUpstream(access.sid, session);
    const scope = typeof payload.scope === 'string' ? payload.scope : '';
    return {
      token,
      clientId: access.clientId,
      scopes: scope === '' ? [] : scope.split(' '),
      expiresAt: payload.exp!,
      resource: new URL(this.#audience),
      extra: {
        subject: payload.sub,
        ...(this.#exposeUpstream && { upstreamAccessToken: session.upstream.accessToken }),
      },
    };
  }

  /**
   * Asks the IdP (its userinfo endpoint) whether the upstream token still works, at most once per
   * interval per session across all instances. A refused token (the user revoked the app) is refreshed;
   * if that fails too, the request gets 401. An unreachable IdP does not fail requests: expiry rules still hold.
   */
  async #validateUpstream(sid: string, session: SessionRecord): Promise<SessionRecord> {
    const key = `val:${sid}`;
    if ((await this.#storage.get(key)) !== undefined) return session;
    const verdict = await this.#upstream.checkToken(session.upstream.accessToken);
    if (verdict === 'unknown') return session;
    let current = session;
    if (verdict === 'invalid') {
      log.info('upstream token refused by the IdP; refreshing', { subject: session.subject });
      current = await this.#ensureFresh(sid, session.upstream.accessToken);
    }
    await this.#storage.set(key, '1', this.#validationIntervalMs!);
    return current;
  }

  #needsRefresh(session: SessionRecord, now = Date.now()): boolean {
    const exp = session.upstream.expiresAt;
    return exp !== undefined && now + this.#thresholdMs >= exp;
  }

  /** Loads the session; refreshes the upstream token (once, under a per-session lock) when it is due. */
  async #ensureFresh(sid: string, rejectedToken?: string): Promise<SessionRecord> {
    // `rejectedToken`: an upstream access token the IdP refused although it has not expired (revoked).
    const due = (s: SessionRecord): boolean => this.#needsRefresh(s) || s.upstream.accessToken === rejectedToken;
    const first = await this.#read<SessionRecord>(`sess:${sid}`);
    if (first === undefined) throw new InvalidTokenError('The sign-in session has ended; sign in again');
    if (!due(first)) return first;
    return this.#withSessionLock(sid, async () => {
      // Another request (here or on another instance) may have refreshed while we waited.
      const current = await this.#read<SessionRecord>(`sess:${sid}`);
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
          const again = await this.#read<SessionRecord>(`sess:${sid}`);
          if (again === undefined) break;
          if (again.upstream.accessToken !== current.upstream.accessToken && !due(again)) return again;
        }
        if (err instanceof UpstreamGrantRevokedError) {
          log.warn('upstream refresh token rejected; session ended', { subject: current.subject, reason: err.message });
          await this.#storage.delete(`sess:${sid}`);
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
      await this.#saveSession(sid, updated);
      log.debug('upstream token refreshed', { subject: updated.subject, refreshes: updated.refreshCount });
      return updated;
    });
  }

  /**
   * Runs `fn` holding the session's lock: an in-process queue, then a storage lease (a Redis key when on
   * Redis) so that instances sharing the store refresh once. Every session write goes through here so a
   * refresh and a token issue cannot overwrite each other's update.
   */
  async #withSessionLock<T>(sid: string, fn: () => Promise<T>): Promise<T> {
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
      let release = await this.#storage.tryLock(`session:${sid}`, REFRESH_LOCK_TTL_MS);
      while (release === undefined) {
        if (this.#closed) throw new ServerError('The OAuth proxy is closed');
        if (Date.now() >= deadline) throw new TemporarilyUnavailableError('Timed out waiting for another instance to refresh the session; try again');
        await new Promise((resolve) => setTimeout(resolve, REFRESH_LOCK_POLL_MS));
        release = await this.#storage.tryLock(`session:${sid}`, REFRESH_LOCK_TTL_MS);
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

  async revokeToken(client: OAuthClientInformationFull, request: OAuthTokenRevocationRequest): Promise<void> {
    const token = request.token;
    if (token.split('.').length === 3) {
      try {
        const payload = await this.#verifyJwt(token, { ignoreExpiry: true }); // revoking an expired token is fine
        const access = payload.jti === undefined ? undefined : await this.#read<AccessRecord>(`at:${payload.jti}`);
        if (access !== undefined && access.clientId === client.client_id) await this.#storage.delete(`at:${payload.jti}`);
      } catch {
        // RFC 7009 §2.2: invalid tokens are not an error.
      }
      return;
    }
    const key = `rt:${sha256(token)}`;
    const record = await this.#read<RefreshRecord>(key);
    if (record === undefined || record.clientId !== client.client_id) return;
    // Revoking the refresh token ends the grant: drop the upstream session so its access tokens die too.
    await this.#storage.delete(key);
    await this.#storage.delete(`sess:${record.sid}`);
  }
}

/**
 * Creates the OAuth proxy. Mount `router` at the app root and put `requireAuth` in front of the MCP endpoint.
 *
 * @example
 * ```ts
 * const oauth = createOAuthProxy({
 *   issuerUrl: 'https://mcp.example.com',
 *   resourceUrl: 'https://mcp.example.com/mcp',
 *   upstream: { type: 'github', clientId: 'Iv1.abc', clientSecret: process.env.GH_SECRET },
 *   signingKey: process.env.CODEMODE_OAUTH_SIGNING_KEY,
 *   storage: await RedisOAuthStorage.connect({ url: 'redis://127.0.0.1:6379' }),
 * });
 * app.use(oauth.router);
 * app.post('/mcp', oauth.requireAuth, mcpHandler);
 * ```
 */
export function createOAuthProxy(options: OAuthProxyOptions): OAuthProxy {
  let issuer: URL;
  let resource: URL;
  try {
    issuer = new URL(options.issuerUrl);
    resource = new URL(options.resourceUrl);
  } catch (err) {
    throw new CodemodeError('INVALID_CONFIG', `oauth.issuerUrl and oauth.resourceUrl must be absolute URLs: ${describeError(err)}`, { cause: err });
  }
  const keys = loadSigningKeys(options.signingKey);
  const upstream = new UpstreamClient(options.upstream);
  const ownsStorage = options.storage === undefined;
  const storage = options.storage ?? new MemoryOAuthStorage();
  const callbackPath = options.callbackPath ?? '/oauth/callback';
  if (!callbackPath.startsWith('/')) throw new CodemodeError('INVALID_CONFIG', `oauth.callbackPath must start with "/", got ${JSON.stringify(callbackPath)}`);
  const callbackUrl = new URL(callbackPath, issuer.origin).href;
  const consentPath = `${callbackPath.replace(/\/[^/]*$/, '')}/consent`;
  const provider = new OAuthProxyProvider(options, storage, keys, upstream, callbackUrl, consentPath);

  const rateLimit = options.rateLimit === false ? ({ rateLimit: false } as const) : {};
  let sdkRouter: RequestHandler;
  let metadata: ReturnType<typeof createOAuthMetadata>;
  try {
    const routerOptions = {
      provider,
      issuerUrl: issuer,
      resourceServerUrl: resource,
      ...(options.scopesSupported !== undefined && { scopesSupported: options.scopesSupported }),
      ...(options.resourceName !== undefined && { resourceName: options.resourceName }),
      authorizationOptions: rateLimit,
      tokenOptions: rateLimit,
      clientRegistrationOptions: rateLimit,
      revocationOptions: rateLimit,
    };
    sdkRouter = mcpAuthRouter(routerOptions);
    metadata = createOAuthMetadata(routerOptions);
  } catch (err) {
    throw new CodemodeError(
      'INVALID_CONFIG',
      `Invalid OAuth issuer URL ${issuer.href}: ${describeError(err)}. Set oauth.issuerUrl to the public https:// URL clients use ` +
        '(plain http is accepted only for localhost and 127.0.0.1).',
      { cause: err },
    );
  }

  const router = express.Router();
  router.use(sdkRouter);
  const sendMetadata: RequestHandler = (_req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.json(metadata);
  };
  // RFC 8414 §3 inserts the well-known segment before the issuer's path; OIDC Discovery appends it.
  // Serve every spelling clients try, for both the OAuth and the OpenID names.
  const issuerPath = issuer.pathname.replace(/\/$/, '');
  const metadataPaths = new Set(['/.well-known/openid-configuration']);
  if (issuerPath !== '') {
    metadataPaths.add(`/.well-known/oauth-authorization-server${issuerPath}`);
    metadataPaths.add(`/.well-known/openid-configuration${issuerPath}`);
    metadataPaths.add(`${issuerPath}/.well-known/openid-configuration`);
    metadataPaths.add(`${issuerPath}/.well-known/oauth-authorization-server`);
  }
  for (const path of metadataPaths) router.get(path, sendMetadata);
  // A browser is on the other end of these two: answer failures (storage down, IdP discovery failing)
  // with a readable page rather than express's default error output.
  const browserFailure = (res: Response) => (err: unknown) => {
    log.error('OAuth browser step failed', { error: describeError(err) });
    if (res.headersSent) return;
    const unavailable = err instanceof TemporarilyUnavailableError;
    sendPage(res, unavailable ? 503 : 500, messagePage(unavailable ? 'The identity provider is unavailable right now. Try signing in again shortly.' : 'Signing in failed on the server. Try again shortly.'));
  };
  router.get(callbackPath, (req, res) => {
    provider.handleCallback(req, res).catch(browserFailure(res));
  });
  router.post(consentPath, express.urlencoded({ extended: false, limit: '4kb' }), (req, res) => {
    provider.handleConsent(req, res).catch(browserFailure(res));
  });

  const resourceMetadataUrl = getOAuthProtectedResourceMetadataUrl(resource);
  const requireAuth = requireBearerAuth({ verifier: provider as OAuthTokenVerifier, resourceMetadataUrl, expectedResource: resource });
  let closed = false;
  return {
    router,
    requireAuth,
    provider,
    resourceMetadataUrl,
    callbackUrl,
    verifyAccessToken: (token) => provider.verifyAccessToken(token),
    async close() {
      if (closed) return;
      closed = true;
      provider.close();
      if (ownsStorage) await storage.close();
    },
  };
}
