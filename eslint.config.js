import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { ALLOWED, ENTRY_LAYERS, ISOLATED_VM_LAYERS, LAYERS, SHARED, STDOUT_LAYERS } from './test/architecture/rules.ts';

/**
 * ARCHITECTURE.md §1 in the editor: per-folder no-restricted-imports built from the table that
 * test/architecture/boundaries.test.ts checks (rules.ts), so a forbidden import shows as it is typed.
 * The test stays the authority: it also reads import(), createRequire and stdout use, which this rule
 * does not see. A file gets exactly one block (flat config replaces a rule's options, it never merges
 * them), so each block is one folder at one depth.
 */
function boundaryBlocks() {
  const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const shared = SHARED.map((f) => `${esc(f.replace(/\.ts$/, '.js'))}$`);
  const stdoutPaths = ['node:process', 'process'].map((name) => ({
    name,
    importNames: ['stdout'],
    message: 'stdout is the protocol in stdio modes: only src/cli writes to it (log through src/log.ts).',
  }));
  /** Options for a file `depth` folders below src/ that may import the layers in `allowed`. */
  const options = (layer, depth, allowed, label) => {
    const up = depth === 0 ? '\\./' : `(?:\\.\\./){${depth}}`;
    const ok = [...allowed.map((l) => `${esc(l)}/`), ...shared];
    const patterns = [
      { regex: `^${up}(?!\\.\\./)(?!${ok.join('|')})`, message: `${label} may import only ${[...allowed, ...SHARED].join(', ')} (ARCHITECTURE.md §1).` },
      { regex: `^(?:\\.\\./){${depth + 1}}`, message: 'src/ imports nothing outside src/.' },
    ];
    if (!ISOLATED_VM_LAYERS.includes(layer)) patterns.push({ regex: '^isolated-vm(?:/|$)', message: 'Only src/sandbox loads isolated-vm: everything else reaches it lazily, through the sandbox.' });
    if (layer === 'sandbox') patterns.push({ regex: '^@modelcontextprotocol/', message: 'The sandbox knows no MCP (ARCHITECTURE.md §1).' });
    if (layer === 'wire') patterns.push({ regex: '^(?!node:|\\.)', message: 'src/wire imports only node built-ins, errors and log.' });
    return ['error', { paths: STDOUT_LAYERS.includes(layer) ? [] : stdoutPaths, patterns }];
  };
  const blocks = [];
  for (const layer of LAYERS) {
    for (const depth of [1, 2, 3]) {
      blocks.push({
        files: [`src/${layer}/${'*/'.repeat(depth - 1)}*.ts`],
        rules: { 'no-restricted-imports': options(layer, depth, [layer, ...ALLOWED[layer]], `src/${layer}`) },
      });
    }
  }
  for (const [file, allowed] of Object.entries(ENTRY_LAYERS)) {
    blocks.push({ files: [`src/exports/${file}`], rules: { 'no-restricted-imports': options('exports', 1, allowed, `src/exports/${file}`) } });
  }
  for (const file of SHARED) {
    blocks.push({ files: [`src/${file}`], rules: { 'no-restricted-imports': options(file, 0, [], `src/${file}`) } });
  }
  // index.ts re-exports every layer; only the package rules apply to it.
  blocks.push({ files: ['src/index.ts'], rules: { 'no-restricted-imports': options('index.ts', 0, [...LAYERS, 'exports'], 'src/index.ts') } });
  // process.stdout through the global (the import forms are covered above).
  blocks.push({
    files: ['src/**/*.ts'],
    ignores: STDOUT_LAYERS.map((l) => `src/${l}/**`),
    rules: {
      'no-restricted-properties': ['error', { object: 'process', property: 'stdout', message: 'stdout is the protocol in stdio modes: only src/cli writes to it (log through src/log.ts).' }],
    },
  });
  return blocks;
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // stdout belongs to the protocol in stdio modes: src/ logs through src/log.ts only.
    files: ['src/**/*.ts'],
    rules: { 'no-console': 'error' },
  },
  ...boundaryBlocks(),
  {
    // The guest bootstrap runs in a bare V8 isolate: a script with ECMAScript globals only (no Node, no
    // DOM), and every builtin it uses is captured at its top, before user code can patch it.
    files: ['src/sandbox/guest/*.js'],
    languageOptions: { sourceType: 'script', globals: {} },
    rules: {
      // The parts share one scope at run time (joined into one function): tsc checks the names across them.
      'no-undef': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { vars: 'local', args: 'none', caughtErrors: 'none' }],
      'no-restricted-globals': ['error', ...['process', 'Buffer', 'require', 'module', 'setTimeout', 'setInterval', 'queueMicrotask', 'structuredClone', 'console'].map((name) => ({ name, message: 'The isolate has no host globals: use the bridges and the builtins captured at the top.' }))],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ignores: ['src/sandbox/guest/*.js'],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', URL: 'readonly', Buffer: 'readonly' },
    },
  },
);
