/**
 * Worker-thread entry of code normalization (started by normalize-off-thread.ts, never imported): parsing,
 * fence handling and TypeScript stripping of submitted code run here, off the event loop that every session
 * shares. A trap in amaro is recovered here too (strip-types.ts loads a fresh instance).
 *
 * @module
 */

import { registerHooks } from 'node:module';
import { parentPort } from 'node:worker_threads';

// From the TypeScript sources (tests), imports say `.js` (the nodenext convention) and Node's type stripping
// does not map them: a relative `.js` import that does not exist is retried as `.ts`. dist/ never needs it.
if (import.meta.url.endsWith('.ts')) {
  registerHooks({
    resolve(specifier, context, next) {
      try {
        return next(specifier, context);
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ERR_MODULE_NOT_FOUND' && /^\.\.?\//.test(specifier) && specifier.endsWith('.js')) {
          return next(`${specifier.slice(0, -3)}.ts`, context);
        }
        throw err;
      }
    },
  });
}

const { normalizeData } = await import('./normalize.js');
const { discardedStrippers } = await import('./strip-types.js');

parentPort?.on('message', (request: { id: number; input: string }) => {
  try {
    parentPort?.postMessage({ id: request.id, ok: true, data: normalizeData(request.input), discarded: discardedStrippers() });
  } catch (err) {
    parentPort?.postMessage({ id: request.id, ok: false, message: err instanceof Error ? err.message : String(err), discarded: discardedStrippers() });
  }
});
