/**
 * The OAuth proxy: an OAuth 2.1 authorization server facing MCP clients that delegates login to an
 * upstream IdP, keeps the upstream tokens server-side and hands clients short codemode JWTs whose
 * `jti` references the stored upstream session. Upstream tokens are refreshed transparently on use,
 * so a client that sat idle for hours keeps working without a new login.
 *
 * This file holds the router and the token endpoints. The browser steps (consent page, IdP callback) are in
 * `browser-login.ts`, the session refresh in `sessions.ts`, and the sealed records in `records.ts`.
 *
 * @module
 */
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
  InvalidClientMetadataError,
  InvalidGrantError,
  InvalidScopeError,
  InvalidTargetError,
  InvalidTokenError,
  ServerError,
  TemporarilyUnavailableError,
} from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { CodemodeError, describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { BrowserLogin, isUpstreamRedirect, withIss } from './browser-login.js';
import { ClientMetadataDocumentError, ClientMetadataDocuments, isUrlClientId } from './client-metadata.js';
import type { ClientIdMetadataDocumentOptions } from './client-metadata.js';
import { loadSigningKeys } from './keys.js';
import type { SigningKeys } from './keys.js';
import { messagePage, sendPage } from './pages.js';
import { randomToken, SealedRecords, sha256 } from './records.js';
import type { AccessRecord, CodeRecord, RefreshRecord, SessionRecord } from './records.js';
import { SESSION_RETENTION_GRACE_MS, UpstreamSessions } from './sessions.js';
import { MemoryOAuthStorage } from './storage.js';
import type { OAuthStorage } from './storage.js';
import { UpstreamClient } from './upstream.js';
import type { UpstreamConfig } from './upstream.js';

const log = createLogger('oauth');

export const DEFAULT_ACCESS_TOKEN_EXPIRY_SECONDS = 3600;
export const DEFAULT_REFRESH_TOKEN_EXPIRY_SECONDS = 30 * 24 * 3600;
/** A rotated refresh token stays usable this long, so a client that retried a lost response is not logged out. */
const REFRESH_ROTATION_GRACE_MS = 30_000;
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
  /**
   * Client ID Metadata Documents: a client may use an `https` URL as its `client_id` without registering,
   * and the server fetches the document at that URL (bounded, cached, public addresses only). On by
   * default (`true` or `{}`); `false` turns it off, and URL client_ids are then refused.
   */
  clientIdMetadataDocuments?: boolean | ClientIdMetadataDocumentOptions;
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

class OAuthProxyProvider implements OAuthServerProvider {
  readonly #records: SealedRecords;
  readonly #keys: SigningKeys;
  /** Keys being rotated out: still accepted for verifying JWTs and opening stored records, never used to sign. */
  readonly #previousKeys: SigningKeys[];
  readonly #sessions: UpstreamSessions;
  readonly #login: BrowserLogin;
  readonly #issuer: string;
  readonly #audience: string;
  readonly #accessTtlS: number;
  readonly #refreshTtlS: number;
  readonly #scopesSupported: string[] | undefined;
  readonly #exposeUpstream: boolean;
  /** Undefined when Client ID Metadata Documents are turned off. */
  readonly #documents: ClientMetadataDocuments | undefined;
  #closed = false;

  constructor(options: OAuthProxyOptions, storage: OAuthStorage, keys: SigningKeys, upstream: UpstreamClient, callbackUrl: string, consentPath: string) {
    const cimd = options.clientIdMetadataDocuments;
    this.#documents = cimd === false ? undefined : new ClientMetadataDocuments(cimd === true || cimd === undefined ? {} : cimd);
    this.#keys = keys;
    this.#previousKeys = (options.previousSigningKeys ?? []).map((k) => loadSigningKeys(k));
    this.#records = new SealedRecords(storage, keys, this.#previousKeys);
    this.#issuer = new URL(options.issuerUrl).href;
    this.#audience = new URL(options.resourceUrl).href;
    this.#accessTtlS = positiveSeconds('accessTokenExpirySeconds', options.accessTokenExpirySeconds, DEFAULT_ACCESS_TOKEN_EXPIRY_SECONDS);
    this.#refreshTtlS = positiveSeconds('refreshTokenExpirySeconds', options.refreshTokenExpirySeconds, DEFAULT_REFRESH_TOKEN_EXPIRY_SECONDS);
    const thresholdMs = positiveSeconds('tokenExpiryThresholdSeconds', options.tokenExpiryThresholdSeconds, 0, true) * 1000;
    this.#scopesSupported = options.scopesSupported;
    this.#exposeUpstream = options.exposeUpstreamToken !== false;
    const validationIntervalMs =
      options.upstreamValidationIntervalSeconds === undefined ? undefined : positiveSeconds('upstreamValidationIntervalSeconds', options.upstreamValidationIntervalSeconds, 0) * 1000;
    this.#sessions = new UpstreamSessions(this.#records, upstream, thresholdMs, validationIntervalMs);
    this.#login = new BrowserLogin(this.#records, this.#sessions, upstream, { issuer: this.#issuer, callbackUrl, consentPath, consent: options.consent !== false });
  }

  /** True when URL client_ids (Client ID Metadata Documents) are accepted. */
  get acceptsClientIdMetadataDocuments(): boolean {
    return this.#documents !== undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#sessions.close();
    await this.#documents?.close();
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

  // ---- clients (dynamic registration, shared across instances through the storage) ----

  /**
   * Registered clients expire when unused for this long (longer than any refresh token they could hold),
   * so open registration cannot grow the store without bound. Each token issue extends it.
   */
  #clientTtlMs(): number {
    return (this.#refreshTtlS + CLIENT_IDLE_EXTRA_S) * 1000;
  }

  readonly clientsStore: OAuthRegisteredClientsStore = {
    // A URL client_id is a metadata document, never a registered client: registration hands out opaque
    // ids (UUIDs), and the document's client is never written to the store, so one cannot pass for the other.
    getClient: async (clientId: string) => {
      if (!isUrlClientId(clientId)) return this.#records.read<OAuthClientInformationFull>(`client:${clientId}`);
      if (this.#documents === undefined) {
        throw new ClientMetadataDocumentError(
          'disabled',
          'This server does not accept a URL as client_id (Client ID Metadata Documents are turned off); register the client at the registration endpoint instead',
        );
      }
      return this.#documents.resolve(clientId);
    },
    registerClient: async (client) => {
      const full = client as OAuthClientInformationFull;
      if (isUrlClientId(full.client_id)) throw new InvalidClientMetadataError('A registered client cannot have a URL as client_id');
      await this.#records.write(`client:${full.client_id}`, full, this.#clientTtlMs());
      return full;
    },
  };

  // ---- authorization (the browser steps live in BrowserLogin) ----

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
    await this.#login.start(client, params, scopes, res);
  }

  /** POST of the consent page. */
  handleConsent(req: Request, res: Response): Promise<void> {
    return this.#login.handleConsent(req, res);
  }

  /** The IdP callback. */
  handleCallback(req: Request, res: Response): Promise<void> {
    return this.#login.handleCallback(req, res);
  }

  async challengeForAuthorizationCode(client: OAuthClientInformationFull, authorizationCode: string): Promise<string> {
    const record = await this.#records.read<CodeRecord>(`code:${sha256(authorizationCode)}`);
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
    const record = await this.#records.take<CodeRecord>(`code:${sha256(authorizationCode)}`);
    if (record === undefined || record.clientId !== client.client_id) throw new InvalidGrantError('Invalid or expired authorization code');
    if (redirectUri !== undefined && redirectUri !== record.redirectUri) throw new InvalidGrantError('redirect_uri does not match the authorization request');
    this.#checkResource(resource);
    return this.#issue(record.sid, client.client_id, record.scopes);
  }

  async exchangeRefreshToken(client: OAuthClientInformationFull, refreshToken: string, scopes?: string[], resource?: URL): Promise<OAuthTokens> {
    const key = `rt:${sha256(refreshToken)}`;
    const record = await this.#records.read<RefreshRecord>(key);
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
      await this.#sessions.ensureFresh(record.sid);
    } catch (err) {
      if (err instanceof InvalidTokenError) throw new InvalidGrantError(err.message);
      throw err;
    }
    if (record.rotatedAt === undefined) await this.#records.write(key, { ...record, rotatedAt: now }, REFRESH_ROTATION_GRACE_MS);
    return this.#issue(record.sid, client.client_id, granted);
  }

  async #issue(sid: string, clientId: string, scopes: string[]): Promise<OAuthTokens> {
    return this.#sessions.withLock(sid, async () => {
      const session = await this.#records.read<SessionRecord>(`sess:${sid}`);
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
      await this.#records.write(`at:${jti}`, access, accessTtlS * 1000);
      let retainUntil = exp * 1000;
      const tokens: OAuthTokens = { access_token: jwt, token_type: 'Bearer', expires_in: accessTtlS, ...(scope !== '' && { scope }) };
      // A refresh token is useful only when the session can outlive the current upstream token.
      if (upstreamRefreshable || up.expiresAt === undefined) {
        let refreshTtlS = this.#refreshTtlS;
        if (upstreamRefreshable && up.refreshExpiresAt !== undefined) refreshTtlS = Math.min(refreshTtlS, Math.floor((up.refreshExpiresAt - now) / 1000));
        if (refreshTtlS > 0) {
          const refreshToken = randomToken();
          const record: RefreshRecord = { sid, clientId, scopes };
          await this.#records.write(`rt:${sha256(refreshToken)}`, record, refreshTtlS * 1000);
          tokens.refresh_token = refreshToken;
          retainUntil = Math.max(retainUntil, now + refreshTtlS * 1000);
        }
      }
      const registered = isUrlClientId(clientId) ? undefined : await this.#records.read<OAuthClientInformationFull>(`client:${clientId}`);
      if (registered !== undefined) await this.#records.write(`client:${clientId}`, registered, this.#clientTtlMs());
      // The upstream token must outlive every codemode token that references it.
      retainUntil += SESSION_RETENTION_GRACE_MS;
      if (retainUntil > session.retainUntil) {
        session.retainUntil = retainUntil;
        await this.#sessions.save(sid, session);
      }
      return tokens;
    });
  }

  // ---- verification (the transparent upstream refresh lives in UpstreamSessions) ----

  async verifyAccessToken(token: string): Promise<AuthInfo> {
    if (this.#closed) throw new ServerError('The OAuth proxy is closed');
    let payload: JWTPayload;
    try {
      payload = await this.#verifyJwt(token);
    } catch (err) {
      throw new InvalidTokenError(joseReason(err));
    }
    const access = await this.#records.read<AccessRecord>(`at:${payload.jti}`);
    if (access === undefined) throw new InvalidTokenError('Token was revoked or its sign-in session ended; sign in again');
    let session = await this.#sessions.ensureFresh(access.sid);
    session = await this.#sessions.validateUpstream(access.sid, session);
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

  async revokeToken(client: OAuthClientInformationFull, request: OAuthTokenRevocationRequest): Promise<void> {
    const token = request.token;
    if (token.split('.').length === 3) {
      try {
        const payload = await this.#verifyJwt(token, { ignoreExpiry: true }); // revoking an expired token is fine
        const access = payload.jti === undefined ? undefined : await this.#records.read<AccessRecord>(`at:${payload.jti}`);
        if (access !== undefined && access.clientId === client.client_id) await this.#records.storage.delete(`at:${payload.jti}`);
      } catch {
        // RFC 7009 §2.2: invalid tokens are not an error.
      }
      return;
    }
    const key = `rt:${sha256(token)}`;
    const record = await this.#records.read<RefreshRecord>(key);
    if (record === undefined || record.clientId !== client.client_id) return;
    // Revoking the refresh token ends the grant: drop the upstream session so its access tokens die too.
    await this.#records.storage.delete(key);
    await this.#records.storage.delete(`sess:${record.sid}`);
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
  let metadata: ReturnType<typeof createOAuthMetadata> & Record<string, unknown>;
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
    metadata = {
      ...createOAuthMetadata(routerOptions),
      // RFC 9207: every authorization response carries `iss` (see the /authorize wrapper below and BrowserLogin).
      authorization_response_iss_parameter_supported: true,
      ...(provider.acceptsClientIdMetadataDocuments && { client_id_metadata_document_supported: true }),
    };
  } catch (err) {
    throw new CodemodeError(
      'INVALID_CONFIG',
      `Invalid OAuth issuer URL ${issuer.href}: ${describeError(err)}. Set oauth.issuerUrl to the public https:// URL clients use ` +
        '(plain http is accepted only for localhost and 127.0.0.1).',
      { cause: err },
    );
  }

  const router = express.Router();
  const sendMetadata: RequestHandler = (_req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.json(metadata);
  };
  // Our metadata goes before the SDK's router: the SDK serves its own copy (without the fields added above)
  // at /.well-known/oauth-authorization-server and every path under it. OPTIONS (CORS preflight) and
  // other methods still reach the SDK's handler there.
  // RFC 8414 §3 inserts the well-known segment before the issuer's path; OIDC Discovery appends it.
  // Serve every spelling clients try, for both the OAuth and the OpenID names.
  router.get(/^\/\.well-known\/oauth-authorization-server(?:\/.*)?$/, sendMetadata);
  const issuerPath = issuer.pathname.replace(/\/$/, '');
  const metadataPaths = new Set(['/.well-known/openid-configuration']);
  if (issuerPath !== '') {
    metadataPaths.add(`/.well-known/openid-configuration${issuerPath}`);
    metadataPaths.add(`${issuerPath}/.well-known/openid-configuration`);
    metadataPaths.add(`${issuerPath}/.well-known/oauth-authorization-server`);
  }
  for (const path of metadataPaths) router.get(path, sendMetadata);
  // RFC 9207: the SDK's /authorize handler redirects errors (invalid_scope, a bad PKCE parameter, ...) to the
  // client without `iss`. Add it to every redirect from /authorize except the one that forwards the
  // browser to the upstream IdP (BrowserLogin marks that one). The SDK also drops `state` from an error
  // about a malformed parameter; RFC 6749 §4.1.2.1 requires it back, so put it back.
  router.use(new URL(metadata.authorization_endpoint).pathname, (req, res, next) => {
    const redirect = res.redirect.bind(res) as (status: number, url: string) => void;
    res.redirect = ((statusOrUrl: number | string, maybeUrl?: string | number) => {
      const [status, url] = typeof statusOrUrl === 'number' ? [statusOrUrl, String(maybeUrl)] : [typeof maybeUrl === 'number' ? maybeUrl : 302, statusOrUrl];
      if (isUpstreamRedirect(res) || !URL.canParse(url)) {
        redirect(status, url);
        return;
      }
      const back = new URL(url);
      const params = (req.method === 'POST' ? req.body : req.query) as Record<string, unknown> | undefined;
      if (back.searchParams.has('error') && !back.searchParams.has('state') && typeof params?.state === 'string' && params.state !== '') {
        back.searchParams.set('state', params.state);
      }
      redirect(status, withIss(back.href, metadata.issuer));
    }) as Response['redirect'];
    next();
  });
  router.use(sdkRouter);
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
      await provider.close();
      if (ownsStorage) await storage.close();
    },
  };
}
