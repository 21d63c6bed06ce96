import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// ARCHITECTURE.md §1: which layer may import which. (console.* in src/ is caught by eslint no-console.) Anything not listed may import only errors and log.
const ALLOWED: Record<string, readonly string[]> = {
  cli: ['server', 'bridge', 'proxy', 'codemode', 'sandbox', 'telemetry', 'wire'],
  server: ['codemode', 'proxy', 'wire', 'telemetry'],
  bridge: ['wire', 'proxy'],
  codemode: ['sandbox', 'telemetry'],
  proxy: ['wire', 'telemetry'],
  sandbox: [],
  telemetry: [],
  // The SDK-free transport pieces: node built-ins, errors and log only (checked below as well).
  wire: [],
};
const SHARED = new Set(['errors.ts', 'log.ts']);

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const srcDir = join(root, 'src');

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) return walk(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** The folder under src/, or the file name for top-level files (errors.ts, log.ts, index.ts). */
function layerOf(file: string): string {
  return relative(srcDir, file).split(sep)[0]!;
}

/** Static and dynamic import specifiers, including `export ... from`. */
export function importsOf(source: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /\bimport\s+(?:type\s+)?(?:[^'"`;]*?\s+from\s+)?['"]([^'"]+)['"]/g,
    /\bexport\s+(?:type\s+)?(?:\*|\{[^}]*\})(?:\s+as\s+\w+)?\s+from\s+['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const pattern of patterns) for (const m of source.matchAll(pattern)) specs.push(m[1]!);
  return specs;
}

function violations(): string[] {
  const found: string[] = [];
  for (const file of walk(srcDir)) {
    const layer = layerOf(file);
    const source = readFileSync(file, 'utf8');
    for (const spec of importsOf(source)) {
      const where = relative(root, file);
      if (spec === 'isolated-vm' && layer !== 'sandbox') found.push(`${where}: only src/sandbox may import isolated-vm`);
      if (layer === 'sandbox' && spec.startsWith('@modelcontextprotocol/')) found.push(`${where}: the sandbox knows no MCP (${spec})`);
      if (layer === 'wire' && !spec.startsWith('.') && !spec.startsWith('node:')) found.push(`${where}: src/wire imports only node built-ins, errors and log (${spec})`);
      if (!spec.startsWith('.')) continue;
      const target = relative(srcDir, resolve(dirname(file), spec)).split(sep);
      if (target[0] === '..') {
        found.push(`${where}: imports outside src (${spec})`);
        continue;
      }
      const targetLayer = target.length > 1 ? target[0]! : target[0]!.replace(/\.js$/, '.ts');
      if (targetLayer === layer || SHARED.has(targetLayer)) continue;
      if (layer === 'index.ts') continue; // the public API re-exports every layer
      const allowed = ALLOWED[layer];
      if (allowed === undefined || !allowed.includes(targetLayer)) {
        found.push(`${where}: ${layer} -> ${targetLayer} is not an allowed dependency (${spec})`);
      }
    }
    if (layer !== 'cli' && /\bprocess\.stdout\b/.test(source)) {
      found.push(`${relative(root, file)}: writes to stdout (only the CLI may)`);
    }
  }
  return found;
}

describe('import boundaries (ARCHITECTURE.md §1)', () => {
  it('has no forbidden arrow between layers', () => {
    expect(violations()).toEqual([]);
  });

  it('detects each kind of import form', () => {
    const specs = importsOf(
      [
        `import ivm from 'isolated-vm';`,
        `import type { X } from '../proxy/index.js';`,
        `import { a,\n b } from "./a.js";`,
        `export { y } from '../codemode/y.js';`,
        `export * from '../server/z.js';`,
        `const m = await import('../bridge/m.js');`,
        `import './side-effect.js';`,
      ].join('\n'),
    );
    expect(specs.sort()).toEqual(
      ['isolated-vm', '../proxy/index.js', './a.js', '../codemode/y.js', '../server/z.js', '../bridge/m.js', './side-effect.js'].sort(),
    );
  });
});
