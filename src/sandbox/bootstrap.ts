/**
 * The guest half of the sandbox: JavaScript source that runs inside every fresh isolate before user code.
 * The source itself is in guest/ (parts joined into one function); this module loads it and names what the
 * host shares with it.
 *
 * It is a function expression taking the two host bridges (isolated-vm References). It keeps them, and
 * every builtin it relies on, in its closure, so user code can neither reach an isolated-vm object nor
 * change the bridge's behaviour by patching `JSON`, `Object.prototype`, `Promise.prototype.then`, `Error`
 * and friends. It returns `[install, settleCall, fireTimer, report]`: the host calls `install(configJson, code)`
 * once before the user script runs, answers host calls through `settleCall(id, envelope)`, fires timers through
 * `fireTimer(id)`, and reads `report()` when the script's task failed (see the function for what it says).
 *
 * The rules for editing the guest source are in guest/README.md.
 *
 * @module
 */

import { readFileSync } from 'node:fs';

/** Filename the user's code is compiled under; stack frames in it map 1:1 to the user's lines and columns. */
export const USER_FILENAME = 'codemode-user.js';
/** Filename of this bootstrap, visible in guest stack traces. */
export const BOOTSTRAP_FILENAME = 'codemode-bootstrap.js';

/**
 * Prefix of the one-shot global through which the user script's wrapper starts the run (deleted on first
 * read). Each run appends a random suffix, so code can never name it in a hoisted declaration.
 */
export const RUN_GLOBAL = '__codemodeRun';

/** Tags of the string a run resolves with: `tag\ndroppedLogLines\nlogMessagesSent\npayload`. */
export type StartTag = 'ok' | 'undefined' | 'error' | 'unserializable' | 'output_limit';
export const START_TAGS: ReadonlySet<string> = new Set<StartTag>(['ok', 'undefined', 'error', 'unserializable', 'output_limit']);

/** The guest bootstrap's parts (guest/*.js), in the order their top-level code runs. */
export const GUEST_PARTS = ['captures', 'json', 'console', 'host-calls', 'intl', 'run'] as const;

/**
 * The guest bootstrap's source: one function expression of the three host bridges whose body is the parts
 * of guest/, joined in order, read once when this module loads. The parts are real, linted JavaScript that
 * tsc checks against ECMAScript builtins only (tsconfig.guest.json); the isolate compiles this text, so
 * what was checked is what runs. The build copies guest/ next to this module.
 */
export const BOOTSTRAP_SOURCE: string = [
  '(function (hostCallRef, logRef, timerRef) {',
  "'use strict';",
  ...GUEST_PARTS.map((part) => readFileSync(new URL(`./guest/${part}.js`, import.meta.url), 'utf8')),
  'return [install, settleCall, fireTimer, report];',
  '})',
].join('\n');
