/**
 * Process behaviour of `codemode-remote`: usage errors (exit 2), signals (DELETE the session, exit
 * 0), stdin EOF (exit 0), failed upstream (JSON-RPC error to the host, then exit 1).
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import { describeError } from '../errors.js';
import { setLogLevel } from '../log.js';
import { CliUsageError } from './args.js';
import { REMOTE_HELP, parseRemoteArgs } from './remote-args.js';

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** HTTP(S)_PROXY / NO_PROXY: Node's fetch honours them once its global dispatcher is proxy-aware. */
async function applyProxyEnv(env: NodeJS.ProcessEnv): Promise<void> {
  const wanted = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'].some((k) => (env[k] ?? '') !== '');
  if (!wanted || env.NODE_USE_ENV_PROXY === '1') return;
  const http = await import('node:http');
  const set = (http as { setGlobalProxyFromEnv?: (env?: NodeJS.ProcessEnv) => unknown }).setGlobalProxyFromEnv;
  if (typeof set === 'function') set(env);
  else process.stderr.write('codemode-remote: HTTP(S)_PROXY is set but this Node has no http.setGlobalProxyFromEnv; run with NODE_USE_ENV_PROXY=1\n');
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let parsed;
  try {
    parsed = parseRemoteArgs(argv, env);
  } catch (err) {
    if (err instanceof CliUsageError) {
      process.stderr.write(`codemode-remote: ${err.message}\nRun codemode-remote --help for usage.\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(REMOTE_HELP);
    return 0;
  }
  if (parsed.kind === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const { config } = parsed;
  if (config.logLevel !== undefined) setLogLevel(config.logLevel);
  await applyProxyEnv(env);
  const { startBridge } = await import('../bridge/bridge.js');
  const auth = config.auth;
  const bridge = startBridge(
    config,
    { input: process.stdin, output: process.stdout },
    auth === undefined ? undefined : async () => (await import('../bridge/auth.js')).createAuthHooks(config, auth),
  );
  // A stray rejection in a stream callback must not kill a bridge that is serving a host: log it.
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`codemode-remote: internal error (please report): ${describeError(err)}\n`);
  });
  const onSignal = (): void => void bridge.close(0);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let code: number;
  try {
    code = await bridge.done;
  } catch (err) {
    process.stderr.write(`codemode-remote: ${describeError(err)}\n`);
    code = 1;
  }
  // Keep-alive sockets and a pending stdin read would hold the process open; the bridge is done.
  await new Promise<void>((resolve) => (process.stdout.writableNeedDrain ? process.stdout.once('drain', resolve) : resolve()));
  process.exit(code);
}
