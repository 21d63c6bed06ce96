// @ts-check
/*
 * Guest bootstrap, part: what the user's code threw, described for the host; install(), the run, and the report the host reads.
 *
 * One of the parts ../bootstrap.ts joins, in order, into the body of one function run in each fresh isolate
 * (README.md here has the rules for editing them). Top-level names are shared by all the parts.
 */
// ---- describing what the user's code threw ----
const MAX_ERROR_TEXT = 16384;
const clip = (t) => t.length > MAX_ERROR_TEXT ? slice(t, 0, MAX_ERROR_TEXT) + '… [truncated ' + (t.length - MAX_ERROR_TEXT) + ' characters]' : t;
const describeThrown = ((err) => {
  const info = ObjectCreate(null);
  let errorLike = false;
  try { errorLike = err !== null && typeof err === 'object' && typeof err.message === 'string'; } catch { /* a throwing getter: not error-like */ }
  if (errorLike) {
    try { const name = err.name; info.name = name === undefined ? 'Error' : clip(StringCtor(name)); } catch { info.name = 'Error'; }
    try { info.message = clip(StringCtor(err.message)); } catch { info.message = ''; }
    try { if (typeof err.stack === 'string') info.stack = clip(err.stack); } catch { /* a throwing stack getter: no stack */ }
    try {
      const data = ObjectCreate(null);
      let any = false;
      const keys = ObjectKeys(err);
      for (let i = 0; i < keys.length && i < 50; i++) {
        const k = keys[i];
        if (k === 'name' || k === 'message' || k === 'stack') continue;
        // Read once: a getter that answers differently the second time must not smuggle in what was checked.
        try { const x = err[k]; toJSONText(x, 'data', 65536); data[k] = x; any = true; } catch { /* not copyable: left out of data */ }
      }
      if (any) info.data = data;
    } catch { /* keys that cannot be listed: no data */ }
  } else {
    info.nonError = true;
    let text;
    try { text = inspect(err); } catch { text = '[uninspectable value]'; }
    info.message = 'Uncaught (not an Error): ' + (text.length > 1000 ? slice(text, 0, 1000) + '…' : text);
  }
  try { return toJSONText(info, 'error', 1e6); } catch { return '{"message":"the thrown value could not be described"}'; }
});

// What the host reads back (report()) when the script's task fails: why the code was refused, or the outcome
// the run had already settled with (a rejection left unhandled after that must not change it).
let rejectedCode;
let checked = false;
let finalOutcome;

// install(configJson, code) runs synchronously from the host, before any user code: it applies the limits,
// defines error classes and host functions, and defines the one-shot global (config.runGlobal) that the user
// script's wrapper calls with the user's function (so running the script and starting the run is a
// single hop). The global deletes itself when read.
const install = ((configJson, code) => {
  if (started) throw new ErrorCtor('codemode sandbox: install() may run once per isolate');
  started = true;
  const config = JSONParse(configJson);
  const runGlobal = config.runGlobal;
  maxPending = config.maxPending;
  maxResultChars = config.maxResultChars;
  maxArgBytes = config.maxResultChars;
  logLinesLeft = config.maxLogLines;
  logCharsLeft = config.maxLogChars;
  maxTimerDelay = config.maxTimerDelayMs;
  const classes = config.errorClasses;
  for (let i = 0; i < classes.length; i++) {
    const Cls = makeErrorClass(classes[i]);
    errorClasses[classes[i]] = Cls;
    defineValue(G, classes[i], Cls, false);
  }
  const fns = config.functions;
  for (let i = 0; i < fns.length; i++) {
    const path = fns[i];
    let target = G;
    for (let j = 0; j < path.length - 1; j++) {
      const seg = path[j];
      let next = ObjectHasOwn(target, seg) ? target[seg] : undefined;
      if (next === null || typeof next !== 'object') {
        next = ObjectCreate(ObjectProto);
        defineValue(target, seg, next, target !== G);
      }
      target = next;
    }
    const name = path[path.length - 1];
    let label = path[0];
    for (let j = 1; j < path.length; j++) label = childPath(label, path[j]);
    defineValue(target, name, makeHostFunction(i, label, name), target !== G);
  }
  // A getter that removes itself. Reading it is the first thing the wrapper script evaluates (its name is
  // random per run, so no hoisted declaration in the code can take its place), so it checks the code here,
  // on the isolate's thread and before any of it runs: the code must parse as exactly one function body.
  // Code that closes the wrapper early ("}); tools.x(); (async () => {", or "}, (g = 1), (async () => {" into
  // the argument list) would otherwise run at top level; now the throw ends the script before that.
  const runDescriptor = ObjectCreate(null);
  runDescriptor.get = () => {
    delete G[runGlobal];
    checked = true;
    try {
      new AsyncFunctionCtor(code);
    } catch (err) {
      let text = 'the code does not parse as one function body';
      try { const e = /** @type {any} */ (err); text = StringCtor(e.name) + ': ' + StringCtor(e.message); } catch { /* a throwing getter: keep the generic text */ }
      rejectedCode = text;
      settled = true;
      throw new ErrorCtor('codemode: the code was refused before it ran');
    }
    return run;
  };
  runDescriptor.configurable = true;
  runDescriptor.enumerable = false;
  ObjectDefineProperty(G, runGlobal, runDescriptor);
});
// 'n' if the check never ran (the script failed before its first expression: nothing of the code ran),
// 's' + the parser's message if the code was refused, 'o' + the outcome if the run settled, else ''.
const report = () => {
  if (!checked) return 'n';
  if (rejectedCode !== undefined) return 's' + rejectedCode;
  if (finalOutcome !== undefined && outcomeTasks === 0) return 'o' + finalOutcome;
  return '';
};
// The run resolves with one string, "tag\ndroppedLogLines\nlogMessagesSent\npayload": a primitive, so
// resolving the run's promise never looks up a (possibly guest-patched) "then", as it would on an array or object.
const outcome = (tag, payload) => {
  outcomeTasks = hostTasks;
  return (finalOutcome = tag + '\n' + droppedLogLines + '\n' + logMessagesSent + '\n' + payload);
};
let running = false;
const run = (async (userFn) => {
  if (running) throw new ErrorCtor('codemode sandbox: one run per isolate');
  running = true;
  let value;
  try {
    value = await ReflectApply(userFn, undefined, []);
  } catch (err) {
    settled = true;
    return outcome('error', describeThrown(err));
  }
  settled = true;
  if (timerFailed) return outcome('error', describeThrown(timerError));
  if (value === undefined) return outcome('undefined', '');
  try {
    return outcome('ok', toJSONText(value, 'result', maxResultChars));
  } catch (err) {
    if (err === OUTPUT_LIMIT) return outcome('output_limit', '');
    return outcome('unserializable', describeThrown(err));
  }
});
