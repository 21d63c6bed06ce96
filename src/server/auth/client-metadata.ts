/**
 * Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, as MCP 2025-11-25 and
 * 2026-07-28 use it): a client presents an `https` URL as its `client_id` without registering, and the
 * authorization server fetches that URL to learn the client's redirect URIs and name.
 *
 * The fetch is made on behalf of an unauthenticated request, so hostile input is the normal case. Every
 * fetch is bounded: a time limit, a body cap read incrementally, JSON only, no redirects, a bounded number
 * at once, and a cache (successes per `Cache-Control: max-age` within bounds, failures for a minute) so a
 * flood of one URL costs one fetch. By default, the host must resolve to public addresses only, and the
 * connection uses exactly the addresses that were checked, so DNS rebinding cannot slip past the check.
 *
 * @module
 */
import { lookup as dnsLookup } from 'node:dns';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, request } from 'undici';
import type { OAuthClientInformationFull } from '@modelcontextprotocol/sdk/shared/auth.js';
import { InvalidClientError, TemporarilyUnavailableError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { CodemodeError, describeError } from '../../errors.js';
import { createLogger } from '../../log.js';

const log = createLogger('oauth');

/** The draft advises a small cap; a real document is a few hundred bytes. */
export const MAX_CLIENT_METADATA_BYTES = 5 * 1024;
export const DEFAULT_CLIENT_METADATA_TIMEOUT_MS = 5_000;
/** A document is cached at least this long (also when it says `max-age=0` or `no-store`): a flood costs one fetch a minute. */
const CACHE_MIN_S = 60;
/** ... and at most this long, so a client that changed its redirect URIs is seen within a day. */
const CACHE_MAX_S = 24 * 3600;
/** A failure (bad document, unreachable host, refused address) is remembered this long. */
const FAILURE_CACHE_S = 60;
/** Cached documents and failures together; the least recently used entry goes first. */
const CACHE_MAX_ENTRIES = 1000;
/** Distinct URLs being fetched at once; more are refused with `temporarily_unavailable`. */
const MAX_CONCURRENT_FETCHES = 8;
/** Longer `client_id` URLs are refused before any fetch (and never echoed whole). */
const MAX_CLIENT_ID_LENGTH = 2048;

/**
 * Options of Client ID Metadata Document support (`clientIdMetadataDocuments` of the OAuth proxy).
 * `false` there turns the feature off.
 */
export interface ClientIdMetadataDocumentOptions {
  /**
   * Fetch documents from loopback, private (RFC 1918), link-local, unique-local, CGNAT and unspecified
   * addresses. Default false: those are refused, because the fetch runs on an unauthenticated request
   * (server-side request forgery). Turn on only for tests and local development.
   */
  allowPrivateNetworks?: boolean;
  /** Accept `http://` client_id URLs. Default false (the draft requires https). Tests and local development only. */
  allowHttp?: boolean;
  /** Time limit of one fetch, connection to last byte. Default 5000 ms. */
  fetchTimeoutMs?: number;
}

/** What was wrong; every reason reaches the client as `invalid_client` with a message saying what to fix. */
export type ClientMetadataFailure =
  | 'disabled'
  | 'invalid_url'
  | 'forbidden_address'
  | 'unreachable'
  | 'timeout'
  | 'redirect'
  | 'http_status'
  | 'not_json'
  | 'too_large'
  | 'client_id_mismatch'
  | 'invalid_redirect_uris'
  | 'unsupported_auth_method'
  | 'invalid_document';

/**
 * A Client ID Metadata Document could not be used. An OAuth `invalid_client` error (the SDK's handlers
 * send it to the client as such) with the failure as a typed field.
 */
export class ClientMetadataDocumentError extends InvalidClientError {
  override readonly name = 'ClientMetadataDocumentError';
  readonly reason: ClientMetadataFailure;

  constructor(reason: ClientMetadataFailure, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** True for a `client_id` that is meant as a metadata document URL (registered clients get opaque ids). */
export function isUrlClientId(clientId: string): boolean {
  return /^https?:\/\//i.test(clientId);
}

/** The host to show on the consent page for a URL client_id (its name is whatever the document's host chose), else undefined. */
export function clientIdMetadataHost(clientId: string): string | undefined {
  if (!isUrlClientId(clientId) || !URL.canParse(clientId)) return undefined;
  return new URL(clientId).host;
}

/** A URL in a message: whole when short, cut when long (client_id is attacker-chosen). */
function shown(text: string): string {
  return JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}...` : text);
}

// ---- addresses a document may not be fetched from (without allowPrivateNetworks) ----

const forbidden = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata services
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  forbidden.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128],
  ['::', 96], // IPv4-compatible (deprecated)
  ['64:ff9b::', 96], // NAT64: embeds an IPv4 address we would have to check again
  ['64:ff9b:1::', 48], // local-use NAT64 (RFC 8215)
  ['2001::', 32], // Teredo: embeds an IPv4 address
  ['fec0::', 10], // site-local (deprecated, still routed on some networks)
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['2002::', 16], // 6to4: embeds an IPv4 address
  ['fc00::', 7], // unique-local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  forbidden.addSubnet(net, prefix, 'ipv6');
}
// IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) are matched against the IPv4 rules by BlockList itself.

/** URL schemes a redirect URI may not have (as the SDK's registration schema refuses them). */
const UNSAFE_SCHEMES: ReadonlySet<string> = new Set(['javascript:', 'data:', 'vbscript:']);

/** True when `address` (an IP literal) is one a metadata document may be fetched from by default. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return !forbidden.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Thrown by the vetted lookup; recognised in the fetch's error chain. */
class ForbiddenAddressError extends Error {
  constructor(host: string, address: string) {
    super(`${host} resolves to ${address}, a loopback, private or otherwise non-public address`);
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for `net.connect` that resolves the host and fails when any of its addresses is not
 * `allowed` (by default: not public). The socket connects to the addresses returned here and nothing
 * else, so the address that was checked is the address that is used: a second, rebound DNS answer is
 * never asked for.
 */
export function createVettedLookup(allowed: (address: string) => boolean = isPublicAddress) {
  return function vettedLookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        callback(err, []);
        return;
      }
      const bad = addresses.find((a) => !allowed(a.address));
      if (bad !== undefined || addresses.length === 0) {
        callback(new ForbiddenAddressError(hostname, bad?.address ?? 'nothing') as NodeJS.ErrnoException, []);
        return;
      }
      if (options.all === true) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

function findInChain<T>(err: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof type) return e;
  }
  return undefined;
}

// ---- the document ----

/** Checks the client_id URL itself, before anything is fetched (draft §3). */
function checkClientIdUrl(clientId: string, allowHttp: boolean): URL {
  const fail = (what: string): never => {
    throw new ClientMetadataDocumentError('invalid_url', `client_id ${shown(clientId)} is not a usable Client ID Metadata Document URL: ${what}`);
  };
  if (clientId.length > MAX_CLIENT_ID_LENGTH) fail(`it is longer than ${MAX_CLIENT_ID_LENGTH} characters`);
  if (!URL.canParse(clientId)) fail('it does not parse as a URL');
  const url = new URL(clientId);
  if (url.protocol !== 'https:' && !(allowHttp && url.protocol === 'http:')) fail('it must use https');
  if (url.username !== '' || url.password !== '') fail('it must not contain a user name or password');
  if (clientId.includes('#')) fail('it must not contain a fragment');
  if (url.pathname === '/' || url.pathname === '') fail('it must have a path, e.g. https://client.example.com/oauth/client.json');
  // `new URL` resolves dot segments away, so look at the path as written (also percent-encoded dots, and
  // backslashes, which the URL parser treats as slashes).
  const rawPath = clientId.slice(clientId.indexOf('//') + 2).replace(/^[^/\\?]*/, '').split('?')[0]!;
  if (rawPath.split(/[/\\]/).some((segment) => /^(\.|%2e){1,2}$/i.test(segment))) fail('its path must not contain "." or ".." segments');
  return url;
}

/** Copied from the document when they are strings; everything else in it is ignored. */
const OPTIONAL_STRING_FIELDS = ['client_name', 'client_uri', 'logo_uri', 'scope', 'tos_uri', 'policy_uri', 'software_id', 'software_version'] as const;

/** Turns a parsed document into a public client, or throws naming what is wrong and what to do. */
function clientFromDocument(clientId: string, doc: unknown): OAuthClientInformationFull {
  const fail = (reason: ClientMetadataFailure, what: string): never => {
    throw new ClientMetadataDocumentError(reason, `The Client ID Metadata Document at ${shown(clientId)} ${what}`);
  };
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) fail('invalid_document', 'must be a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.client_id !== clientId) {
    const got = typeof d.client_id === 'string' ? shown(d.client_id) : d.client_id === undefined ? 'missing' : `a ${typeof d.client_id}`;
    fail('client_id_mismatch', `must contain "client_id" equal to the URL it is served from, exactly; it is ${got}`);
  }
  const uris = d.redirect_uris;
  if (!Array.isArray(uris) || uris.length === 0) fail('invalid_redirect_uris', 'must list the client\'s redirect URIs in "redirect_uris" (a non-empty array of absolute URLs)');
  for (const uri of uris as unknown[]) {
    if (typeof uri !== 'string' || !URL.canParse(uri) || uri.includes('#')) {
      fail('invalid_redirect_uris', `has a "redirect_uris" entry that is not an absolute URL without a fragment: ${typeof uri === 'string' ? shown(uri) : typeof uri}`);
    }
    // The schemes dynamic registration refuses too (the SDK's SafeUrlSchema): never a redirect target.
    if (UNSAFE_SCHEMES.has(new URL(uri as string).protocol)) {
      fail('invalid_redirect_uris', `has a "redirect_uris" entry with a scheme no redirect may use (${new URL(uri as string).protocol}): ${shown(uri as string)}`);
    }
  }
  const method = d.token_endpoint_auth_method ?? 'none';
  if (method !== 'none') {
    if (typeof method === 'string' && method.startsWith('client_secret')) {
      fail('unsupported_auth_method', `asks for token_endpoint_auth_method ${shown(method)}, but a metadata document has no shared secret; set it to "none" (a public client with PKCE)`);
    }
    if (method === 'private_key_jwt') fail('unsupported_auth_method', 'asks for token_endpoint_auth_method "private_key_jwt", which this server does not support; set it to "none" (a public client with PKCE)');
    fail('unsupported_auth_method', `has an unsupported token_endpoint_auth_method ${typeof method === 'string' ? shown(method) : typeof method}; set it to "none"`);
  }
  if (d.client_secret !== undefined || d.client_secret_expires_at !== undefined) fail('invalid_document', 'must not contain a client_secret (the document is public)');
  const grantTypes = d.grant_types;
  if (grantTypes !== undefined && (!Array.isArray(grantTypes) || !grantTypes.every((g) => typeof g === 'string') || !grantTypes.includes('authorization_code'))) {
    fail('invalid_document', 'has "grant_types" that is not an array of strings including "authorization_code"');
  }
  const responseTypes = d.response_types;
  if (responseTypes !== undefined && (!Array.isArray(responseTypes) || !responseTypes.includes('code'))) {
    fail('invalid_document', 'has "response_types" that does not include "code"');
  }
  const client: OAuthClientInformationFull = {
    client_id: clientId,
    redirect_uris: uris as string[],
    token_endpoint_auth_method: 'none',
    grant_types: (grantTypes as string[] | undefined) ?? ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  };
  for (const field of OPTIONAL_STRING_FIELDS) {
    if (typeof d[field] === 'string') (client as Record<string, unknown>)[field] = d[field];
  }
  return client;
}

/** `Cache-Control: max-age`, clamped to the cache bounds; absent, `no-store` and `no-cache` get the minimum. */
function cacheSeconds(header: string | string[] | undefined): number {
  const value = Array.isArray(header) ? header.join(',') : (header ?? '');
  const maxAge = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?/i.exec(value);
  if (maxAge === null || /(?:^|,)\s*no-(?:store|cache)\b/i.test(value)) return CACHE_MIN_S;
  return Math.min(CACHE_MAX_S, Math.max(CACHE_MIN_S, Number(maxAge[1])));
}

interface CacheEntry {
  expiresAt: number;
  client?: OAuthClientInformationFull;
  error?: ClientMetadataDocumentError;
}

/**
 * Fetches, validates and caches Client ID Metadata Documents for one OAuth proxy. Process-local: each
 * instance behind a load balancer fetches for itself, which the cache keeps cheap.
 *
 * @example
 * ```ts
 * const documents = new ClientMetadataDocuments({ allowPrivateNetworks: false });
 * const client = await documents.resolve('https://client.example.com/oauth/client.json');
 * ```
 */
export class ClientMetadataDocuments {
  readonly #allowPrivate: boolean;
  readonly #allowHttp: boolean;
  readonly #timeoutMs: number;
  readonly #agent: Agent;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inFlight = new Map<string, Promise<OAuthClientInformationFull>>();
  #closed = false;

  constructor(options: ClientIdMetadataDocumentOptions = {}) {
    const timeout = options.fetchTimeoutMs ?? DEFAULT_CLIENT_METADATA_TIMEOUT_MS;
    if (!Number.isFinite(timeout) || timeout <= 0) {
      throw new CodemodeError('INVALID_CONFIG', `oauth.clientIdMetadataDocuments.fetchTimeoutMs must be a positive number of milliseconds, got ${timeout}`);
    }
    this.#allowPrivate = options.allowPrivateNetworks === true;
    this.#allowHttp = options.allowHttp === true;
    this.#timeoutMs = timeout;
    this.#agent = new Agent({
      connect: { timeout, ...(!this.#allowPrivate && { lookup: createVettedLookup() }) },
      headersTimeout: timeout,
      bodyTimeout: timeout,
      // A little over the cap: the read below refuses anything larger with a clear message first.
      maxResponseSize: MAX_CLIENT_METADATA_BYTES * 4,
      connections: 2,
    });
  }

  /** The client described by the document at `clientId`, from the cache or a fresh fetch. */
  async resolve(clientId: string): Promise<OAuthClientInformationFull> {
    if (this.#closed) throw new TemporarilyUnavailableError('The authorization server is shutting down');
    const cached = this.#cache.get(clientId);
    if (cached !== undefined && cached.expiresAt > Date.now()) {
      // Least recently used goes first: move this one to the end.
      this.#cache.delete(clientId);
      this.#cache.set(clientId, cached);
      if (cached.error !== undefined) throw cached.error;
      return cached.client!;
    }
    const url = checkClientIdUrl(clientId, this.#allowHttp);
    const running = this.#inFlight.get(clientId);
    if (running !== undefined) return running;
    if (this.#inFlight.size >= MAX_CONCURRENT_FETCHES) {
      log.warn('too many client metadata fetches at once; refusing one', { limit: MAX_CONCURRENT_FETCHES });
      throw new TemporarilyUnavailableError('Too many Client ID Metadata Documents are being fetched right now; try again shortly');
    }
    const fetching = this.#fetchAndCache(clientId, url).finally(() => this.#inFlight.delete(clientId));
    this.#inFlight.set(clientId, fetching);
    return fetching;
  }

  async #fetchAndCache(clientId: string, url: URL): Promise<OAuthClientInformationFull> {
    try {
      const { client, ttlS } = await this.#fetch(clientId, url);
      this.#remember(clientId, { client, expiresAt: Date.now() + ttlS * 1000 });
      return client;
    } catch (err) {
      const error =
        err instanceof ClientMetadataDocumentError
          ? err
          : new ClientMetadataDocumentError('unreachable', `The Client ID Metadata Document at ${shown(clientId)} could not be fetched; check that the URL is right and its server is up`);
      log.warn('client metadata document refused', { client: clientId.slice(0, 200), reason: error.reason, ...(error !== err && { error: describeError(err) }) });
      this.#remember(clientId, { error, expiresAt: Date.now() + FAILURE_CACHE_S * 1000 });
      throw error;
    }
  }

  #remember(clientId: string, entry: CacheEntry): void {
    if (this.#closed) return;
    this.#cache.delete(clientId);
    this.#cache.set(clientId, entry);
    while (this.#cache.size > CACHE_MAX_ENTRIES) this.#cache.delete(this.#cache.keys().next().value!);
  }

  async #fetch(clientId: string, url: URL): Promise<{ client: OAuthClientInformationFull; ttlS: number }> {
    const fail = (reason: ClientMetadataFailure, what: string): never => {
      throw new ClientMetadataDocumentError(reason, `The Client ID Metadata Document at ${shown(clientId)} ${what}`);
    };
    // An IP literal is connected to without a lookup: check it here.
    const literal = url.hostname.replace(/^\[|\]$/g, '');
    if (!this.#allowPrivate && isIP(literal) !== 0 && !isPublicAddress(literal)) {
      fail('forbidden_address', 'is on a loopback, private or otherwise non-public address, which this server does not fetch from; host the document on a public https URL');
    }
    const signal = AbortSignal.timeout(this.#timeoutMs);
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(url, { dispatcher: this.#agent, method: 'GET', headers: { accept: 'application/json' }, signal });
    } catch (err) {
      if (findInChain(err, ForbiddenAddressError) !== undefined) {
        fail('forbidden_address', 'is on a host that resolves to a loopback, private or otherwise non-public address, which this server does not fetch from; host the document on a public https URL');
      }
      // undici refuses a declared Content-Length far over the cap before we see the headers.
      if ((err as { code?: string }).code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') fail('too_large', `is larger than ${MAX_CLIENT_METADATA_BYTES} bytes; keep it small`);
      if (signal.aborted || (err as { code?: string }).code?.includes('TIMEOUT') === true) {
        fail('timeout', `did not answer within ${this.#timeoutMs} ms; serve it faster or try again`);
      }
      throw err;
    }
    try {
      const status = res.statusCode;
      if (status >= 300 && status < 400) {
        fail('redirect', `answered with a redirect (HTTP ${status}), and redirects are not followed; serve the document at the client_id URL itself`);
      }
      if (status !== 200) fail('http_status', `answered HTTP ${status}; it must answer 200 with the JSON document`);
      const type = String(res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/json' && !/^application\/[a-z0-9.+-]*\+json$/.test(type)) {
        fail('not_json', `has content type ${shown(type === '' ? 'none' : type)}; it must be served as application/json`);
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > MAX_CLIENT_METADATA_BYTES) fail('too_large', `is larger than ${MAX_CLIENT_METADATA_BYTES} bytes; keep it small`);
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        for await (const chunk of res.body) {
          size += (chunk as Buffer).length;
          if (size > MAX_CLIENT_METADATA_BYTES) fail('too_large', `is larger than ${MAX_CLIENT_METADATA_BYTES} bytes; keep it small`);
          chunks.push(chunk as Buffer);
        }
      } catch (err) {
        if (err instanceof ClientMetadataDocumentError) throw err;
        if (signal.aborted) fail('timeout', `did not arrive within ${this.#timeoutMs} ms; serve it faster or try again`);
        throw err;
      }
      let doc: unknown;
      try {
        doc = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        fail('not_json', 'is not valid JSON');
      }
      return { client: clientFromDocument(clientId, doc), ttlS: cacheSeconds(res.headers['cache-control']) };
    } finally {
      // Never read the rest of a refused body: drop the connection instead. Destroying undici's body
      // emits an AbortError on it, which must not become an uncaught exception.
      if (!res.body.readableEnded) {
        res.body.on('error', () => undefined);
        res.body.destroy();
      }
    }
  }

  /** Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cache.clear();
    await this.#agent.destroy();
  }
}
