/**
 * ARCHITECTURE.md §1 as data: which layer of src/ may import which. The boundary test checks every file
 * against it, and eslint.config.js builds its per-folder `no-restricted-imports` from the same table, so
 * the two can't drift apart.
 *
 * Plain JavaScript-compatible TypeScript with no imports: eslint.config.js loads it as well.
 *
 * @module
 */

/**
 * A -> [B...]: layer A may import layers B. Anything may import errors.ts and log.ts (SHARED). index.ts,
 * the root public API, re-exports every layer; the subpath entries under src/exports/ each re-export one.
 */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  cli: ['server', 'bridge', 'proxy', 'codemode', 'sandbox', 'telemetry', 'wire'],
  server: ['codemode', 'proxy', 'wire', 'telemetry'],
  bridge: ['wire', 'proxy'],
  codemode: ['sandbox', 'telemetry', 'wire'],
  proxy: ['wire', 'telemetry'],
  // Only for the timer ceiling (wire/timers.ts): wire is the SDK-free bottom layer.
  sandbox: ['wire'],
  telemetry: [],
  // The SDK-free transport pieces at the bottom: node built-ins, errors and log only.
  wire: [],
};

/** Each public entry file under src/exports/ and the layers it may re-export. */
export const ENTRY_LAYERS: Readonly<Record<string, readonly string[]>> = {
  'sandbox.ts': ['sandbox'],
  'proxy.ts': ['proxy', 'wire'],
  'server.ts': ['server', 'wire'],
  'bridge.ts': ['bridge'],
};

/** Top-level files under src/ that every layer may import. */
export const SHARED: readonly string[] = ['errors.ts', 'log.ts'];

/** Folders that may write to the process's stdout: the CLI (help, version, a `codemode run` result). */
export const STDOUT_LAYERS: readonly string[] = ['cli'];

/** Layers that may load isolated-vm (the bare name or any subpath of it). */
export const ISOLATED_VM_LAYERS: readonly string[] = ['sandbox'];

/** Every layer name: a folder directly under src/. */
export const LAYERS: readonly string[] = Object.keys(ALLOWED);
