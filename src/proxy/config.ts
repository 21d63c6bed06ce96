/**
 * Upstream MCP server configuration: what to start (stdio) or where to connect (Streamable HTTP / SSE).
 *
 * The shape follows the `mcpServers` entries that MCP hosts already use (`command`/`args`/`env` or
 * `url`/`headers`), so one config file works for codemode and for other hosts. Validation is strict:
 * an unknown key is reported by name, because a typo such as `comand` would otherwise be ignored and the
 * failure would surface much later as a confusing connection error.
 *
 * @module
 */

import { z } from 'zod';
import { CodemodeError } from '../errors.js';

/** `transport` values for HTTP upstreams. `auto` tries Streamable HTTP and falls back to SSE on 404/405. */
export const HTTP_TRANSPORTS = ['auto', 'http', 'sse'] as const;
export type HttpTransportKind = (typeof HTTP_TRANSPORTS)[number];

const envName = z.string().regex(/^[^=\0]+$/, 'environment variable names must not contain "=" or NUL');

/** Zod schema of a stdio upstream: a command codemode starts and talks to over stdin/stdout. */
export const StdioUpstreamConfigSchema = z.strictObject({
  /** Optional discriminator, accepted because many host config files carry it. */
  type: z.literal('stdio').optional(),
  command: z.string().trim().min(1, 'command must be a non-empty string'),
  args: z.array(z.string()).optional(),
  /** Added to a minimal inherited environment (PATH, HOME, ...), see `connectUpstream`'s `inheritEnv`. */
  env: z.record(envName, z.string()).optional(),
  cwd: z.string().min(1).optional(),
});

/** Zod schema of an HTTP upstream: a Streamable HTTP endpoint (usually `.../mcp`) or a legacy SSE endpoint. */
export const HttpUpstreamConfigSchema = z.strictObject({
  /** Optional discriminator accepted for compatibility with host config files; `transport` is the real switch. */
  type: z.enum(['http', 'streamable-http', 'streamableHttp', 'sse']).optional(),
  url: z
    .string()
    .url('url must be an absolute URL such as http://127.0.0.1:3000/mcp')
    .refine((u) => !URL.canParse(u) || /^https?:$/i.test(new URL(u).protocol), 'url must use http: or https:'),
  /** Sent on every upstream request. Downstream headers are never added to these implicitly. */
  headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'not a valid HTTP header name'), z.string()).optional(),
  transport: z.enum(HTTP_TRANSPORTS).optional(),
});

/** Zod schema of any upstream config: stdio when it has `command`, HTTP when it has `url`. */
export const UpstreamConfigSchema = z.union([StdioUpstreamConfigSchema, HttpUpstreamConfigSchema]);

export type StdioUpstreamConfig = z.infer<typeof StdioUpstreamConfigSchema>;
export type HttpUpstreamConfig = z.infer<typeof HttpUpstreamConfigSchema>;
export type UpstreamConfig = StdioUpstreamConfig | HttpUpstreamConfig;

/** True when the config describes a stdio upstream. */
export function isStdioConfig(config: UpstreamConfig): config is StdioUpstreamConfig {
  return 'command' in config;
}

/** The effective HTTP transport choice, resolving `type: 'sse'` and the `auto` default. */
export function httpTransportOf(config: HttpUpstreamConfig): HttpTransportKind {
  if (config.transport !== undefined) return config.transport;
  if (config.type === 'sse') return 'sse';
  if (config.type === 'http' || config.type === 'streamable-http' || config.type === 'streamableHttp') return 'http';
  return 'auto';
}

function formatPath(base: string, path: readonly PropertyKey[]): string {
  let out = base;
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? '(config)' : out;
}

/**
 * Validates an upstream config and returns it typed, or throws `CodemodeError('INVALID_CONFIG')` whose
 * message names every offending field (prefixed with `where`, e.g. `mcpServers.github`).
 *
 * @example
 * ```ts
 * const cfg = parseUpstreamConfig({ url: 'http://127.0.0.1:3000/mcp' }, 'mcpServers.remote');
 * const fails = () => parseUpstreamConfig({ comand: 'npx' }, 'mcpServers.x');
 * // CodemodeError INVALID_CONFIG: mcpServers.x: expected either `command` (stdio) or `url` (HTTP) ...
 * ```
 */
export function parseUpstreamConfig(value: unknown, where = ''): UpstreamConfig {
  const label = where === '' ? 'upstream config' : where;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CodemodeError('INVALID_CONFIG', `${label}: expected an object with \`command\` (stdio) or \`url\` (HTTP)`);
  }
  const record = value as Record<string, unknown>;
  const hasCommand = 'command' in record;
  const hasUrl = 'url' in record;
  if (hasCommand && hasUrl) {
    throw new CodemodeError('INVALID_CONFIG', `${label}: has both \`command\` and \`url\`; a server is either stdio (command) or HTTP (url)`);
  }
  if (!hasCommand && !hasUrl) {
    const keys = Object.keys(record);
    throw new CodemodeError(
      'INVALID_CONFIG',
      `${label}: expected either \`command\` (stdio) or \`url\` (HTTP)` + (keys.length > 0 ? `; found keys: ${keys.join(', ')}` : ''),
    );
  }
  const schema = hasCommand ? StdioUpstreamConfigSchema : HttpUpstreamConfigSchema;
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => formatPath(where, [...issue.path, k]));
      return `${keys.join(', ')}: unknown field${keys.length > 1 ? 's' : ''} (allowed: ${Object.keys(schema.shape).join(', ')})`;
    }
    return `${formatPath(where, issue.path)}: ${issue.message}`;
  });
  throw new CodemodeError('INVALID_CONFIG', `Invalid ${label}: ${problems.join('; ')}`, { cause: parsed.error });
}

/** A short human label for logs and error messages: the URL, or the command line. */
export function describeUpstream(config: UpstreamConfig): string {
  if (isStdioConfig(config)) return [config.command, ...(config.args ?? [])].join(' ');
  return config.url;
}
