/**
 * The upstream identity provider the OAuth proxy delegates login to: any OAuth 2 / OIDC provider
 * (explicit endpoints or discovery), or GitHub through a preset.
 *
 * @module
 */
import { decodeJwt } from 'jose';
import { CodemodeError, describeError } from '../../errors.js';

/** A generic OAuth 2.0 / OpenID Connect provider. Give `issuer` for discovery, or the endpoints. */
export interface OidcUpstreamConfig {
  type: 'oidc';
  /** Discovery base: `${issuer}/.well-known/openid-configuration` is read once, lazily. */
  issuer?: string;
  authorizationEndpoint?: string;
  tokenEndpoint?: string;
  /** Used to learn the user's subject at login. Optional: without it the subject is unknown. */
  userinfoEndpoint?: string;
  clientId: string;
  /** Omit for a public upstream client. Falls back to the `CODEMODE_OAUTH_UPSTREAM_CLIENT_SECRET` env var. */
  clientSecret?: string;
  /** Scopes requested from the upstream. Default `openid` when discovering, none otherwise. */
  scopes?: string[];
  /** How the proxy authenticates to the upstream token endpoint. Default `client_secret_post`. */
  tokenEndpointAuthMethod?: 'client_secret_post' | 'client_secret_basic' | 'none';
  /** Send PKCE (S256) to the upstream too. Default true. */
  pkce?: boolean;
  /** Extra query parameters for the upstream authorize URL (e.g. `{ prompt: 'consent', access_type: 'offline' }`). */
  extraAuthorizeParams?: Record<string, string>;
}

/** GitHub (or GitHub Enterprise) OAuth App / GitHub App. */
export interface GitHubUpstreamConfig {
  type: 'github';
  clientId: string;
  /** Falls back to the `CODEMODE_OAUTH_UPSTREAM_CLIENT_SECRET` env var. */
  clientSecret?: string;
  /** OAuth App scopes, e.g. `['read:user']`. GitHub Apps ignore them. */
  scopes?: string[];
  /** Default `https://github.com`; set for GitHub Enterprise. */
  baseUrl?: string;
  /** Default `https://api.github.com` (or `${baseUrl}/api/v3` when baseUrl is set). */
  apiBaseUrl?: string;
}

export type UpstreamConfig = OidcUpstreamConfig | GitHubUpstreamConfig;

/** Tokens as the upstream issued them, with absolute expiry times (ms since epoch). */
export interface UpstreamTokens {
  accessToken: string;
  tokenType: string;
  refreshToken?: string;
  /** Undefined when the upstream said nothing about expiry (e.g. classic GitHub OAuth App tokens). */
  expiresAt?: number;
  refreshExpiresAt?: number;
  scope?: string;
  idToken?: string;
}

export interface UpstreamIdentity {
  subject?: string;
  claims: Record<string, unknown>;
}

/** The upstream rejected the refresh token for good (`invalid_grant`): the user has to log in again. */
export class UpstreamGrantRevokedError extends CodemodeError {
  override readonly name = 'UpstreamGrantRevokedError';
  constructor(message: string) {
    super('AUTH_FAILED', message);
  }
}

interface ResolvedEndpoints {
  authorization: string;
  token: string;
  userinfo?: string;
}

const UPSTREAM_TIMEOUT_MS = 10_000;

function secretFrom(config: { clientSecret?: string }): string | undefined {
  return config.clientSecret ?? process.env.CODEMODE_OAUTH_UPSTREAM_CLIENT_SECRET;
}

/** Speaks OAuth to the upstream IdP. One per proxy; endpoint discovery is cached. */
export class UpstreamClient {
  readonly #config: UpstreamConfig;
  #endpoints: Promise<ResolvedEndpoints> | undefined;

  constructor(config: UpstreamConfig) {
    if (typeof config.clientId !== 'string' || config.clientId === '') {
      throw new CodemodeError('INVALID_CONFIG', 'The upstream IdP config needs a clientId (the OAuth app registered at the IdP)');
    }
    if (config.type === 'oidc' && config.issuer === undefined && (config.authorizationEndpoint === undefined || config.tokenEndpoint === undefined)) {
      throw new CodemodeError('INVALID_CONFIG', 'An oidc upstream needs either `issuer` (for discovery) or both `authorizationEndpoint` and `tokenEndpoint`');
    }
    if (config.type !== 'oidc' && config.type !== 'github') {
      throw new CodemodeError('INVALID_CONFIG', `Unknown upstream type ${JSON.stringify((config as { type?: unknown }).type)}; use "oidc" or "github"`);
    }
    this.#config = config;
  }

  get usesPkce(): boolean {
    return this.#config.type === 'oidc' ? this.#config.pkce !== false : true;
  }

  async #resolve(): Promise<ResolvedEndpoints> {
    const config = this.#config;
    if (config.type === 'github') {
      const base = (config.baseUrl ?? 'https://github.com').replace(/\/$/, '');
      const api = (config.apiBaseUrl ?? (config.baseUrl === undefined ? 'https://api.github.com' : `${base}/api/v3`)).replace(/\/$/, '');
      return { authorization: `${base}/login/oauth/authorize`, token: `${base}/login/oauth/access_token`, userinfo: `${api}/user` };
    }
    if (config.authorizationEndpoint !== undefined && config.tokenEndpoint !== undefined) {
      return { authorization: config.authorizationEndpoint, token: config.tokenEndpoint, userinfo: config.userinfoEndpoint };
    }
    const url = `${config.issuer!.replace(/\/$/, '')}/.well-known/openid-configuration`;
    let doc: Record<string, unknown>;
    try {
      const res = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      doc = (await res.json()) as Record<string, unknown>;
    } catch (err) {
      throw new CodemodeError('AUTH_FAILED', `OIDC discovery failed at ${url}: ${describeError(err)}. Check upstream.issuer or give the endpoints explicitly.`, {
        cause: err,
      });
    }
    const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
    const authorization = config.authorizationEndpoint ?? str(doc.authorization_endpoint);
    const token = config.tokenEndpoint ?? str(doc.token_endpoint);
    if (authorization === undefined || token === undefined) {
      throw new CodemodeError('AUTH_FAILED', `OIDC discovery document at ${url} lacks authorization_endpoint or token_endpoint`);
    }
    return { authorization, token, userinfo: config.userinfoEndpoint ?? str(doc.userinfo_endpoint) };
  }

  #endpointsOnce(): Promise<ResolvedEndpoints> {
    const pending = this.#resolve();
    // A failed discovery is retried on the next login rather than cached forever.
    pending.catch(() => {
      if (this.#endpoints === pending) this.#endpoints = undefined;
    });
    this.#endpoints = pending;
    return pending;
  }

  endpoints(): Promise<ResolvedEndpoints> {
    return this.#endpoints ?? this.#endpointsOnce();
  }

  #scopes(): string[] {
    const config = this.#config;
    if (config.scopes !== undefined) return config.scopes;
    return config.type === 'oidc' && config.issuer !== undefined ? ['openid'] : [];
  }

  /** The URL to send the user's browser to. */
  async authorizeUrl(params: { redirectUri: string; state: string; codeChallenge?: string }): Promise<string> {
    const { authorization } = await this.endpoints();
    const url = new URL(authorization);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', this.#config.clientId);
    url.searchParams.set('redirect_uri', params.redirectUri);
    url.searchParams.set('state', params.state);
    const scopes = this.#scopes();
    if (scopes.length > 0) url.searchParams.set('scope', scopes.join(' '));
    if (params.codeChallenge !== undefined) {
      url.searchParams.set('code_challenge', params.codeChallenge);
      url.searchParams.set('code_challenge_method', 'S256');
    }
    if (this.#config.type === 'oidc') {
      for (const [k, v] of Object.entries(this.#config.extraAuthorizeParams ?? {})) url.searchParams.set(k, v);
    }
    return url.href;
  }

  async exchangeCode(params: { code: string; redirectUri: string; codeVerifier?: string }): Promise<UpstreamTokens> {
    const body = new URLSearchParams({ grant_type: 'authorization_code', code: params.code, redirect_uri: params.redirectUri });
    if (params.codeVerifier !== undefined) body.set('code_verifier', params.codeVerifier);
    return this.#tokenRequest(body, 'code exchange');
  }

  /** Throws {@link UpstreamGrantRevokedError} when the upstream rejects the refresh token for good. */
  async refresh(refreshToken: string): Promise<UpstreamTokens> {
    return this.#tokenRequest(new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }), 'refresh');
  }

  async #tokenRequest(body: URLSearchParams, what: string): Promise<UpstreamTokens> {
    const { token } = await this.endpoints();
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    const secret = secretFrom(this.#config);
    const method = this.#config.type === 'oidc' ? (this.#config.tokenEndpointAuthMethod ?? 'client_secret_post') : 'client_secret_post';
    if (method === 'client_secret_basic' && secret !== undefined) {
      const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${enc(this.#config.clientId)}:${enc(secret)}`).toString('base64')}`;
    } else {
      body.set('client_id', this.#config.clientId);
      if (method === 'client_secret_post' && secret !== undefined) body.set('client_secret', secret);
    }
    let res: Response;
    try {
      res = await fetch(token, { method: 'POST', headers, body, signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS) });
    } catch (err) {
      throw new CodemodeError('UPSTREAM_UNAVAILABLE', `Upstream IdP token endpoint unreachable during ${what}: ${describeError(err)}`, { cause: err });
    }
    const text = await res.text();
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // GitHub answers form-encoded unless asked for JSON; accept both.
      json = Object.fromEntries(new URLSearchParams(text));
    }
    // GitHub reports errors with HTTP 200 and an `error` field.
    if (!res.ok || typeof json.error === 'string') {
      const code = typeof json.error === 'string' ? json.error : `HTTP ${res.status}`;
      const detail = typeof json.error_description === 'string' ? `: ${json.error_description}` : '';
      if (code === 'invalid_grant' || code === 'bad_refresh_token' || code === 'bad_verification_code') {
        throw new UpstreamGrantRevokedError(`Upstream IdP rejected the ${what} (${code}${detail})`);
      }
      const errCode = res.status >= 500 || res.status === 429 ? 'UPSTREAM_UNAVAILABLE' : 'AUTH_FAILED';
      throw new CodemodeError(errCode, `Upstream IdP ${what} failed (${code}${detail})`);
    }
    const accessToken = json.access_token;
    if (typeof accessToken !== 'string' || accessToken === '') {
      throw new CodemodeError('AUTH_FAILED', `Upstream IdP ${what} answered without an access_token`);
    }
    const now = Date.now();
    const seconds = (v: unknown): number | undefined => {
      const n = typeof v === 'string' ? Number(v) : v;
      return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : undefined;
    };
    const expiresIn = seconds(json.expires_in);
    const refreshExpiresIn = seconds(json.refresh_token_expires_in);
    const refreshToken = typeof json.refresh_token === 'string' && json.refresh_token !== '' ? json.refresh_token : undefined;
    return {
      accessToken,
      tokenType: typeof json.token_type === 'string' ? json.token_type : 'Bearer',
      ...(refreshToken !== undefined && { refreshToken }),
      ...(expiresIn !== undefined && { expiresAt: now + expiresIn * 1000 }),
      ...(refreshExpiresIn !== undefined && { refreshExpiresAt: now + refreshExpiresIn * 1000 }),
      ...(typeof json.scope === 'string' && { scope: json.scope }),
      ...(typeof json.id_token === 'string' && { idToken: json.id_token }),
    };
  }

  /** Whether the IdP still accepts `accessToken` (userinfo answers 2xx), refuses it (401/403), or can't tell. */
  async checkToken(accessToken: string): Promise<'valid' | 'invalid' | 'unknown'> {
    let userinfo: string | undefined;
    try {
      ({ userinfo } = await this.endpoints());
    } catch {
      return 'unknown';
    }
    if (userinfo === undefined) return 'unknown';
    try {
      const res = await fetch(userinfo, {
        headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json', 'user-agent': 'codemode-oauth-proxy' },
        signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
      });
      await res.body?.cancel();
      if (res.ok) return 'valid';
      return res.status === 401 || res.status === 403 ? 'invalid' : 'unknown';
    } catch {
      return 'unknown';
    }
  }

  /** Who logged in, from the userinfo endpoint (GitHub: `/user`, whose numeric `id` becomes the subject). */
  async identity(accessToken: string, idToken?: string): Promise<UpstreamIdentity> {
    const { userinfo } = await this.endpoints();
    if (userinfo === undefined) {
      // OIDC Core §3.1.3.7: an ID token received directly from the token endpoint over TLS may be trusted
      // without checking its signature, so its `sub` can name the user when there is no userinfo endpoint.
      if (idToken === undefined) return { claims: {} };
      try {
        const claims = decodeJwt(idToken) as Record<string, unknown>;
        return { ...(typeof claims.sub === 'string' && { subject: claims.sub }), claims };
      } catch {
        return { claims: {} };
      }
    }
    let res: Response;
    try {
      res = await fetch(userinfo, {
        headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json', 'user-agent': 'codemode-oauth-proxy' },
        signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
      });
    } catch (err) {
      throw new CodemodeError('UPSTREAM_UNAVAILABLE', `Upstream userinfo endpoint unreachable: ${describeError(err)}`, { cause: err });
    }
    if (!res.ok) throw new CodemodeError('AUTH_FAILED', `Upstream userinfo endpoint answered HTTP ${res.status}`);
    const claims = (await res.json()) as Record<string, unknown>;
    const raw = this.#config.type === 'github' ? claims.id : claims.sub;
    const subject = typeof raw === 'string' || typeof raw === 'number' ? String(raw) : undefined;
    return { ...(subject !== undefined && { subject }), claims };
  }
}
