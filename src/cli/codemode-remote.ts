#!/usr/bin/env node
/**
 * `codemode-remote <url>`: the stdio-to-remote-HTTP MCP bridge. Start-up time matters (hosts spawn
 * it on every launch), so this entry turns on Node's compile cache before anything else is loaded
 * and imports the rest lazily; OAuth code loads only when the server asks for authorization.
 *
 * @module
 */

import { enableCompileCache } from 'node:module';

// Must run before the static imports of other modules are evaluated, so everything else is dynamic.
try {
  enableCompileCache?.();
} catch {
  // a read-only cache dir only costs speed
}

const { main } = await import('./remote-main.js');
process.exitCode = await main(process.argv.slice(2));
