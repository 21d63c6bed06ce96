/**
 * Build step after tsc: copies the guest sources (src/sandbox/guest/*.js, JavaScript that runs inside the
 * isolate and is loaded as text, never imported) next to their loader in dist/. tsc does not emit them:
 * they are checked by their own project (tsconfig.guest.json), not compiled.
 */
import { cpSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../src/sandbox/guest/', import.meta.url));
const to = fileURLToPath(new URL('../dist/sandbox/guest/', import.meta.url));
cpSync(from, to, { recursive: true, filter: (path) => !path.endsWith('.d.ts') });
