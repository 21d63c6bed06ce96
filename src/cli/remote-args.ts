/**
 * Command-line parsing for `codemode-remote`. Pure: takes argv and an environment, returns either a
 * validated bridge configuration or a usage error (exit code 2). No I/O except reading the files
 * named by `--header-file` and `--static-oauth-client-info @file`.
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { BridgeConfig, CrossAppAccessConfig } from '../bridge/config.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_AUTH_TIMEOUT_MS, DEFAULT_REFRESH_THRESHOLD_S } from '../bridge/config.js';
import { isLoopbackHost as isSharedLoopbackHost } from '../wire/http-guard.js';
import { CliUsageError } from './args.js';

export type ParsedRemoteArgs =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'run'; config: BridgeConfig };

export const REMOTE_HELP = `Usage: codemode-remote <url> [callback-port] [options]

Bridges a local stdio MCP client (an MCP host that can only launch commands) to a remote MCP
server over Streamable HTTP (or legacy SSE). stdout carries only JSON-RPC; logs go to stderr.
Flags may come before or after the URL.

Connection:
  --transport <auto|http|sse>     auto (default): Streamable HTTP, falling back to SSE once on 404/405
  --header "Name: Value"          extra request header (repeatable); \${VAR} is expanded from the
                                  environment, a missing variable is an error.
                                  "Authorization:\${TOKEN}" (no space) is the Windows-safe form
  --header-file <path>            read headers from a file, one "Name: Value" per line (# comments)
  --connect-timeout <seconds>     give up on initialize after this long (default ${DEFAULT_CONNECT_TIMEOUT_MS / 1000})
  --allow-http                    allow plain http:// to non-loopback hosts (loopback is always allowed)
  --ignore-tool <glob>            hide tools whose name matches (repeatable; * and ? wildcards)

OAuth (started on a 401 from the server):
  --auth <oauth|none>             oauth (default) or none. An Authorization header turns OAuth off
                                  unless --auth oauth is given explicitly
  [callback-port]                 port of the local OAuth callback server (default: remembered or free)
  --host <host>                   callback host name used in the redirect URI (default localhost;
                                  IPv6 literals are bracketed). The server always binds 127.0.0.1
  --auth-timeout <seconds>        how long to wait for the browser login (default ${DEFAULT_AUTH_TIMEOUT_MS / 1000})
  --resource <uri>                RFC 8707 resource to request; also isolates token storage
  --static-oauth-client-info <json|@file>
                                  pre-registered client: {"client_id": "...", "client_secret": "..."}
  --oauth-grant <authorization_code|client_credentials|cross_app_access>
                                  authorization_code (default): a user logs in in a browser.
                                  client_credentials: machine to machine, no browser; needs
                                  --static-oauth-client-info with client_secret, or with
                                  private_key_pem (+ signing_algorithm, default RS256) for
                                  private_key_jwt.
                                  cross_app_access (SEP-990, enterprise IdP): no browser; the ID
                                  token is exchanged at the IdP for an ID-JAG, which the server's
                                  authorization server takes as a JWT bearer grant. Needs
                                  --idp-token-url, --id-token and --static-oauth-client-info with
                                  client_id and client_secret (sent as client_secret_basic).
                                  Re-run automatically when the access token expires
  --idp-token-url <url>           cross_app_access: the IdP's token endpoint (RFC 8693 exchange)
  --id-token <token|@file>        cross_app_access: the user's OIDC ID token from the IdP; \${VAR}
                                  is expanded; @file is re-read at every exchange, so another
                                  process can keep it fresh
  --idp-client-id <id>            cross_app_access: client id at the IdP, if it wants one
  --idp-client-secret <secret>    cross_app_access: its secret (\${VAR} expanded); with it the
                                  IdP request uses client_secret_basic, without it client_id is
                                  sent in the body
  --client-metadata-url <https-url>
                                  client ID metadata document to use as client_id when the
                                  authorization server supports it (instead of registering)
  --scope <scopes>                scopes to request when the server advertises none
  --open-command <command>        run this command with the authorization URL as its last argument
                                  instead of opening a browser (headless hosts, CI)
  --headless                      never open a browser; only print the authorization URL to stderr
                                  (also CODEMODE_REMOTE_HEADLESS=1)
  --refresh-threshold <seconds>   refresh tokens this long before they expire (default ${DEFAULT_REFRESH_THRESHOLD_S})

Output:
  --debug                         verbose logs on stderr
  --silent                        no logs (mutually exclusive with --debug)
  -h, --help                      show this help
  -v, --version                   print the version

Environment:
  CODEMODE_CONFIG_DIR             token storage (default ~/.config/codemode/remote)
  HTTP_PROXY, HTTPS_PROXY, NO_PROXY
                                  route upstream requests through a proxy
  CODEMODE_REMOTE_HEADLESS=1      same as --headless

Exit codes: 0 clean shutdown (stdin closed, SIGINT, SIGTERM), 1 the upstream failed (the host's
initialize received a JSON-RPC error naming the cause first), 2 usage error.
`;

const OPTIONS = {
  transport: { type: 'string' },
  header: { type: 'string', multiple: true },
  'header-file': { type: 'string', multiple: true },
  'connect-timeout': { type: 'string' },
  'allow-http': { type: 'boolean' },
  'ignore-tool': { type: 'string', multiple: true },
  auth: { type: 'string' },
  host: { type: 'string' },
  'auth-timeout': { type: 'string' },
  resource: { type: 'string' },
  'static-oauth-client-info': { type: 'string' },
  scope: { type: 'string' },
  'client-metadata-url': { type: 'string' },
  'oauth-grant': { type: 'string' },
  'idp-token-url': { type: 'string' },
  'id-token': { type: 'string' },
  'idp-client-id': { type: 'string' },
  'idp-client-secret': { type: 'string' },
  'open-command': { type: 'string' },
  headless: { type: 'boolean' },
  'refresh-threshold': { type: 'string' },
  debug: { type: 'boolean' },
  silent: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

/**
 * True for hosts that never leave the machine: plain http to them is not a credential leak. The shared
 * loopback test (src/wire), plus `*.localhost` names, which resolvers keep on this machine (RFC 6761).
 */
export function isLoopbackHost(hostname: string): boolean {
  return isSharedLoopbackHost(hostname) || hostname.toLowerCase().replace(/\.$/, '').endsWith('.localhost');
}

/**
 * Expands `${VAR}` from `env`. A missing variable is an error rather than an empty string, because a
 * silently empty `Authorization: Bearer ` header fails far from its cause.
 */
export function expandVars(text: string, env: NodeJS.ProcessEnv, where: string): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
    const value = env[name];
    if (value === undefined) throw new CliUsageError(`${where}: environment variable ${name} is not set (referenced as \${${name}})`);
    return value;
  });
}

const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Parses one `Name: Value` header. The space after the colon is optional so `Authorization:${TOKEN}`
 * works where a host splits arguments on spaces (Windows).
 */
export function parseHeader(raw: string, env: NodeJS.ProcessEnv, where: string): [string, string] {
  const colon = raw.indexOf(':');
  if (colon <= 0) throw new CliUsageError(`${where}: expected "Name: Value", got ${JSON.stringify(raw)}`);
  const name = raw.slice(0, colon).trim();
  if (!TOKEN_RE.test(name)) throw new CliUsageError(`${where}: ${JSON.stringify(name)} is not a valid header name`);
  const value = expandVars(raw.slice(colon + 1).trim(), env, where);
  if (/[\r\n\0]/.test(value)) throw new CliUsageError(`${where}: the value of ${name} contains a line break or NUL`);
  return [name, value];
}

function parseSeconds(value: string | undefined, flag: string, fallbackMs: number, allowZero = false): number {
  if (value === undefined) return fallbackMs;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) {
    throw new CliUsageError(`--${flag}: expected a positive number of seconds, got ${JSON.stringify(value)}`);
  }
  return Math.round(n * 1000);
}

function parseStaticClient(value: string, env: NodeJS.ProcessEnv): Record<string, unknown> {
  let text = value;
  if (value.startsWith('@')) {
    try {
      text = readFileSync(value.slice(1), 'utf8');
    } catch (err) {
      throw new CliUsageError(`--static-oauth-client-info: cannot read ${value.slice(1)}: ${(err as Error).message}`);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(expandVars(text, env, '--static-oauth-client-info'));
  } catch (err) {
    if (err instanceof CliUsageError) throw err;
    throw new CliUsageError(`--static-oauth-client-info: not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || typeof (parsed as { client_id?: unknown }).client_id !== 'string') {
    throw new CliUsageError('--static-oauth-client-info: expected a JSON object with a string "client_id"');
  }
  return parsed as Record<string, unknown>;
}

function parseClientMetadataUrl(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CliUsageError(`--client-metadata-url: not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'https:' || url.pathname === '/') throw new CliUsageError('--client-metadata-url: must be an https:// URL with a path');
  return url.href;
}

const CROSS_APP_FLAGS = ['idp-token-url', 'id-token', 'idp-client-id', 'idp-client-secret'] as const;

/** The cross_app_access flags: all-or-nothing with the grant, checked here so mistakes exit 2. */
function parseCrossApp(values: Record<string, unknown>, wanted: boolean, env: NodeJS.ProcessEnv, allowHttp: boolean): CrossAppAccessConfig | undefined {
  if (!wanted) {
    const stray = CROSS_APP_FLAGS.find((f) => values[f] !== undefined);
    if (stray !== undefined) throw new CliUsageError(`--${stray} only applies to --oauth-grant cross_app_access`);
    return undefined;
  }
  const rawUrl = values['idp-token-url'] as string | undefined;
  const rawToken = values['id-token'] as string | undefined;
  if (rawUrl === undefined || rawToken === undefined) throw new CliUsageError('--oauth-grant cross_app_access needs --idp-token-url and --id-token');
  let url: URL;
  try {
    url = new URL(expandVars(rawUrl, env, '--idp-token-url'));
  } catch (err) {
    if (err instanceof CliUsageError) throw err;
    throw new CliUsageError(`--idp-token-url: not a URL: ${JSON.stringify(rawUrl)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new CliUsageError(`--idp-token-url: unsupported scheme ${url.protocol} (use https://)`);
  if (url.protocol === 'http:' && !allowHttp && !isLoopbackHost(url.hostname)) {
    throw new CliUsageError(`--idp-token-url: refusing plain http:// to ${url.hostname}: the ID token would travel unencrypted. Use https:// or pass --allow-http`);
  }
  let idToken: CrossAppAccessConfig['idToken'];
  if (rawToken.startsWith('@')) {
    const file = rawToken.slice(1);
    try {
      if (readFileSync(file, 'utf8').trim() === '') throw new CliUsageError(`--id-token: ${file} is empty`);
    } catch (err) {
      if (err instanceof CliUsageError) throw err;
      throw new CliUsageError(`--id-token: cannot read ${file}: ${(err as Error).message}`);
    }
    idToken = { file };
  } else {
    const value = expandVars(rawToken, env, '--id-token').trim();
    // A JWT is three base64url parts; anything else is a pasting mistake better caught now.
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value)) throw new CliUsageError('--id-token: expected a JWT (header.payload.signature), @file or ${VAR}');
    idToken = { value };
  }
  const idpClientId = values['idp-client-id'] as string | undefined;
  const rawSecret = values['idp-client-secret'] as string | undefined;
  if (idpClientId === '') throw new CliUsageError('--idp-client-id: empty');
  if (rawSecret !== undefined && idpClientId === undefined) throw new CliUsageError('--idp-client-secret needs --idp-client-id');
  return {
    idpTokenUrl: url.href,
    idToken,
    idpClientId,
    idpClientSecret: rawSecret === undefined ? undefined : expandVars(rawSecret, env, '--idp-client-secret'),
  };
}

/**
 * Parses `codemode-remote` arguments.
 *
 * @example
 * ```ts
 * const parsed = parseRemoteArgs(['https://example.com/mcp', '--header', 'X-Team: a'], process.env);
 * if (parsed.kind === 'run') console.error(parsed.config.url.href);
 * ```
 */
export function parseRemoteArgs(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedRemoteArgs {
  let values: Record<string, string | boolean | string[] | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true }));
  } catch (err) {
    // parseArgs's messages name the flag ("Unknown option '--x'"); keep them, drop its advice about "--".
    throw new CliUsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  if (values.help === true) return { kind: 'help' };
  if (values.version === true) return { kind: 'version' };

  if (positionals.length === 0) throw new CliUsageError('missing <url>: codemode-remote <url> [callback-port] [options]');
  if (positionals.length > 2) throw new CliUsageError(`too many arguments: ${positionals.slice(2).map((p) => JSON.stringify(p)).join(' ')}`);
  const [rawUrl, rawPort] = positionals as [string, string | undefined];

  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new CliUsageError(`not a URL: ${JSON.stringify(rawUrl)} (expected e.g. https://example.com/mcp)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new CliUsageError(`unsupported URL scheme ${url.protocol} (use https:// or http://)`);
  const allowHttp = values['allow-http'] === true;
  if (url.protocol === 'http:' && !allowHttp && !isLoopbackHost(url.hostname)) {
    throw new CliUsageError(`refusing plain http:// to ${url.hostname}: tokens and headers would travel unencrypted. Use https:// or pass --allow-http`);
  }

  let callbackPort: number | undefined;
  if (rawPort !== undefined) {
    const n = Number(rawPort);
    if (!/^\d+$/.test(rawPort) || n < 1 || n > 65535) throw new CliUsageError(`callback-port: expected a port number 1-65535, got ${JSON.stringify(rawPort)}`);
    callbackPort = n;
  }

  const transport = (values.transport as string | undefined) ?? 'auto';
  if (transport !== 'auto' && transport !== 'http' && transport !== 'sse') {
    throw new CliUsageError(`--transport: expected auto, http or sse, got ${JSON.stringify(transport)}`);
  }
  const authFlag = values.auth as string | undefined;
  if (authFlag !== undefined && authFlag !== 'oauth' && authFlag !== 'none') {
    throw new CliUsageError(`--auth: expected oauth or none, got ${JSON.stringify(authFlag)}`);
  }
  if (values.debug === true && values.silent === true) throw new CliUsageError('--debug and --silent are mutually exclusive');

  const headers: Record<string, string> = {};
  const addHeader = ([name, value]: [string, string]): void => {
    const existing = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase());
    if (existing !== undefined) delete headers[existing];
    headers[name] = value;
  };
  for (const file of (values['header-file'] as string[] | undefined) ?? []) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliUsageError(`--header-file: cannot read ${file}: ${(err as Error).message}`);
    }
    text.split(/\r?\n/).forEach((line, i) => {
      const trimmed = line.trim();
      if (trimmed === '' || trimmed.startsWith('#')) return;
      addHeader(parseHeader(trimmed, env, `--header-file ${file}:${i + 1}`));
    });
  }
  for (const raw of (values.header as string[] | undefined) ?? []) addHeader(parseHeader(raw, env, '--header'));
  const hasAuthorization = Object.keys(headers).some((k) => k.toLowerCase() === 'authorization');

  let host = (values.host as string | undefined) ?? 'localhost';
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  try {
    new URL(`http://${host}:1/`);
  } catch {
    throw new CliUsageError(`--host: ${JSON.stringify(values.host)} is not a valid host name`);
  }

  let resource: string | undefined;
  if (values.resource !== undefined) {
    try {
      resource = new URL(values.resource as string).href;
    } catch {
      throw new CliUsageError(`--resource: not a URL: ${JSON.stringify(values.resource)}`);
    }
  }

  const ignoreTools = (values['ignore-tool'] as string[] | undefined) ?? [];
  for (const glob of ignoreTools) if (glob === '') throw new CliUsageError('--ignore-tool: empty pattern');

  const rawGrant = (values['oauth-grant'] as string | undefined) ?? 'authorization_code';
  const grant = rawGrant === 'cross-app-access' ? 'cross_app_access' : rawGrant;
  if (grant !== 'authorization_code' && grant !== 'client_credentials' && grant !== 'cross_app_access') {
    throw new CliUsageError(`--oauth-grant: expected authorization_code, client_credentials or cross_app_access, got ${JSON.stringify(rawGrant)}`);
  }
  const staticClientInfo = values['static-oauth-client-info'] === undefined ? undefined : parseStaticClient(values['static-oauth-client-info'] as string, env);
  if (grant === 'client_credentials' && (staticClientInfo === undefined || (typeof staticClientInfo.client_secret !== 'string' && typeof staticClientInfo.private_key_pem !== 'string'))) {
    throw new CliUsageError('--oauth-grant client_credentials needs --static-oauth-client-info with "client_secret" or "private_key_pem"');
  }

  const crossApp = parseCrossApp(values, grant === 'cross_app_access', env, allowHttp);
  if (grant === 'cross_app_access' && (typeof staticClientInfo?.client_secret !== 'string' || staticClientInfo.client_secret === '')) {
    throw new CliUsageError('--oauth-grant cross_app_access needs --static-oauth-client-info with "client_id" and "client_secret" (the client registered at the MCP server\'s authorization server)');
  }

  const headlessEnv = env.CODEMODE_REMOTE_HEADLESS;
  const config: BridgeConfig = {
    url,
    transport,
    headers,
    connectTimeoutMs: parseSeconds(values['connect-timeout'] as string | undefined, 'connect-timeout', DEFAULT_CONNECT_TIMEOUT_MS),
    ignoreTools,
    auth:
      authFlag === 'none' || (authFlag === undefined && hasAuthorization)
        ? undefined
        : {
            callbackPort,
            callbackHost: host,
            authTimeoutMs: parseSeconds(values['auth-timeout'] as string | undefined, 'auth-timeout', DEFAULT_AUTH_TIMEOUT_MS),
            resource,
            grant,
            crossApp,
            staticClientInfo,
            scope: values.scope as string | undefined,
            clientMetadataUrl: parseClientMetadataUrl(values['client-metadata-url'] as string | undefined),
            openCommand: values['open-command'] as string | undefined,
            headless: values.headless === true || (headlessEnv !== undefined && headlessEnv !== '' && headlessEnv !== '0'),
            refreshThresholdMs: parseSeconds(values['refresh-threshold'] as string | undefined, 'refresh-threshold', DEFAULT_REFRESH_THRESHOLD_S * 1000, true),
            configDir: env.CODEMODE_CONFIG_DIR,
          },
    logLevel: values.debug === true ? 'debug' : values.silent === true ? 'silent' : undefined,
  };
  return { kind: 'run', config };
}
