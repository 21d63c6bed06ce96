/**
 * The OAuth proxy for `codemode serve --http`: an authorization server facing MCP clients that
 * delegates login to an upstream IdP and keeps sessions alive across idle time.
 *
 * @module
 */
export { createOAuthProxy, DEFAULT_ACCESS_TOKEN_EXPIRY_SECONDS, DEFAULT_REFRESH_TOKEN_EXPIRY_SECONDS } from './proxy.js';
export type { OAuthProxy, OAuthProxyOptions } from './proxy.js';
export { MemoryOAuthStorage, FileOAuthStorage } from './storage.js';
export type { OAuthStorage, ReleaseLock } from './storage.js';
export { RedisOAuthStorage } from './redis-storage.js';
export type { RedisOAuthStorageOptions } from './redis-storage.js';
export { UpstreamGrantRevokedError } from './upstream.js';
export type { UpstreamConfig, OidcUpstreamConfig, GitHubUpstreamConfig } from './upstream.js';
export { SIGNING_KEY_ENV } from './keys.js';
export { ClientMetadataDocumentError } from './client-metadata.js';
export type { ClientIdMetadataDocumentOptions, ClientMetadataFailure } from './client-metadata.js';
export { OAuthConfigSchema, parseOAuthConfig, createOAuthProxyFromConfig } from './config.js';
export type { OAuthConfig } from './config.js';
