/**
 * The `cross_app_access` grant (SEP-990, "Enterprise-Managed Authorization"): no browser, no
 * dynamic registration. The user's OIDC ID token from the enterprise IdP is exchanged at the IdP
 * for an Identity Assertion JWT Authorization Grant (ID-JAG, RFC 8693 token exchange), and the
 * ID-JAG is then presented to the MCP server's authorization server as an RFC 7523 JWT bearer
 * grant, with the pre-registered client authenticating by client_secret_basic.
 *
 * The SDK (1.32) has no provider for this grant; what it does have is used: protected-resource and
 * authorization-server discovery (`discoverOAuthServerInfo`) and the token request itself
 * (`fetchToken` with a provider whose `prepareTokenRequest` yields the jwt-bearer parameters).
 * There is no refresh token; `auth.ts` re-runs the whole exchange when the access token expires.
 *
 * Loaded only from `oauth.ts`, itself loaded only after a 401 or near expiry.
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import type { OAuthClientProvider, OAuthServerInfo } from '@modelcontextprotocol/sdk/client/auth.js';
import { discoverOAuthServerInfo, fetchToken } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { CodemodeError, describeError } from '../errors.js';
import type { CrossAppAccessConfig } from './config.js';

export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const GRANT_JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
export const TOKEN_TYPE_ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag';

/** Which step of the cross-app access grant failed. */
export type CrossAppAccessStep = 'id_token' | 'discovery' | 'idp_exchange' | 'as_grant';

const STEP_TEXT: Record<CrossAppAccessStep, string> = {
  id_token: 'reading the ID token',
  discovery: "discovering the MCP server's authorization server",
  idp_exchange: 'the token exchange at the IdP (ID token -> ID-JAG)',
  as_grant: "the JWT bearer grant at the MCP server's authorization server (ID-JAG -> access token)",
};

/**
 * A failed cross-app access grant: `step` names where, `oauthError` / `oauthErrorDescription`
 * carry the server's `error` / `error_description` when it sent them.
 *
 * @example
 * ```ts
 * try { await crossAppAccess(input); }
 * catch (err) { if (err instanceof CrossAppAccessError && err.step === 'idp_exchange') reLogin(); }
 * ```
 */
export class CrossAppAccessError extends CodemodeError {
  override readonly name = 'CrossAppAccessError';
  readonly step: CrossAppAccessStep;
  readonly oauthError: string | undefined;
  readonly oauthErrorDescription: string | undefined;
  /** The HTTP status of the failed answer, when there was one. */
  readonly status: number | undefined;

  constructor(step: CrossAppAccessStep, detail: string, options: { cause?: unknown; oauthError?: string; oauthErrorDescription?: string; status?: number } = {}) {
    super('AUTH_FAILED', `cross-app access failed at ${STEP_TEXT[step]}: ${detail}`, { cause: options.cause });
    this.status = options.status;
    this.step = step;
    this.oauthError = options.oauthError;
    this.oauthErrorDescription = options.oauthErrorDescription;
  }
}

export interface CrossAppAccessInput {
  /** The MCP server URL (the protected resource). */
  serverUrl: URL;
  /** From the 401's WWW-Authenticate, when it named one. */
  resourceMetadataUrl: URL | undefined;
  /** Checks the advertised resource and returns the one to request (the bridge's RFC 8707 policy). */
  resolveResource: (serverUrl: URL, advertised: string | undefined) => URL | undefined;
  crossApp: CrossAppAccessConfig;
  /** The client pre-registered at the MCP authorization server. */
  clientId: string;
  clientSecret: string;
  scope: string | undefined;
  signal?: AbortSignal | undefined;
  /**
   * What an earlier run discovered. Renewal before expiry has no 401 to name the resource metadata,
   * and probing the server's own well-known paths may find nothing, so the earlier result is reused.
   */
  discovery?: OAuthServerInfo | undefined;
}

/** The result: the tokens, and the discovery to reuse on renewal. */
export interface CrossAppAccessResult {
  tokens: OAuthTokens;
  discovery: OAuthServerInfo;
}

/** RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and base64-encoded. */
function basicAuth(id: string, secret: string): string {
  const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

function readIdToken(source: CrossAppAccessConfig['idToken']): string {
  if ('value' in source) return source.value;
  let text: string;
  try {
    text = readFileSync(source.file, 'utf8').trim();
  } catch (err) {
    throw new CrossAppAccessError('id_token', `cannot read ${source.file}: ${describeError(err)}`, { cause: err });
  }
  if (text === '') throw new CrossAppAccessError('id_token', `${source.file} is empty; it must hold the IdP's ID token`);
  return text;
}

/** RFC 8693 at the IdP: the ID token for an ID-JAG whose audience is the MCP authorization server. */
async function exchangeAtIdp(input: CrossAppAccessInput, idToken: string, audience: string, resource: string): Promise<string> {
  const { crossApp } = input;
  const body = new URLSearchParams({
    grant_type: GRANT_TOKEN_EXCHANGE,
    requested_token_type: TOKEN_TYPE_ID_JAG,
    subject_token: idToken,
    subject_token_type: TOKEN_TYPE_ID_TOKEN,
    audience,
    resource,
  });
  if (input.scope !== undefined) body.set('scope', input.scope);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (crossApp.idpClientId !== undefined) {
    if (crossApp.idpClientSecret !== undefined) headers.authorization = basicAuth(crossApp.idpClientId, crossApp.idpClientSecret);
    else body.set('client_id', crossApp.idpClientId);
  }
  let res: Response;
  try {
    res = await fetch(crossApp.idpTokenUrl, { method: 'POST', headers, body, signal: input.signal ?? null });
  } catch (err) {
    throw new CrossAppAccessError('idp_exchange', `cannot reach ${crossApp.idpTokenUrl}: ${describeError(err)}`, { cause: err });
  }
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const error = typeof json?.error === 'string' ? json.error : undefined;
    const description = typeof json?.error_description === 'string' ? json.error_description : undefined;
    const what = error === undefined ? `HTTP ${res.status}${text === '' ? '' : `: ${text.slice(0, 200)}`}` : `${error}${description === undefined ? '' : ` (${description})`}`;
    throw new CrossAppAccessError('idp_exchange', `${crossApp.idpTokenUrl} answered ${what}. Check --id-token (it may have expired) and the IdP client`, {
      oauthError: error,
      oauthErrorDescription: description,
      status: res.status,
    });
  }
  const jag = json?.access_token;
  if (typeof jag !== 'string' || jag === '') throw new CrossAppAccessError('idp_exchange', `${crossApp.idpTokenUrl} answered 200 without an access_token (the ID-JAG)`, { status: res.status });
  if (json?.issued_token_type !== undefined && json.issued_token_type !== TOKEN_TYPE_ID_JAG) {
    throw new CrossAppAccessError('idp_exchange', `the IdP issued ${String(json.issued_token_type)}, not an ID-JAG (${TOKEN_TYPE_ID_JAG})`);
  }
  return jag;
}

/** Just enough of a provider for the SDK's `fetchToken` to send the jwt-bearer grant. */
class JwtBearerProvider implements OAuthClientProvider {
  constructor(
    private readonly client: { client_id: string; client_secret: string },
    private readonly assertion: string,
    private readonly scope: string | undefined,
  ) {}

  get redirectUrl(): undefined {
    return undefined;
  }

  get clientMetadata(): OAuthClientMetadata {
    return { client_name: 'codemode-remote', redirect_uris: [], grant_types: [GRANT_JWT_BEARER], token_endpoint_auth_method: 'client_secret_basic', ...(this.scope !== undefined ? { scope: this.scope } : {}) };
  }

  clientInformation(): OAuthClientInformationMixed {
    return this.client;
  }

  tokens(): undefined {
    return undefined;
  }

  saveTokens(): void {}

  redirectToAuthorization(): void {
    throw new CrossAppAccessError('as_grant', 'the authorization server asked for a browser redirect, which this grant never does');
  }

  saveCodeVerifier(): void {}

  codeVerifier(): string {
    throw new CrossAppAccessError('as_grant', 'no PKCE verifier in a JWT bearer grant');
  }

  prepareTokenRequest(scope?: string): URLSearchParams {
    const params = new URLSearchParams({ grant_type: GRANT_JWT_BEARER, assertion: this.assertion });
    if (scope !== undefined && scope !== '') params.set('scope', scope);
    return params;
  }

  /**
   * SEP-990 requires client_secret_basic; the SDK's own Basic header does not form-encode the parts.
   * An arrow property: the SDK calls it detached from the provider.
   */
  readonly addClientAuthentication = (headers: Headers): void => {
    headers.set('Authorization', basicAuth(this.client.client_id, this.client.client_secret));
  };
}

/**
 * Runs the whole grant: discovery (unless given), IdP token exchange, JWT bearer grant. Returns
 * the access token (no refresh token is expected; the caller re-runs this on expiry) and the
 * discovery result to pass back in then.
 *
 * @example
 * ```ts
 * const tokens = await crossAppAccess({ serverUrl, resourceMetadataUrl: undefined, resolveResource: (_u, r) => (r ? new URL(r) : undefined),
 *   crossApp: { idpTokenUrl: 'https://idp.example.com/token', idToken: { file: '/run/id_token' }, idpClientId: undefined, idpClientSecret: undefined },
 *   clientId: 'mcp-client', clientSecret: 's3cret', scope: undefined });
 * ```
 */
export async function crossAppAccess(input: CrossAppAccessInput): Promise<CrossAppAccessResult> {
  const idToken = readIdToken(input.crossApp.idToken);
  let info = input.discovery;
  if (info === undefined) {
    try {
      info = await discoverOAuthServerInfo(input.serverUrl, { resourceMetadataUrl: input.resourceMetadataUrl });
    } catch (err) {
      throw new CrossAppAccessError('discovery', describeError(err), { cause: err });
    }
  }
  let resource: URL;
  try {
    resource = input.resolveResource(input.serverUrl, info.resourceMetadata?.resource) ?? input.serverUrl;
  } catch (err) {
    throw new CrossAppAccessError('discovery', describeError(err), { cause: err });
  }
  // The ID-JAG's audience is the authorization server that will accept it: its issuer identifier.
  const audience = info.authorizationServerMetadata?.issuer ?? String(info.authorizationServerUrl);
  const jag = await exchangeAtIdp(input, idToken, audience, resource.href);
  const provider = new JwtBearerProvider({ client_id: input.clientId, client_secret: input.clientSecret }, jag, input.scope);
  try {
    const tokens = await fetchToken(provider, info.authorizationServerUrl, { metadata: info.authorizationServerMetadata, resource });
    return { tokens, discovery: info };
  } catch (err) {
    if (err instanceof CrossAppAccessError) throw err;
    const oauthError = (err as { errorCode?: unknown }).errorCode;
    const description = err instanceof Error ? err.message : undefined;
    const what = typeof oauthError === 'string' ? `${oauthError}${description ? ` (${description})` : ''}` : describeError(err);
    throw new CrossAppAccessError('as_grant', `${what}. Check --static-oauth-client-info (client_id and client_secret registered at that server)`, {
      cause: err,
      oauthError: typeof oauthError === 'string' ? oauthError : undefined,
      oauthErrorDescription: description,
    });
  }
}
