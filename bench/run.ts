/**
 * Runs the benchmarks, each in its own Node process (so one's warm-up, isolates and child servers never skew
 * the next): `npm run bench` builds, then runs them all; `npm run bench -- sandbox codemode` the named ones;
 * `--rounds N` is passed to each as its first argument (its round count). The bridge, proxy and server benches
 * start the built CLIs, so dist/ must exist.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const ALL = ['sandbox', 'codemode', 'offthread-floor', 'process-pool', 'proxy', 'bridge', 'server', 'server-auth', 'startup', 'tenancy', 'footprint'];

const args = process.argv.slice(2);
let rounds: string | undefined;
const names: string[] = [];
for (let i = 0; i < args.length; i++) {
  const arg = args[i]!;
  if (arg === '--rounds') {
    rounds = args[++i];
    if (rounds === undefined || !/^[1-9]\d*$/.test(rounds)) {
      process.stderr.write(`bench: --rounds needs a positive whole number, got ${rounds ?? 'nothing'}.\n`);
      process.exit(2);
    }
  } else if (ALL.includes(arg)) {
    names.push(arg);
  } else {
    process.stderr.write(`bench: unknown benchmark "${arg}". Known: ${ALL.join(', ')} (and --rounds N).\n`);
    process.exit(2);
  }
}
if (!existsSync(join(here, '..', 'dist', 'cli', 'codemode.js'))) {
  process.stderr.write('bench: dist/ is missing; run `npm run build` first.\n');
  process.exit(2);
}

let failed = 0;
for (const name of names.length > 0 ? names : ALL) {
  process.stdout.write(`\n## ${name}\n\n`);
  const run = spawnSync(
    process.execPath,
    ['--no-node-snapshot', '--experimental-strip-types', join(here, `${name}.ts`), ...(rounds !== undefined ? [rounds] : [])],
    { stdio: 'inherit' },
  );
  if (run.status !== 0) {
    failed++;
    process.stderr.write(`bench: ${name} failed (${run.signal ?? `exit ${String(run.status)}`}).\n`);
  }
}
process.exit(failed > 0 ? 1 : 0);
