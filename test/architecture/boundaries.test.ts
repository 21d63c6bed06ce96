import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readModule } from './read-imports.js';
import { ALLOWED, ENTRY_LAYERS, ISOLATED_VM_LAYERS, SHARED, STDOUT_LAYERS } from './rules.js';

// ARCHITECTURE.md §1, read with TypeScript's parser (read-imports.ts); the table lives in rules.ts, which
// eslint.config.js mirrors as per-folder no-restricted-imports. console.* in src/ is eslint's no-console.

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const srcDir = join(root, 'src');

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) return walk(full);
    return /\.[cm]?ts$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

const isIsolatedVm = (spec: string) => spec === 'isolated-vm' || spec.startsWith('isolated-vm/');

/**
 * What is wrong with one file of src/, given its path relative to src/ (posix separators) and its text.
 * Exported through the test below only; fixtures call it with made-up paths.
 */
function check(path: string, source: string): string[] {
  const parts = path.split('/');
  // The folder under src/, or the file name for top-level files (errors.ts, log.ts, index.ts).
  const layer = parts[0]!;
  const where = `src/${path}`;
  const found: string[] = [];
  const facts = readModule(source, path);
  for (const ref of facts.refs) {
    const { spec } = ref;
    const at = `${where}:${ref.line}`;
    if (ref.computed) {
      // A computed specifier can't be checked, so src/ has none: name each module literally.
      found.push(`${at}: ${ref.kind === 'dynamic' ? 'import()' : 'require()'} of a computed specifier (${spec}) can't be checked; name the module literally`);
    }
    if (isIsolatedVm(spec) && !ISOLATED_VM_LAYERS.includes(layer)) found.push(`${at}: only src/sandbox may load isolated-vm (${spec}, by ${ref.kind})`);
    if (layer === 'sandbox' && spec.startsWith('@modelcontextprotocol/')) found.push(`${at}: the sandbox knows no MCP (${spec})`);
    if (layer === 'wire' && !spec.startsWith('.') && !spec.startsWith('node:')) found.push(`${at}: src/wire imports only node built-ins, errors and log (${spec})`);
    if (!spec.startsWith('.')) continue;
    const target = posix.normalize(posix.join(posix.dirname(path), spec)).split('/');
    if (target[0] === '..') {
      found.push(`${at}: imports outside src (${spec})`);
      continue;
    }
    const targetLayer = target.length > 1 ? target[0]! : target[0]!.replace(/\.js$/, '.ts');
    if (targetLayer === layer || SHARED.includes(targetLayer)) continue;
    if (layer === 'index.ts') continue; // the root public API re-exports every layer
    const allowed = layer === 'exports' ? ENTRY_LAYERS[parts[1]!] : ALLOWED[layer];
    if (allowed === undefined || !allowed.includes(targetLayer)) {
      found.push(`${at}: ${layer === 'exports' ? path : layer} -> ${targetLayer} is not an allowed dependency (${spec})`);
    }
  }
  if (!STDOUT_LAYERS.includes(layer)) {
    for (const use of facts.stdout) found.push(`${where}:${use.line}: writes to stdout (${use.how}); only the CLI may, stdout is the protocol`);
  }
  return found;
}

function violations(): string[] {
  return walk(srcDir).flatMap((file) => check(relative(srcDir, file).split(sep).join('/'), readFileSync(file, 'utf8')));
}

describe('import boundaries (ARCHITECTURE.md §1)', () => {
  it('has no forbidden arrow between layers', () => {
    expect(violations()).toEqual([]);
  });

  it('reads each kind of import form', () => {
    const { refs } = readModule(
      [
        `import ivm from 'isolated-vm';`,
        `import type { X } from '../proxy/index.js';`,
        `import { a,\n b } from "./a.js";`,
        `export { y } from '../codemode/y.js';`,
        `export * from '../server/z.js';`,
        `export * as w from '../wire/w.js';`,
        `const m = await import('../bridge/m.js');`,
        `import './side-effect.js';`,
        `type T = typeof import('../telemetry/index.js');`,
        `import r = require('../cli/r.js');`,
        `// import nope from 'in-a-comment';`,
        `const s = "import nope from 'in-a-string'";`,
      ].join('\n'),
    );
    expect(refs.map((r) => `${r.kind} ${r.spec}`).sort()).toEqual(
      [
        'import isolated-vm',
        'import-type ../proxy/index.js',
        'import ./a.js',
        'export ../codemode/y.js',
        'export ../server/z.js',
        'export ../wire/w.js',
        'dynamic ../bridge/m.js',
        'import ./side-effect.js',
        'import-type ../telemetry/index.js',
        'require ../cli/r.js',
      ].sort(),
    );
  });

  // Each of these got past the regex reader this test used before (issue 13).
  describe('catches what a regex missed', () => {
    it('a multi-line import with an apostrophe in a trailing comment', () => {
      const source = [`import {`, `  IsolatedVmSandbox, // the sandbox's own class`, `  liveIsolateCount,`, `} from '../sandbox/isolated-vm-sandbox.js';`].join('\n');
      expect(readModule(source).refs.map((r) => r.spec)).toEqual(['../sandbox/isolated-vm-sandbox.js']);
      expect(check('proxy/x.ts', source)).toEqual(['src/proxy/x.ts:1: proxy -> sandbox is not an allowed dependency (../sandbox/isolated-vm-sandbox.js)']);
    });

    it('import() of a template literal', () => {
      const plain = 'const m = await import(`../sandbox/isolated-vm-sandbox.js`);';
      expect(check('proxy/x.ts', plain)).toEqual(['src/proxy/x.ts:1: proxy -> sandbox is not an allowed dependency (../sandbox/isolated-vm-sandbox.js)']);
      const computed = 'const kind = "isolated-vm";\nconst m = await import(`../sandbox/${kind}-sandbox.js`);';
      expect(readModule(computed).refs).toEqual([{ spec: '../sandbox/*-sandbox.js', kind: 'dynamic', computed: true, line: 2 }]);
      expect(check('proxy/x.ts', computed)).toEqual([
        "src/proxy/x.ts:2: import() of a computed specifier (../sandbox/*-sandbox.js) can't be checked; name the module literally",
        'src/proxy/x.ts:2: proxy -> sandbox is not an allowed dependency (../sandbox/*-sandbox.js)',
      ]);
    });

    it('createRequire(...)("isolated-vm"), called at once or through a name', () => {
      const atOnce = `import { createRequire } from 'node:module';\nconst ivm = createRequire(import.meta.url)('isolated-vm');`;
      expect(readModule(atOnce)).toMatchObject({ createRequire: [2], refs: [{ spec: 'node:module' }, { spec: 'isolated-vm', kind: 'require' }] });
      expect(check('server/x.ts', atOnce)).toEqual(['src/server/x.ts:2: only src/sandbox may load isolated-vm (isolated-vm, by require)']);
      const named = `import * as mod from 'node:module';\nconst load = mod.createRequire(import.meta.url);\nconst ivm = load('isolated-vm');\nload.resolve('isolated-vm/package.json');`;
      expect(check('codemode/x.ts', named)).toEqual([
        'src/codemode/x.ts:3: only src/sandbox may load isolated-vm (isolated-vm, by require)',
        'src/codemode/x.ts:4: only src/sandbox may load isolated-vm (isolated-vm/package.json, by require)',
      ]);
      expect(check('sandbox/x.ts', atOnce)).toEqual([]);
    });

    it('isolated-vm subpaths', () => {
      const source = `import ivm from 'isolated-vm/isolated-vm.js';`;
      expect(check('bridge/x.ts', source)).toEqual(['src/bridge/x.ts:1: only src/sandbox may load isolated-vm (isolated-vm/isolated-vm.js, by import)']);
      expect(check('sandbox/x.ts', source)).toEqual([]);
    });

    it("import { stdout } from 'node:process', and the other ways to reach it", () => {
      const named = `import { stdout } from 'node:process';\nstdout.write('x');`;
      expect(check('server/x.ts', named)).toEqual([
        "src/server/x.ts:1: writes to stdout (import { stdout } from 'node:process'); only the CLI may, stdout is the protocol",
      ]);
      expect(check('cli/x.ts', named)).toEqual([]);
      const others = [
        `import proc from 'process';`,
        `import { stdout as out } from 'process';`,
        `proc.stdout.write('a');`,
        `process['stdout'].write('b');`,
        `globalThis.process.stdout.write('c');`,
        `const { stdout: o } = process;`,
        `// process.stdout in a comment is not a write`,
      ].join('\n');
      expect(readModule(others).stdout.map((s) => s.line)).toEqual([2, 3, 4, 5, 6]);
    });
  });

  it('checks the subpath entries against their own layers', () => {
    expect(check('exports/proxy.ts', `export { createProxy } from '../proxy/proxy.js';`)).toEqual([]);
    expect(check('exports/proxy.ts', `export { IsolatedVmSandbox } from '../sandbox/isolated-vm-sandbox.js';`)).toEqual([
      'src/exports/proxy.ts:1: exports/proxy.ts -> sandbox is not an allowed dependency (../sandbox/isolated-vm-sandbox.js)',
    ]);
    expect(check('exports/unknown.ts', `export { createProxy } from '../proxy/proxy.js';`)).toHaveLength(1);
  });

  it('lets wire be imported by proxy, bridge, server, cli, codemode and sandbox (not telemetry), and wire import nothing of ours but errors and log', () => {
    for (const layer of ['proxy', 'bridge', 'server', 'cli', 'codemode', 'sandbox']) expect(check(`${layer}/x.ts`, `import { LineReader } from '../wire/line-reader.js';`)).toEqual([]);
    expect(check('telemetry/x.ts', `import { LineReader } from '../wire/line-reader.js';`)).toHaveLength(1);
    expect(check('wire/x.ts', `import { CodemodeError } from '../errors.js';\nimport { createLogger } from '../log.js';\nimport { StringDecoder } from 'node:string_decoder';`)).toEqual([]);
    expect(check('wire/x.ts', `import { createProxy } from '../proxy/proxy.js';`)).toHaveLength(1);
    expect(check('wire/x.ts', `import { z } from 'zod';`)).toEqual(['src/wire/x.ts:1: src/wire imports only node built-ins, errors and log (zod)']);
  });
});
