/**
 * The bridge's OAuth hooks. This module is deliberately light (it reads the token file, nothing
 * more); the SDK-based flow in `oauth.ts` is imported only when the server answers 401 or a stored
 * token needs refreshing, so a bridge with valid tokens (or none needed) starts fast.
 *
 * @module
 */

import { describeError } from '../errors.js';
import { createLogger } from '../log.js';
import type { BridgeConfig, BridgeOAuthConfig } from './config.js';
import type { StoredState } from './token-store.js';
import { TokenStore, defaultConfigDir, storageKey } from './token-store.js';
import type { AuthHooks } from './upstream.js';
import type * as OAuthModule from './oauth.js';

type OAuthFlow = typeof OAuthModule;

const log = createLogger('remote');

export interface FlowContext {
  config: BridgeConfig;
  auth: BridgeOAuthConfig;
  store: TokenStore;
}

function bearer(state: StoredState): string | undefined {
  return state.tokens?.access_token === undefined ? undefined : `Bearer ${state.tokens.access_token}`;
}

/**
 * Creates the hooks the upstream transport calls. One refresh and one authorization at a time per
 * process (concurrent callers share the promise); across processes, `oauth.ts` takes leases.
 *
 * @example
 * ```ts
 * const hooks = createAuthHooks(config, config.auth!);
 * const header = await hooks.header(signal); // "Bearer ..." or undefined
 * ```
 */
export function createAuthHooks(config: BridgeConfig, auth: BridgeOAuthConfig): AuthHooks {
  const store = new TokenStore(auth.configDir ?? defaultConfigDir(), storageKey(config.url.href, auth.resource, config.headers), config.url.href, auth.resource);
  const ctx: FlowContext = { config, auth, store };
  let state = store.read();
  let refreshing: Promise<void> | undefined;
  let authorizing: Promise<void> | undefined;
  const flow = (): Promise<OAuthFlow> => import('./oauth.js');

  return {
    currentHeader: () => bearer(state),
    async header(signal) {
      if (authorizing !== undefined) await authorizing.catch(() => undefined);
      const expiresAt = state.expiresAt;
      // cross_app_access has no refresh token: its grant is simply run again (flow.renew).
      const renewable = state.tokens?.refresh_token !== undefined || (auth.grant === 'cross_app_access' && state.tokens !== undefined);
      if (renewable && expiresAt !== undefined && expiresAt - auth.refreshThresholdMs <= Date.now()) {
        refreshing ??= (async () => {
          state = await (await flow()).renew(ctx, state, signal);
        })().finally(() => {
          refreshing = undefined;
        });
        try {
          await refreshing;
        } catch (err) {
          // The request goes out with the old token; a 401 then runs the full authorization.
          log.warn('token refresh failed; will re-authorize if the server refuses the old token', { error: describeError(err) });
        }
      }
      return bearer(state);
    },
    async unauthorized(res, signal) {
      const sent = state.tokens?.access_token;
      if (authorizing === undefined) {
        // Another request of ours may have re-authorized while this one was in flight.
        const fresh = store.read();
        if (fresh.tokens?.access_token !== undefined && fresh.tokens.access_token !== sent && res.status === 401) {
          state = fresh;
          await res.body?.cancel();
          return;
        }
      }
      if (authorizing !== undefined) await res.body?.cancel();
      authorizing ??= (async () => {
        state = await (await flow()).authorize(ctx, state, res, signal);
      })().finally(() => {
        authorizing = undefined;
      });
      await authorizing;
    },
  };
}
