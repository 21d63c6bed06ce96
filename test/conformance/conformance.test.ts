/**
 * The official MCP conformance server suite (`npx conformance server --suite all`), run for real against:
 * the fixture server directly; `createProxy` Streamable HTTP -> Streamable HTTP; `createProxy` Streamable
 * HTTP -> stdio. Every scenario must pass on every path (no expected-failures file), and the proxy paths
 * must not add a single warning the fixture itself does not get.
 *
 * Measured here: about 4 s per suite run (32 scenarios); the stdio path starts one fixture per session.
 */
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProxy } from '../../src/proxy/proxy.js';
import { serveProxyHttp } from '../../src/proxy/http.js';
import type { ProxyHttpServer } from '../../src/proxy/http.js';
import { FIXTURE, failures, runServerSuite, warnings } from './runner.js';
import type { SuiteResult } from './runner.js';

const SUITE_TIMEOUT_MS = 120_000;
/** Scenarios of `--suite all` for servers in conformance 0.1.16. A drop means a scenario did not run. */
const MIN_SCENARIOS = 30;

let fixture: ChildProcess | undefined;
let fixtureUrl = '';
let direct: SuiteResult | undefined;
const hosts: ProxyHttpServer[] = [];

async function startFixtureHttp(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--experimental-strip-types', '--no-warnings', FIXTURE, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`fixture did not start: ${err}`)), 15_000);
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /listening on (http:\S+)/.exec(err);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`fixture exited with ${code}: ${err}`)));
  });
  return { child, url };
}

beforeAll(async () => {
  const started = await startFixtureHttp();
  fixture = started.child;
  fixtureUrl = started.url;
  direct = await runServerSuite(fixtureUrl, SUITE_TIMEOUT_MS);
}, SUITE_TIMEOUT_MS + 20_000);

afterAll(async () => {
  await Promise.all(hosts.map((h) => h.close()));
  fixture?.kill('SIGTERM');
});

function expectAllPass(result: SuiteResult): void {
  expect(result.scenarios.size, result.output.slice(-3000)).toBeGreaterThanOrEqual(MIN_SCENARIOS);
  expect(failures(result)).toEqual({});
  for (const [scenario, checks] of result.scenarios) {
    // A scenario with no SUCCESS and no WARNING check did not really run (e.g. it could not connect).
    expect(checks.length, scenario).toBeGreaterThan(0);
  }
}

describe('MCP conformance suite (official, --suite all)', () => {
  it('passes against the fixture server directly', () => {
    expect(direct).toBeDefined();
    expectAllPass(direct!);
  });

  it('passes through createProxy, Streamable HTTP -> Streamable HTTP', async () => {
    const host = await serveProxyHttp(createProxy({ url: fixtureUrl }, { idleTimeoutMs: 60_000 }));
    hosts.push(host);
    const result = await runServerSuite(host.url, SUITE_TIMEOUT_MS);
    expectAllPass(result);
    expect(warnings(result)).toEqual(warnings(direct!));
  }, SUITE_TIMEOUT_MS + 10_000);

  it('passes through createProxy, Streamable HTTP -> stdio', async () => {
    const proxy = createProxy(
      // The compile cache makes the 30-odd fixture starts (one per session) cheaper.
      { command: process.execPath, args: ['--experimental-strip-types', '--no-warnings', FIXTURE, '--stdio'], env: { NODE_COMPILE_CACHE: join(tmpdir(), 'codemode-compile-cache') } },
      // The suite's clients never DELETE their sessions; a short idle timeout reaps their fixture processes.
      { onStderr: () => undefined, idleTimeoutMs: 5_000 },
    );
    const host = await serveProxyHttp(proxy);
    hosts.push(host);
    const result = await runServerSuite(host.url, SUITE_TIMEOUT_MS);
    expectAllPass(result);
    expect(warnings(result)).toEqual(warnings(direct!));
  }, SUITE_TIMEOUT_MS + 10_000);
});
