/**
 * End to end: the built `codemode-remote` bin logs in to a real `codemode serve --http` (OAuth proxy in
 * its config) with `--client-metadata-url`, i.e. with a Client ID Metadata Document instead of
 * registering, approves the consent page in a headless "browser", checks `iss` on the way back, and
 * calls a tool. The document is served over https on 127.0.0.1 with a throw-away certificate that the
 * server trusts through NODE_EXTRA_CA_CERTS. Needs the built bridge (`npm run build`) and openssl.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { BRIDGE_BIN, spawnBridge } from '../../fixtures/bridge-host.js';
import type { BridgeHost } from '../../fixtures/bridge-host.js';
import { startIdp } from '../../fixtures/idp-server.js';
import { SIGNING_KEY, spawnServe, stopServe } from './harness.js';

const BROWSER = fileURLToPath(new URL('./consent-browser.ts', import.meta.url));
const hasOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

describe.skipIf(!existsSync(BRIDGE_BIN) || !hasOpenssl)('codemode-remote logs in to codemode serve with a Client ID Metadata Document', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('no registration: the server fetches the document, the user approves, and the tool call works', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'codemode-remote-cimd-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], {
      stdio: 'pipe',
    });
    expect(made.status, made.stderr.toString()).toBe(0);

    // The client's metadata document, on https.
    let documentUrl = '';
    let documentFetches = 0;
    const docs = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => {
      documentFetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          client_id: documentUrl,
          client_name: 'codemode-remote e2e',
          redirect_uris: ['http://localhost/oauth/callback', 'http://127.0.0.1/oauth/callback'],
          token_endpoint_auth_method: 'none',
        }),
      );
    });
    await new Promise<void>((resolve) => docs.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => { docs.closeAllConnections(); docs.close(() => resolve()); }));
    documentUrl = `https://127.0.0.1:${(docs.address() as AddressInfo).port}/oauth/client.json`;

    const idp = await startIdp({ accessTokenTtlSeconds: 60, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    const config = join(dir, 'codemode.json');
    writeFileSync(
      config,
      JSON.stringify({
        mcpServers: {},
        oauth: {
          upstream: { type: 'oidc', issuer: idp.url, clientId: idp.clientId, clientSecret: '${IDP_CLIENT_SECRET}' },
          rateLimit: false,
          // The document is on 127.0.0.1: only a test may allow that.
          clientIdMetadataDocuments: { allowPrivateNetworks: true },
        },
      }),
    );
    const serve = await spawnServe(['--port', '0', '--config', config], {
      ...process.env,
      CODEMODE_OAUTH_SIGNING_KEY: SIGNING_KEY,
      IDP_CLIENT_SECRET: idp.clientSecret,
      NODE_EXTRA_CA_CERTS: cert,
      CODEMODE_LOG_LEVEL: 'info',
    });
    cleanups.push(() => stopServe(serve));

    const configDir = join(dir, 'remote');
    const bridge: BridgeHost = spawnBridge(
      [`${serve.url}/mcp`, '--open-command', `"${process.execPath}" "${BROWSER}"`, '--auth-timeout', '20', '--client-metadata-url', documentUrl],
      { CODEMODE_CONFIG_DIR: configDir },
    );
    cleanups.push(() => {
      bridge.child.kill();
    });
    const init = await bridge.request(
      'initialize',
      { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'cimd-e2e-host', version: '1.0.0' } },
      40_000,
    );
    expect(init.error, `${bridge.stderr()}\n--- serve ---\n${serve.stderr()}`).toBeUndefined();
    bridge.notify('notifications/initialized');
    const call = await bridge.request('tools/call', { name: 'execute', arguments: { code: 'return 6 * 7' } }, 20_000);
    expect(call.error, bridge.stderr()).toBeUndefined();
    expect(JSON.stringify(call.result)).toContain('42');

    // Signed in as the document's client, which never registered.
    expect(serve.stderr()).toContain(`client=${documentUrl}`);
    expect(serve.stderr()).not.toMatch(/client=[0-9a-f]{8}-[0-9a-f]{4}-/);
    expect(documentFetches).toBe(1);
  }, 90_000);
});
