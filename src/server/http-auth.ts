/**
 * HTTP authentication for `codemode serve --http`: static bearer tokens (from an environment variable), or
 * JWTs verified against a JWKS URL with a pinned issuer and audience. Failures get a 401 with an RFC 6750
 * `WWW-Authenticate` challenge.
 *
 * For a full OAuth authorization server in front of the engine, see `createOAuthProxy` (src/server/auth);
 * its `requireAuth` middleware plugs into `serveHttp` the same way.
 *
 * @module
 */

import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { CodemodeError, describeError } from '../errors.js';
import { createLogger } from '../log.js';
import { createBearerTokens, DEFAULT_AUTH_TOKENS_ENV, parseTokenList, writeBearerChallenge } from '../wire/bearer.js';

export { DEFAULT_AUTH_TOKENS_ENV, parseTokenList };

const log = createLogger('server');

/** Asymmetric algorithms only: a JWKS never holds a shared secret, and `none`/HS* must not be accepted. */
export const DEFAULT_JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

export interface JwtAuthOptions {
  /** Where the signing keys are published, e.g. `https://idp.example.com/.well-known/jwks.json`. */
  jwksUrl: string;
  /** Required `iss`. */
  issuer: string;
  /** Required `aud` (one of them). */
  audience: string | string[];
  /** Accepted algorithms. Default `DEFAULT_JWT_ALGORITHMS`. */
  algorithms?: string[];
  /** Scopes every token must carry (from `scope` or `scp`). */
  requiredScopes?: string[];
  /** Allowed clock skew in seconds. Default 30. */
  clockToleranceSeconds?: number;
}

export interface HttpAuthOptions {
  /** Accepted static bearer tokens. */
  bearerTokens?: readonly string[];
  /** JWT verification. Both may be set: a token is accepted when either accepts it. */
  jwt?: JwtAuthOptions;
  /** The `realm` in challenges. Default `codemode`. */
  realm?: string;
}

/** An authentication middleware for the MCP endpoint. */
export interface HttpAuth {
  /** Sets `req.auth` (the SDK's `AuthInfo`) or answers 401. */
  readonly middleware: RequestHandler;
  /** For logs: what kind of auth is on. */
  readonly description: string;
}

function scopesOf(payload: JWTPayload): string[] {
  const raw = payload.scope ?? payload.scp;
  if (typeof raw === 'string') return raw.split(' ').filter((s) => s !== '');
  if (Array.isArray(raw)) return raw.filter((s): s is string => typeof s === 'string');
  return [];
}

/**
 * Builds the auth middleware.
 *
 * @throws CodemodeError `INVALID_CONFIG` when neither tokens nor a JWT config is given, or a URL is malformed.
 *
 * @example
 * ```ts
 * const auth = createHttpAuth({ bearerTokens: parseTokenList(process.env.CODEMODE_AUTH_TOKENS) });
 * const http = await serveHttp(server, { host: '0.0.0.0', port: 3000, auth });
 * ```
 */
export function createHttpAuth(options: HttpAuthOptions): HttpAuth {
  const tokens = (options.bearerTokens ?? []).filter((t) => t !== '');
  const realm = options.realm ?? 'codemode';
  if (tokens.length === 0 && options.jwt === undefined) {
    throw new CodemodeError('INVALID_CONFIG', 'HTTP auth needs at least one bearer token or a JWT configuration (JWKS URL, issuer, audience).');
  }
  const staticTokens = createBearerTokens(tokens);
  let verifyJwt: ((token: string) => Promise<AuthInfo>) | undefined;
  if (options.jwt !== undefined) {
    const jwt = options.jwt;
    if (!URL.canParse(jwt.jwksUrl)) throw new CodemodeError('INVALID_CONFIG', `The JWKS URL ${JSON.stringify(jwt.jwksUrl)} is not an absolute URL.`);
    if (!jwt.issuer) throw new CodemodeError('INVALID_CONFIG', 'JWT auth needs the expected issuer (--jwt-issuer).');
    if (jwt.audience.length === 0) throw new CodemodeError('INVALID_CONFIG', 'JWT auth needs the expected audience (--jwt-audience).');
    const jwks = createRemoteJWKSet(new URL(jwt.jwksUrl));
    verifyJwt = async (token) => {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: jwt.issuer,
        audience: jwt.audience,
        algorithms: jwt.algorithms ?? [...DEFAULT_JWT_ALGORITHMS],
        clockTolerance: jwt.clockToleranceSeconds ?? 30,
      });
      const scopes = scopesOf(payload);
      const missing = (jwt.requiredScopes ?? []).filter((s) => !scopes.includes(s));
      if (missing.length > 0) throw new Error(`the token lacks the required scope(s) ${missing.join(' ')}`);
      const clientId = typeof payload.client_id === 'string' ? payload.client_id : typeof payload.azp === 'string' ? payload.azp : (payload.sub ?? 'unknown');
      return { token, clientId, scopes, ...(payload.exp !== undefined ? { expiresAt: payload.exp } : {}), extra: { sub: payload.sub, principal: `jwt:${payload.sub ?? clientId}` } };
    };
  }

  const challenge = (res: Response, status: 401 | 403, error?: { code: string; description: string }) => writeBearerChallenge(res, realm, status, error);

  const middleware: RequestHandler = (req: Request, res: Response, next: NextFunction) => {
    const found = staticTokens.check(req.headers.authorization);
    if (found.kind === 'missing') {
      challenge(res, 401);
      return;
    }
    if (found.kind === 'malformed') {
      challenge(res, 401, { code: 'invalid_request', description: 'The Authorization header must be "Bearer <token>".' });
      return;
    }
    if (found.kind === 'static') {
      // Every static token is its own principal: sessions are bound to it (see sessions.ts).
      (req as Request & { auth?: AuthInfo }).auth = { token: found.token, clientId: 'static-token', scopes: [], extra: { principal: found.principal } };
      next();
      return;
    }
    const token = found.token;
    if (verifyJwt === undefined) {
      challenge(res, 401, { code: 'invalid_token', description: 'The bearer token is not valid.' });
      return;
    }
    verifyJwt(token).then(
      (info) => {
        (req as Request & { auth?: AuthInfo }).auth = info;
        next();
      },
      (err: unknown) => {
        log.debug('JWT rejected', { error: describeError(err) });
        challenge(res, 401, { code: 'invalid_token', description: `The token was rejected: ${describeError(err)}` });
      },
    );
  };
  const kinds = [tokens.length > 0 ? `${tokens.length} static bearer token(s)` : '', options.jwt ? `JWT (issuer ${options.jwt.issuer})` : ''].filter((k) => k !== '');
  return { middleware, description: kinds.join(' or ') };
}
