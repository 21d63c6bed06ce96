/**
 * The `mcpServers` config file: the same JSON shape MCP hosts (Claude Desktop, Cursor, ...) use, plus an
 * optional `codemode` section for execution limits.
 *
 * ```json
 * {
 *   "mcpServers": {
 *     "inventory": { "command": "node", "args": ["inventory-server.mjs"] },
 *     "remote": { "url": "https://mcp.example.com/mcp", "headers": { "Authorization": "Bearer ${TOKEN}" } }
 *   },
 *   "codemode": { "timeoutSeconds": 30, "memoryMb": 100, "maxToolCalls": 50 }
 * }
 * ```
 *
 * The file is read as UTF-8 (a byte-order mark is tolerated), `${VAR}` and `${VAR:-default}` are expanded
 * in every string value (after JSON parsing, so a value can never break the JSON), and everything is
 * validated with zod. Every error names the file, the JSON path and what to do.
 *
 * @module
 */

import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { CodemodeError, describeError } from '../errors.js';
import { isStdioConfig, parseUpstreamConfig } from '../proxy/config.js';
import type { UpstreamConfig } from '../proxy/config.js';

/** Execution limits and server settings from the config file's `codemode` section (all optional). */
export interface CodemodeSettings {
  /** Wall-clock limit of one execute in seconds; `null` turns it off. Default 30. */
  timeoutSeconds?: number | null;
  /** Heap limit of one execute in MB; `null` turns it off. Default 100. */
  memoryMb?: number | null;
  /** Largest return value of one execute, in KiB of JSON; `null` turns the cap off. Default 256 under `codemode serve`. */
  maxResultKb?: number | null;
  /** Tool calls per execute (every attempt counts); `null` turns the cap off. Default 50. */
  maxToolCalls?: number | null;
  /** Executes running at once (server). Default: twice the number of CPUs, at least 4. */
  maxConcurrentExecutions?: number;
  /** Executes waiting for a slot before callers get a "busy, retry" result (server). Default 4 x concurrency. */
  maxQueuedExecutions?: number;
}

/** A loaded, validated config file. */
export interface ServersConfig {
  /** Absolute path of the file it came from (undefined for in-memory text without a name). */
  file: string | undefined;
  /** Upstream servers by name, in file order. Entries with `"disabled": true` are left out. */
  servers: Record<string, UpstreamConfig>;
  settings: CodemodeSettings;
  /**
   * The raw `oauth` section, if any: the OAuth proxy of `serve --http` validates it itself
   * (`parseOAuthConfig`, which also expands `${VAR}`).
   */
  oauth?: unknown;
}

export interface ParseServersConfigOptions {
  /** The file name used in error messages and to resolve relative `cwd`. */
  file?: string;
  /** Variables for `${VAR}` expansion. Default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

const positiveInt = z.number().int('must be a whole number').positive('must be at least 1');
const limitSchema = (what: string) =>
  z
    .number()
    .positive(`${what} must be a positive number, or null to turn the limit off`)
    .nullable();

const SettingsSchema = z.strictObject({
  timeoutSeconds: limitSchema('timeoutSeconds').optional(),
  memoryMb: limitSchema('memoryMb').optional(),
  maxResultKb: limitSchema('maxResultKb').optional(),
  maxToolCalls: positiveInt.nullable().optional(),
  maxConcurrentExecutions: positiveInt.optional(),
  maxQueuedExecutions: z.number().int('must be a whole number').min(0, 'must be 0 or more').optional(),
});

/** Server names become sandbox namespaces and tool-name prefixes, so keep them to a safe alphabet. */
const SERVER_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(String(key))) out += out === '' ? String(key) : `.${String(key)}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out === '' ? '(top level)' : out;
}

function fail(file: string | undefined, message: string, cause?: unknown): never {
  throw new CodemodeError('INVALID_CONFIG', `${file ?? 'config'}: ${message}`, cause === undefined ? undefined : { cause });
}

const VAR_PATTERN = /\$\{([^}]*)\}/g;

/**
 * Expands `${VAR}` and `${VAR:-default}` in every string of a parsed JSON value. A variable that is not set
 * (and has no default) is an error naming the JSON path, because silently sending an empty token or path
 * upstream fails much later and much more confusingly.
 *
 * @example
 * ```ts
 * expandVariables({ token: '${TOKEN}', mode: '${MODE:-fast}' }, { TOKEN: 's3cret' }); // { token: 's3cret', mode: 'fast' }
 * ```
 */
export function expandVariables(value: unknown, env: Readonly<Record<string, string | undefined>>, file?: string, path: PropertyKey[] = []): unknown {
  if (typeof value === 'string') {
    return value.replace(VAR_PATTERN, (_match, body: string) => {
      const sep = body.indexOf(':-');
      const name = sep === -1 ? body : body.slice(0, sep);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        fail(file, `${formatPath(path)}: "\${${body}}" is not a valid variable reference. Use \${NAME} or \${NAME:-default} with letters, digits and _.`);
      }
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      if (sep !== -1) return body.slice(sep + 2);
      if (found === '') return '';
      return fail(file, `${formatPath(path)}: environment variable ${name} is not set. Set it, or write \${${name}:-default} to give a default.`);
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandVariables(v, env, file, [...path, i]));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = expandVariables(v, env, file, [...path, k]);
    return out;
  }
  return value;
}

/**
 * Parses and validates config text.
 *
 * @throws CodemodeError `INVALID_CONFIG` with a message naming the file, the JSON path and the fix.
 *
 * @example
 * ```ts
 * const cfg = parseServersConfig('{"mcpServers": {"everything": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"]}}}');
 * Object.keys(cfg.servers); // ['everything']
 * ```
 */
export function parseServersConfig(text: string, options: ParseServersConfigOptions = {}): ServersConfig {
  const file = options.file;
  const source = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (source.trim() === '') fail(file, 'the file is empty. Write a JSON object such as {"mcpServers": {}}.');
  let raw: unknown;
  try {
    raw = JSON.parse(source);
  } catch (err) {
    fail(file, `not valid JSON (${describeError(err)}). Check for trailing commas, comments or unquoted keys.`, err);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    fail(file, 'expected a JSON object with an "mcpServers" object, e.g. {"mcpServers": {"name": {"command": "..."}}}.');
  }
  const top = raw as Record<string, unknown>;
  const unknownKeys = Object.keys(top).filter((k) => !['mcpServers', 'codemode', 'oauth', '$schema'].includes(k));
  if (unknownKeys.length > 0) {
    fail(file, `unknown top-level key${unknownKeys.length > 1 ? 's' : ''} ${unknownKeys.map((k) => JSON.stringify(k)).join(', ')}. Allowed: "mcpServers", "codemode", "oauth".`);
  }
  const env = options.env ?? process.env;
  const serversRaw = top.mcpServers ?? {};
  if (typeof serversRaw !== 'object' || serversRaw === null || Array.isArray(serversRaw)) {
    fail(file, 'mcpServers: expected an object mapping server names to {"command": ...} or {"url": ...} entries.');
  }
  const baseDir = file !== undefined ? dirname(resolve(file)) : process.cwd();
  const servers: Record<string, UpstreamConfig> = {};
  for (const [name, entry] of Object.entries(serversRaw as Record<string, unknown>)) {
    const where = formatPath(['mcpServers', name]);
    if (!SERVER_NAME.test(name)) {
      fail(file, `${where}: the server name must be 1-64 letters, digits, "_", "-" or "." (it becomes a namespace in code). Rename it.`);
    }
    let value = expandVariables(entry, env, file, ['mcpServers', name]);
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && 'disabled' in value) {
      const { disabled, ...rest } = value as Record<string, unknown>;
      if (typeof disabled !== 'boolean') fail(file, `${where}.disabled: must be true or false.`);
      if (disabled) continue;
      value = rest;
    }
    let parsed: UpstreamConfig;
    try {
      parsed = parseUpstreamConfig(value, where);
    } catch (err) {
      fail(file, `${describeError(err)}. Fix that entry: stdio servers take "command", "args", "env", "cwd"; remote ones take "url", "headers", "transport".`, err);
    }
    // Relative paths in a config file mean "next to this file", so one checkout works from any directory.
    if (isStdioConfig(parsed)) {
      parsed = { ...parsed, cwd: parsed.cwd === undefined ? baseDir : isAbsolute(parsed.cwd) ? parsed.cwd : resolve(baseDir, parsed.cwd) };
    }
    servers[name] = parsed;
  }
  let settings: CodemodeSettings = {};
  if (top.codemode !== undefined) {
    const result = SettingsSchema.safeParse(expandVariables(top.codemode, env, file, ['codemode']));
    if (!result.success) {
      const problems = result.error.issues.map((issue) => {
        if (issue.code === 'unrecognized_keys') {
          return `${issue.keys.map((k) => formatPath(['codemode', ...issue.path, k])).join(', ')}: unknown key (allowed: ${Object.keys(SettingsSchema.shape).join(', ')})`;
        }
        return `${formatPath(['codemode', ...issue.path])}: ${issue.message}`;
      });
      fail(file, problems.join('; '), result.error);
    }
    settings = result.data;
  }
  return { file: file === undefined ? undefined : resolve(file), servers, settings, ...(top.oauth !== undefined ? { oauth: top.oauth } : {}) };
}

/**
 * Reads and validates a config file.
 *
 * @throws CodemodeError `INVALID_CONFIG` when the file is missing, unreadable or invalid.
 *
 * @example
 * ```ts
 * const cfg = await loadServersConfig('examples/mcp.json');
 * ```
 */
export async function loadServersConfig(file: string, options: Omit<ParseServersConfigOptions, 'file'> = {}): Promise<ServersConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') fail(file, 'no such file. Check the path given to --config.', err);
    if (code === 'EISDIR') fail(file, 'is a directory; --config needs a JSON file.', err);
    fail(file, `cannot read it (${describeError(err)}).`, err);
  }
  return parseServersConfig(text, { ...options, file });
}
