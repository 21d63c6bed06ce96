/** Network and HTTP failure naming (src/wire/net-errors.ts), and the JSON-RPC helpers beside it. */
import { describe, expect, it } from 'vitest';
import { errorResponse, isRequest, wireErrorMessage } from '../../src/wire/jsonrpc.js';
import { describeHttpStatus, networkFailureOf } from '../../src/wire/net-errors.js';

const withCode = (code: string, message = code): Error => Object.assign(new Error(message), { code });

describe('networkFailureOf', () => {
  it('finds the code on the error or down its cause chain (fetch wraps it)', () => {
    expect(networkFailureOf(withCode('ECONNREFUSED'))).toMatchObject({ code: 'ECONNREFUSED', kind: 'refused', text: 'nothing is listening there (connection refused)' });
    const fetchFailed = new TypeError('fetch failed', { cause: withCode('ENOTFOUND', 'getaddrinfo ENOTFOUND x.invalid') });
    expect(networkFailureOf(fetchFailed)).toMatchObject({ code: 'ENOTFOUND', kind: 'dns', message: 'getaddrinfo ENOTFOUND x.invalid' });
  });

  it('skips codes that name no network failure, and names the other TLS failures by their words', () => {
    expect(networkFailureOf(Object.assign(withCode('ERR_SOMETHING'), { cause: withCode('UND_ERR_SOCKET') }))).toMatchObject({ code: 'UND_ERR_SOCKET', kind: 'reset' });
    expect(networkFailureOf(withCode('ERR_SSL_WRONG_VERSION_NUMBER'))).toMatchObject({ kind: 'tls' });
    expect(networkFailureOf(withCode('ERR_INVALID_ARG_TYPE'))).toBeUndefined();
    expect(networkFailureOf(new Error('plain'))).toBeUndefined();
    expect(networkFailureOf(null)).toBeUndefined();
  });
});

describe('describeHttpStatus', () => {
  it('names a status as node:http does, and leaves an unknown one bare', () => {
    expect(describeHttpStatus(404)).toBe('HTTP 404 Not Found');
    expect(describeHttpStatus(429)).toBe('HTTP 429 Too Many Requests');
    expect(describeHttpStatus(599)).toBe('HTTP 599');
  });
});

describe('JSON-RPC helpers', () => {
  it('tells requests from notifications and junk, builds error answers, and strips the SDK prefix once', () => {
    expect(isRequest({ jsonrpc: '2.0', id: 0, method: 'ping' })).toBe(true);
    expect([{ jsonrpc: '2.0', id: null, method: 'x' }, { jsonrpc: '2.0', method: 'x' }, null, 'ping', { id: 1 }].some(isRequest)).toBe(false);
    expect(errorResponse(1, -32602, 'bad')).toEqual({ jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'bad' } });
    expect(errorResponse(null, -32603, 'x', { reason: 'R' }).error).toEqual({ code: -32603, message: 'x', data: { reason: 'R' } });
    expect(wireErrorMessage({ code: -32602, message: 'MCP error -32602: MCP error -32602: twice' })).toBe('MCP error -32602: twice');
    expect(wireErrorMessage({ code: -32602, message: 'MCP error -32000: other code' })).toBe('MCP error -32000: other code');
  });
});
