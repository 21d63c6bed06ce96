/**
 * The bridge's configuration: what `codemode-remote`'s command line turns into. Types and defaults
 * only, so the CLI can import it without loading any bridge machinery.
 *
 * @module
 */

import type { LogLevel } from '../log.js';

/** How long the host's `initialize` may wait for the upstream before it gets an error. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
/** How long a browser login may take before the bridge gives up. */
export const DEFAULT_AUTH_TIMEOUT_MS = 300_000;
/** Tokens are refreshed this many seconds before they expire. */
export const DEFAULT_REFRESH_THRESHOLD_S = 60;

export interface BridgeOAuthConfig {
  /** Port of the local callback server; undefined picks the remembered one or a free one. */
  callbackPort: number | undefined;
  /** Host name in the redirect URI (IPv6 already bracketed). The server binds 127.0.0.1 regardless. */
  callbackHost: string;
  authTimeoutMs: number;
  /** RFC 8707 resource; also part of the token-storage key. */
  resource: string | undefined;
  /**
   * `authorization_code` (a user logs in through a browser), `client_credentials` (machine to
   * machine, with the static client's secret or private key; no browser) or `cross_app_access`
   * (SEP-990 enterprise-managed authorization: an IdP ID token is exchanged for an ID-JAG, which the
   * MCP authorization server takes as a JWT bearer grant; no browser).
   */
  grant: 'authorization_code' | 'client_credentials' | 'cross_app_access';
  /** Inputs of the `cross_app_access` grant; set exactly when `grant` is `cross_app_access`. */
  crossApp?: CrossAppAccessConfig | undefined;
  /** A pre-registered client (`client_id`, optional `client_secret`, ...): skips dynamic registration. */
  staticClientInfo: Record<string, unknown> | undefined;
  /** An HTTPS URL of a client ID metadata document, used as client_id where the server supports it. */
  clientMetadataUrl: string | undefined;
  /** Scopes to ask for when neither WWW-Authenticate nor the resource metadata names any. */
  scope: string | undefined;
  /** A command that receives the authorization URL as its last argument instead of a browser. */
  openCommand: string | undefined;
  /** Print the URL only; open nothing. */
  headless: boolean;
  refreshThresholdMs: number;
  /** Token storage directory; undefined means ~/.config/codemode/remote. */
  configDir: string | undefined;
}

/** Where the enterprise IdP and the user's identity come from for the `cross_app_access` grant. */
export interface CrossAppAccessConfig {
  /** The IdP's token endpoint (RFC 8693 token exchange). */
  idpTokenUrl: string;
  /**
   * The user's OIDC ID token from the IdP: inline, or a file re-read at every exchange so an outside
   * process can keep it fresh.
   */
  idToken: { value: string } | { file: string };
  /** Client credentials at the IdP, if it requires client authentication for the exchange. */
  idpClientId: string | undefined;
  idpClientSecret: string | undefined;
}

export interface BridgeConfig {
  url: URL;
  transport: 'auto' | 'http' | 'sse';
  /** Extra headers sent on every upstream request, already `${VAR}`-expanded. */
  headers: Record<string, string>;
  connectTimeoutMs: number;
  /** Globs (`*`, `?`) of tool names hidden from the host. */
  ignoreTools: string[];
  /** OAuth settings; undefined when OAuth is off (`--auth none`, or an Authorization header). */
  auth: BridgeOAuthConfig | undefined;
  logLevel: LogLevel | undefined;
}
