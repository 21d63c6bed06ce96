/**
 * The browser's part of an OAuth proxy login: the consent page, forwarding to the upstream IdP, and the
 * IdP's callback, which stores the upstream session and sends the MCP client its authorization code.
 * With consent on, a cookie binds the login to the browser that started it.
 *
 * @module
 */
import type { Request, Response } from 'express';
import type { AuthorizationParams } from '@modelcontextprotocol/sdk/server/auth/provider.js';
import type { OAuthClientInformationFull } from '@modelcontextprotocol/sdk/shared/auth.js';
import { TemporarilyUnavailableError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { describeError } from '../../errors.js';
import { createLogger } from '../../log.js';
import { consentPage, messagePage, sendPage } from './pages.js';
import { randomToken, sha256 } from './records.js';
import type { CodeRecord, SealedRecords, SessionRecord, TransactionRecord } from './records.js';
import { SESSION_RETENTION_GRACE_MS } from './sessions.js';
import type { UpstreamSessions } from './sessions.js';
import { UpstreamGrantRevokedError } from './upstream.js';
import type { UpstreamClient } from './upstream.js';

const log = createLogger('oauth');

/** A login started at the upstream must come back within this long. */
const TRANSACTION_TTL_MS = 10 * 60_000;
/** Authorization codes are single-use and short-lived (RFC 6749 §4.1.2 recommends at most 10 minutes). */
const AUTHORIZATION_CODE_TTL_MS = 5 * 60_000;
/** `res.locals` key set on a redirect that forwards the browser to the upstream IdP (not an answer to the client). */
const UPSTREAM_REDIRECT = 'codemodeUpstreamRedirect';

/**
 * RFC 9207: an authorization response (a code or an error, sent to the client's redirect URI) names its
 * issuer, exactly as the `issuer` of the metadata, so a client talking to several servers can tell whose
 * response it got (mix-up attacks).
 */
export function withIss(redirectUrl: string, issuer: string): string {
  if (!URL.canParse(redirectUrl)) return redirectUrl;
  const url = new URL(redirectUrl);
  url.searchParams.set('iss', issuer);
  return url.href;
}

/** True when this response's redirect goes to the upstream IdP, which must not get the client's `iss`. */
export function isUpstreamRedirect(res: Response): boolean {
  return res.locals[UPSTREAM_REDIRECT] === true;
}

export interface BrowserLoginOptions {
  /** The issuer's href, exactly as in the metadata: sent as `iss` with every authorization response; an `https:` issuer gets `Secure` cookies. */
  issuer: string;
  /** The redirect URI registered at the upstream IdP. */
  callbackUrl: string;
  /** Where the consent form posts. */
  consentPath: string;
  /** Show the consent page before forwarding to the IdP. */
  consent: boolean;
}

/** The browser steps of the login, for one OAuth proxy. */
export class BrowserLogin {
  readonly #records: SealedRecords;
  readonly #sessions: UpstreamSessions;
  readonly #upstream: UpstreamClient;
  readonly #issuer: string;
  readonly #callbackUrl: string;
  readonly #consentPath: string;
  readonly #consent: boolean;

  constructor(records: SealedRecords, sessions: UpstreamSessions, upstream: UpstreamClient, options: BrowserLoginOptions) {
    this.#records = records;
    this.#sessions = sessions;
    this.#upstream = upstream;
    this.#issuer = options.issuer;
    this.#callbackUrl = options.callbackUrl;
    this.#consentPath = options.consentPath;
    this.#consent = options.consent;
  }

  /** `/authorize`, once the request is checked: show the consent page, or go straight to the IdP. */
  async start(client: OAuthClientInformationFull, params: AuthorizationParams, scopes: string[], res: Response): Promise<void> {
    const txnId = randomToken();
    const upstreamVerifier = this.#upstream.usesPkce ? randomToken(48) : undefined;
    // With consent on, the login is bound to this browser by a cookie: a consent form or callback
    // replayed from another browser (an attacker who started the flow himself) is refused.
    const nonce = this.#consent ? randomToken(24) : undefined;
    const txn: TransactionRecord = {
      clientId: client.client_id,
      redirectUri: params.redirectUri,
      codeChallenge: params.codeChallenge,
      scopes,
      approved: !this.#consent,
      ...(params.state !== undefined && { state: params.state }),
      ...(params.resource !== undefined && { resource: params.resource.href }),
      ...(upstreamVerifier !== undefined && { upstreamVerifier }),
      ...(nonce !== undefined && { browserBinding: sha256(nonce) }),
    };
    await this.#records.write(`txn:${txnId}`, txn, TRANSACTION_TTL_MS);
    if (nonce === undefined) {
      const upstreamUrl = await this.#upstreamUrl(txnId, txn);
      res.locals[UPSTREAM_REDIRECT] = true;
      res.redirect(302, upstreamUrl);
      return;
    }
    res.append('Set-Cookie', this.#bindingCookie(txnId, nonce, TRANSACTION_TTL_MS / 1000));
    sendPage(res, 200, consentPage(client, txn, txnId, this.#consentPath));
  }

  #cookieName(txnId: string): string {
    return `codemode_oauth_${txnId.slice(0, 16)}`;
  }

  #bindingCookie(txnId: string, value: string, maxAgeS: number): string {
    const secure = this.#issuer.startsWith('https:') ? '; Secure' : '';
    return `${this.#cookieName(txnId)}=${value}; Max-Age=${maxAgeS}; Path=/; HttpOnly; SameSite=Lax${secure}`;
  }

  #boundToThisBrowser(req: Request, txnId: string, txn: TransactionRecord): boolean {
    if (txn.browserBinding === undefined) return true;
    const name = this.#cookieName(txnId);
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const [k, ...v] = part.trim().split('=');
      if (k === name && sha256(v.join('=')) === txn.browserBinding) return true;
    }
    return false;
  }

  async #upstreamUrl(txnId: string, txn: TransactionRecord): Promise<string> {
    try {
      return await this.#upstream.authorizeUrl({
        redirectUri: this.#callbackUrl,
        state: txnId,
        ...(txn.upstreamVerifier !== undefined && { codeChallenge: sha256(txn.upstreamVerifier) }),
      });
    } catch (err) {
      log.error('cannot start upstream login', { error: describeError(err) });
      throw new TemporarilyUnavailableError('The upstream identity provider is unavailable; try again later');
    }
  }

  /** POST of the consent page: approve forwards to the upstream IdP, deny returns access_denied to the client. */
  async handleConsent(req: Request, res: Response): Promise<void> {
    res.setHeader('Cache-Control', 'no-store');
    const body = (req.body ?? {}) as Record<string, unknown>;
    const txnId = typeof body.txn === 'string' ? body.txn : '';
    const txn = txnId === '' ? undefined : await this.#records.read<TransactionRecord>(`txn:${txnId}`);
    if (txn === undefined) {
      sendPage(res, 400, messagePage('This sign-in request expired or was already used. Start the sign-in again from your MCP client.'));
      return;
    }
    if (!this.#boundToThisBrowser(req, txnId, txn)) {
      sendPage(res, 403, messagePage('This approval did not come from the browser that started the sign-in. Start the sign-in again from your MCP client.'));
      return;
    }
    if (body.action !== 'approve') {
      await this.#records.storage.delete(`txn:${txnId}`);
      const back = new URL(txn.redirectUri);
      back.searchParams.set('error', 'access_denied');
      back.searchParams.set('error_description', 'The user denied access');
      if (txn.state !== undefined) back.searchParams.set('state', txn.state);
      res.redirect(302, withIss(back.href, this.#issuer));
      return;
    }
    await this.#records.write(`txn:${txnId}`, { ...txn, approved: true }, TRANSACTION_TTL_MS);
    // Marked like the one in authorize: a consent path under the authorization endpoint's (callbackPath
    // '/authorize/cb') would otherwise get the client-facing `iss` added to the IdP's URL.
    res.locals[UPSTREAM_REDIRECT] = true;
    res.redirect(302, await this.#upstreamUrl(txnId, txn));
  }

  /** The IdP callback: finish the upstream login, store the upstream tokens, send the client its code. */
  async handleCallback(req: Request, res: Response): Promise<void> {
    res.setHeader('Cache-Control', 'no-store');
    const q = req.query;
    const state = typeof q.state === 'string' ? q.state : undefined;
    const txn = state === undefined || state === '' ? undefined : await this.#records.take<TransactionRecord>(`txn:${state}`);
    if (txn === undefined) {
      sendPage(res, 400, messagePage('This login link expired or was already used. Start the sign-in again from your MCP client.'));
      return;
    }
    if (!txn.approved || !this.#boundToThisBrowser(req, state!, txn)) {
      sendPage(res, 403, messagePage('This sign-in was not approved in this browser. Start the sign-in again from your MCP client.'));
      return;
    }
    if (txn.browserBinding !== undefined) res.append('Set-Cookie', this.#bindingCookie(state!, '', 0));
    const back = new URL(txn.redirectUri);
    if (txn.state !== undefined) back.searchParams.set('state', txn.state);
    const fail = (error: string, description: string): void => {
      back.searchParams.set('error', error);
      back.searchParams.set('error_description', description);
      res.redirect(302, withIss(back.href, this.#issuer));
    };
    if (typeof q.error === 'string') {
      fail(q.error === 'access_denied' ? 'access_denied' : 'server_error', `The upstream identity provider refused the login (${q.error})`);
      return;
    }
    if (typeof q.code !== 'string' || q.code === '') {
      fail('server_error', 'The upstream identity provider returned no authorization code');
      return;
    }
    let sid: string;
    try {
      const tokens = await this.#upstream.exchangeCode({
        code: q.code,
        redirectUri: this.#callbackUrl,
        ...(txn.upstreamVerifier !== undefined && { codeVerifier: txn.upstreamVerifier }),
      });
      const identity = await this.#upstream.identity(tokens.accessToken, tokens.idToken);
      sid = randomToken();
      const now = Date.now();
      const session: SessionRecord = {
        clientId: txn.clientId,
        ...(identity.subject !== undefined && { subject: identity.subject }),
        upstream: tokens,
        retainUntil: now + AUTHORIZATION_CODE_TTL_MS + SESSION_RETENTION_GRACE_MS,
        refreshCount: 0,
        updatedAt: now,
      };
      await this.#sessions.save(sid, session);
      log.info('user signed in', { subject: identity.subject, client: txn.clientId });
    } catch (err) {
      log.warn('upstream login failed', { error: describeError(err) });
      fail(err instanceof UpstreamGrantRevokedError ? 'access_denied' : 'server_error', 'Signing in at the upstream identity provider failed; try again');
      return;
    }
    const code = randomToken();
    const record: CodeRecord = {
      sid,
      clientId: txn.clientId,
      redirectUri: txn.redirectUri,
      codeChallenge: txn.codeChallenge,
      scopes: txn.scopes,
      ...(txn.resource !== undefined && { resource: txn.resource }),
    };
    await this.#records.write(`code:${sha256(code)}`, record, AUTHORIZATION_CODE_TTL_MS);
    back.searchParams.set('code', code);
    res.redirect(302, withIss(back.href, this.#issuer));
  }
}
