import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { isCodemodeError } from '../../../src/errors.js';
import { createOAuthProxyFromConfig, parseOAuthConfig } from '../../../src/server/auth/index.js';
import { startIdp } from '../../fixtures/idp-server.js';
import { SIGNING_KEY } from './harness.js';

describe('OAuth config section', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('expands ${VAR}, and reports unknown fields, bad types and missing variables by path', () => {
    const cfg = parseOAuthConfig(
      { upstream: { type: 'github', clientId: 'Iv1', clientSecret: '${GH_SECRET}' }, signingKey: '${KEY}', storage: { type: 'redis', url: 'redis://127.0.0.1:6379' } },
      'oauth',
      { GH_SECRET: 's3cret', KEY: SIGNING_KEY },
    );
    expect(cfg.upstream.clientSecret).toBe('s3cret');
    expect(cfg.signingKey).toBe(SIGNING_KEY);

    const fail = (raw: unknown, env: NodeJS.ProcessEnv = {}): string => {
      try {
        parseOAuthConfig(raw, 'oauth', env);
      } catch (err) {
        expect(isCodemodeError(err, 'INVALID_CONFIG')).toBe(true);
        return (err as Error).message;
      }
      throw new Error('expected a config error');
    };
    expect(fail({ upstream: { type: 'github', clientId: 'x', clientSecret: '${NOPE}' } })).toContain('oauth.upstream.clientSecret: environment variable NOPE is not set');
    expect(fail({ upstream: { type: 'github', clientId: 'x' }, acessTokenExpirySeconds: 5 })).toMatch(/acessTokenExpirySeconds/);
    expect(fail({ upstream: { type: 'oidc', clientId: 'x', issuer: 'not a url' } })).toContain('oauth.upstream.issuer');
    expect(fail({ upstream: { type: 'github', clientId: 'x' }, storage: { type: 'redis', url: 'http://x' } })).toContain('oauth.storage.url');
    expect(fail({ upstream: { type: 'github', clientId: 'x' }, accessTokenExpirySeconds: -1 })).toContain('oauth.accessTokenExpirySeconds');
  });

  it('builds a working proxy with file storage and default issuer/resource from the server URL', async () => {
    const idp = await startIdp({ accessTokenTtlSeconds: 30, issueRefreshTokens: true });
    cleanups.push(() => idp.close());
    const dir = mkdtempSync(join(tmpdir(), 'codemode-oauth-cfg-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const cfg = parseOAuthConfig({
      upstream: { type: 'oidc', issuer: idp.url, clientId: idp.clientId, clientSecret: idp.clientSecret },
      signingKey: SIGNING_KEY,
      storage: { type: 'file', dir },
    });
    const proxy = await createOAuthProxyFromConfig(cfg, { serverUrl: 'http://127.0.0.1:4000', mcpPath: '/mcp' });
    cleanups.push(() => proxy.close());
    expect(proxy.callbackUrl).toBe('http://127.0.0.1:4000/oauth/callback');
    expect(proxy.resourceMetadataUrl).toBe('http://127.0.0.1:4000/.well-known/oauth-protected-resource/mcp');
    const app = express();
    app.use(proxy.router);
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as { port: number }).port;
    const meta = (await (await fetch(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    expect(meta.resource).toBe('http://127.0.0.1:4000/mcp');
    await proxy.close();
    await proxy.close(); // idempotent
  });
});
