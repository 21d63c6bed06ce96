// @ts-check
/*
 * Guest bootstrap, part: console.*: readable, circular-safe, bounded formatting of logged values, sent through the log bridge.
 *
 * One of the parts ../bootstrap.ts joins, in order, into the body of one function run in each fresh isolate
 * (README.md here has the rules for editing them). Top-level names are shared by all the parts.
 */
// ---- console formatting (readable, circular-safe, bounded) ----
const quote = (s) => "'" + s + "'";
const inspect = ((value) => {
  let budget = 2000;
  const seen = ObjectCreate(null);
  let depth = 0;
  const go = (v, top) => {
    if (--budget < 0) return '…';
    switch (typeof v) {
      case 'string': return top ? v : quote(v);
      case 'number': case 'boolean': case 'undefined': return StringCtor(v);
      case 'bigint': return StringCtor(v) + 'n';
      case 'symbol': return ReflectApply(SymbolToString, v, []);
      case 'function': {
        let name = '';
        try { name = StringCtor(v.name); } catch { /* a throwing name getter: keep the default */ }
        return name ? '[Function: ' + name + ']' : '[Function (anonymous)]';
      }
    }
    if (v === null) return 'null';
    for (let i = 0; i < depth; i++) if (seen[i] === v) return '[Circular]';
    if (isError(v)) {
      let stack;
      try { stack = v.stack; } catch { /* a throwing stack getter: no stack */ }
      if (typeof stack === 'string') return stack;
      try { return StringCtor(v.name) + ': ' + StringCtor(v.message); } catch { return '[Error]'; }
    }
    if (isDate(v)) return NumberIsFinite(ReflectApply(DateGetTime, v, [])) ? ReflectApply(DateToISOString, v, []) : 'Invalid Date';
    if (isPromise(v)) return 'Promise {}';
    const isArr = ArrayIsArray(v);
    if (depth >= 3) return isArr ? '[Array]' : '[Object]';
    seen[depth++] = v;
    try {
      let out = '';
      let count = 0;
      const add = (s) => { out += (count++ === 0 ? ' ' : ', ') + s; };
      if (isArr) {
        const n = v.length;
        for (let i = 0; i < n && i < 100; i++) add(go(v[i], false));
        if (n > 100) add('... ' + (n - 100) + ' more items');
        return count === 0 ? '[]' : '[' + out + ' ]';
      }
      if (isMap(v)) {
        const it = ReflectApply(MapEntries, v, []);
        for (let i = 0; i < 100; i++) {
          const step = ReflectApply(MapIterNext, it, []);
          if (step.done) break;
          add(go(step.value[0], false) + ' => ' + go(step.value[1], false));
        }
        return 'Map(' + ReflectApply(MapSize, v, []) + ') {' + (count === 0 ? '}' : out + ' }');
      }
      if (isSet(v)) {
        const it = ReflectApply(SetValues, v, []);
        for (let i = 0; i < 100; i++) {
          const step = ReflectApply(SetIterNext, it, []);
          if (step.done) break;
          add(go(step.value, false));
        }
        return 'Set(' + ReflectApply(SetSize, v, []) + ') {' + (count === 0 ? '}' : out + ' }');
      }
      const ta = typedArrayName(v);
      if (ta !== undefined) return ta + '(' + v.length + ')';
      const keys = ObjectKeys(v);
      for (let i = 0; i < keys.length && i < 100; i++) {
        const k = keys[i];
        add((isIdent(k) ? k : quote(k)) + ': ' + go(v[k], false));
      }
      if (keys.length > 100) add('... ' + (keys.length - 100) + ' more keys');
      return count === 0 ? '{}' : '{' + out + ' }';
    } finally {
      depth--;
    }
  };
  return go(value, true);
});
const formatArgs = ((args) => {
  let out = '';
  for (let i = 0; i < args.length; i++) {
    let piece;
    try { piece = inspect(args[i]); } catch { piece = '[uninspectable value]'; }
    out += i === 0 ? piece : ' ' + piece;
  }
  return out;
});
// Tells the host once that output was cut, so a run that ends by timeout still reports the truncation.
let truncationSent = false;
const signalTruncation = () => {
  if (truncationSent) return;
  truncationSent = true;
  logMessagesSent++;
  ReflectApply(refApplyIgnored, logRef, [undefined, ['', '']]);
};
const makeLogger = ((level) => function (...args) {
  if (logLinesLeft <= 0 || logCharsLeft <= 0) {
    droppedLogLines++;
    signalTruncation();
    return;
  }
  let message = formatArgs(args);
  if (message.length > logCharsLeft) {
    // Not between the halves of a surrogate pair (a lone half is not valid text).
    const code = ReflectApply(StringCharCodeAt, message, [logCharsLeft - 1]);
    message = slice(message, 0, code >= 0xd800 && code <= 0xdbff ? logCharsLeft - 1 : logCharsLeft);
    signalTruncation();
  }
  logLinesLeft--;
  logCharsLeft -= message.length;
  logMessagesSent++;
  ReflectApply(refApplyIgnored, logRef, [undefined, [level, message]]);
});
const guestConsole = ObjectCreate(ObjectProto);
for (const level of ['log', 'info', 'warn', 'error', 'debug']) defineValue(guestConsole, level, makeLogger(level), true);
defineValue(G, 'console', guestConsole, false);
