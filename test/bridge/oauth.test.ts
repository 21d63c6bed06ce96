/**
 * codemode-remote's OAuth client against the loopback authorization-server fixture: login through
 * a headless "browser" command, token storage (0600, atomic, reused across runs), proactive refresh,
 * rotating refresh tokens, mid-session 401, two bridges logging in at once, denial, and stdin EOF
 * while waiting for the login. Needs the built bridge (`npm run build`).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { BridgeHost } from '../fixtures/bridge-host.js';
import { spawnBridge } from '../fixtures/bridge-host.js';
import type { OAuthFixture } from '../fixtures/oauth-server.js';
import { startOAuthFixture } from '../fixtures/oauth-server.js';

const browser = resolve(dirname(fileURLToPath(import.meta.url)), '../conformance/bridge-driver.ts');
const OPEN = `"${process.execPath}" "${browser}" --open`;

const hosts: BridgeHost[] = [];
const fixtures: OAuthFixture[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const h of hosts.splice(0)) h.kill();
  await Promise.all(fixtures.splice(0).map((f) => f.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function fixture(opts?: { accessTtlS?: number }): Promise<OAuthFixture> {
  const f = await startOAuthFixture(opts);
  fixtures.push(f);
  return f;
}

function configDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cm-remote-oauth-'));
  dirs.push(d);
  return d;
}

function bridge(url: string, dir: string, extra: string[] = []): BridgeHost {
  const h = spawnBridge([url, '--open-command', OPEN, '--auth-timeout', '20', ...extra], { CODEMODE_CONFIG_DIR: dir });
  hosts.push(h);
  return h;
}

function echo(h: BridgeHost, message: string): Promise<string> {
  return h.request('tools/call', { name: 'echo', arguments: { message } }).then((m) => {
    if (m.error !== undefined) throw new Error(`${m.error.message}\n${h.stderr()}`);
    return ((m.result?.content as Array<{ text: string }>)[0]!).text;
  });
}

describe('OAuth login and token storage', () => {
  it('logs in headlessly on a 401, prints the URL, stores tokens 0600 atomically, and reuses them next run', async () => {
    const f = await fixture();
    const dir = configDir();
    const h = bridge(f.url, dir);
    const init = await h.initialize();
    expect(init.error, h.stderr()).toBeUndefined();
    expect(await echo(h, 'one')).toBe('echo: one');
    expect(h.stderr()).toContain(`${f.issuer}/authorize?`);
    expect(f.stats).toMatchObject({ registrations: 1, authorizations: 1, codeExchanges: 1 });
    const files = readdirSync(dir);
    const tokenFiles = files.filter((n) => n.endsWith('.json'));
    expect(tokenFiles).toHaveLength(1);
    expect(files.filter((n) => n.endsWith('.tmp') || n.endsWith('.lock'))).toEqual([]);
    expect(statSync(join(dir, tokenFiles[0]!)).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o077).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, tokenFiles[0]!), 'utf8'))).toMatchObject({ version: 1, serverUrl: f.url, tokens: { token_type: 'Bearer' } });
    await h.endInput();

    const again = bridge(f.url, dir);
    await again.initialize();
    expect(await echo(again, 'two')).toBe('echo: two');
    expect(f.stats.authorizations).toBe(1);
  });

  it('time spent in the browser login does not count against --connect-timeout', async () => {
    const f = await fixture();
    const slowBrowser = `"${process.execPath}" -e "setTimeout(() => fetch(process.argv[1]).then((r) => r.text()), 2500)"`;
    const h = spawnBridge([f.url, '--open-command', slowBrowser, '--connect-timeout', '1'], { CODEMODE_CONFIG_DIR: configDir() });
    hosts.push(h);
    const init = await h.initialize();
    expect(init.error, h.stderr()).toBeUndefined();
    expect(await echo(h, 'patient')).toBe('echo: patient');
  });

  it('keys storage by URL, resource and headers', async () => {
    const f = await fixture();
    const dir = configDir();
    const a = bridge(f.url, dir);
    await a.initialize();
    await a.endInput();
    const b = bridge(f.url, dir, ['--header', 'X-Tenant: other']);
    await b.initialize();
    expect(await echo(b, 'x')).toBe('echo: x');
    expect(f.stats.authorizations).toBe(2);
    expect(readdirSync(dir).filter((n) => n.endsWith('.json'))).toHaveLength(2);
  });

  it('answers initialize with the denial when the user refuses, then exits', async () => {
    const f = await fixture();
    f.deny = true;
    const h = bridge(f.url, configDir());
    const init = await h.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } }, 15_000);
    expect(init.error?.message).toMatch(/denied access: access_denied \(the user said no\)/);
    expect((await h.exited).code).toBe(1);
  });

  it('registers as a native application (application_type, OIDC DCR / SEP-837)', async () => {
    const f = await fixture();
    const h = bridge(f.url, configDir());
    expect((await h.initialize()).error, h.stderr()).toBeUndefined();
    expect(f.registrationBodies).toEqual([expect.objectContaining({ application_type: 'native', client_name: 'codemode-remote', token_endpoint_auth_method: 'none' })]);
  });

  it("a client registered with one authorization server is never presented to another: the server's move to a new one means a new registration there", async () => {
    const a = await fixture();
    const b = await fixture();
    const dir = configDir();
    const first = bridge(a.url, dir);
    expect((await first.initialize()).error, first.stderr()).toBeUndefined();
    await first.endInput();
    const registeredWithA = a.authorizeClientIds[0]!;
    expect(a.stats.registrations).toBe(1);

    // The resource now names B as its authorization server, and A's tokens stop working.
    a.authorizationServer = b.issuer;
    a.revokeAccessTokens();
    a.revokeRefreshTokens();
    const second = bridge(a.url, dir);
    // (B's token then does not open A's resource: the initialize fails, which is not what is tested here.)
    await second.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } }, 20_000);
    // B saw a registration of its own and a login with that client, never A's client id.
    expect(b.stats.registrations).toBe(1);
    expect(b.authorizeClientIds).toHaveLength(1);
    expect(b.authorizeClientIds).not.toContain(registeredWithA);
    expect(b.registrationBodies[0]).toMatchObject({ application_type: 'native' });
  });

  describe('RFC 9207: the authorization response names its issuer', () => {
    it('an iss equal to the discovered issuer is accepted, advertised or not', async () => {
      for (const issSupported of [true, false]) {
        const f = await fixture();
        f.iss = 'correct';
        f.issSupported = issSupported;
        const h = bridge(f.url, configDir());
        expect((await h.initialize()).error, h.stderr()).toBeUndefined();
        expect(await echo(h, 'ok')).toBe('echo: ok');
        expect(f.stats.codeExchanges).toBe(1);
      }
    });

    for (const [label, iss, issSupported] of [
      ["another server's iss (the mix-up attack)", 'wrong', false],
      ['no iss from a server that advertises it', 'absent', true],
    ] as const) {
      it(`${label}: refused before the code is redeemed, as an initialize error`, async () => {
        const f = await fixture();
        f.iss = iss;
        f.issSupported = issSupported;
        const h = bridge(f.url, configDir());
        const init = await h.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } }, 15_000);
        expect(init.error?.message).toMatch(/OAuth flow failed: .*issuer/i);
        expect((init.error?.data as { reason?: string }).reason).toBe('AUTH_FAILED');
        expect(f.stats).toMatchObject({ authorizations: 1, codeExchanges: 0 });
        expect((await h.exited).code).toBe(1);
      });
    }
  });

  it('RFC 8414: metadata naming another issuer than the one it was fetched for is refused before any endpoint is used', async () => {
    const f = await fixture();
    f.metadataIssuer = 'https://elsewhere.example';
    const h = bridge(f.url, configDir());
    const init = await h.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } }, 15_000);
    expect(init.error?.message).toMatch(/names another issuer \(https:\/\/elsewhere\.example\)/);
    expect((init.error?.data as { reason?: string }).reason).toBe('AUTH_FAILED');
    expect(f.registrationBodies).toEqual([]);
    expect(f.stats).toMatchObject({ authorizations: 0, codeExchanges: 0 });
    expect((await h.exited).code).toBe(1);
  });

  it('a 401 from a server without OAuth metadata is an initialize error that suggests a header', async () => {
    const f = await fixture();
    f.upstream.fault = { kind: 'status', status: 401, headers: { 'www-authenticate': 'Bearer' }, body: 'nope' };
    const h = bridge(f.url.replace(/\/mcp$/, '/other/mcp'), configDir());
    const init = await h.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } }, 15_000);
    expect(init.error?.message).toMatch(/requires authorization and the OAuth flow failed: .*--header "Authorization: Bearer \.\.\."/);
    expect((init.error?.data as { reason?: string }).reason).toBe('AUTH_FAILED');
    expect((await h.exited).code).toBe(1);
  });

  it('stdin EOF ends the bridge within 500 ms while it waits for the browser login', async () => {
    const f = await fixture();
    const h = spawnBridge([f.url, '--headless'], { CODEMODE_CONFIG_DIR: configDir() });
    hosts.push(h);
    h.child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } })}\n`);
    const deadline = Date.now() + 10_000;
    while (!h.stderr().includes('/authorize?') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(h.stderr()).toContain('/authorize?');
    const { code, ms } = await h.endInput();
    expect(code).toBe(0);
    expect(ms).toBeLessThan(500);
  });
});

describe('refresh', () => {
  it('refreshes proactively before expiry (no 401 seen), with rotation', async () => {
    const f = await fixture({ accessTtlS: 3 });
    const h = bridge(f.url, configDir(), ['--refresh-threshold', '2']);
    await h.initialize();
    expect(await echo(h, 'a')).toBe('echo: a');
    const unauthorizedBefore = f.stats.unauthorized;
    await new Promise((r) => setTimeout(r, 1_300)); // now within 2 s of expiry
    expect(await echo(h, 'b')).toBe('echo: b');
    expect(f.stats.refreshes).toBe(1);
    expect(f.stats.unauthorized).toBe(unauthorizedBefore);
    expect(f.stats.authorizations).toBe(1);
  });

  it('a mid-session 401 (revoked token) refreshes and retries the request once', async () => {
    const f = await fixture();
    const h = bridge(f.url, configDir());
    await h.initialize();
    expect(await echo(h, 'a')).toBe('echo: a');
    f.revokeAccessTokens();
    expect(await echo(h, 'b')).toBe('echo: b');
    expect(f.stats.refreshes).toBe(1);
    expect(f.stats.authorizations).toBe(1);
    expect(h.stdout.filter((m) => m.error !== undefined)).toEqual([]);
  });

  it('two bridges sharing a store never spend the same rotating refresh token twice', async () => {
    const f = await fixture({ accessTtlS: 3 });
    const dir = configDir();
    const first = bridge(f.url, dir, ['--refresh-threshold', '2']);
    await first.initialize();
    const second = bridge(f.url, dir, ['--refresh-threshold', '2']);
    await second.initialize();
    expect(f.stats.authorizations).toBe(1);
    await new Promise((r) => setTimeout(r, 1_300));
    const [a, b] = await Promise.all([echo(first, 'a'), echo(second, 'b')]);
    expect([a, b]).toEqual(['echo: a', 'echo: b']);
    expect(f.stats.refreshReuse).toBe(0);
    expect(f.stats.refreshes).toBe(1);
  });
});

describe('concurrency', () => {
  it('two bridges started at once complete ONE login between them', async () => {
    const f = await fixture();
    const dir = configDir();
    const a = bridge(f.url, dir);
    const b = bridge(f.url, dir);
    const [ia, ib] = await Promise.all([a.initialize(), b.initialize()]);
    expect(ia.error, a.stderr()).toBeUndefined();
    expect(ib.error, b.stderr()).toBeUndefined();
    expect(await echo(a, 'a')).toBe('echo: a');
    expect(await echo(b, 'b')).toBe('echo: b');
    expect(f.stats.authorizations).toBe(1);
    expect(f.stats.codeExchanges).toBe(1);
    expect(readdirSync(dir).filter((n) => n.endsWith('.lock'))).toEqual([]);
  });
});
