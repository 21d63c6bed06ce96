/**
 * The SDK's HTTP client errors are recognised whichever import made them. proxy/upstream.ts loads the
 * SDK's HTTP client side only when an HTTP upstream first connects, but the proxy's forward path (and any
 * caller of the exported `isSessionExpiredError`) makes these errors from its own static import. This file
 * never connects an HTTP upstream, so the lazy copy is never loaded here: `instanceof` against it would
 * miss every one of them (it did, before this test).
 */
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { SseError } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { describe, expect, it } from 'vitest';
import { classifyConnectError, classifyRequestError, isSessionExpiredError } from '../../src/proxy/upstream.js';

describe('SDK HTTP client errors made outside proxy/upstream.ts', () => {
  it('a 404 (or a 400 about the session) is an expired session; other statuses and other errors are not', () => {
    expect(isSessionExpiredError(new StreamableHTTPError(404, 'Not Found'))).toBe(true);
    expect(isSessionExpiredError(new StreamableHTTPError(400, 'Bad Request: No valid session ID provided'))).toBe(true);
    expect(isSessionExpiredError(new SseError(404, 'Not Found', undefined as never))).toBe(true);
    expect(isSessionExpiredError(new StreamableHTTPError(500, 'Internal Server Error'))).toBe(false);
    // The status is read only from the SDK's classes: a look-alike with a `code` is not one.
    expect(isSessionExpiredError(Object.assign(new Error('Not Found'), { code: 404 }))).toBe(false);
  });

  it('a subclass of an SDK error is recognised too', () => {
    class Wrapped extends StreamableHTTPError {}
    expect(isSessionExpiredError(new Wrapped(404, 'Not Found'))).toBe(true);
  });

  it('request and connect failures are classified by their HTTP status', () => {
    expect(classifyRequestError(new StreamableHTTPError(401, 'Unauthorized'), 'http://up/mcp', 'tools/call').code).toBe('UPSTREAM_AUTH');
    expect(classifyRequestError(new StreamableHTTPError(503, 'Unavailable'), 'http://up/mcp', 'tools/call').code).toBe('UPSTREAM_UNAVAILABLE');
    expect(classifyConnectError(new UnauthorizedError('no token'), { label: 'http://up/mcp', kind: 'http', timeoutMs: 1000 }).code).toBe('UPSTREAM_AUTH');
    const notMcp = classifyConnectError(new StreamableHTTPError(-1, 'Unexpected content type: text/html'), { label: 'http://up/mcp', kind: 'http', timeoutMs: 1000 });
    expect(notMcp.code).toBe('UPSTREAM_PROTOCOL');
    expect(notMcp.message).toMatch(/is not an MCP server/);
  });
});
