/**
 * `codemode run <file | -> [options]`: runs one script in the sandbox with the configured servers' tools.
 * The return value goes to stdout as pretty JSON; logs and diagnostics go to stderr.
 *
 * Exit codes: 0 success, 1 the script failed (or was interrupted), 2 usage or config error.
 *
 * @module
 */

import { readFile } from 'node:fs/promises';
import { describeError, isCodemodeError } from '../errors.js';
import { createLogger, setLogLevel } from '../log.js';
import type { LogLevel } from '../log.js';
import type { ExecuteResult, ToolSource } from '../codemode/types.js';
import type { StartingUpstreams } from '../server/upstreams.js';
import { CliUsageError, EXIT, numberFlag, parseFlags } from './args.js';

const log = createLogger('run');

export const RUN_HELP = `Usage: codemode run <file | -> [options]

Runs a JavaScript (or TypeScript) file in a V8 isolate where the configured MCP servers' tools are
async functions: \`await tools.<server>.<tool>(args)\`. The file is the body of an async function:
use \`await\`, and \`return\` the result. "-" reads the script from stdin.

The return value is printed to stdout as pretty JSON; console output, warnings and errors go to
stderr. On a terminal, a status line shows the elapsed time and tool calls while it runs.

Options:
  --config <file>          mcpServers JSON file (the format MCP hosts use); without it no tools exist
  --timeout <seconds>      wall-clock limit (default 30, or the config's codemode.timeoutSeconds; "none" = no limit)
  --memory <MB>            heap limit (default 100, or codemode.memoryMb; "none" = no limit)
  --max-tool-calls <n>     tool calls allowed, failed ones included (default 50; "none" = no cap)
  --json                   print one JSON object on stdout: {ok, result | error, logs, toolCalls, warnings, stats}
  --strict                 fail (exit 2) when any configured server cannot be started, instead of running without it
  --connect-timeout <s>    how long to wait for each server to start (default 30)
  --log-level <level>      debug, info, warn (default, or CODEMODE_LOG_LEVEL), error or silent (codemode's own diagnostics)
  -h, --help               show this help

Exit codes: 0 success; 1 the script failed (error kind and message on stderr) or was interrupted
(SIGINT/SIGTERM); 2 usage or configuration error.

Example:
  codemode run examples/scripts/quickstart.js --config examples/mcp.json
  echo 'return 6 * 7' | codemode run -
`;

const RUN_OPTIONS = {
  config: { type: 'string' },
  timeout: { type: 'string' },
  memory: { type: 'string' },
  'max-tool-calls': { type: 'string' },
  json: { type: 'boolean' },
  strict: { type: 'boolean' },
  'connect-timeout': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

/** Parsed `codemode run` arguments. */
export interface RunArgs {
  script: string;
  config?: string;
  timeoutMs?: number | null;
  memoryMb?: number | null;
  maxToolCalls?: number | null;
  json: boolean;
  strict: boolean;
  connectTimeoutMs?: number;
  logLevel?: LogLevel;
}

/** Parses `codemode run` arguments (after the subcommand). Throws `CliUsageError`. */
export function parseRunArgs(argv: readonly string[]): RunArgs | 'help' {
  const { values, positionals } = parseFlags(argv, RUN_OPTIONS);
  if (values.help) return 'help';
  if (positionals.length === 0) throw new CliUsageError('missing the script: give a file name, or "-" to read it from stdin.');
  if (positionals.length > 1) throw new CliUsageError(`expected one script, got ${positionals.length}: ${positionals.map((p) => JSON.stringify(p)).join(' ')}.`);
  const logLevel = values['log-level'];
  if (logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new CliUsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}.`);
  }
  const timeout = numberFlag('timeout', values.timeout, { allowNone: true });
  const connect = numberFlag('connect-timeout', values['connect-timeout'], {});
  return {
    script: positionals[0]!,
    ...(values.config !== undefined ? { config: values.config } : {}),
    ...(timeout !== undefined ? { timeoutMs: timeout === null ? null : Math.round(timeout * 1000) } : {}),
    ...(values.memory !== undefined ? { memoryMb: numberFlag('memory', values.memory, { allowNone: true }) ?? null } : {}),
    ...(values['max-tool-calls'] !== undefined ? { maxToolCalls: numberFlag('max-tool-calls', values['max-tool-calls'], { integer: true, allowNone: true }) ?? null } : {}),
    json: values.json ?? false,
    strict: values.strict ?? false,
    ...(connect !== undefined && connect !== null ? { connectTimeoutMs: Math.round(connect * 1000) } : {}),
    ...(logLevel !== undefined ? { logLevel: logLevel as LogLevel } : {}),
  };
}

async function readScript(script: string, stdin: NodeJS.ReadableStream): Promise<string> {
  if (script === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    return await readFile(script, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CliUsageError(`cannot read the script ${JSON.stringify(script)}: no such file.`);
    if (code === 'EISDIR') throw new CliUsageError(`${JSON.stringify(script)} is a directory, not a script.`);
    throw new CliUsageError(`cannot read the script ${JSON.stringify(script)}: ${describeError(err)}`);
  }
}

/** Counts tool calls as they start, for the live status line. */
function counted(source: ToolSource, counter: { calls: number }): ToolSource {
  return Object.assign(Object.create(source) as ToolSource, {
    callTool: (...args: Parameters<ToolSource['callTool']>) => {
      counter.calls++;
      return source.callTool(...args);
    },
  });
}

/** A one-line live status on a terminal's stderr; nothing at all off a terminal. */
function statusLine(stream: NodeJS.WriteStream, counter: { calls: number }): () => void {
  if (!stream.isTTY) return () => undefined;
  const started = performance.now();
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let frame = 0;
  let shown = false;
  const timer = setInterval(() => {
    const elapsed = (performance.now() - started) / 1000;
    if (elapsed < 0.5) return; // short runs print nothing extra
    shown = true;
    stream.write(`\r\x1b[2K${frames[frame++ % frames.length]} running ${elapsed.toFixed(1)}s · ${counter.calls} tool call${counter.calls === 1 ? '' : 's'}`);
  }, 100);
  timer.unref();
  return () => {
    clearInterval(timer);
    if (shown) stream.write('\r\x1b[2K');
  };
}

function formatLogs(result: ExecuteResult): string {
  return result.logs.map((l) => (l.level === 'log' || l.level === 'info' ? `${l.message}\n` : `[${l.level}] ${l.message}\n`)).join('');
}

export interface RunIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
}

/**
 * Runs `codemode run` with the arguments after the subcommand; resolves with the exit code.
 *
 * @example
 * ```ts
 * process.exitCode = await runCommand(['script.js', '--config', 'mcp.json']);
 * ```
 */
export async function runCommand(argv: readonly string[], io: RunIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let args: RunArgs | 'help';
  try {
    args = parseRunArgs(argv);
  } catch (err) {
    if (!(err instanceof CliUsageError)) throw err;
    io.stderr.write(`codemode run: ${err.message}\nRun "codemode run --help" for usage.\n`);
    return EXIT.USAGE;
  }
  if (args === 'help') {
    io.stdout.write(RUN_HELP);
    return EXIT.OK;
  }
  // `run` is quiet by default (the script's output is what matters); CODEMODE_LOG_LEVEL or --log-level override.
  if (args.logLevel !== undefined) setLogLevel(args.logLevel);
  else if ((process.env.CODEMODE_LOG_LEVEL ?? '') === '') setLogLevel('warn');

  // Interrupts abort whatever stage we are in; the run then reports kind "aborted".
  const controller = new AbortController();
  let interrupted: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted !== undefined) process.exit(EXIT.FAILURE); // a second signal: stop waiting
    interrupted = signal;
    controller.abort(new Error(`interrupted by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  // The script runs in a sandbox worker process, never in this one. A run stopped inside a long built-in
  // (Array.from of 1e8 elements past --memory, lastIndexOf over 2^53 indices past --timeout) leaves its
  // isolate's thread running after disposal, and nothing stops that thread but the end of its process:
  // here, exiting under it crashed with SIGSEGV (exit 139) instead of the documented exit 1. The pool
  // SIGKILLs such a worker; this process never loads isolated-vm, so it always exits with its own code.
  // The worker starts now, so that its start-up overlaps reading the script and connecting the servers.
  const { ProcessPool } = await import('../sandbox/process/pool.js');
  // One user, no shared event loop to protect: the script runs at this command's own priority.
  const pool = new ProcessPool({ size: 1, concurrencyPerWorker: 1, standbyWorkers: 0, nice: null, ...(args.memoryMb !== undefined ? { warmMemoryMb: args.memoryMb } : {}) });
  const cleanup: Array<() => Promise<void>> = [() => pool.close()];
  const { loadServersConfig } = await import('../server/config.js');
  const { startTelemetryFromEnv } = await import('./telemetry.js');
  const telemetry = await startTelemetryFromEnv();
  try {
    let code: string;
    let config;
    try {
      code = await readScript(args.script, io.stdin);
      config = args.config !== undefined ? await loadServersConfig(args.config) : undefined;
    } catch (err) {
      if (err instanceof CliUsageError || isCodemodeError(err, 'INVALID_CONFIG')) {
        io.stderr.write(`codemode run: ${describeError(err)}\n`);
        return EXIT.USAGE;
      }
      throw err;
    }
    // The servers' processes start first and boot while the rest of codemode loads. (The MCP client side is
    // loaded only when there are servers to talk to.)
    let starting: StartingUpstreams | undefined;
    if (config !== undefined && Object.keys(config.servers).length > 0) {
      const { startUpstreams } = await import('../server/upstreams.js');
      starting = startUpstreams(config.servers, {
        strict: args.strict,
        signal: controller.signal,
        ...(args.connectTimeoutMs !== undefined ? { connectTimeoutMs: args.connectTimeoutMs } : {}),
      });
      const s = starting;
      cleanup.push(() => s.abandon());
      await starting.spawned;
    }
    const [{ CodeMode }, { ProcessSandbox }, { codeModeOptionsFromConfig }] = await Promise.all([
      import('../codemode/codemode.js'),
      import('../sandbox/process/process-sandbox.js'),
      import('../server/server.js'),
    ]);
    const counter = { calls: 0 };
    const sources: ToolSource[] = [];
    if (starting !== undefined) {
      const { mcpClientSource } = await import('../codemode/sources.js');
      let upstreams;
      try {
        upstreams = await starting.ready;
      } catch (err) {
        if (controller.signal.aborted) {
          io.stderr.write(`codemode run: interrupted by ${interrupted ?? 'a signal'} while starting the servers\n`);
          return EXIT.FAILURE;
        }
        io.stderr.write(`codemode run: ${describeError(err)}\n`);
        return isCodemodeError(err, 'UPSTREAM_UNAVAILABLE') ? EXIT.USAGE : EXIT.FAILURE;
      }
      const up = upstreams;
      for (const failed of up.failures()) io.stderr.write(`codemode run: warning: server "${failed.name}" is unavailable (${failed.error ?? 'unknown error'}); its tools are missing\n`);
      for (const [name, connection] of up.connections) {
        sources.push(counted(mcpClientSource(name, connection.client, { transport: connection.kind === 'stdio' ? 'pipe' : 'tcp' }), counter));
      }
    }
    const settings = config !== undefined ? codeModeOptionsFromConfig(config, {}) : {};
    const limits = {
      ...(settings.limits ?? {}),
      ...(args.timeoutMs !== undefined ? { timeoutMs: args.timeoutMs } : {}),
      ...(args.memoryMb !== undefined ? { memoryMb: args.memoryMb } : {}),
    };
    const sandbox = new ProcessSandbox({ pool, limits });
    cleanup.push(() => sandbox.close());
    let mode;
    try {
      mode = await CodeMode.create({
        sources,
        sandbox,
        maxToolCalls: args.maxToolCalls !== undefined ? args.maxToolCalls : settings.maxToolCalls,
      });
    } catch (err) {
      io.stderr.write(`codemode run: ${describeError(err)}\n`);
      return isCodemodeError(err, 'INVALID_CONFIG') || isCodemodeError(err, 'TOOL_NAME_COLLISION') ? EXIT.USAGE : EXIT.FAILURE;
    }
    const m = mode;
    cleanup.push(() => m.close());
    const stopStatus = args.json ? () => undefined : statusLine(io.stderr, counter);
    let result: ExecuteResult;
    try {
      result = await mode.execute(code, { signal: controller.signal });
    } finally {
      stopStatus();
    }
    if (args.json) {
      const out = result.ok
        ? { ok: true, result: result.value ?? null, logs: result.logs, toolCalls: result.toolCalls, warnings: result.warnings, stats: result.stats }
        : { ok: false, error: result.error, logs: result.logs, toolCalls: result.toolCalls, warnings: result.warnings, stats: result.stats };
      io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } else {
      io.stderr.write(formatLogs(result));
      for (const w of result.warnings) io.stderr.write(`codemode run: warning: ${w}\n`);
      if (result.ok) {
        if (result.value !== undefined) io.stdout.write(`${JSON.stringify(result.value, null, 2)}\n`);
        else log.info('the script returned no value (end it with `return <value>` to print one)');
      }
    }
    if (!result.ok) {
      const e = result.error;
      const where = e.line !== undefined ? ` at line ${e.line}${e.column !== undefined ? `, column ${e.column}` : ''}` : '';
      const why = e.kind === 'aborted' && interrupted !== undefined ? `interrupted by ${interrupted}` : `${e.name && e.kind === 'runtime' ? `${e.name}: ` : ''}${e.message}`;
      if (!args.json) io.stderr.write(`codemode run: ${e.kind} error${where}: ${why}\n`);
      if (e.structuredContent !== undefined && !args.json) io.stderr.write(`codemode run: tool error details: ${JSON.stringify(e.structuredContent)}\n`);
      return EXIT.FAILURE;
    }
    return EXIT.OK;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const step of cleanup.reverse()) await step().catch((err: unknown) => log.warn('cleanup failed', { error: describeError(err) }));
    await telemetry?.shutdown();
  }
}
