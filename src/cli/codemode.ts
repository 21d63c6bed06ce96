#!/usr/bin/env -S node --no-node-snapshot
/**
 * The `codemode` command: `run`, `serve` and `proxy`. Subcommands are imported lazily so `--help` and
 * usage errors answer at once, and so `proxy` never loads the sandbox.
 *
 * @module
 */

import { enableCompileCache } from 'node:module';

try {
  enableCompileCache?.();
} catch {
  // a read-only cache dir only costs speed
}

const HELP = `Usage: codemode <command> [options]

Commands:
  run <file | ->     run a script in the sandbox with the configured MCP servers' tools
  serve              serve the engine (execute, search, get_schema) as an MCP server over stdio or HTTP
  proxy              serve any MCP server over the other transport (stdio <-> Streamable HTTP)

Options:
  -h, --help         show this help (or "codemode <command> --help" for a command's flags)
  -v, --version      print the version

Exit codes: 0 success, 1 failure, 2 usage or configuration error.
`;

// `codemode run script.js | head -1`: a reader that goes away is not a crash.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run': {
      const { runCommand } = await import('./run-command.js');
      return runCommand(rest);
    }
    case 'serve': {
      const { serveCommand } = await import('./serve-command.js');
      return serveCommand(rest);
    }
    case 'proxy': {
      const { runProxyCommand } = await import('./proxy-command.js');
      return runProxyCommand(rest);
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process[command === undefined ? 'stderr' : 'stdout'].write(HELP);
      return command === undefined ? 2 : 0;
    case '-v':
    case '--version': {
      const { packageVersion } = await import('./args.js');
      process.stdout.write(`${await packageVersion()}\n`);
      return 0;
    }
    default:
      process.stderr.write(`codemode: unknown command ${JSON.stringify(command)}. Commands: run, serve, proxy. Run "codemode --help" for usage.\n`);
      return 2;
  }
}

let code: number;
try {
  code = await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`codemode: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  code = 1;
}
// Child processes, keep-alive sockets or a pending stdin read would hold the process open: the command is
// done, so exit once stdout has drained.
await new Promise<void>((resolve) => (process.stdout.writableNeedDrain ? process.stdout.once('drain', resolve) : resolve()));
// isolated-vm can crash the process (SIGSEGV) when it exits while a just-disposed isolate's thread is still
// unwinding: measured 7 in 20 runs right after a timeout with no pause, 1 in 20 with 30 ms, 0 in 30 with
// 150 ms. A server with in-process isolation (whose shutdown may abort executes) pauses before exiting.
// `codemode run` needs no pause: its script runs in a sandbox worker process, and this one never loads
// isolated-vm (a thread stuck in a long built-in outlives any pause; only a separate process contains it).
if (process.argv[2] === 'serve') await new Promise((resolve) => setTimeout(resolve, 150));
process.exit(code);
