/** The `codemode serve` flags for sessions, /healthz and slow clients: parsed, validated, and in --help. */
import { describe, expect, it } from 'vitest';
import { CliUsageError } from '../../src/cli/args.js';
import { parseServeArgs, SERVE_HELP } from '../../src/cli/serve-command.js';

describe('codemode serve: session, health and socket flags', () => {
  it('are documented in --help', () => {
    for (const flag of ['--max-sessions', '--max-sessions-per-principal', '--health-details', '--headers-timeout', '--receive-timeout', '--max-connections']) {
      expect(SERVE_HELP).toContain(`  ${flag} `);
    }
  });

  it('parse into serveHttp options', () => {
    const args = parseServeArgs([
      '--http',
      '--max-sessions',
      '50',
      '--max-sessions-per-principal',
      'none',
      '--health-details',
      '--headers-timeout',
      '5',
      '--receive-timeout',
      '20',
      '--max-connections',
      '300',
    ]);
    expect(args).toMatchObject({ maxSessions: 50, maxSessionsPerPrincipal: null, healthDetails: true, headersTimeoutMs: 5_000, requestTimeoutMs: 20_000, maxConnections: 300 });
    expect(parseServeArgs(['--http'])).not.toHaveProperty('healthDetails');
  });

  it('refuse bad values and stdio mode with a usage error', () => {
    for (const [argv, message] of [
      [['--http', '--max-sessions', '1.5'], /--max-sessions must be a whole number >= 1/],
      [['--http', '--max-connections', 'many'], /--max-connections must be a whole number/],
      [['--http', '--headers-timeout', '40', '--receive-timeout', '20'], /must not exceed --receive-timeout/],
      [['--http', '--headers-timeout', '40'], /raise --receive-timeout too/],
      [['--max-sessions', '5'], /only applies with --http/],
      [['--health-details'], /only applies with --http/],
    ] as const) {
      expect(() => parseServeArgs([...argv]), argv.join(' ')).toThrow(CliUsageError);
      expect(() => parseServeArgs([...argv]), argv.join(' ')).toThrow(message);
    }
  });
});
