import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CliUsageError } from '../../src/cli/args.js';
import { REMOTE_HELP, parseRemoteArgs } from '../../src/cli/remote-args.js';
import { BRIDGE_BIN } from '../fixtures/bridge-host.js';

const URL_ = 'https://mcp.example.com/mcp';
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function run(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const parsed = parseRemoteArgs(argv, env);
  if (parsed.kind !== 'run') throw new Error(`expected run, got ${parsed.kind}`);
  return parsed.config;
}

function usage(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    parseRemoteArgs(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(CliUsageError);
    return (err as Error).message;
  }
  throw new Error('expected a usage error');
}

describe('parseRemoteArgs', () => {
  it('accepts flags before or after the URL, and the callback port positional', () => {
    const a = run(['--transport', 'http', URL_, '8123', '--debug']);
    const b = run([URL_, '--debug', '8123', '--transport', 'http']);
    expect(a).toEqual(b);
    expect(a.url.href).toBe(URL_);
    expect(a.transport).toBe('http');
    expect(a.auth?.callbackPort).toBe(8123);
    expect(a.logLevel).toBe('debug');
  });

  it('names the problem for unknown flags, bad values and missing arguments', () => {
    expect(usage([URL_, '--bogus'])).toMatch(/--bogus/);
    expect(usage([URL_, '--transport', 'websocket'])).toMatch(/--transport: expected auto, http or sse/);
    expect(usage([URL_, '--auth', 'basic'])).toMatch(/--auth: expected oauth or none/);
    expect(usage([URL_, '--connect-timeout', 'soon'])).toMatch(/--connect-timeout/);
    expect(usage([URL_, '70000'])).toMatch(/callback-port/);
    expect(usage([])).toMatch(/missing <url>/);
    expect(usage(['not a url'])).toMatch(/not a URL/);
    expect(usage([URL_, '1', '2'])).toMatch(/too many arguments/);
    expect(usage([URL_, '--debug', '--silent'])).toMatch(/mutually exclusive/);
  });

  it('expands ${VAR} in headers, errors on a missing one, and accepts Authorization:${VAR} without a space', () => {
    const c = run([URL_, '--header', 'X-Team: ${TEAM}-a', '--header', 'Authorization:Bearer ${TOKEN}'], { TEAM: 'blue', TOKEN: 't0k' });
    expect(c.headers).toEqual({ 'X-Team': 'blue-a', Authorization: 'Bearer t0k' });
    expect(run([URL_, '--header', 'Authorization:${AUTH}'], { AUTH: 'Bearer xyz' }).headers).toEqual({ Authorization: 'Bearer xyz' });
    expect(usage([URL_, '--header', 'X-A: ${NOPE}'])).toMatch(/NOPE is not set/);
    expect(usage([URL_, '--header', 'no colon'])).toMatch(/Name: Value/);
  });

  it('reads --header-file with comments, and later --header wins', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-args-'));
    dirs.push(dir);
    const file = join(dir, 'headers');
    writeFileSync(file, '# comment\nX-One: 1\n\nX-Two: ${TWO}\n');
    expect(run([URL_, '--header-file', file, '--header', 'x-one: override'], { TWO: '2' }).headers).toEqual({ 'x-one': 'override', 'X-Two': '2' });
    expect(usage([URL_, '--header-file', join(dir, 'missing')])).toMatch(/cannot read/);
  });

  it('turns OAuth off for an Authorization header unless --auth oauth is explicit', () => {
    expect(run([URL_, '--header', 'Authorization: Bearer a']).auth).toBeUndefined();
    expect(run([URL_, '--header', 'Authorization: Bearer a', '--auth', 'oauth']).auth).toBeDefined();
    expect(run([URL_, '--auth', 'none']).auth).toBeUndefined();
    expect(run([URL_]).auth).toBeDefined();
  });

  it('allows plain http only to loopback unless --allow-http', () => {
    expect(run(['http://127.0.0.1:3000/mcp']).url.hostname).toBe('127.0.0.1');
    expect(run(['http://localhost:3000/mcp']).url.hostname).toBe('localhost');
    expect(run(['http://[::1]:3000/mcp']).url.hostname).toBe('[::1]');
    expect(usage(['http://mcp.example.com/mcp'])).toMatch(/--allow-http/);
    expect(run(['http://mcp.example.com/mcp', '--allow-http']).url.protocol).toBe('http:');
    expect(usage(['ftp://x/mcp'])).toMatch(/unsupported URL scheme/);
  });

  it('parses OAuth options: host (IPv6 bracketed), timeouts, resource, static client info (JSON or @file), headless', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-args-'));
    dirs.push(dir);
    const file = join(dir, 'client.json');
    writeFileSync(file, '{"client_id":"abc","client_secret":"${SECRET}"}');
    const c = run([URL_, '--host', '::1', '--auth-timeout', '10', '--resource', 'https://mcp.example.com/', '--static-oauth-client-info', `@${file}`, '--refresh-threshold', '0'], {
      SECRET: 's3',
      CODEMODE_REMOTE_HEADLESS: '1',
    });
    expect(c.auth).toMatchObject({ callbackHost: '[::1]', authTimeoutMs: 10_000, resource: 'https://mcp.example.com/', staticClientInfo: { client_id: 'abc', client_secret: 's3' }, headless: true, refreshThresholdMs: 0 });
    expect(run([URL_, '--static-oauth-client-info', '{"client_id":"x"}']).auth?.staticClientInfo).toEqual({ client_id: 'x' });
    expect(usage([URL_, '--static-oauth-client-info', '{"nope":1}'])).toMatch(/client_id/);
    expect(usage([URL_, '--static-oauth-client-info', '{'])).toMatch(/not valid JSON/);
    expect(usage([URL_, '--client-metadata-url', 'http://x/y'])).toMatch(/https/);
    expect(usage([URL_, '--oauth-grant', 'password'])).toMatch(/--oauth-grant/);
    expect(usage([URL_, '--oauth-grant', 'client_credentials'])).toMatch(/client_secret.*private_key_pem/);
    expect(run([URL_, '--oauth-grant', 'client_credentials', '--static-oauth-client-info', '{"client_id":"m","client_secret":"s"}']).auth?.grant).toBe('client_credentials');
    expect(run([URL_]).auth?.grant).toBe('authorization_code');
  });

  it('parses the cross_app_access grant: IdP URL, ID token (inline, ${VAR} or @file), IdP client; exit-2 mistakes', () => {
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln';
    const client = ['--static-oauth-client-info', '{"client_id":"mcp","client_secret":"s"}'];
    const base = [URL_, '--oauth-grant', 'cross_app_access', '--idp-token-url', 'https://idp.example.com/token', ...client];
    const c = run([...base, '--id-token', '${ID_TOKEN}', '--idp-client-id', 'idp-c', '--idp-client-secret', '${IDP_SECRET}'], { ID_TOKEN: jwt, IDP_SECRET: 'x y' });
    expect(c.auth).toMatchObject({ grant: 'cross_app_access', crossApp: { idpTokenUrl: 'https://idp.example.com/token', idToken: { value: jwt }, idpClientId: 'idp-c', idpClientSecret: 'x y' } });
    expect(run([URL_, '--oauth-grant', 'cross-app-access', '--idp-token-url', 'http://127.0.0.1:9/token', '--id-token', jwt, ...client]).auth?.grant).toBe('cross_app_access');
    const dir = mkdtempSync(join(tmpdir(), 'cm-remote-args-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'id_token'), `${jwt}\n`);
    writeFileSync(join(dir, 'empty'), '\n');
    expect(run([...base, '--id-token', `@${join(dir, 'id_token')}`]).auth?.crossApp?.idToken).toEqual({ file: join(dir, 'id_token') });
    expect(usage([...base, '--id-token', `@${join(dir, 'missing')}`])).toMatch(/--id-token: cannot read/);
    expect(usage([...base, '--id-token', `@${join(dir, 'empty')}`])).toMatch(/--id-token: .* is empty/);
    expect(usage([...base, '--id-token', 'not-a-jwt'])).toMatch(/--id-token: expected a JWT/);
    expect(usage([...base, '--id-token', '${NOPE}'])).toMatch(/NOPE is not set/);
    expect(usage([...base])).toMatch(/needs --idp-token-url and --id-token/);
    expect(usage([URL_, '--oauth-grant', 'cross_app_access', '--idp-token-url', 'ftp://idp/x', '--id-token', jwt, ...client])).toMatch(/--idp-token-url: unsupported scheme/);
    expect(usage([URL_, '--oauth-grant', 'cross_app_access', '--idp-token-url', 'nope', '--id-token', jwt, ...client])).toMatch(/--idp-token-url: not a URL/);
    expect(usage([URL_, '--oauth-grant', 'cross_app_access', '--idp-token-url', 'http://idp.example.com/token', '--id-token', jwt, ...client])).toMatch(/refusing plain http/);
    expect(usage([URL_, '--oauth-grant', 'cross_app_access', '--idp-token-url', 'https://idp.example.com/token', '--id-token', jwt])).toMatch(/client_id.*client_secret/);
    expect(usage([...base, '--id-token', jwt, '--idp-client-secret', 's'])).toMatch(/--idp-client-secret needs --idp-client-id/);
    expect(usage([URL_, '--id-token', jwt])).toMatch(/--id-token only applies to --oauth-grant cross_app_access/);
  });

  it('documents every flag in --help', () => {
    for (const flag of ['--idp-token-url', '--id-token', '--idp-client-id', '--idp-client-secret', 'cross_app_access', '--transport', '--header', '--header-file', '--connect-timeout', '--allow-http', '--ignore-tool', '--auth', '--host', '--auth-timeout', '--resource', '--static-oauth-client-info', '--client-metadata-url', '--oauth-grant', '--scope', '--open-command', '--headless', '--refresh-threshold', '--debug', '--silent', '--help', '--version', 'callback-port', 'CODEMODE_CONFIG_DIR', 'HTTPS_PROXY', 'NO_PROXY']) {
      expect(REMOTE_HELP).toContain(flag);
    }
    expect(parseRemoteArgs(['--help'], {}).kind).toBe('help');
    expect(parseRemoteArgs([URL_, '-v'], {}).kind).toBe('version');
  });
});

describe('the codemode-remote process', () => {
  it('exits 2 with a message naming the problem on a usage error, and nothing on stdout', () => {
    const r = spawnSync(process.execPath, [BRIDGE_BIN, 'https://x.example/mcp', '--frobnicate'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--frobnicate/);
    expect(r.stdout).toBe('');
  });

  it('prints --version and --help and exits 0', () => {
    const v = spawnSync(process.execPath, [BRIDGE_BIN, '--version'], { encoding: 'utf8' });
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const h = spawnSync(process.execPath, [BRIDGE_BIN, '--help'], { encoding: 'utf8' });
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('--static-oauth-client-info');
  });
});
