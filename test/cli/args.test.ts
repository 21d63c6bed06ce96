import { describe, expect, it } from 'vitest';
import { CliUsageError } from '../../src/cli/args.js';
import { parseRunArgs } from '../../src/cli/run-command.js';
import { DEFAULT_SERVE_PORT, parseServeArgs } from '../../src/cli/serve-command.js';

describe('parseServeArgs', () => {
  it('defaults to stdio with the documented defaults', () => {
    expect(parseServeArgs([])).toEqual({ mode: 'stdio', host: '127.0.0.1', port: DEFAULT_SERVE_PORT, stateless: false, allowUnauthenticated: false, exposeTools: false, strict: false, shutdownGraceMs: 10_000 });
  });

  it('maps every HTTP flag, with seconds and MB converted to ms and bytes', () => {
    const args = parseServeArgs([
      '--http', '--config', 'mcp.json', '--host', '0.0.0.0', '--port', '8080', '--stateless', '--session-idle-timeout', '60', '--max-body', '2',
      '--allowed-host', 'mcp.example.com', '--allowed-host', 'localhost', '--allowed-origin', 'https://app.example.com', '--auth-tokens-env', 'TOKENS',
      '--jwks-url', 'https://idp.test/jwks', '--jwt-issuer', 'https://idp.test', '--jwt-audience', 'a', '--jwt-audience', 'b', '--allow-unauthenticated',
      '--expose-tools', '--strict', '--timeout', '2.5', '--memory', 'none', '--max-tool-calls', '7', '--max-concurrent', '3', '--max-queue', '0',
      '--connect-timeout', '5', '--shutdown-grace', '0', '--log-level', 'debug',
    ]);
    expect(args).toEqual({
      config: 'mcp.json',
      mode: 'http',
      host: '0.0.0.0',
      port: 8080,
      stateless: true,
      sessionIdleTimeoutMs: 60_000,
      maxBodyBytes: 2 * 1024 * 1024,
      allowedHosts: ['mcp.example.com', 'localhost'],
      allowedOrigins: ['https://app.example.com'],
      authTokensEnv: 'TOKENS',
      jwt: { jwksUrl: 'https://idp.test/jwks', issuer: 'https://idp.test', audience: ['a', 'b'] },
      allowUnauthenticated: true,
      exposeTools: true,
      strict: true,
      timeoutMs: 2_500,
      memoryMb: null,
      maxToolCalls: 7,
      maxConcurrent: 3,
      maxQueue: 0,
      connectTimeoutMs: 5_000,
      shutdownGraceMs: 0,
      logLevel: 'debug',
    });
    expect(parseServeArgs(['--http', '--session-idle-timeout', 'none'])).toMatchObject({ sessionIdleTimeoutMs: null });
  });

  it('rejects malformed values and impossible combinations with a usage error naming the flag', () => {
    const bad: Array<[string[], RegExp]> = [
      [['--max-concurrent', '0'], /--max-concurrent must be a whole number >= 1/],
      [['--max-queue', '-1'], /--max-queue/],
      [['--timeout', 'abc'], /--timeout must be a number/],
      [['--max-tool-calls', '1.5'], /--max-tool-calls must be a whole number/],
      [['--log-level', 'loud'], /--log-level must be one of/],
      [['--http', '--port', '70000'], /--port must be a whole number from 0 to 65535/],
      [['--http', '--jwks-url', 'not a url', '--jwt-issuer', 'i', '--jwt-audience', 'a'], /--jwks-url must be an absolute URL/],
      [['extra'], /unexpected argument "extra"/],
      [['--stateless'], /--stateless only applies with --http/],
    ];
    for (const [argv, message] of bad) {
      expect(() => parseServeArgs(argv), argv.join(' ')).toThrow(CliUsageError);
      expect(() => parseServeArgs(argv), argv.join(' ')).toThrow(message);
    }
  });
});

describe('parseRunArgs', () => {
  it('maps the flags and accepts "-" for stdin', () => {
    expect(parseRunArgs(['-', '--timeout', '0.5', '--memory', '64', '--max-tool-calls', 'none', '--json', '--strict', '--connect-timeout', '3'])).toEqual({
      script: '-',
      timeoutMs: 500,
      memoryMb: 64,
      maxToolCalls: null,
      json: true,
      strict: true,
      connectTimeoutMs: 3_000,
    });
    expect(parseRunArgs(['--help'])).toBe('help');
    expect(() => parseRunArgs(['a.js', 'b.js'])).toThrow(/expected one script, got 2/);
    expect(() => parseRunArgs(['a.js', '--memory=-5'])).toThrow(/--memory must be a number/);
  });
});
