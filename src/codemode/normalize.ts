/**
 * Turns what a model submits into the body of an async function, the form the sandbox runs:
 * markdown fences are stripped, `async () => { ... }` and function forms are called, TypeScript is
 * stripped (with `amaro`, loaded only when the code is not plain JavaScript), and a trailing expression
 * becomes the return value.
 *
 * Every edit keeps line numbers and records column shifts, so error positions map back to the code as
 * submitted.
 *
 * @module
 */

import { parse } from 'acorn';
import type { Node, Program, Token } from 'acorn';
import { MAX_TYPESCRIPT_NESTING_DEPTH, scanNesting, stripTypeScript } from './strip-types.js';

export interface NormalizedCode {
  /** The function body to run. */
  code: string;
  /** True when TypeScript syntax was stripped. */
  typescript: boolean;
  /**
   * Why TypeScript stripping failed on code that is not JavaScript either, when the stripper knew (for
   * example "TypeScript enum is not supported in strip-only mode"): a hint for the syntax error.
   */
  typescriptHint?: string;
  /**
   * Set when the code is refused before it runs: it is not JavaScript, and it nests too deep to be handed
   * to the TypeScript stripper. Line and column are in the code as submitted.
   */
  syntaxError?: { message: string; line: number; column: number };
  /** Maps a 1-based position in `code` back to the submitted text. */
  mapPosition(line: number, column: number): { line: number; column: number };
}

/** Column shifts of the inserted text, per output line. */
interface Shift {
  line: number;
  column: number;
  length: number;
}

/** `NormalizedCode` without its function: what crosses from the worker thread. */
export interface NormalizedData extends Omit<NormalizedCode, 'mapPosition'> {
  shifts: Shift[];
  /** Lines before the code that ran (a fence's chatter and opening line). */
  lineOffset: number;
}

interface Insertion {
  /** Offset in the (fence-stripped) source where text was inserted. */
  at: number;
  text: string;
}

const PARSE_OPTIONS = {
  ecmaVersion: 'latest',
  sourceType: 'script',
  allowReturnOutsideFunction: true,
  allowAwaitOutsideFunction: true,
  locations: false,
} as const;

interface Fence {
  /** Offset of the opening fence's first backtick or tilde in the text. */
  marker: number;
  /** The info string's first word, lowercased ('' when there is none). */
  lang: string;
  code: string;
  /** Lines before the body: the text before the fence, plus the fence line itself. */
  lineOffset: number;
}

/** Languages whose fenced block is code to run; a block in another language (json, bash) is an example. */
const CODE_LANGS = new Set(['', 'js', 'javascript', 'jsx', 'mjs', 'cjs', 'ts', 'typescript', 'tsx', 'mts', 'cts']);

/**
 * The markdown fences in a text, found line by line (a regex over the whole text backtracked quadratically:
 * 100 KB after a fence opener took 8.6 s on the main thread). A fence without a closing line runs to the end.
 */
function findFences(text: string): Fence[] {
  const fences: Fence[] = [];
  const lines = text.split('\n');
  let offset = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const open = /^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)/.exec(line);
    if (open === null) {
      offset += line.length + 1;
      continue;
    }
    const marker = open[1]!;
    let end = i + 1;
    while (end < lines.length && lines[end]!.trim() !== marker) end++;
    const lang = (open[2] ?? '').toLowerCase().replace(/^\{?\.?/, '').replace(/\}$/, '');
    const indent = line.length - line.trimStart().length;
    fences.push({ marker: offset + indent, lang, code: lines.slice(i + 1, end).join('\n'), lineOffset: i + 1 });
    for (let k = i; k <= end && k < lines.length; k++) offset += lines[k]!.length + 1;
    i = end;
  }
  return fences;
}

/** The block to run: the first in a code language, else the first. */
function pickFence(fences: Fence[]): Fence | undefined {
  return fences.find((f) => CODE_LANGS.has(f.lang)) ?? fences[0];
}

/**
 * A type argument on a call to the sandbox API (`callTool<R>(`, `tools.ns.t<{ a: T }>(`): in JavaScript, two
 * comparisons nobody writes. Only these names: TypeScript would read `[a < b, c > (d)]` as a generic call too.
 */
const GENERIC_CALL = /(?:^|[^\w$.])(?:callTool|tools(?:\.[\w$]+)+|resources\.read|prompts\.get)\s*<[^<>;\n]*>\s*\(/;

/**
 * Parses; with `inert`, also collects the ranges a fence line cannot be markdown in: comments, strings
 * (a line-continued string can hold one) and template text (`~~~` needs no escaping there). They come in
 * source order.
 */
function tryParse(code: string, inert?: Array<[number, number]>): Program | undefined {
  try {
    if (!inert) return parse(code, PARSE_OPTIONS);
    return parse(code, {
      ...PARSE_OPTIONS,
      onComment: (_block: boolean, _text: string, start: number, end: number) => inert.push([start, end]),
      onToken: (token: Token) => {
        const kind = token.type.label;
        // `invalidTemplate`: template text with an escape that is invalid outside a tag (String.raw`C:\u`).
        if (kind === 'string' || kind === 'template' || kind === 'invalidTemplate') inert.push([token.start, token.end]);
      },
    });
  } catch {
    return undefined;
  }
}

/** The fences whose marker is not inside an inert range: one sweep, as both lists are in source order. */
function liveFences(fences: Fence[], inert: Array<[number, number]>): Fence[] {
  const ranges = [...inert].sort((a, b) => a[0] - b[0]);
  const live: Fence[] = [];
  let r = 0;
  let reach = -1; // the furthest end among the ranges that start at or before the current marker
  for (const fence of fences) {
    while (r < ranges.length && ranges[r]![0] <= fence.marker) {
      reach = Math.max(reach, ranges[r]![1]);
      r++;
    }
    // A fence line that begins a template token ("```js" is an empty template, then a tagged one) is
    // markdown; one inside a comment, a string or template text is part of the code.
    if (reach <= fence.marker) live.push(fence);
  }
  return live;
}

const STRIP_PREFIX = '(async function () {';
const STRIP_SUFFIX = '\n});';

/**
 * amaro's strip-only mode replaces types with whitespace, which keeps every position. It parses a module,
 * where top-level `return` is illegal, so the body is wrapped in an async function on the same line and
 * unwrapped after. strip-types.ts keeps a broken instance from outliving the input that broke it.
 */
function wrapForStrip(code: string): string {
  return `${STRIP_PREFIX}${code}${STRIP_SUFFIX}`;
}

function unwrapStripped(out: string): string {
  if (!out.startsWith(STRIP_PREFIX) || !out.endsWith(STRIP_SUFFIX)) throw new Error('unexpected strip output');
  return out.slice(STRIP_PREFIX.length, out.length - STRIP_SUFFIX.length);
}

/** What the stripper did with the source a normalization step asked it to strip. */
type StripOutcome = { stripped: string } | { error: unknown };

/** 1-based line and column of an offset. */
function positionOf(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

function isFunctionNode(node: Node | null | undefined): boolean {
  return node?.type === 'ArrowFunctionExpression' || node?.type === 'FunctionExpression';
}

/**
 * Normalizes submitted code. Code that does not parse even after TypeScript stripping is returned as is,
 * so the sandbox reports the syntax error with its real position.
 *
 * @example
 * ```ts
 * normalizeCode('```js\nconst x = await tools.a.b({})\nx.items\n```').code;
 * // 'const x = await tools.a.b({})\nreturn (x.items);'
 * ```
 */
export function normalizeCode(input: string): NormalizedCode {
  return withPositions(normalizeData(input));
}

/**
 * `normalizeCode` as plain data (no function), so the worker thread of normalize-off-thread.ts can send it.
 * The normalization runs as steps: it yields the source to strip when it needs the TypeScript stripper.
 */
export function normalizeData(input: string): NormalizedData {
  const steps = normalizeSteps(input);
  let step = steps.next();
  while (!step.done) {
    let outcome: StripOutcome;
    try {
      outcome = { stripped: unwrapStripped(stripTypeScript(wrapForStrip(step.value))) };
    } catch (error) {
      outcome = { error };
    }
    step = steps.next(outcome);
  }
  return step.value;
}

/** The normalized code when no TypeScript stripping is needed (plain JavaScript); else `undefined`. */
export function normalizeJavaScript(input: string): NormalizedData | undefined {
  const step = normalizeSteps(input).next();
  return step.done ? step.value : undefined;
}

function* normalizeSteps(input: string): Generator<string, NormalizedData, StripOutcome> {
  // A hashbang line is legal only at the very start of a script, not inside the function the sandbox wraps
  // the code in: blank it out (spaces keep every position).
  const submitted = input.startsWith('#!') ? input.replace(/^#![^\n]*/, (line) => ' '.repeat(line.length)) : input;
  // Fenced markdown is unwrapped even when it happens to parse: "Code:\n```js\n...```" is a label and an
  // empty tagged template to JavaScript. Fences inside comments, strings and template text are left alone,
  // so code that merely holds one is run as written.
  const fences = findFences(submitted);
  const inert: Array<[number, number]> = [];
  let program = tryParse(submitted, fences.length > 0 ? inert : undefined);
  const live = program === undefined ? fences : liveFences(fences, inert);
  const fence = pickFence(live);
  if (fence !== undefined) program = undefined;
  let source = fence ? fence.code : submitted;
  const lineOffset = fence ? fence.lineOffset : 0;
  let typescript = false;
  let typescriptHint: string | undefined;

  if (fence) program = tryParse(source);
  // `callTool<Result>('x', {})` is also valid JavaScript: two comparisons, which fail at run time. When code
  // that parses has that shape, the stripper decides: a generic call is the only reading anyone means.
  const genericCall = program !== undefined && GENERIC_CALL.test(source);
  let syntaxError: NormalizedCode['syntaxError'];
  // Code that is not JavaScript and nests deeper than the stripper can parse is refused here: a deep enough
  // input overflows amaro's stack or traps its WebAssembly memory.
  const tooDeep = program === undefined ? scanNesting(source) : undefined;
  if (tooDeep !== undefined) {
    const at = positionOf(source, tooDeep.offset);
    syntaxError = {
      message:
        `The code nests more than ${MAX_TYPESCRIPT_NESTING_DEPTH} levels deep (brackets, arrow functions and type arguments), ` +
        'and it is not plain JavaScript, so it was not run. Flatten it: name intermediate functions and values instead of nesting them.',
      line: at.line + lineOffset,
      column: at.column,
    };
  } else if (program === undefined || genericCall) {
    const outcome = yield source;
    if ('stripped' in outcome) {
      const stripped = outcome.stripped;
      const reparsed = stripped === source ? undefined : tryParse(stripped);
      if (reparsed !== undefined) {
        source = stripped;
        program = reparsed;
        typescript = true;
      }
    } else {
      // Not valid TypeScript either: the sandbox reports the syntax error. Syntax that is TypeScript but
      // cannot be stripped (enum, namespace, parameter properties) gets its own explanation.
      const e = outcome.error as { code?: unknown; message?: unknown };
      if (!genericCall && e?.code === 'UnsupportedSyntax' && typeof e.message === 'string') typescriptHint = e.message;
    }
  }

  const insertions: Insertion[] = [];
  if (program !== undefined) {
    // Empty statements (`x;;`) do not end the code: the statement before them does.
    const body = program.body.filter((node) => node.type !== 'EmptyStatement');
    const last = body[body.length - 1];
    // Statement bounds, not the expression's: acorn's expression node excludes enclosing parentheses.
    const end = last === undefined ? 0 : source[last.end - 1] === ';' ? last.end - 1 : last.end;
    if (body.length === 1 && last?.type === 'ExpressionStatement' && isFunctionNode((last as Node & { expression: Node }).expression)) {
      // `async () => { ... }` or `async function () { ... }`: call it and return what it returns.
      insertions.push({ at: last.start, text: 'return await (' }, { at: end, text: ')()' });
    } else if (body.length > 0 && body.every((node) => node.type === 'FunctionDeclaration')) {
      // Only function declarations: call `main` if there is one (helpers first, then main, is common), else
      // the one function, else nothing (several helpers and no main say nothing about which to run).
      const names = body.map((node) => (node as Node & { id: { name: string } | null }).id?.name);
      const name = names.includes('main') ? 'main' : body.length === 1 ? names[0] : undefined;
      if (name) insertions.push({ at: last!.end, text: `;return await ${name}();` });
    } else if (last?.type === 'ExpressionStatement' && !('directive' in last && typeof last.directive === 'string')) {
      insertions.push({ at: last.start, text: 'return (' }, { at: end, text: ')' });
    }
  }

  let code = source;
  for (const ins of [...insertions].sort((a, b) => b.at - a.at)) code = code.slice(0, ins.at) + ins.text + code.slice(ins.at);

  // Column shifts per line of the output, from insertions on that line.
  const lineStarts = [0];
  for (let i = 0; i < source.length; i++) if (source[i] === '\n') lineStarts.push(i + 1);
  const lineOf = (offset: number) => {
    let line = 0;
    while (line + 1 < lineStarts.length && lineStarts[line + 1]! <= offset) line++;
    return line;
  };
  const shifts = insertions.map((ins) => ({ line: lineOf(ins.at) + 1, column: ins.at - lineStarts[lineOf(ins.at)]! + 1, length: ins.text.length }));

  return {
    code,
    typescript,
    ...(typescriptHint !== undefined ? { typescriptHint } : {}),
    ...(syntaxError !== undefined ? { syntaxError } : {}),
    shifts,
    lineOffset,
  };
}

/** Adds `mapPosition` to normalized data (built in this thread or in the worker). */
export function withPositions(data: NormalizedData): NormalizedCode {
  const { shifts, lineOffset, ...rest } = data;
  return {
    ...rest,
    mapPosition(line, column) {
      // Walk this line's insertions left to right; `consumed` is inserted text before the output column.
      let consumed = 0;
      for (const shift of shifts.filter((s) => s.line === line).sort((a, b) => a.column - b.column)) {
        const outStart = shift.column + consumed;
        if (column < outStart) break;
        if (column < outStart + shift.length) return { line: line + lineOffset, column: shift.column };
        consumed += shift.length;
      }
      return { line: line + lineOffset, column: Math.max(1, column - consumed) };
    },
  };
}
