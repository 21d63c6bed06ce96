import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CodemodeError } from '../../src/errors.js';
import { expandVariables, loadServersConfig, parseServersConfig } from '../../src/server/config.js';

function configError(fn: () => unknown): CodemodeError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CodemodeError);
    expect((err as CodemodeError).code).toBe('INVALID_CONFIG');
    return err as CodemodeError;
  }
  throw new Error('expected an INVALID_CONFIG error');
}

describe('parseServersConfig', () => {
  it('reads stdio and HTTP entries, tolerating a BOM, with cwd defaulting to the file directory', () => {
    const text = '\uFEFF' + JSON.stringify({
      mcpServers: {
        local: { command: 'node', args: ['server.mjs'], env: { A: '1' } },
        remote: { url: 'http://127.0.0.1:3000/mcp', headers: { 'X-Key': 'k' }, transport: 'http' },
        rel: { command: 'node', cwd: 'sub' },
      },
    });
    const cfg = parseServersConfig(text, { file: '/etc/codemode/mcp.json' });
    expect(Object.keys(cfg.servers)).toEqual(['local', 'remote', 'rel']);
    expect(cfg.servers.local).toMatchObject({ command: 'node', args: ['server.mjs'], env: { A: '1' }, cwd: '/etc/codemode' });
    expect(cfg.servers.remote).toEqual({ url: 'http://127.0.0.1:3000/mcp', headers: { 'X-Key': 'k' }, transport: 'http' });
    expect(cfg.servers.rel).toMatchObject({ cwd: '/etc/codemode/sub' });
    expect(cfg.file).toBe('/etc/codemode/mcp.json');
  });

  it('expands ${VAR} and ${VAR:-default} in values, and names the path of a missing variable', () => {
    const env = { TOKEN: 'abc', EMPTY: '' };
    const cfg = parseServersConfig(
      JSON.stringify({ mcpServers: { r: { url: 'http://127.0.0.1:1/mcp', headers: { Authorization: 'Bearer ${TOKEN}', X: '${NOPE:-fallback}', Y: '${EMPTY:-d}' } } } }),
      { env },
    );
    expect(cfg.servers.r).toMatchObject({ headers: { Authorization: 'Bearer abc', X: 'fallback', Y: 'd' } });
    const err = configError(() =>
      parseServersConfig(JSON.stringify({ mcpServers: { gh: { command: 'x', env: { GITHUB_TOKEN: '${GH_TOKEN}' } } } }), { file: 'my.json', env: {} }),
    );
    expect(err.message).toContain('my.json');
    expect(err.message).toContain('mcpServers.gh.env.GITHUB_TOKEN');
    expect(err.message).toContain('GH_TOKEN is not set');
  });

  it('rejects a malformed reference instead of passing it through', () => {
    expect(configError(() => expandVariables('${1BAD}', {}, 'f.json', ['x'])).message).toMatch(/f\.json: x: .*not a valid variable reference/);
  });

  it('reports invalid JSON, the wrong top-level shape and unknown keys with the file and a fix', () => {
    expect(configError(() => parseServersConfig('{"mcpServers": {,}}', { file: 'a.json' })).message).toMatch(/^a\.json: not valid JSON .*trailing commas/);
    expect(configError(() => parseServersConfig('', { file: 'a.json' })).message).toContain('the file is empty');
    expect(configError(() => parseServersConfig('[]', { file: 'a.json' })).message).toContain('expected a JSON object');
    expect(configError(() => parseServersConfig('{"servers": {}}', { file: 'a.json' })).message).toContain('unknown top-level key "servers"');
    expect(configError(() => parseServersConfig('{"mcpServers": []}', { file: 'a.json' })).message).toContain('mcpServers: expected an object');
  });

  it('names the JSON path of a bad server entry and says how to fix it', () => {
    const typo = configError(() => parseServersConfig(JSON.stringify({ mcpServers: { fs: { command: 'npx', arg: ['-y'] } } }), { file: 'c.json' }));
    expect(typo.message).toContain('c.json');
    expect(typo.message).toContain('mcpServers.fs.arg');
    expect(typo.message).toContain('unknown field');
    const neither = configError(() => parseServersConfig(JSON.stringify({ mcpServers: { x: { comand: 'npx' } } }), { file: 'c.json' }));
    expect(neither.message).toMatch(/c\.json: .*mcpServers\.x.*`command` \(stdio\) or `url` \(HTTP\)/);
    const badUrl = configError(() => parseServersConfig(JSON.stringify({ mcpServers: { x: { url: 'not a url' } } }), { file: 'c.json' }));
    expect(badUrl.message).toContain('mcpServers.x.url');
    const badName = configError(() => parseServersConfig(JSON.stringify({ mcpServers: { 'has space': { command: 'x' } } }), { file: 'c.json' }));
    expect(badName.message).toContain('mcpServers["has space"]');
  });

  it('skips disabled entries and validates the codemode section', () => {
    const cfg = parseServersConfig(
      JSON.stringify({ mcpServers: { off: { command: 'x', disabled: true }, on: { command: 'y', disabled: false } }, codemode: { timeoutSeconds: 5, memoryMb: null, maxToolCalls: 3 } }),
    );
    expect(Object.keys(cfg.servers)).toEqual(['on']);
    expect(cfg.servers.on).not.toHaveProperty('disabled');
    expect(cfg.settings).toEqual({ timeoutSeconds: 5, memoryMb: null, maxToolCalls: 3 });
    const bad = configError(() => parseServersConfig(JSON.stringify({ codemode: { timeoutSeconds: -1, maxToolCall: 3 } }), { file: 'd.json' }));
    expect(bad.message).toContain('d.json');
    expect(bad.message).toContain('codemode.timeoutSeconds');
    expect(bad.message).toContain('codemode.maxToolCall: unknown key');
  });

  it('keeps the raw oauth section for the OAuth proxy to validate', () => {
    const cfg = parseServersConfig(JSON.stringify({ mcpServers: {}, oauth: { upstream: { type: 'github', clientId: '${ID}' } } }));
    expect(cfg.oauth).toEqual({ upstream: { type: 'github', clientId: '${ID}' } });
  });
});

describe('loadServersConfig', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'codemode-config-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads UTF-8 files and reports a missing file or a directory clearly', async () => {
    const file = join(dir, 'mcp.json');
    await writeFile(file, '\uFEFF{"mcpServers": {"ünï": {"command": "node"}}}'.replace('ünï', 'uni'), 'utf8');
    const cfg = await loadServersConfig(file);
    expect(cfg.servers.uni).toMatchObject({ command: 'node', cwd: dir });
    await expect(loadServersConfig(join(dir, 'missing.json'))).rejects.toThrow(/missing\.json: no such file\. Check the path given to --config/);
    await expect(loadServersConfig(dir)).rejects.toThrow(/is a directory/);
  });
});
