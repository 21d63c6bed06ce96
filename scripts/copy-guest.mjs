/**
 * Build step after tsc: copies the guest bootstrap's parts (src/sandbox/guest/*.js: JavaScript that runs
 * inside the isolate and is loaded as text, never imported) next to their loader in dist/. tsc does not emit
 * them: they are checked by their own project (tsconfig.guest.json), not compiled. The target is emptied
 * first, so a part that was renamed or removed does not linger in dist/.
 */
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../src/sandbox/guest/', import.meta.url));
const to = fileURLToPath(new URL('../dist/sandbox/guest/', import.meta.url));
rmSync(to, { recursive: true, force: true });
for (const name of readdirSync(from)) {
  if (name.endsWith('.js')) cpSync(join(from, name), join(to, name));
}
