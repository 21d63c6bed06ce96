/**
 * Worker-thread entry of the TypeScript stripper (started by strip-types.ts, never imported). It holds one
 * amaro instance; after any failure that is not an ordinary syntax report it exits, so the host starts a
 * fresh worker (and a fresh WebAssembly instance) for the next input.
 *
 * It imports nothing relative: it runs from the sources under Node's own type stripping in tests.
 *
 * @module
 */

import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';

interface Request {
  id: number;
  code: string;
}

const require = createRequire(import.meta.url);
const amaro = require('amaro') as { transformSync(code: string, options: { mode: 'strip-only' }): { code: string } };

parentPort?.on('message', (request: Request) => {
  try {
    parentPort?.postMessage({ id: request.id, ok: true, code: amaro.transformSync(request.code, { mode: 'strip-only' }).code });
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown } | null;
    const code = typeof e?.code === 'string' ? e.code : undefined;
    const message = typeof e?.message === 'string' ? e.message : String(err);
    const sound = code === 'InvalidSyntax' || code === 'UnsupportedSyntax';
    parentPort?.postMessage({ id: request.id, ok: false, code, message, sound });
    // A stack overflow or a trap leaves the instance corrupt: this worker ends, the host starts another.
    if (!sound) process.exit(1);
  }
});
