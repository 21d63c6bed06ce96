/**
 * `codemode proxy`: serve any MCP server over the other transport, through the fail-loudly proxy.
 *
 *   codemode proxy http://127.0.0.1:3000/mcp            remote server, served over stdio (default for a URL)
 *   codemode proxy --http --port 8080 -- npx -y server  stdio server, served over Streamable HTTP (default for a command)
 *
 * @module
 */

import { parseArgs } from 'node:util';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { compileToolGlobs } from '../wire/globs.js';
import { parseUpstreamConfig } from '../proxy/config.js';
import type { UpstreamConfig } from '../proxy/config.js';
import type { ProxyOptions } from '../proxy/proxy.js';

const log = createLogger('proxy');

export const PROXY_HELP = `Usage:
  codemode proxy <url> [options]                 serve a remote MCP server over stdio (default) or --http
  codemode proxy [options] -- <command> [args...] serve a stdio MCP server over Streamable HTTP (default) or --stdio

Every upstream failure (nothing listening, wrong path, 401/403, not an MCP server, command not found or
exiting, no answer) is returned as the JSON-RPC error answer to the client's initialize, naming the cause.

Downstream (what this process serves):
  --stdio                    serve over stdin/stdout
  --http                     serve Streamable HTTP at http://HOST:PORT/mcp
  --host <host>              interface for --http (default 127.0.0.1; loopback gets Host-header checks)
  --port <port>              port for --http (default 0: any free port; the URL is printed on stderr)
  --allowed-host <name>      accepted Host header (repeatable). Loopback binds accept loopback names
                             only; other binds check Host only when this is given
  --allowed-origin <origin>  accepted browser Origin besides the allowed hosts (repeatable)
  --auth-tokens-env <VAR>    require "Authorization: Bearer <token>" with a token listed in env var VAR
                             (comma separated); each session is bound to its token. Without this flag,
                             CODEMODE_AUTH_TOKENS is used when it is set
  --allow-unauthenticated    allow a non-loopback --host without tokens (only behind a proxy that
                             authenticates); without tokens or this flag such a bind is refused
  --max-body <bytes>         largest HTTP request body (default 4194304)
  --headers-timeout <ms>     a client must send its request headers within this (default 10000)
  --receive-timeout <ms>     a client must send its whole request, body included, within this (default
                             30000); answers that stream longer (SSE, long calls) are not cut
  --max-connections <n>      open HTTP connections at once; more are dropped (default 2000)

Upstream:
  --transport <t>            for a URL: auto (Streamable HTTP, falling back to SSE on 404/405), http, sse
  --header "Name: Value"     header sent upstream (repeatable); \${VAR} is expanded from the environment
  --connect-timeout <ms>     how long to wait for the upstream's initialize answer (default 30000)
  --request-timeout <ms>     cap per forwarded request, reset by progress (default: none)
  --idle-timeout <ms>        close an HTTP session idle this long (default 1800000; 0 = never)
  --ignore-tool <glob>       hide matching tools (repeatable; * and ?)
  --max-upstream-message <bytes>
                             largest message the upstream may send; a larger answer fails that request
                             with a size error as it streams in (default 33554432, 32 MiB)
  --forward-header <name>    copy this downstream HTTP header upstream (repeatable; default: none are)

  -h, --help                 show this help

Exit codes: 0 after a clean shutdown (stdin EOF in --stdio mode, SIGINT/SIGTERM), 1 on failure, 2 on bad usage.
Logs go to stderr (CODEMODE_LOG_LEVEL=debug|info|warn|error|silent).`;

interface ParsedProxyArgs {
  target: UpstreamConfig;
  mode: 'stdio' | 'http';
  host: string;
  port: number;
  options: ProxyOptions;
  /** The HTTP face (--http only). */
  http: {
    allowedHosts?: string[];
    allowedOrigins?: string[];
    authTokensEnv?: string;
    allowUnauthenticated: boolean;
    maxBodyBytes?: number;
    headersTimeoutMs?: number;
    requestTimeoutMs?: number;
    maxConnections?: number;
  };
}

function usage(message: string): CodemodeError {
  return new CodemodeError('INVALID_ARGUMENT', message);
}

function parseMs(flag: string, value: string | undefined, allowZero = false): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || (!allowZero && n === 0)) throw usage(`--${flag} must be a ${allowZero ? 'non-negative' : 'positive'} integer number of milliseconds, got "${value}"`);
  return n;
}

function parseCount(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || value.trim() === '') throw usage(`--${flag} must be a positive whole number, got "${value}"`);
  return n;
}

function expandVars(value: string, flag: string): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
    const v = process.env[name];
    if (v === undefined) throw usage(`${flag}: environment variable ${name} is not set`);
    return v;
  });
}

/** Parses `codemode proxy` arguments (after the subcommand). Throws `CodemodeError('INVALID_ARGUMENT')`. */
export function parseProxyArgs(argv: readonly string[]): ParsedProxyArgs | 'help' {
  const dashdash = argv.indexOf('--');
  const own = dashdash === -1 ? [...argv] : argv.slice(0, dashdash);
  const command = dashdash === -1 ? [] : argv.slice(dashdash + 1);
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: own,
      allowPositionals: true,
      strict: true,
      options: {
        stdio: { type: 'boolean' },
        http: { type: 'boolean' },
        host: { type: 'string' },
        port: { type: 'string' },
        transport: { type: 'string' },
        header: { type: 'string', multiple: true },
        'connect-timeout': { type: 'string' },
        'request-timeout': { type: 'string' },
        'idle-timeout': { type: 'string' },
        'ignore-tool': { type: 'string', multiple: true },
        'max-upstream-message': { type: 'string' },
        'forward-header': { type: 'string', multiple: true },
        'allowed-host': { type: 'string', multiple: true },
        'allowed-origin': { type: 'string', multiple: true },
        'auth-tokens-env': { type: 'string' },
        'allow-unauthenticated': { type: 'boolean' },
        'max-body': { type: 'string' },
        'headers-timeout': { type: 'string' },
        'receive-timeout': { type: 'string' },
        'max-connections': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw usage(describeError(error));
  }
  if (values.help === true) return 'help';
  if (values.stdio === true && values.http === true) throw usage('--stdio and --http are mutually exclusive');

  let target: UpstreamConfig;
  if (command.length > 0) {
    if (positionals.length > 0) throw usage(`give either a URL or "-- command", not both (got ${positionals.join(' ')})`);
    if (values.transport !== undefined || values.header !== undefined) throw usage('--transport and --header apply to a URL upstream, not to a command');
    const [cmd, ...args] = command;
    // The command runs with our environment: the user started it from this shell on purpose.
    target = parseUpstreamConfig({ command: cmd, args }, 'command');
  } else {
    if (positionals.length === 0) throw usage('missing upstream: give a URL, or "-- command [args...]"');
    if (positionals.length > 1) throw usage(`expected one URL, got: ${positionals.join(' ')} (use "--" before a command)`);
    const headers: Record<string, string> = {};
    for (const h of values.header ?? []) {
      const i = h.indexOf(':');
      if (i <= 0) throw usage(`--header must look like "Name: Value", got "${h}"`);
      headers[h.slice(0, i).trim()] = expandVars(h.slice(i + 1).trim(), '--header');
    }
    target = parseUpstreamConfig(
      {
        url: positionals[0],
        ...(Object.keys(headers).length > 0 ? { headers } : {}),
        ...(values.transport !== undefined ? { transport: values.transport } : {}),
      },
      'url',
    );
  }
  const isCommand = 'command' in target;
  const mode: 'stdio' | 'http' = values.stdio === true ? 'stdio' : values.http === true ? 'http' : isCommand ? 'http' : 'stdio';
  const httpOnly = ['host', 'port', 'allowed-host', 'allowed-origin', 'auth-tokens-env', 'allow-unauthenticated', 'max-body', 'headers-timeout', 'receive-timeout', 'max-connections'] as const;
  const given = httpOnly.filter((k) => values[k] !== undefined);
  if (mode === 'stdio' && given.length > 0) throw usage(`${given.map((k) => `--${k}`).join(', ')} appl${given.length > 1 ? 'y' : 'ies'} to --http only`);
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw usage(`--port must be 0-65535, got "${values.port}"`);
  const connectTimeoutMs = parseMs('connect-timeout', values['connect-timeout']);
  const requestTimeoutMs = parseMs('request-timeout', values['request-timeout']);
  const idle = parseMs('idle-timeout', values['idle-timeout'], true);
  const maxMessageBytes = parseCount('max-upstream-message', values['max-upstream-message']);
  const options: ProxyOptions = {
    inheritEnv: true,
    ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
    ...(requestTimeoutMs !== undefined ? { requestTimeoutMs } : {}),
    ...(idle !== undefined ? { idleTimeoutMs: idle === 0 ? null : idle } : {}),
    ...(values['ignore-tool'] !== undefined ? { ignoreTools: values['ignore-tool'] } : {}),
    ...(maxMessageBytes !== undefined ? { maxMessageBytes } : {}),
    ...(values['forward-header'] !== undefined ? { forwardHeaders: values['forward-header'] } : {}),
  };
  const maxBodyBytes = parseCount('max-body', values['max-body']);
  const headersTimeoutMs = parseMs('headers-timeout', values['headers-timeout']);
  const requestTimeoutHttpMs = parseMs('receive-timeout', values['receive-timeout']);
  const maxConnections = parseCount('max-connections', values['max-connections']);
  const http: ParsedProxyArgs['http'] = {
    allowUnauthenticated: values['allow-unauthenticated'] === true,
    ...(values['allowed-host'] !== undefined ? { allowedHosts: values['allowed-host'] } : {}),
    ...(values['allowed-origin'] !== undefined ? { allowedOrigins: values['allowed-origin'] } : {}),
    ...(values['auth-tokens-env'] !== undefined ? { authTokensEnv: values['auth-tokens-env'] } : {}),
    ...(maxBodyBytes !== undefined ? { maxBodyBytes } : {}),
    ...(headersTimeoutMs !== undefined ? { headersTimeoutMs } : {}),
    ...(requestTimeoutHttpMs !== undefined ? { requestTimeoutMs: requestTimeoutHttpMs } : {}),
    ...(maxConnections !== undefined ? { maxConnections } : {}),
  };
  return { target, mode, host: values.host ?? '127.0.0.1', port, options, http };
}

/**
 * Runs `codemode proxy` with the arguments after the subcommand and resolves with the exit code when the
 * proxy has shut down (stdin EOF in stdio mode, SIGINT/SIGTERM in both modes).
 *
 * @example
 * ```ts
 * process.exitCode = await runProxyCommand(process.argv.slice(3));
 * ```
 */
export async function runProxyCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let parsed: ParsedProxyArgs | 'help';
  try {
    parsed = parseProxyArgs(argv);
  } catch (error) {
    process.stderr.write(`codemode proxy: ${describeError(error)}\nRun "codemode proxy --help" for usage.\n`);
    return 2;
  }
  if (parsed === 'help') {
    process.stdout.write(`${PROXY_HELP}\n`);
    return 0;
  }
  let authTokens: string[] | undefined;
  if (parsed.mode === 'http') {
    const { parseTokenList, DEFAULT_AUTH_TOKENS_ENV } = await import('../wire/bearer.js');
    const { isLoopbackHost } = await import('../wire/http-guard.js');
    const tokensVar = parsed.http.authTokensEnv ?? (env[DEFAULT_AUTH_TOKENS_ENV] !== undefined ? DEFAULT_AUTH_TOKENS_ENV : undefined);
    const tokens = tokensVar !== undefined ? parseTokenList(env[tokensVar]) : [];
    if (parsed.http.authTokensEnv !== undefined && tokens.length === 0) {
      process.stderr.write(`codemode proxy: --auth-tokens-env ${parsed.http.authTokensEnv}: that environment variable is empty or not set.\n`);
      return 2;
    }
    if (tokens.length > 0) authTokens = tokens;
    // Checked before the upstream starts: a refused bind should cost nothing.
    if (!isLoopbackHost(parsed.host) && authTokens === undefined && !parsed.http.allowUnauthenticated) {
      process.stderr.write(
        `codemode proxy: refusing to serve on ${parsed.host} without authentication: anyone who reaches it could use the upstream server with its credentials. ` +
          'Set --auth-tokens-env VAR (or CODEMODE_AUTH_TOKENS), or pass --allow-unauthenticated when a proxy in front authenticates.\n',
      );
      return 2;
    }
  }
  // Loaded here, not at the top: `--help` and usage errors stay instant.
  const { createProxy } = await import('../proxy/proxy.js');
  const proxy = createProxy(parsed.target, parsed.options);

  let stop!: (code: number) => void;
  const stopped = new Promise<number>((resolve) => {
    stop = resolve;
  });
  let shuttingDown = false;
  const shutdown = (code: number, why: string): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.debug('shutting down', { why });
    stop(code);
  };
  const onSignal = (signal: NodeJS.Signals): void => shutdown(0, signal);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let closeServer: () => Promise<void> = () => proxy.close();
  try {
    if (parsed.mode === 'stdio') {
      const { StdioServerTransport } = await import('@modelcontextprotocol/sdk/server/stdio.js');
      const { EraSwitchingTransport } = await import('../proxy/modern-stdio.js');
      // A 2026-07-28 host (a first request with the version in its _meta) is served by the modern front.
      const transport = new EraSwitchingTransport(new StdioServerTransport(), { target: proxy.target, options: proxy.options, isHidden: compileToolGlobs(proxy.options.ignoreTools ?? []) });
      const session = await proxy.connect(transport);
      // The SDK's stdio server transport does not notice stdin EOF; the host closing stdin means "exit".
      process.stdin.once('end', () => shutdown(0, 'stdin closed'));
      process.stdin.once('close', () => shutdown(0, 'stdin closed'));
      void session.closed.then(() => shutdown(0, 'session closed'));
    } else {
      const { serveProxyHttp } = await import('../proxy/http.js');
      const { authTokensEnv: _var, ...face } = parsed.http;
      const server = await serveProxyHttp(proxy, { host: parsed.host, port: parsed.port, ...face, ...(authTokens !== undefined ? { authTokens } : {}) });
      closeServer = () => server.close();
      log.info(`proxy for ${'url' in parsed.target ? parsed.target.url : parsed.target.command} listening on ${server.url}${authTokens !== undefined ? ` (auth: ${authTokens.length} static bearer token(s))` : ''}`);
    }
  } catch (error) {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.stderr.write(`codemode proxy: ${describeError(error)}\n`);
    await proxy.close().catch(() => undefined);
    return 1;
  }

  const code = await stopped;
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  // Never hang on a dying upstream at exit.
  await Promise.race([closeServer().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
  return code;
}
