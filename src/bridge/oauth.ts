/**
 * The OAuth flow of codemode-remote, built on the MCP SDK's client auth (RFC 9728 protected-resource
 * discovery, RFC 8414 / OIDC metadata, dynamic client registration with `application_type`, Client ID
 * Metadata Documents, PKCE S256, refresh, credentials bound to their issuer), plus the RFC 9207 `iss`
 * check of the authorization response, which the v1 flow does not make. This file
 * supplies what the SDK leaves to the application: an `OAuthClientProvider` over the token store, a
 * loopback callback server, the browser (or headless hand-off), and cross-process leases so
 * concurrent bridges run one login and one refresh between them.
 *
 * Loaded lazily by `auth.ts`: a bridge that never sees a 401 never loads it.
 *
 * @module
 */

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { OAuthClientProvider, OAuthDiscoveryState, OAuthServerInfo } from '@modelcontextprotocol/sdk/client/auth.js';
import { auth as sdkAuth, extractWWWAuthenticateParams, refreshAuthorization } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import type { FlowContext } from './auth.js';
import { UpstreamError } from './upstream-error.js';
import type { StoredState, StoredTokens } from './token-store.js';

const log = createLogger('remote');
const CALLBACK_PATH = '/oauth/callback';
const REFRESH_LEASE_TIMEOUT_MS = 30_000;

function tokensPatch(tokens: OAuthTokens): Partial<StoredState> {
  return {
    tokens: tokens as StoredTokens,
    expiresAt: typeof tokens.expires_in === 'number' ? Date.now() + tokens.expires_in * 1000 : undefined,
  };
}

interface CallbackServer {
  port: number;
  redirectUrl: string;
  /** The callback's `code`, and its `iss` (RFC 9207) when the authorization server sent one. */
  waitForCode(state: string, timeoutMs: number, signal: AbortSignal): Promise<{ code: string; iss: string | undefined }>;
  close(): void;
}

/** The loopback server the browser is redirected to. Binds 127.0.0.1 (or ::1 for an IPv6 loopback host) only. */
async function startCallbackServer(port: number, host: string): Promise<CallbackServer> {
  let deliver: ((params: URLSearchParams) => void) | undefined;
  const early: URLSearchParams[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== CALLBACK_PATH) {
      res.writeHead(404).end();
      return;
    }
    const failed = url.searchParams.has('error');
    res.writeHead(failed ? 400 : 200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(
      failed
        ? '<!doctype html><title>codemode-remote</title><p>Authorization failed. You can close this window; details are in the terminal.</p>'
        : '<!doctype html><title>codemode-remote</title><p>Authorized. You can close this window and return to your MCP client.</p>',
    );
    if (deliver !== undefined) deliver(url.searchParams);
    else early.push(url.searchParams);
  });
  // Loopback only. An IPv6 loopback callback host must be served on ::1, since the browser goes there.
  const bindAddress = host === '[::1]' ? '::1' : '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, bindAddress, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    port: actual,
    redirectUrl: `http://${host}:${actual}${CALLBACK_PATH}`,
    waitForCode(state, timeoutMs, signal) {
      return new Promise<{ code: string; iss: string | undefined }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new CodemodeError('AUTH_FAILED', `no authorization arrived within ${Math.round(timeoutMs / 1000)} s (raise --auth-timeout, or open the printed URL)`)), timeoutMs);
        const onAbort = (): void => reject(new CodemodeError('ABORTED', 'authorization cancelled: the bridge is shutting down'));
        signal.addEventListener('abort', onAbort, { once: true });
        deliver = (params) => {
          if (params.get('state') !== state) {
            log.warn('ignored an OAuth callback with a foreign state parameter');
            return;
          }
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          const error = params.get('error');
          const code = params.get('code');
          if (error !== null) reject(new CodemodeError('AUTH_FAILED', `the authorization server denied access: ${error}${params.get('error_description') ? ` (${params.get('error_description')})` : ''}`));
          else if (code === null) reject(new CodemodeError('AUTH_FAILED', 'the OAuth callback carried no code'));
          else resolve({ code, iss: params.get('iss') ?? undefined });
        };
        for (const p of early.splice(0)) deliver(p);
      });
    },
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** Shows the authorization URL: always on stderr, plus a browser or the named command. */
function presentAuthorizationUrl(url: URL, ctx: FlowContext): void {
  process.stderr.write(`codemode-remote: authorization required. Open this URL to sign in:\n${url.href}\n`);
  const { openCommand, headless } = ctx.auth;
  if (openCommand !== undefined) {
    // The URL is one quoted argument. POSIX sh: single quotes, with inner ones closed, escaped and
    // reopened. cmd.exe: double quotes (a URL never contains one), which also protect its & from cmd.
    const quoted = process.platform === 'win32' ? `"${url.href}"` : `'${url.href.replace(/'/g, `'\\''`)}'`;
    const child = spawn(`${openCommand} ${quoted}`, { shell: true, stdio: ['ignore', 'ignore', 'inherit'], detached: false });
    child.on('error', (err) => log.warn('--open-command failed', { error: describeError(err) }));
    child.unref();
    return;
  }
  if (headless) return;
  const [cmd, args] =
    // Windows: not `cmd /c start`, whose parser splits the URL at every &.
    process.platform === 'darwin' ? ['open', [url.href]] : process.platform === 'win32' ? ['rundll32', ['url.dll,FileProtocolHandler', url.href]] : ['xdg-open', [url.href]];
  try {
    const child = spawn(cmd, args as string[], { stdio: 'ignore', detached: true });
    child.on('error', () => log.info('could not open a browser; open the URL above yourself'));
    child.unref();
  } catch {
    log.info('could not open a browser; open the URL above yourself');
  }
}

class BridgeOAuthProvider implements OAuthClientProvider {
  private verifier: string | undefined;
  readonly oauthState = randomBytes(16).toString('base64url');
  authorizationUrl: URL | undefined;
  readonly clientMetadataUrl: string | undefined;

  constructor(
    private readonly ctx: FlowContext,
    private current: StoredState,
    private readonly redirect: string | undefined,
  ) {
    this.clientMetadataUrl = ctx.auth.clientMetadataUrl;
  }

  get stored(): StoredState {
    return this.current;
  }

  private save(patch: Partial<StoredState>): void {
    this.current = this.ctx.store.update(patch);
  }

  get redirectUrl(): string | undefined {
    return this.redirect;
  }

  get clientMetadata(): OAuthClientMetadata {
    // application_type: a native application (RFC 8252), run on the user's machine and redirected to
    // loopback. The v1 SDK's type does not list the field; its registration sends the metadata as given.
    const metadata: OAuthClientMetadata & { application_type: 'native' } = {
      client_name: 'codemode-remote',
      application_type: 'native',
      redirect_uris: this.redirect === undefined ? [] : [this.redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...(this.ctx.auth.scope !== undefined ? { scope: this.ctx.auth.scope } : {}),
    };
    return metadata;
  }

  state(): string {
    return this.oauthState;
  }

  clientInformation(): OAuthClientInformationMixed | undefined {
    const info = this.current.clientInformation ?? this.ctx.auth.staticClientInfo;
    if (info === undefined) return undefined;
    // A dynamically registered client is bound to its redirect URI; a new callback port needs a new registration.
    const uris = (info as { redirect_uris?: unknown }).redirect_uris;
    if (this.ctx.auth.staticClientInfo === undefined && Array.isArray(uris) && this.redirect !== undefined && !uris.includes(this.redirect)) return undefined;
    return info as OAuthClientInformationMixed;
  }

  saveClientInformation(info: OAuthClientInformationMixed): void {
    this.save({ clientInformation: info as Record<string, unknown> });
  }

  tokens(): OAuthTokens | undefined {
    return this.current.tokens as OAuthTokens | undefined;
  }

  saveTokens(tokens: OAuthTokens): void {
    this.save(tokensPatch(tokens));
  }

  redirectToAuthorization(url: URL): void {
    this.authorizationUrl = url;
  }

  saveCodeVerifier(verifier: string): void {
    // Kept in memory only: it belongs to this process's login, so another bridge cannot clobber it.
    this.verifier = verifier;
  }

  codeVerifier(): string {
    if (this.verifier === undefined) throw new CodemodeError('AUTH_FAILED', 'no PKCE verifier: the authorization was not started by this process');
    return this.verifier;
  }

  invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): void {
    if (scope === 'verifier') {
      this.verifier = undefined;
      return;
    }
    const patch: Partial<StoredState> = {};
    if (scope === 'all' || scope === 'tokens') Object.assign(patch, { tokens: undefined, expiresAt: undefined });
    if (scope === 'all' || scope === 'client') patch.clientInformation = undefined;
    if (scope === 'all' || scope === 'discovery') patch.discoveryState = undefined;
    this.save(patch);
  }

  saveDiscoveryState(state: OAuthDiscoveryState): void {
    // RFC 8414 section 3.3: the metadata must name the issuer whose well-known URL it was fetched from. The
    // SDK saves discovery before it uses any endpoint, so refusing here keeps a mix-up's endpoints unused.
    // Only for an issuer the resource named (RFC 9728): the 2025-03-26 fallback without resource metadata
    // uses the server's origin, which is not an issuer identifier, and servers of that era name another.
    const issuer = (state.authorizationServerMetadata as { issuer?: unknown } | undefined)?.issuer;
    if (state.resourceMetadata !== undefined && typeof issuer === 'string' && !sameIssuer(issuer, state.authorizationServerUrl)) {
      throw new CodemodeError(
        'AUTH_FAILED',
        `the authorization server metadata fetched for ${state.authorizationServerUrl} names another issuer (${issuer}); RFC 8414 requires them to be identical, so its endpoints are not used. Check the server's OAuth configuration.`,
      );
    }
    this.save({ discoveryState: state as unknown as Record<string, unknown> });
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    return this.current.discoveryState as OAuthDiscoveryState | undefined;
  }

  async validateResourceURL(serverUrl: string | URL, resource?: string): Promise<URL | undefined> {
    return resolveResource(this.ctx, serverUrl, resource);
  }
}

/**
 * The resource to request: --resource if given, else the advertised one after checking it names
 * this server (RFC 8707 / RFC 9728: the server itself or a prefix of it).
 */
function resolveResource(ctx: FlowContext, serverUrl: string | URL, resource: string | undefined): URL | undefined {
  if (ctx.auth.resource !== undefined) return new URL(ctx.auth.resource);
  if (resource === undefined) return undefined;
  const server = new URL(serverUrl);
  const advertised = new URL(resource);
  const prefix = advertised.pathname.endsWith('/') ? advertised.pathname : `${advertised.pathname}/`;
  if (advertised.origin !== server.origin || !(server.pathname === advertised.pathname || server.pathname.startsWith(prefix) || advertised.pathname === '/')) {
    throw new CodemodeError('AUTH_FAILED', `the protected-resource metadata names ${resource}, which does not match ${server.href}; refusing to send tokens for another resource (use --resource to override)`);
  }
  return advertised;
}

/**
 * Runs after a 401 (or 403 insufficient_scope): refresh if possible, otherwise a full browser
 * authorization. Holds the cross-process login lease; if another bridge finished a login while we
 * waited for the lease, its tokens are used and no second login starts.
 */
export async function authorize(ctx: FlowContext, current: StoredState, res: Response, signal: AbortSignal): Promise<StoredState> {
  const { resourceMetadataUrl, scope, error } = extractWWWAuthenticateParams(res);
  await res.body?.cancel().catch(() => undefined);
  if (ctx.auth.grant === 'client_credentials') return clientCredentials(ctx, resourceMetadataUrl, scope);
  if (ctx.auth.grant === 'cross_app_access') return crossApp(ctx, current, resourceMetadataUrl, scope, signal);
  const sent = current.tokens?.access_token;
  const release = await ctx.store.lease('login', { timeoutMs: ctx.auth.authTimeoutMs + 10_000, signal });
  let callback: CallbackServer | undefined;
  try {
    let fresh = ctx.store.read();
    if (fresh.tokens?.access_token !== undefined && fresh.tokens.access_token !== sent && error !== 'insufficient_scope') {
      log.info('using tokens another codemode-remote process obtained');
      return fresh;
    }
    if (error === 'insufficient_scope') {
      // Step-up: the current grant is too narrow, and a refresh would return the same scopes.
      fresh = ctx.store.update({ tokens: undefined, expiresAt: undefined });
    }
    // A login discovers again rather than trusting what an earlier one found: the resource may name another
    // authorization server now. (Client credentials stay bound to the issuer they came from; the SDK
    // registers anew with a different one.)
    if (fresh.discoveryState !== undefined) fresh = ctx.store.update({ discoveryState: undefined });
    callback = await openCallback(ctx, fresh);
    if (callback.port !== fresh.callbackPort) fresh = ctx.store.update({ callbackPort: callback.port });
    const provider = new BridgeOAuthProvider(ctx, fresh, callback.redirectUrl);
    const options = { serverUrl: ctx.config.url, resourceMetadataUrl, scope: scope ?? ctx.auth.scope };
    let result = await withAuthErrors(() => sdkAuth(provider, options));
    if (result === 'REDIRECT') {
      const url = provider.authorizationUrl;
      if (url === undefined) throw new CodemodeError('AUTH_FAILED', 'the OAuth flow asked for a redirect but produced no URL');
      presentAuthorizationUrl(url, ctx);
      const { code, iss } = await callback.waitForCode(provider.oauthState, ctx.auth.authTimeoutMs, signal);
      await checkResponseIssuer(iss, provider.discoveryState()?.authorizationServerMetadata);
      result = await withAuthErrors(() => sdkAuth(provider, { ...options, authorizationCode: code }));
    }
    if (result !== 'AUTHORIZED') throw new CodemodeError('AUTH_FAILED', 'authorization did not complete');
    log.info('authorized');
    return provider.stored;
  } finally {
    callback?.close();
    release();
  }
}

/**
 * Machine-to-machine: the SDK's client-credentials providers (client_secret or private_key_jwt)
 * fetch a token without a browser; the result is stored like any other token.
 */
async function clientCredentials(ctx: FlowContext, resourceMetadataUrl: URL | undefined, scope: string | undefined): Promise<StoredState> {
  const info = ctx.auth.staticClientInfo ?? {};
  const { ClientCredentialsProvider, PrivateKeyJwtProvider } = await import('@modelcontextprotocol/sdk/client/auth-extensions.js');
  const clientId = String(info.client_id);
  const provider: OAuthClientProvider =
    typeof info.private_key_pem === 'string'
      ? new PrivateKeyJwtProvider({ clientId, privateKey: info.private_key_pem, algorithm: typeof info.signing_algorithm === 'string' ? info.signing_algorithm : 'RS256', clientName: 'codemode-remote', scope: ctx.auth.scope })
      : new ClientCredentialsProvider({ clientId, clientSecret: String(info.client_secret), clientName: 'codemode-remote', scope: ctx.auth.scope });
  const result = await withAuthErrors(() => sdkAuth(provider, { serverUrl: ctx.config.url, resourceMetadataUrl, scope: scope ?? ctx.auth.scope }));
  const tokens = await provider.tokens();
  if (result !== 'AUTHORIZED' || tokens === undefined) throw new CodemodeError('AUTH_FAILED', 'the client_credentials grant returned no token');
  log.info('authorized (client_credentials)');
  return ctx.store.update(tokensPatch(tokens));
}

/**
 * SEP-990 cross-app access (see `cross-app.ts`). Holds the login lease so concurrent bridges run one
 * exchange between them; a token another process obtained meanwhile is used instead.
 */
async function crossApp(ctx: FlowContext, current: StoredState, resourceMetadataUrl: URL | undefined, scope: string | undefined, signal: AbortSignal): Promise<StoredState> {
  const release = await ctx.store.lease('login', { timeoutMs: ctx.auth.authTimeoutMs + 10_000, signal });
  try {
    const fresh = ctx.store.read();
    const sent = current.tokens?.access_token;
    if (fresh.tokens?.access_token !== undefined && fresh.tokens.access_token !== sent && (fresh.expiresAt === undefined || fresh.expiresAt - ctx.auth.refreshThresholdMs > Date.now())) {
      log.info('using tokens another codemode-remote process obtained');
      return fresh;
    }
    const crossAppConfig = ctx.auth.crossApp;
    const info = ctx.auth.staticClientInfo;
    if (crossAppConfig === undefined || typeof info?.client_id !== 'string' || typeof info.client_secret !== 'string') {
      throw new CodemodeError('AUTH_FAILED', 'cross_app_access needs --idp-token-url, --id-token and --static-oauth-client-info with client_id and client_secret');
    }
    const { crossAppAccess } = await import('./cross-app.js');
    // A 401 rediscovers (the server may have moved its AS); renewal reuses what was found before.
    const stored = resourceMetadataUrl === undefined ? (fresh.discoveryState as OAuthServerInfo | undefined) : undefined;
    const { tokens, discovery } = await crossAppAccess({
      serverUrl: ctx.config.url,
      resourceMetadataUrl,
      resolveResource: (serverUrl, advertised) => resolveResource(ctx, serverUrl, advertised),
      crossApp: crossAppConfig,
      clientId: info.client_id,
      clientSecret: info.client_secret,
      scope: scope ?? ctx.auth.scope,
      signal,
      discovery: stored?.authorizationServerUrl === undefined ? undefined : stored,
    });
    log.info('authorized (cross_app_access)');
    return ctx.store.update({ ...tokensPatch(tokens), discoveryState: discovery as unknown as Record<string, unknown> });
  } finally {
    release();
  }
}

/**
 * Before expiry, for grants without a refresh token (cross_app_access): run the grant again. The
 * resource-metadata URL and scope are rediscovered, as after a 401.
 */
export async function renew(ctx: FlowContext, current: StoredState, signal: AbortSignal): Promise<StoredState> {
  if (ctx.auth.grant !== 'cross_app_access') return refresh(ctx, current, signal);
  return crossApp(ctx, current, undefined, undefined, signal);
}

async function openCallback(ctx: FlowContext, state: StoredState): Promise<CallbackServer> {
  const explicit = ctx.auth.callbackPort;
  const remembered = state.callbackPort;
  try {
    return await startCallbackServer(explicit ?? remembered ?? 0, ctx.auth.callbackHost);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    if (explicit !== undefined) {
      throw new UpstreamError('AUTH_FAILED', `the OAuth callback port ${explicit} is in use by another program; pass a different callback port or omit it`, { cause: err });
    }
    // The remembered port is taken by someone else: a free port plus a new client registration.
    log.info(`callback port ${remembered} is in use; using a free port`);
    return startCallbackServer(0, ctx.auth.callbackHost);
  }
}

/**
 * RFC 9207: an authorization response that names another issuer than the server the flow discovered (the
 * mix-up attack), or none when that server advertises that it always does, is refused before its code is
 * redeemed. The check is the v2 SDK's (`validateAuthorizationResponseIssuer`), loaded only here: the v1
 * flow the bridge runs (which passes the 2025-03-26 metadata back-compat scenario the v2 flow refuses)
 * does not make it.
 */
async function checkResponseIssuer(iss: string | undefined, metadata: { issuer?: unknown; authorization_response_iss_parameter_supported?: unknown } | undefined): Promise<void> {
  const expectedIssuer = typeof metadata?.issuer === 'string' ? metadata.issuer : undefined;
  if (iss === undefined && metadata?.authorization_response_iss_parameter_supported !== true) return;
  const { validateAuthorizationResponseIssuer } = await import('@modelcontextprotocol/client');
  await withAuthErrors(async () =>
    validateAuthorizationResponseIssuer({ iss, expectedIssuer, issParameterSupported: metadata?.authorization_response_iss_parameter_supported === true }),
  );
}

async function withAuthErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CodemodeError) throw err;
    throw new UpstreamError(
      'AUTH_FAILED',
      `the server requires authorization and the OAuth flow failed: ${describeError(err)}. If this server takes an API key or token instead, pass it with --header "Authorization: Bearer ..."`,
      { cause: err },
    );
  }
}

/**
 * Proactive refresh before expiry. Holds the cross-process refresh lease and re-reads the store
 * under it: if another bridge already rotated the refresh token, its result is used instead of
 * spending the (now invalid) old refresh token.
 */
export async function refresh(ctx: FlowContext, current: StoredState, signal: AbortSignal): Promise<StoredState> {
  const release = await ctx.store.lease('refresh', { timeoutMs: REFRESH_LEASE_TIMEOUT_MS, signal });
  try {
    const fresh = ctx.store.read();
    if (fresh.tokens?.access_token !== undefined && fresh.tokens.access_token !== current.tokens?.access_token) return fresh;
    const refreshToken = fresh.tokens?.refresh_token;
    const discovery = fresh.discoveryState as OAuthDiscoveryState | undefined;
    const client = (fresh.clientInformation ?? ctx.auth.staticClientInfo) as OAuthClientInformationMixed | undefined;
    if (refreshToken === undefined || discovery?.authorizationServerUrl === undefined || client === undefined) {
      throw new CodemodeError('AUTH_FAILED', 'cannot refresh: no refresh token, client or authorization-server metadata stored');
    }
    const resource = ctx.auth.resource ?? discovery.resourceMetadata?.resource;
    const tokens = await refreshAuthorization(discovery.authorizationServerUrl, {
      metadata: discovery.authorizationServerMetadata,
      clientInformation: client,
      refreshToken,
      resource: resource === undefined ? undefined : new URL(resource),
    });
    log.debug('tokens refreshed');
    return ctx.store.update(tokensPatch(tokens));
  } finally {
    release();
  }
}

/** Issuer identifiers compared as RFC 8414 asks (identical), allowing only a trailing slash on either. */
function sameIssuer(a: string, b: string): boolean {
  return a.replace(/\/$/, '') === b.replace(/\/$/, '');
}
