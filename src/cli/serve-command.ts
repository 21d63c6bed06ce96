/**
 * `codemode serve`: the engine as an MCP server (`execute`, `search`, `get_schema`) over stdio or
 * Streamable HTTP, for every server in an `mcpServers` config.
 *
 * Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM, or stdin EOF in stdio mode), 1 when serving
 * failed, 2 usage or config error.
 *
 * @module
 */

import { describeError, isCodemodeError } from '../errors.js';
import { createLogger, setLogLevel } from '../log.js';
import type { LogLevel } from '../log.js';
import type { SandboxLimitsInput, SandboxProvider } from '../sandbox/types.js';
import type { OAuthConfig } from '../server/auth/config.js';
import type { StartingUpstreams } from '../server/upstreams.js';
import { CliUsageError, EXIT, numberFlag, parseFlags } from './args.js';

const log = createLogger('serve');

/** Default port of `codemode serve --http`. */
export const DEFAULT_SERVE_PORT = 3000;

export const SERVE_HELP = `Usage: codemode serve [--config <file>] [--stdio | --http] [options]

Serves the code-mode engine as an MCP server. Clients get three tools over the tools of every
configured server: execute (run JavaScript where tools are async functions), search and get_schema.
A server that fails to start is reported (stderr, the initialize instructions, /healthz) and the
others keep serving, unless --strict.

Transport:
  --stdio                        serve over stdin/stdout (the default); logs go to stderr
  --http                         serve Streamable HTTP at http://HOST:PORT/mcp (and GET /healthz)
  --host <host>                  interface for --http (default 127.0.0.1)
  --port <port>                  port for --http (default ${DEFAULT_SERVE_PORT}; 0 = any free port)
  --stateless                    no sessions: each POST is served on its own (for load balancers)
  --session-idle-timeout <s>     close HTTP sessions idle this long (default 1800; "none" = never)
  --max-sessions <n>             live sessions at once; past it an initialize gets HTTP 503
                                 (default 1000; "none" = no cap)
  --max-sessions-per-principal <n>
                                 live sessions at once per token / JWT subject / OAuth user; past it an
                                 initialize gets HTTP 429 (default 100; "none" = no cap)
  --session-rate <n>[/<burst>]   new sessions one client may open per second, after a burst (default
                                 10/60); past it an initialize gets HTTP 429. A client is its principal,
                                 or its address without auth ("none" = no limit)
  --max-body <MB>                largest HTTP request body (default 1)
  --headers-timeout <s>          a client must send its request headers within this (default 10)
  --receive-timeout <s>          a client must send its whole request, body included, within this
                                 (default 30); answers that stream longer (executes, SSE) are not cut
  --max-connections <n>          open HTTP connections at once; more are dropped (default 2000)
  --allowed-host <name>          accepted Host header, for /mcp and /healthz (repeatable). Loopback binds
                                 accept loopback names only; other binds check Host only when this is given
  --allowed-origin <origin>      accepted browser Origin besides the allowed hosts (repeatable)
  --health-details               GET /healthz shows sessions, executions and failed server names to
                                 anyone; by default only to callers with valid credentials (others get
                                 {"status":"ok"} or 503 {"status":"draining"})

HTTP authentication (required to bind a non-loopback address):
  --auth-tokens-env <VAR>        accept the bearer tokens listed in env var VAR (comma separated).
                                 Without this flag, CODEMODE_AUTH_TOKENS is used when it is set
  --jwks-url <url>               accept JWTs signed by a key from this JWKS (needs the two below)
  --jwt-issuer <iss>             required issuer of JWTs
  --jwt-audience <aud>           required audience of JWTs (repeatable: any one matches)
  --allow-unauthenticated        allow a non-loopback bind without auth (only behind a proxy that authenticates)
  An "oauth" section in the config file turns on the built-in OAuth authorization server instead.

Tools and limits:
  --config <file>                mcpServers JSON file (the format MCP hosts use)
  --expose-tools                 also list every upstream tool directly, as <server>__<tool>
  --strict                       refuse to start when any configured server fails
  --timeout <seconds>            wall-clock limit per execute (default 30; "none" = no limit)
  --memory <MB>                  heap limit per execute (default 100; "none" = no limit)
  --max-result <KB>              largest return value per execute, as JSON (default 256; "none" = no cap).
                                 The server parses and re-serializes each result on the event loop all
                                 sessions share, so this cap bounds what one result costs the others
  --max-tool-calls <n>           tool calls per execute (default 50; "none" = no cap)
  --isolation <mode>             where executes run: "process" (a pool of worker processes, so a sandbox
                                 crash or hang fails one execute, not the server; the default with --http)
                                 or "in-process" (faster start; the default with --stdio)
  --worker-nice <n>              CPU priority of the sandbox worker processes (0-19, with --isolation
                                 process; default: the server's own). 10 lets the event loop every session
                                 shares, and the upstream servers, go first when the machine is busy
  --max-concurrent <n>           executes running at once (default: 2 x CPU count, at least 4)
  --max-queue <n>                executes waiting for a slot; beyond it callers get a "busy, retry" error
                                 result at once (default 4 x max-concurrent)
  --connect-timeout <s>          how long to wait for each server to start (default 30)
  --max-upstream-message <MB>    largest message one server may send (a tool result, a tool list); a
                                 larger answer fails that call with a size error as it streams in
                                 (default 2: each message is parsed and passed on by the event loop all
                                 sessions share, at about 25 ms per MB)
  --shutdown-grace <s>           on SIGTERM/SIGINT, let running executes finish this long before
                                 aborting them (default 10)

Other:
  --log-level <level>            debug, info (default), warn, error or silent
  -h, --help                     show this help

Tracing: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER) to export OpenTelemetry spans.

Examples:
  codemode serve --config mcp.json                           # for an MCP host (stdio)
  codemode serve --config mcp.json --http --port 8080
  CODEMODE_AUTH_TOKENS=s3cret codemode serve --config mcp.json --http --host 0.0.0.0
`;

const SERVE_OPTIONS = {
  config: { type: 'string' },
  stdio: { type: 'boolean' },
  http: { type: 'boolean' },
  host: { type: 'string' },
  port: { type: 'string' },
  stateless: { type: 'boolean' },
  'session-idle-timeout': { type: 'string' },
  'max-body': { type: 'string' },
  'max-sessions': { type: 'string' },
  'max-sessions-per-principal': { type: 'string' },
  'session-rate': { type: 'string' },
  'headers-timeout': { type: 'string' },
  'receive-timeout': { type: 'string' },
  'max-connections': { type: 'string' },
  'health-details': { type: 'boolean' },
  'allowed-host': { type: 'string', multiple: true },
  'allowed-origin': { type: 'string', multiple: true },
  'auth-tokens-env': { type: 'string' },
  'jwks-url': { type: 'string' },
  'jwt-issuer': { type: 'string' },
  'jwt-audience': { type: 'string', multiple: true },
  'allow-unauthenticated': { type: 'boolean' },
  'expose-tools': { type: 'boolean' },
  strict: { type: 'boolean' },
  timeout: { type: 'string' },
  memory: { type: 'string' },
  'max-result': { type: 'string' },
  'max-tool-calls': { type: 'string' },
  isolation: { type: 'string' },
  'worker-nice': { type: 'string' },
  'max-concurrent': { type: 'string' },
  'max-queue': { type: 'string' },
  'connect-timeout': { type: 'string' },
  'max-upstream-message': { type: 'string' },
  'shutdown-grace': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * The largest return value of one execute under `codemode serve`, in bytes of JSON, unless the flag or the
 * config sets another (the library's default is 1 MiB). A shared server parses each result from its worker
 * and serializes it again into the MCP response, on the event loop every session waits on: about 40 ms per
 * MiB for a deeply nested value on a 2-vCPU machine (bench/RESULTS.md), so 256 KiB holds one result's cost
 * near 15 ms. It is still about 60,000 tokens of JSON, more than a model's context should take in one result.
 */
export const SERVE_DEFAULT_MAX_RESULT_BYTES = 256 * 1024;

/**
 * The largest message one upstream server may send to `codemode serve` (a tool result, a tool list), unless
 * --max-upstream-message sets another (the proxy's and the library's default is 32 MiB). The server parses
 * each message, copies the tool result to JSON for the sandbox and sends it to the sandbox worker, all on
 * the event loop every session waits on: about 25 ms per MB on a 2-vCPU machine (a 30 MB result stalled
 * every other session for about a second; bench/RESULTS.md). 2 MiB keeps one message near 40 ms. A larger
 * answer fails that one call with a ToolError naming the flag, as it streams in.
 */
export const SERVE_DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES = 2 * 1024 * 1024;

const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

/** Parsed `codemode serve` arguments. */
export interface ServeArgs {
  config?: string;
  mode: 'stdio' | 'http';
  host: string;
  port: number;
  stateless: boolean;
  sessionIdleTimeoutMs?: number | null;
  maxBodyBytes?: number;
  maxSessions?: number | null;
  maxSessionsPerPrincipal?: number | null;
  /** New sessions per client: `null` = no limit. Unset: the server's default. */
  sessionRate?: { perSecond: number; burst: number } | null;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxConnections?: number;
  healthDetails?: boolean;
  allowedHosts?: string[];
  allowedOrigins?: string[];
  authTokensEnv?: string;
  jwt?: { jwksUrl: string; issuer: string; audience: string[] };
  allowUnauthenticated: boolean;
  exposeTools: boolean;
  strict: boolean;
  timeoutMs?: number | null;
  memoryMb?: number | null;
  /** Largest return value in bytes of JSON; `null` = no cap. Unset: the config's, else `SERVE_DEFAULT_MAX_RESULT_BYTES`. */
  maxResultBytes?: number | null;
  maxToolCalls?: number | null;
  /** Where executes run; unset means `process` with --http and `in-process` with --stdio. */
  isolation?: 'process' | 'in-process';
  /** Nice value of the sandbox worker processes (process isolation only); unset: the server's priority. */
  workerNice?: number;
  maxConcurrent?: number;
  maxQueue?: number;
  connectTimeoutMs?: number;
  maxUpstreamMessageBytes?: number;
  shutdownGraceMs: number;
  logLevel?: LogLevel;
}

/** `--session-rate 10`, `10/60` or `none`. The burst defaults to six seconds' worth (at least 1). */
function parseSessionRate(value: string | undefined): { perSecond: number; burst: number } | null | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().toLowerCase();
  if (v === 'none' || v === 'off') return null;
  const match = /^(\d+(?:\.\d+)?)(?:\/(\d+))?$/.exec(v);
  const perSecond = match === null ? Number.NaN : Number(match[1]);
  const burst = match?.[2] === undefined ? Math.max(1, Math.ceil(perSecond * 6)) : Number(match[2]);
  if (!(perSecond > 0) || !(burst >= 1)) {
    throw new CliUsageError(`--session-rate must be <per second> or <per second>/<burst> (like 10/60), both > 0, or "none"; got ${JSON.stringify(value)}.`);
  }
  return { perSecond, burst };
}

/** Parses `codemode serve` arguments (after the subcommand). Throws `CliUsageError`. */
export function parseServeArgs(argv: readonly string[]): ServeArgs | 'help' {
  const { values: v, positionals } = parseFlags(argv, SERVE_OPTIONS);
  if (v.help) return 'help';
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])} (the config file goes after --config).`);
  if (v.stdio && v.http) throw new CliUsageError('choose one of --stdio and --http.');
  const mode = v.http ? 'http' : 'stdio';
  const httpOnly = [
    'host',
    'port',
    'stateless',
    'session-idle-timeout',
    'max-sessions',
    'max-sessions-per-principal',
    'session-rate',
    'max-body',
    'headers-timeout',
    'receive-timeout',
    'max-connections',
    'health-details',
    'allowed-host',
    'allowed-origin',
    'auth-tokens-env',
    'jwks-url',
    'jwt-issuer',
    'jwt-audience',
    'allow-unauthenticated',
  ] as const;
  if (mode === 'stdio') {
    const given = httpOnly.filter((k) => v[k] !== undefined);
    if (given.length > 0) throw new CliUsageError(`${given.map((k) => `--${k}`).join(', ')} only appl${given.length > 1 ? 'y' : 'ies'} with --http.`);
  }
  const logLevel = v['log-level'];
  if (logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new CliUsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}.`);
  }
  const port = v.port === undefined ? DEFAULT_SERVE_PORT : Number(v.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535 || v.port?.trim() === '') throw new CliUsageError(`--port must be a whole number from 0 to 65535, got ${JSON.stringify(v.port)}.`);
  const jwtFlags = [v['jwks-url'], v['jwt-issuer'], v['jwt-audience']];
  if (jwtFlags.some((f) => f !== undefined) && jwtFlags.some((f) => f === undefined)) {
    throw new CliUsageError('JWT auth needs all of --jwks-url, --jwt-issuer and --jwt-audience.');
  }
  if (v['jwks-url'] !== undefined && !URL.canParse(v['jwks-url'])) throw new CliUsageError(`--jwks-url must be an absolute URL, got ${JSON.stringify(v['jwks-url'])}.`);
  const seconds = (name: string, value: string | undefined, allowNone = false) => {
    const n = numberFlag(name, value, { allowNone });
    return n === undefined ? undefined : n === null ? null : Math.round(n * 1000);
  };
  const idle = seconds('session-idle-timeout', v['session-idle-timeout'], true);
  const maxBody = numberFlag('max-body', v['max-body']);
  const maxSessions = numberFlag('max-sessions', v['max-sessions'], { integer: true, min: 1, allowNone: true });
  const maxPerPrincipal = numberFlag('max-sessions-per-principal', v['max-sessions-per-principal'], { integer: true, min: 1, allowNone: true });
  const sessionRate = parseSessionRate(v['session-rate']);
  const headersTimeout = seconds('headers-timeout', v['headers-timeout']);
  const receiveTimeout = seconds('receive-timeout', v['receive-timeout']);
  const maxConnections = numberFlag('max-connections', v['max-connections'], { integer: true, min: 1 });
  if (headersTimeout != null && receiveTimeout != null && headersTimeout > receiveTimeout) {
    throw new CliUsageError(`--headers-timeout (${headersTimeout / 1000} s) must not exceed --receive-timeout (${receiveTimeout / 1000} s): headers are part of the request.`);
  }
  if (headersTimeout != null && receiveTimeout == null && headersTimeout > 30_000) {
    throw new CliUsageError(`--headers-timeout (${headersTimeout / 1000} s) must not exceed the receive timeout (default 30 s); raise --receive-timeout too.`);
  }
  const timeout = seconds('timeout', v.timeout, true);
  const grace = v['shutdown-grace'] === undefined ? 10_000 : Math.round((numberFlag('shutdown-grace', v['shutdown-grace'], { min: 0 }) ?? 0) * 1000);
  const connect = seconds('connect-timeout', v['connect-timeout']);
  const maxUpstreamMessage = numberFlag('max-upstream-message', v['max-upstream-message']);
  const maxResult = numberFlag('max-result', v['max-result'], { allowNone: true, min: 1 });
  if (maxUpstreamMessage === 0) throw new CliUsageError('--max-upstream-message must be a number > 0 (MB), got "0".');
  const maxConcurrent = numberFlag('max-concurrent', v['max-concurrent'], { integer: true, min: 1 });
  const maxQueue = numberFlag('max-queue', v['max-queue'], { integer: true, min: 0 });
  const isolation = v.isolation;
  const workerNice = numberFlag('worker-nice', v['worker-nice'], { integer: true, min: 0 });
  if (workerNice != null && workerNice > 19) throw new CliUsageError(`--worker-nice must be a whole number from 0 to 19, got ${JSON.stringify(v['worker-nice'])}.`);
  if (workerNice != null && (isolation ?? (mode === 'http' ? 'process' : 'in-process')) === 'in-process') {
    throw new CliUsageError('--worker-nice only applies with process isolation (the default with --http; add --isolation process): in-process executes run on the server\'s own threads.');
  }
  if (isolation !== undefined && isolation !== 'process' && isolation !== 'in-process') {
    throw new CliUsageError(`--isolation must be "process" or "in-process", got ${JSON.stringify(isolation)}.`);
  }
  return {
    ...(v.config !== undefined ? { config: v.config } : {}),
    mode,
    host: v.host ?? '127.0.0.1',
    port,
    stateless: v.stateless ?? false,
    ...(idle !== undefined ? { sessionIdleTimeoutMs: idle } : {}),
    ...(maxBody !== undefined && maxBody !== null ? { maxBodyBytes: Math.round(maxBody * 1024 * 1024) } : {}),
    ...(maxSessions !== undefined ? { maxSessions } : {}),
    ...(maxPerPrincipal !== undefined ? { maxSessionsPerPrincipal: maxPerPrincipal } : {}),
    ...(sessionRate !== undefined ? { sessionRate } : {}),
    ...(headersTimeout != null ? { headersTimeoutMs: headersTimeout } : {}),
    ...(receiveTimeout != null ? { requestTimeoutMs: receiveTimeout } : {}),
    ...(maxConnections != null ? { maxConnections } : {}),
    ...(v['health-details'] === true ? { healthDetails: true } : {}),
    ...(v['allowed-host'] !== undefined ? { allowedHosts: v['allowed-host'] } : {}),
    ...(v['allowed-origin'] !== undefined ? { allowedOrigins: v['allowed-origin'] } : {}),
    ...(v['auth-tokens-env'] !== undefined ? { authTokensEnv: v['auth-tokens-env'] } : {}),
    ...(v['jwks-url'] !== undefined ? { jwt: { jwksUrl: v['jwks-url'], issuer: v['jwt-issuer']!, audience: v['jwt-audience']! } } : {}),
    allowUnauthenticated: v['allow-unauthenticated'] ?? false,
    exposeTools: v['expose-tools'] ?? false,
    strict: v.strict ?? false,
    ...(timeout !== undefined ? { timeoutMs: timeout } : {}),
    ...(v.memory !== undefined ? { memoryMb: numberFlag('memory', v.memory, { allowNone: true }) ?? null } : {}),
    ...(maxResult !== undefined ? { maxResultBytes: maxResult === null ? null : Math.round(maxResult * 1024) } : {}),
    ...(isolation !== undefined ? { isolation } : {}),
    ...(workerNice != null ? { workerNice } : {}),
    ...(v['max-tool-calls'] !== undefined ? { maxToolCalls: numberFlag('max-tool-calls', v['max-tool-calls'], { integer: true, allowNone: true }) ?? null } : {}),
    ...(maxConcurrent !== undefined && maxConcurrent !== null ? { maxConcurrent } : {}),
    ...(maxQueue !== undefined && maxQueue !== null ? { maxQueue } : {}),
    ...(connect !== undefined && connect !== null ? { connectTimeoutMs: connect } : {}),
    ...(maxUpstreamMessage != null ? { maxUpstreamMessageBytes: Math.round(maxUpstreamMessage * 1024 * 1024) } : {}),
    shutdownGraceMs: grace,
    ...(logLevel !== undefined ? { logLevel: logLevel as LogLevel } : {}),
  };
}

/**
 * A `ProcessSandbox` whose pool runs `maxConcurrent` executes at once (workers up to the core count, the
 * rest as per-worker concurrency), so the server's limiter stays the only queue.
 */
async function processSandbox(limits: SandboxLimitsInput, maxConcurrent: number, nice: number | undefined): Promise<SandboxProvider & { close(): Promise<void> }> {
  const [{ ProcessSandbox }, { availableParallelism }] = await Promise.all([import('../sandbox/process/process-sandbox.js'), import('node:os')]);
  const size = Math.max(1, Math.min(maxConcurrent, availableParallelism()));
  return new ProcessSandbox({ limits, size, concurrencyPerWorker: Math.ceil(maxConcurrent / size), ...(nice !== undefined ? { nice } : {}) });
}

/**
 * Runs `codemode serve` with the arguments after the subcommand; resolves with the exit code after shutdown.
 *
 * @example
 * ```ts
 * process.exitCode = await serveCommand(['--config', 'mcp.json', '--http', '--port', '8080']);
 * ```
 */
export async function serveCommand(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let args: ServeArgs | 'help';
  try {
    args = parseServeArgs(argv);
  } catch (err) {
    if (!(err instanceof CliUsageError)) throw err;
    process.stderr.write(`codemode serve: ${err.message}\nRun "codemode serve --help" for usage.\n`);
    return EXIT.USAGE;
  }
  if (args === 'help') {
    process.stdout.write(SERVE_HELP);
    return EXIT.OK;
  }
  const a = args;
  if (a.logLevel !== undefined) setLogLevel(a.logLevel);
  const usage = (message: string) => {
    process.stderr.write(`codemode serve: ${message}\n`);
    return EXIT.USAGE;
  };

  // Signals during start-up abort it; after start-up they begin the graceful shutdown.
  let stop!: (why: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`codemode serve: second ${signal}; exiting without waiting\n`);
      process.exit(EXIT.FAILURE);
    }
    stop(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const { loadServersConfig } = await import('../server/config.js');
  const { startTelemetryFromEnv } = await import('./telemetry.js');
  let telemetry;
  // Upstreams started before the server exists; closed here if start-up stops before the server takes them.
  let startedUpstreams: StartingUpstreams | undefined;
  try {
    // Validate everything we can before starting any server process.
    const config = a.config !== undefined ? await loadServersConfig(a.config) : { file: undefined, servers: {}, settings: {} };
    if (Object.keys(config.servers).length === 0) log.warn('no upstream servers configured (--config): execute runs plain code with no tools');
    const tokensVar = a.authTokensEnv ?? (env.CODEMODE_AUTH_TOKENS !== undefined ? 'CODEMODE_AUTH_TOKENS' : undefined);
    // stdio never loads the HTTP stack (express, the SDK's HTTP transport, jose): ~100 ms of start-up.
    const [{ parseTokenList }, { isLoopbackHost }] = await Promise.all([import('../wire/bearer.js'), import('../wire/http-guard.js')]);
    const tokens = tokensVar !== undefined ? parseTokenList(env[tokensVar]) : [];
    if (a.authTokensEnv !== undefined && tokens.length === 0) return usage(`--auth-tokens-env ${a.authTokensEnv}: that environment variable is empty or not set.`);
    if (a.mode === 'http' && config.oauth !== undefined && (tokens.length > 0 || a.jwt !== undefined)) {
      return usage('choose one kind of auth: the config\'s "oauth" section, or --auth-tokens-env / --jwks-url.');
    }
    let oauth: OAuthConfig | undefined;
    if (a.mode === 'http' && config.oauth !== undefined) {
      const { parseOAuthConfig } = await import('../server/auth/config.js');
      oauth = parseOAuthConfig(config.oauth, `${config.file ?? 'config'}: oauth`, env);
    }
    const auth =
      a.mode === 'http' && (tokens.length > 0 || a.jwt !== undefined)
        ? (await import('../server/http-auth.js')).createHttpAuth({ bearerTokens: tokens, ...(a.jwt !== undefined ? { jwt: a.jwt } : {}) })
        : undefined;
    if (a.mode === 'http' && !isLoopbackHost(a.host) && auth === undefined && oauth === undefined && !a.allowUnauthenticated) {
      return usage(
        `refusing to serve on ${a.host} without authentication: anyone who reaches it could run code with your tools. ` +
          'Set --auth-tokens-env VAR (or CODEMODE_AUTH_TOKENS), --jwks-url/--jwt-issuer/--jwt-audience, an "oauth" config section, ' +
          'or pass --allow-unauthenticated when a proxy in front authenticates.',
      );
    }
    // Everything is validated: start the servers' processes now, so that they boot while this process loads
    // the sandbox and the MCP server code (about 150 ms), instead of after it.
    if (Object.keys(config.servers).length > 0) {
      const { startUpstreams } = await import('../server/upstreams.js');
      startedUpstreams = startUpstreams(config.servers, {
        strict: a.strict,
        ...(a.connectTimeoutMs !== undefined ? { connectTimeoutMs: a.connectTimeoutMs } : {}),
        maxMessageBytes: a.maxUpstreamMessageBytes ?? SERVE_DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES,
      });
      // Loading the rest first would hold the spawns back behind it (module evaluation runs on this thread).
      await startedUpstreams.spawned;
    }
    telemetry = await startTelemetryFromEnv(env);

    const [{ createCodemodeServerFromConfig, codeModeOptionsFromConfig }, { IsolatedVmSandbox }, { DEFAULT_MAX_CONCURRENT_EXECUTIONS }] = await Promise.all([
      import('../server/server.js'),
      import('../sandbox/isolated-vm-sandbox.js'),
      import('../server/limiter.js'),
    ]);
    const fromConfig = codeModeOptionsFromConfig(config, {});
    const limits = {
      maxResultBytes: SERVE_DEFAULT_MAX_RESULT_BYTES,
      ...(fromConfig.limits ?? {}),
      ...(a.timeoutMs !== undefined ? { timeoutMs: a.timeoutMs } : {}),
      ...(a.memoryMb !== undefined ? { memoryMb: a.memoryMb } : {}),
      ...(a.maxResultBytes !== undefined ? { maxResultBytes: a.maxResultBytes } : {}),
    };
    const maxConcurrent = a.maxConcurrent ?? config.settings.maxConcurrentExecutions ?? DEFAULT_MAX_CONCURRENT_EXECUTIONS;
    // One isolate slot per execution slot: the server's limiter is the only queue callers wait in.
    // Process isolation by default over HTTP: a shared server must survive a sandbox crash or hang.
    const sandbox =
      (a.isolation ?? (a.mode === 'http' ? 'process' : 'in-process')) === 'process'
        ? await processSandbox(limits, maxConcurrent, a.workerNice)
        : new IsolatedVmSandbox({ limits, maxConcurrency: maxConcurrent });
    const starting = createCodemodeServerFromConfig(config, {
      strict: a.strict,
      exposeTools: a.exposeTools,
      maxConcurrentExecutions: maxConcurrent,
      ...(a.maxQueue !== undefined ? { maxQueuedExecutions: a.maxQueue } : {}),
      ...(a.connectTimeoutMs !== undefined ? { connectTimeoutMs: a.connectTimeoutMs } : {}),
      maxUpstreamMessageBytes: a.maxUpstreamMessageBytes ?? SERVE_DEFAULT_MAX_UPSTREAM_MESSAGE_BYTES,
      codeMode: { sandbox, maxToolCalls: a.maxToolCalls !== undefined ? a.maxToolCalls : fromConfig.maxToolCalls },
      transport: a.mode === 'http' ? 'tcp' : 'pipe',
      ...(startedUpstreams !== undefined ? { upstreams: startedUpstreams } : {}),
    });
    startedUpstreams = undefined; // the server owns them now
    const early = await Promise.race([starting.then(() => undefined, () => undefined), stopped]);
    if (early !== undefined) {
      // Interrupted while upstreams were starting: let them finish starting, then close them.
      void starting.then((s) => s.close({ graceMs: 0 }), () => undefined).finally(() => void sandbox.close());
      process.stderr.write(`codemode serve: interrupted by ${early} during start-up\n`);
      return EXIT.OK;
    }
    let server;
    try {
      server = await starting;
    } catch (err) {
      await sandbox.close();
      if (isCodemodeError(err, 'UPSTREAM_UNAVAILABLE') || isCodemodeError(err, 'INVALID_CONFIG') || isCodemodeError(err, 'TOOL_NAME_COLLISION')) {
        return usage(describeError(err));
      }
      throw err;
    }
    const stats = server.stats();
    const summary = `${stats.tools} tools from ${stats.upstreams.filter((u) => u.state === 'connected').length}/${stats.upstreams.length} servers`;
    let closeAll: (graceMs: number) => Promise<void>;
    if (a.mode === 'stdio') {
      const { serveStdio } = await import('../server/stdio.js');
      const stdio = serveStdio(server, { input: process.stdin, output: process.stdout });
      log.info(`serving ${summary} over stdio`);
      void stdio.done.then((why) => stop(why === 'eof' ? 'stdin closed' : 'session closed'));
      closeAll = (graceMs) => server.close({ graceMs });
    } else {
      let http;
      try {
        const { serveHttp } = await import('../server/http.js');
        http = await serveHttp(server, {
          host: a.host,
          port: a.port,
          stateless: a.stateless,
          allowUnauthenticated: a.allowUnauthenticated,
          ...(a.sessionIdleTimeoutMs !== undefined ? { sessionIdleTimeoutMs: a.sessionIdleTimeoutMs } : {}),
          ...(a.maxBodyBytes !== undefined ? { maxBodyBytes: a.maxBodyBytes } : {}),
          ...(a.maxSessions !== undefined ? { maxSessions: a.maxSessions } : {}),
          ...(a.maxSessionsPerPrincipal !== undefined ? { maxSessionsPerPrincipal: a.maxSessionsPerPrincipal } : {}),
          ...(a.sessionRate !== undefined ? { sessionRate: a.sessionRate } : {}),
          ...(a.headersTimeoutMs !== undefined ? { headersTimeoutMs: a.headersTimeoutMs } : {}),
          ...(a.requestTimeoutMs !== undefined ? { requestTimeoutMs: a.requestTimeoutMs } : {}),
          ...(a.maxConnections !== undefined ? { maxConnections: a.maxConnections } : {}),
          ...(a.healthDetails === true ? { healthDetails: true } : {}),
          ...(a.allowedHosts !== undefined ? { allowedHosts: a.allowedHosts } : {}),
          ...(a.allowedOrigins !== undefined ? { allowedOrigins: a.allowedOrigins } : {}),
          ...(auth !== undefined ? { auth } : {}),
          ...(oauth !== undefined
            ? {
                auth: async (where: { serverUrl: string; mcpPath: string }) => {
                  const { createOAuthProxyFromConfig } = await import('../server/auth/config.js');
                  const proxy = await createOAuthProxyFromConfig(oauth, where);
                  return { router: proxy.router, requireAuth: proxy.requireAuth, close: () => proxy.close() };
                },
              }
            : {}),
        });
      } catch (err) {
        await server.close({ graceMs: 0 });
        await sandbox.close();
        process.stderr.write(`codemode serve: ${describeError(err)}\n`);
        return isCodemodeError(err, 'INVALID_CONFIG') ? EXIT.USAGE : EXIT.FAILURE;
      }
      const h = http;
      // The URL line is the one thing scripts wait for, so it is printed whatever the log level.
      process.stderr.write(`codemode serve: listening on ${h.url} (${summary}${a.stateless ? ', stateless' : ''}${auth ? `, auth: ${auth.description}` : oauth ? ', auth: OAuth' : ''})\n`);
      closeAll = (graceMs) => h.close({ graceMs });
    }
    const why = await stopped;
    log.info(`shutting down (${why})`);
    // A host that closed stdin can no longer receive results: no point waiting for them.
    await closeAll(why === 'stdin closed' || why === 'session closed' ? 0 : a.shutdownGraceMs);
    await sandbox.close();
    return EXIT.OK;
  } catch (err) {
    if (isCodemodeError(err, 'INVALID_CONFIG')) return usage(describeError(err));
    process.stderr.write(`codemode serve: ${describeError(err)}\n`);
    return EXIT.FAILURE;
  } finally {
    await startedUpstreams?.abandon();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await telemetry?.shutdown();
  }
}
