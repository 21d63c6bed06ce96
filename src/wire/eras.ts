/**
 * The two protocol eras as SDK-free constants and helpers, shared by the bridge and the proxy where they
 * translate between a 2025 session and 2026-07-28's stateless requests.
 *
 * In 2026-07-28 every request carries its protocol version and the client's identity in `params._meta` (the
 * envelope), list results carry a cache hint (`ttlMs`, `cacheScope`), every result says what it is
 * (`resultType`), and a server that needs the client's input answers `input_required` instead of sending a
 * request of its own.
 *
 * @module
 */

import type { JsonRpcMessage } from './jsonrpc.js';

/** The `_meta` keys of a 2026-07-28 request's envelope, and of a result's server identity. */
export const PROTOCOL_VERSION_META_KEY = 'io.modelcontextprotocol/protocolVersion';
export const CLIENT_INFO_META_KEY = 'io.modelcontextprotocol/clientInfo';
export const CLIENT_CAPABILITIES_META_KEY = 'io.modelcontextprotocol/clientCapabilities';
export const LOG_LEVEL_META_KEY = 'io.modelcontextprotocol/logLevel';
export const SERVER_INFO_META_KEY = 'io.modelcontextprotocol/serverInfo';
export const SUBSCRIPTION_ID_META_KEY = 'io.modelcontextprotocol/subscriptionId';
/** The prefix every key of the envelope shares: a 2025 session is told none of them. */
export const ENVELOPE_KEY_PREFIX = 'io.modelcontextprotocol/';

export const MODERN_PROTOCOL_VERSION = '2026-07-28';
/** The 2025-era versions, oldest first; the newest is what a translator asks a 2025 server for. */
export const LEGACY_PROTOCOL_VERSIONS: readonly string[] = ['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25'];

/** The list methods whose 2026-07-28 results carry `ttlMs` and `cacheScope`. */
export const LIST_METHODS: ReadonlySet<string> = new Set(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list']);

/** The 2026-07-28 error codes: header/body mismatch, a missing client capability, an unsupported version. */
export const ModernCode = {
  HeaderMismatch: -32020,
  MissingRequiredClientCapability: -32021,
  UnsupportedProtocolVersion: -32022,
} as const;

/**
 * Error codes with which a 2026-07-28 server refuses a request (unsupported version, missing client
 * capability, header mismatch, bad params/envelope): such a refusal is passed on, never taken as a sign
 * that the server speaks only 2025.
 */
export const MODERN_ERROR_CODES: ReadonlySet<number> = new Set([-32020, -32021, -32022, -32602]);

/**
 * Whether an HTTP error answer is a 2025 server refusing a request without a session (the sign that an upstream
 * which spoke 2026-07-28 now speaks only 2025): 400 or 404 with the JSON-RPC error such servers give ("no valid
 * session", "not initialized", "session not found": -32000 or -32001, or a message saying so). A 2026-07-28
 * server's own refusals (-32020..-32022, -32602, -32601, -32600 ...) are answers, and a body that is not
 * JSON-RPC (a reverse proxy's page) is a failure of that request only.
 */
export function isSessionRefusal(status: number, answer: JsonRpcMessage | undefined): boolean {
  if ((status !== 400 && status !== 404) || answer?.error === undefined) return false;
  const { code, message } = answer.error;
  if (MODERN_ERROR_CODES.has(code) || code === -32601) return false;
  return code === -32000 || code === -32001 || /session|initiali[sz]/i.test(String(message));
}

/** A message's 2026-07-28 (or later) protocol version, from its `_meta`; undefined for a 2025 message. */
export function modernVersionOf(message: JsonRpcMessage): string | undefined {
  const meta = message.params?._meta;
  const version = typeof meta === 'object' && meta !== null ? (meta as Record<string, unknown>)[PROTOCOL_VERSION_META_KEY] : undefined;
  return typeof version === 'string' && version >= MODERN_PROTOCOL_VERSION ? version : undefined;
}

/** Whether an `Mcp-Protocol-Version` header value names 2026-07-28 or later. */
export function isModernVersionHeader(value: string | string[] | undefined): boolean {
  return typeof value === 'string' && value >= MODERN_PROTOCOL_VERSION && /^\d{4}-\d{2}-\d{2}$/.test(value);
}

/**
 * `params` without the envelope's keys in `_meta` (a 2025 session already knows the client); other `_meta`
 * (progressToken, traceparent) stays. `_meta` is dropped when nothing else is in it.
 */
export function withoutEnvelope(params: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (params === undefined) return undefined;
  const meta = params._meta;
  if (typeof meta !== 'object' || meta === null) return params;
  const rest = Object.fromEntries(Object.entries(meta).filter(([k]) => !k.startsWith(ENVELOPE_KEY_PREFIX)));
  const { _meta: _dropped, ...others } = params;
  return Object.keys(rest).length > 0 ? { ...others, _meta: rest } : others;
}

/**
 * A 2025 result as a 2026-07-28 one: `resultType: 'complete'`, and on list results a cache hint that says
 * "do not cache" (the translator learns of changes only through list_changed, which reaches listeners).
 */
export function asModernResult(method: string, result: Record<string, unknown>): Record<string, unknown> {
  const hint = LIST_METHODS.has(method) && !('ttlMs' in result) ? { ttlMs: 0, cacheScope: 'private' } : {};
  return { resultType: 'complete', ...hint, ...result };
}

/** The request param each method's `Mcp-Name` header repeats (2026-07-28 HTTP). */
const MCP_NAME_SOURCE: Readonly<Record<string, string>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  'tasks/get': 'taskId',
  'tasks/update': 'taskId',
  'tasks/cancel': 'taskId',
};

/**
 * A header value as 2026-07-28 HTTP carries it: as is when it is visible ASCII (tabs allowed) with no
 * surrounding space, else `=?base64?<UTF-8 in Base64>?=` (also for the empty string, and for a value that
 * itself looks like that form).
 */
export function encodeHeaderValue(value: string): string {
  const plain =
    value.length > 0 && value === value.trim() && !(value.startsWith('=?base64?') && value.endsWith('?=')) && /^[\t\x20-\x7e]*$/.test(value);
  return plain ? value : `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

/** The `Mcp-Name` header of a request, or undefined when its method has none (or the param is not a string). */
export function mcpNameHeader(method: string, params: Record<string, unknown> | undefined): string | undefined {
  const field = MCP_NAME_SOURCE[method];
  const value = field === undefined ? undefined : params?.[field];
  return typeof value === 'string' ? encodeHeaderValue(value) : undefined;
}

/** A tool parameter that 2026-07-28 HTTP mirrors into an `Mcp-Param-{header}` header (SEP-2243 `x-mcp-header`). */
export interface McpParamDeclaration {
  /** The property names from the arguments object down to the value. */
  readonly path: readonly string[];
  readonly header: string;
}

const HEADER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HEADER_TYPES: ReadonlySet<string> = new Set(['string', 'integer', 'boolean', 'number']);
/** Bounds on what one tool's schema may declare: the scan is over untrusted input. */
const MAX_PARAM_DEPTH = 16;
const MAX_PARAM_HEADERS = 32;

/**
 * The `x-mcp-header` declarations of a tool's input schema: on primitive properties reachable through a chain
 * of `properties` keys only (the revision's rule; declarations anywhere else are ignored), with valid,
 * case-insensitively unique header names. Bounded in depth and count.
 */
export function mcpParamDeclarations(inputSchema: unknown): McpParamDeclaration[] {
  const out: McpParamDeclaration[] = [];
  const seen = new Set<string>();
  const visit = (node: unknown, path: string[]): void => {
    if (typeof node !== 'object' || node === null || path.length > MAX_PARAM_DEPTH || out.length >= MAX_PARAM_HEADERS) return;
    const schema = node as Record<string, unknown>;
    const header = schema['x-mcp-header'];
    if (path.length > 0 && typeof header === 'string' && HEADER_TOKEN.test(header) && typeof schema.type === 'string' && HEADER_TYPES.has(schema.type) && !seen.has(header.toLowerCase())) {
      seen.add(header.toLowerCase());
      out.push({ path, header });
    }
    const properties = schema.properties;
    if (typeof properties !== 'object' || properties === null) return;
    for (const [key, child] of Object.entries(properties)) visit(child, [...path, key]);
  };
  visit(inputSchema, []);
  return out;
}

/** The `Mcp-Param-*` headers of one call: each declared parameter present in `args` as a primitive, encoded. */
export function mcpParamHeaders(declarations: readonly McpParamDeclaration[] | undefined, args: unknown): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const decl of declarations ?? []) {
    let value: unknown = args;
    for (const key of decl.path) value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
    let text: string | undefined;
    if (typeof value === 'string') text = value;
    else if (typeof value === 'boolean') text = value ? 'true' : 'false';
    else if (typeof value === 'number' && Number.isFinite(value) && (!Number.isInteger(value) || Number.isSafeInteger(value))) text = String(value);
    if (text !== undefined) headers[`mcp-param-${decl.header.toLowerCase()}`] = encodeHeaderValue(text);
  }
  return headers;
}

/** Tools one `McpParamMemory` remembers; it is emptied past this (a client lists again, or calls go without). */
const MAX_PARAM_TOOLS = 10_000;

/**
 * The `x-mcp-header` declarations of the tools a client was shown, by tool name, so its later calls can carry
 * their `Mcp-Param-*` headers. Bounded: emptied past 10,000 tools.
 *
 * @example
 * ```ts
 * const params = new McpParamMemory();
 * params.remember(listResult.tools);
 * const headers = params.headers('regional', { region: 'eu-west' }); // { 'mcp-param-region': 'eu-west' }
 * ```
 */
export class McpParamMemory {
  readonly #byTool = new Map<string, McpParamDeclaration[]>();

  /** Notes the declarations of `tools` (a `tools/list` answer's); a tool without any is forgotten. */
  remember(tools: ReadonlyArray<{ name?: unknown; inputSchema?: unknown }>): void {
    for (const tool of tools) {
      if (typeof tool.name !== 'string') continue;
      const declarations = mcpParamDeclarations(tool.inputSchema);
      if (declarations.length === 0) {
        this.#byTool.delete(tool.name);
        continue;
      }
      if (this.#byTool.size >= MAX_PARAM_TOOLS) this.#byTool.clear();
      this.#byTool.set(tool.name, declarations);
    }
  }

  /** The `Mcp-Param-*` headers of a call to `name` with `args` (none for a tool not remembered). */
  headers(name: string, args: unknown): Record<string, string> {
    return mcpParamHeaders(this.#byTool.get(name), args);
  }
}

