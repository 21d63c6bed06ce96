/**
 * The `oauth` config section of `codemode serve --http` (or a standalone `--oauth-config` file):
 * validated strictly, with `${VAR}` expansion so secrets stay in the environment.
 *
 * @module
 */
import { z } from 'zod';
import { CodemodeError } from '../../errors.js';
import { createOAuthProxy } from './proxy.js';
import type { OAuthProxy } from './proxy.js';
import { RedisOAuthStorage } from './redis-storage.js';
import { FileOAuthStorage, MemoryOAuthStorage } from './storage.js';
import type { OAuthStorage } from './storage.js';

const url = z.string().url();
const seconds = z.number().positive();

const OidcSchema = z.strictObject({
  type: z.literal('oidc'),
  issuer: url.optional(),
  authorizationEndpoint: url.optional(),
  tokenEndpoint: url.optional(),
  userinfoEndpoint: url.optional(),
  clientId: z.string().min(1),
  clientSecret: z.string().min(1).optional(),
  scopes: z.array(z.string()).optional(),
  tokenEndpointAuthMethod: z.enum(['client_secret_post', 'client_secret_basic', 'none']).optional(),
  pkce: z.boolean().optional(),
  extraAuthorizeParams: z.record(z.string(), z.string()).optional(),
});

const GitHubSchema = z.strictObject({
  type: z.literal('github'),
  clientId: z.string().min(1),
  clientSecret: z.string().min(1).optional(),
  scopes: z.array(z.string()).optional(),
  baseUrl: url.optional(),
  apiBaseUrl: url.optional(),
});

const StorageSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('memory') }),
  z.strictObject({ type: z.literal('file'), dir: z.string().min(1) }),
  z.strictObject({ type: z.literal('redis'), url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL'), keyPrefix: z.string().optional() }),
]);

/** Zod schema of the `oauth` config section. */
export const OAuthConfigSchema = z.strictObject({
  /** Public base URL clients see (the load balancer's). Default: the server's own URL. */
  issuerUrl: url.optional(),
  /** Public URL of the MCP endpoint. Default: issuer origin + the server's MCP path. */
  resourceUrl: url.optional(),
  upstream: z.discriminatedUnion('type', [OidcSchema, GitHubSchema]),
  signingKey: z.string().min(1).optional(),
  previousSigningKeys: z.array(z.string().min(1)).optional(),
  storage: StorageSchema.optional(),
  accessTokenExpirySeconds: seconds.optional(),
  refreshTokenExpirySeconds: seconds.optional(),
  tokenExpiryThresholdSeconds: z.number().min(0).optional(),
  upstreamValidationIntervalSeconds: seconds.optional(),
  scopesSupported: z.array(z.string().min(1)).optional(),
  callbackPath: z.string().startsWith('/').optional(),
  resourceName: z.string().optional(),
  consent: z.boolean().optional(),
  exposeUpstreamToken: z.boolean().optional(),
  /**
   * `false` turns off the SDK's per-IP rate limits on /register, /authorize and /token. Behind a load
   * balancer every client shares its IP, so either make the app trust X-Forwarded-For or turn these off
   * and limit at the balancer.
   */
  rateLimit: z.literal(false).optional(),
  /**
   * Client ID Metadata Documents (a URL as client_id, no registration). On by default; `false` turns them
   * off. The object form loosens the fetch's guards, for tests and local development only.
   */
  clientIdMetadataDocuments: z
    .union([
      z.boolean(),
      z.strictObject({
        allowPrivateNetworks: z.boolean().optional(),
        allowHttp: z.boolean().optional(),
        fetchTimeoutMs: z.number().int().positive().max(60_000, 'must be at most 60000 (one minute)').optional(),
      }),
    ], { error: 'must be true, false, or an object with allowPrivateNetworks, allowHttp and fetchTimeoutMs' })
    .optional(),
});

export type OAuthConfig = z.infer<typeof OAuthConfigSchema>;

/** Replaces `${VAR}` in every string; a missing variable is an error (a silently empty secret is worse). */
function expandEnv(value: unknown, path: string, env: NodeJS.ProcessEnv): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) throw new CodemodeError('INVALID_CONFIG', `${path}: environment variable ${name} is not set`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, `${path}[${i}]`, env));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, `${path}.${k}`, env)]));
  }
  return value;
}

/**
 * Validates an `oauth` section (after `${VAR}` expansion) and returns it typed, or throws
 * `CodemodeError('INVALID_CONFIG')` naming each offending field.
 *
 * @example
 * ```ts
 * const cfg = parseOAuthConfig(JSON.parse(text).oauth);
 * ```
 */
export function parseOAuthConfig(raw: unknown, where = 'oauth', env: NodeJS.ProcessEnv = process.env): OAuthConfig {
  const parsed = OAuthConfigSchema.safeParse(expandEnv(raw, where, env));
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `${[where, ...issue.path.map(String)].join('.')}: ${issue.message}`);
  throw new CodemodeError('INVALID_CONFIG', `Invalid ${where} config: ${problems.join('; ')}`, { cause: parsed.error });
}

/**
 * Builds the proxy from a parsed config, connecting its storage (Redis, file, memory). The returned
 * proxy's `close()` also closes that storage.
 *
 * @example
 * ```ts
 * const oauth = await createOAuthProxyFromConfig(parseOAuthConfig(section), { serverUrl: 'http://127.0.0.1:8080', mcpPath: '/mcp' });
 * app.use(oauth.router);
 * app.post('/mcp', oauth.requireAuth, handler);
 * ```
 */
export async function createOAuthProxyFromConfig(config: OAuthConfig, server: { serverUrl: string; mcpPath: string }): Promise<OAuthProxy> {
  const issuerUrl = config.issuerUrl ?? server.serverUrl;
  const resourceUrl = config.resourceUrl ?? new URL(server.mcpPath, new URL(issuerUrl).origin).href;
  let storage: OAuthStorage;
  const spec = config.storage ?? { type: 'memory' as const };
  if (spec.type === 'redis') storage = await RedisOAuthStorage.connect({ url: spec.url, ...(spec.keyPrefix !== undefined && { keyPrefix: spec.keyPrefix }) });
  else if (spec.type === 'file') storage = new FileOAuthStorage(spec.dir);
  else storage = new MemoryOAuthStorage();
  let proxy: OAuthProxy;
  try {
    const { storage: _spec, issuerUrl: _i, resourceUrl: _r, ...rest } = config;
    proxy = createOAuthProxy({ ...rest, issuerUrl, resourceUrl, storage });
  } catch (err) {
    await storage.close();
    throw err;
  }
  return {
    ...proxy,
    verifyAccessToken: (token) => proxy.verifyAccessToken(token),
    async close() {
      try {
        await proxy.close();
      } finally {
        await storage.close();
      }
    },
  };
}
