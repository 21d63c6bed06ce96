/**
 * The SDK-free era helpers (src/wire/eras.ts): header encoding, Mcp-Name, and the SEP-2243 `x-mcp-header`
 * declarations a 2026-07-28 HTTP client mirrors into `Mcp-Param-*` headers.
 */
import { describe, expect, it } from 'vitest';
import { McpParamMemory, encodeHeaderValue, mcpNameHeader, mcpParamDeclarations, mcpParamHeaders, withoutEnvelope } from '../../src/wire/eras.js';

describe('header values', () => {
  it('plain visible ASCII goes as is; anything else, and the sentinel form itself, in Base64', () => {
    expect(encodeHeaderValue('us-west1')).toBe('us-west1');
    expect(encodeHeaderValue('a\tb')).toBe('a\tb');
    for (const value of ['', ' padded', 'padded ', 'line1\nline2', 'Hello, 世界', '=?base64?abc?=']) {
      expect(encodeHeaderValue(value)).toBe(`=?base64?${Buffer.from(value).toString('base64')}?=`);
    }
  });

  it('Mcp-Name comes from the param each method names, and only for those methods', () => {
    expect(mcpNameHeader('tools/call', { name: 'echo' })).toBe('echo');
    expect(mcpNameHeader('resources/read', { uri: 'file:///tmp/ä' })).toBe(`=?base64?${Buffer.from('file:///tmp/ä').toString('base64')}?=`);
    expect(mcpNameHeader('tools/list', { name: 'x' })).toBeUndefined();
    expect(mcpNameHeader('tools/call', { name: 42 })).toBeUndefined();
  });
});

describe('x-mcp-header declarations', () => {
  it('only primitive properties reachable through properties chains, with valid and unique names', () => {
    const schema = {
      type: 'object',
      properties: {
        region: { type: 'string', 'x-mcp-header': 'Region' },
        nested: { type: 'object', properties: { tier: { type: 'integer', 'x-mcp-header': 'Tier' } } },
        list: { type: 'array', items: { type: 'string', 'x-mcp-header': 'Item' } },
        either: { anyOf: [{ type: 'string', 'x-mcp-header': 'Either' }] },
        bad: { type: 'string', 'x-mcp-header': 'has space' },
        obj: { type: 'object', 'x-mcp-header': 'Obj' },
        dup: { type: 'string', 'x-mcp-header': 'region' },
      },
      'x-mcp-header': 'Root',
    };
    expect(mcpParamDeclarations(schema)).toEqual([
      { path: ['region'], header: 'Region' },
      { path: ['nested', 'tier'], header: 'Tier' },
    ]);
  });

  it('is bounded in depth and count, whatever the schema', () => {
    let deep: Record<string, unknown> = { type: 'string', 'x-mcp-header': 'Deep' };
    for (let i = 0; i < 100; i++) deep = { type: 'object', properties: { p: deep } };
    expect(mcpParamDeclarations(deep)).toEqual([]);
    const wide = { type: 'object', properties: Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`p${i}`, { type: 'string', 'x-mcp-header': `H${i}` }])) };
    expect(mcpParamDeclarations(wide)).toHaveLength(32);
  });

  it('headers from the call arguments: primitives converted, absent and null values omitted', () => {
    const decls = [
      { path: ['region'], header: 'Region' },
      { path: ['n'], header: 'N' },
      { path: ['flag'], header: 'Flag' },
      { path: ['gone'], header: 'Gone' },
      { path: ['nothing'], header: 'Nothing' },
      { path: ['a', 'b'], header: 'Deep' },
      { path: ['huge'], header: 'Huge' },
    ];
    expect(mcpParamHeaders(decls, { region: 'Zürich', n: 3.5, flag: false, nothing: null, a: { b: 7 }, huge: 2 ** 60 })).toEqual({
      'mcp-param-region': `=?base64?${Buffer.from('Zürich').toString('base64')}?=`,
      'mcp-param-n': '3.5',
      'mcp-param-flag': 'false',
      'mcp-param-deep': '7',
    });
    expect(mcpParamHeaders(undefined, { region: 'x' })).toEqual({});
  });
});

describe('the memory of listed tools (McpParamMemory)', () => {
  const regional = { name: 'regional', inputSchema: { type: 'object', properties: { region: { type: 'string', 'x-mcp-header': 'Region' } } } };
  it('gives the headers of a listed tool, none for others, and forgets a tool listed again without declarations', () => {
    const memory = new McpParamMemory();
    expect(memory.headers('regional', { region: 'eu' })).toEqual({});
    memory.remember([regional, { name: 'plain', inputSchema: { type: 'object' } }, { inputSchema: {} }]);
    expect(memory.headers('regional', { region: 'eu' })).toEqual({ 'mcp-param-region': 'eu' });
    expect(memory.headers('plain', { region: 'eu' })).toEqual({});
    memory.remember([{ name: 'regional', inputSchema: { type: 'object' } }]);
    expect(memory.headers('regional', { region: 'eu' })).toEqual({});
  });

  it('is bounded: past 10,000 remembered tools it starts over', () => {
    const memory = new McpParamMemory();
    memory.remember([regional]);
    memory.remember(Array.from({ length: 10_000 }, (_, i) => ({ ...regional, name: `t${i}` })));
    expect(memory.headers('regional', { region: 'eu' })).toEqual({});
    expect(memory.headers('t9999', { region: 'eu' })).toEqual({ 'mcp-param-region': 'eu' });
  });
});

describe('the envelope', () => {
  it('is taken off _meta, and the rest of _meta stays', () => {
    expect(withoutEnvelope({ name: 'x', _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', progressToken: 3 } })).toEqual({ name: 'x', _meta: { progressToken: 3 } });
    expect(withoutEnvelope({ name: 'x', _meta: { 'io.modelcontextprotocol/clientInfo': {} } })).toEqual({ name: 'x' });
  });
});
