/**
 * Tool-name globs, as `ignoreTools` (proxy) and `--ignore-tool` (bridge) take them.
 *
 * @module
 */

/**
 * Compiles tool-name globs: `*` is any run of characters, `?` one character; everything else is literal.
 * Returns a matcher giving the first glob that matches a name, or `undefined`.
 *
 * @example
 * ```ts
 * compileToolGlobs(['delete_*'])('delete_repo'); // 'delete_*'
 * ```
 */
export function compileToolGlobs(globs: readonly string[]): (name: string) => string | undefined {
  if (globs.length === 0) return () => undefined;
  const compiled = globs.map((glob) => {
    const source = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    return { glob, re: new RegExp(`^${source}$`) };
  });
  return (name) => compiled.find((c) => c.re.test(name))?.glob;
}
