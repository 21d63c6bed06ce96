/**
 * The user's code as one function body: the wrapper script it is compiled in, and the syntax failures
 * reported when it does not parse as one (ARCHITECTURE §4, rule 11).
 *
 * The check itself runs in the isolate (bootstrap.ts, the run global's getter): V8's AsyncFunction
 * constructor parses the code as exactly one function body before any of it runs, on the isolate's thread.
 * It gives no position, so on that failure path only, acorn finds one here, within a size budget.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { parse } from 'acorn';
import { describeError } from '../errors.js';
import { RUN_GLOBAL, USER_FILENAME } from './bootstrap.js';
import type { SandboxError } from './types.js';

/**
 * Code longer than this gets no line and column when it escapes the wrapper: finding them parses the whole
 * code on the host's main thread (acorn: about 10 ms per 200,000 characters), which other sessions share.
 */
export const MAX_POSITION_SEARCH_CHARS = 200_000;

/** Longest parser message passed on (V8's and acorn's are short; this only bounds what a bug could pass). */
const MAX_MESSAGE_CHARS = 1_000;

/**
 * A fresh name for the run's one-shot global. Random, so the code cannot name it in a hoisted declaration
 * (`function __codemodeRun…() {}` would replace the bootstrap's getter before the script's first expression).
 */
export function runGlobalName(): string {
  return `${RUN_GLOBAL}_${randomBytes(8).toString('hex')}`;
}

/**
 * The script the code is compiled in. The wrapper's first line is compiled at lineOffset -1, so the user's
 * first line is line 1; user lines start at column 0, so columns need no mapping. The trailing newline keeps
 * a final `// comment` inert.
 */
export function wrapUserCode(code: string, runGlobal: string): string {
  return `${runGlobal}(async function () {\n${code}\n})`;
}

const SYNTAX_POSITION = new RegExp(`\\s*\\[${USER_FILENAME.replace(/[.]/g, '\\.')}:(\\d+):(\\d+)\\]\\s*$`);

/** A compile error of the wrapper script, with the position mapped into the user's code. */
export function syntaxError(err: unknown, code: string): SandboxError {
  const raw = err instanceof Error ? err.message : describeError(err);
  const match = SYNTAX_POSITION.exec(raw);
  const message = clip(match ? raw.slice(0, match.index) : raw);
  const error: SandboxError = { kind: 'syntax', name: 'SyntaxError', message };
  if (match) {
    const line = Number(match[1]);
    const lineCount = countLines(code);
    if (line > lineCount) {
      // The parser only noticed at our wrapper's closing line: the user's code ended too early.
      error.message = `${message} at the end of the code; check for a missing closing brace, bracket or parenthesis`;
      error.line = lineCount;
      error.column = code.length - code.lastIndexOf('\n');
    } else {
      error.line = Math.max(1, line);
      error.column = Number(match[2]);
    }
  }
  return error;
}

/**
 * The code compiled as a script but is not one function body: it closes the wrapper early, or declares
 * something the script's global scope refuses. Nothing of it ran. `parserMessage` is V8's (no position);
 * acorn, which reads the code as a function body would be read, gives the position where it can.
 */
export function refusedCodeError(parserMessage: string, code: string, memoryMb: number): SandboxError {
  if (parserMessage.startsWith('EvalError:')) {
    // isolated-vm lets the isolate compile strings only up to an eighth of its heap limit, in characters.
    const max = Math.floor((memoryMb * 2 ** 20) / 8);
    return {
      kind: 'memory',
      message: `The code is too long for the ${memoryMb} MB memory limit (${code.length} characters; at most ${max} can be checked). Send shorter code or raise memoryMb.`,
    };
  }
  const error: SandboxError = {
    kind: 'syntax',
    name: 'SyntaxError',
    message: `The code is not one function body, so none of it ran (${clip(parserMessage)}).`,
  };
  if (code.length > MAX_POSITION_SEARCH_CHARS) {
    error.message += ` A stray "}" or ")" at top level closes the function the code runs in; check the braces (no position: the code is over ${MAX_POSITION_SEARCH_CHARS} characters).`;
    return error;
  }
  try {
    parse(code, {
      ecmaVersion: 'latest',
      sourceType: 'script',
      allowReturnOutsideFunction: true,
      allowAwaitOutsideFunction: true,
      allowHashBang: false,
      locations: true,
    });
    // acorn accepted it (V8 refused it for a reason acorn does not check): no position to give.
    error.message += ' Write the code as the body of one async function.';
  } catch (err) {
    const loc = (err as { loc?: { line?: unknown; column?: unknown } }).loc;
    if (loc !== undefined && typeof loc.line === 'number' && typeof loc.column === 'number') {
      const what = clip((err as Error).message.replace(/\s*\(\d+:\d+\)$/, ''));
      error.message = `The code is not one function body, so none of it ran: ${what} at line ${loc.line}, column ${loc.column + 1}. A stray "}" or ")" at top level closes the function the code runs in; check the braces.`;
      error.line = loc.line;
      error.column = loc.column + 1;
    }
  }
  return error;
}

function clip(text: string): string {
  return text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS)}… [truncated ${text.length - MAX_MESSAGE_CHARS} characters]` : text;
}

function countLines(code: string): number {
  let n = 1;
  for (let i = code.indexOf('\n'); i >= 0; i = code.indexOf('\n', i + 1)) n++;
  return n;
}
