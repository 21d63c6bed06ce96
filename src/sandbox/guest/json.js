// @ts-check
/*
 * Guest bootstrap, part: per-run state, and the JSON copier that turns guest values into JSON text with clear errors and caps.
 *
 * One of the parts ../bootstrap.ts joins, in order, into the body of one function run in each fresh isolate
 * (README.md here has the rules for editing them). Top-level names are shared by all the parts.
 */
// ---- per-run state (one run per isolate) ----
let started = false;
let settled = false;
let pending = 0;
let maxPending = 0;
let maxResultChars = 0;
let maxArgBytes = 0;
let logLinesLeft = 0;
let logCharsLeft = 0;
let droppedLogLines = 0;
// Every message sent to the host's log bridge, so the host can wait for the ones still in transit: isolated-vm
// does not order applyIgnored tasks before the run's own result (after an I/O answer, about half arrived late).
let logMessagesSent = 0;
// Tasks the host started in this isolate after the script's own (replies, timers). isolated-vm reports an
// unhandled rejection only for the script's task, so report() offers the outcome only if the run settled in
// that task: one that settled later (a timer fired while the host was still reading the failure) must not
// hide a rejection left unhandled while the function was still running.
let hostTasks = 0;
let outcomeTasks = -1;
const errorClasses = ObjectCreate(null);

// ---- JSON copy with clear errors ----
const OUTPUT_LIMIT = ObjectCreate(null);
const MAX_DEPTH = 200;
const childPath = (path, key) => isIdent(key) ? path + '.' + key : path + '[' + JSONStringify(key) + ']';
// Module-level state instead of per-call closures: host-call arguments go through here on every call.
// J_ANC[i] is the object at absolute depth i and J_KEY[i] the key taken from it; a call works from jBase
// up, so a re-entrant call (a getter that calls a host function while its object is being copied) stacks
// on top and restores everything on exit. Paths are only built when something fails.
const J_ANC = ObjectCreate(null);
const J_KEY = ObjectCreate(null);
let jBase = 0;
let jTop = 0;
let jHigh = 0;
let jOut = '';
let jMax = 0;
let jRoot = '';
const jPathOf = ((abs) => {
  let p = jRoot;
  for (let i = jBase; i < abs; i++) {
    const k = J_KEY[i];
    p = typeof k === 'number' ? p + '[' + k + ']' : childPath(p, k);
  }
  return p;
});
const jEmit = (s) => { jOut += s; if (jOut.length > jMax) throw OUTPUT_LIMIT; };
const jFail = (what) => { throw new TypeErrorCtor(jPathOf(jTop) + ' ' + what); };
const jWalk = ((v) => {
  switch (typeof v) {
    case 'string': jEmit(JSONStringify(v)); return;
    case 'number': jEmit(NumberIsFinite(v) ? StringCtor(v) : 'null'); return;
    case 'boolean': jEmit(v ? 'true' : 'false'); return;
    case 'undefined': jEmit('null'); return;
    case 'function': return jFail('is a function, which JSON cannot represent; return data, not functions');
    case 'symbol': return jFail('is a symbol, which JSON cannot represent; convert it to a string first');
    case 'bigint': return jFail('is a BigInt (' + StringCtor(v) + 'n), which JSON cannot represent; convert it to a string or number first');
  }
  if (v === null) { jEmit('null'); return; }
  const here = jTop;
  for (let i = jBase; i < here; i++) {
    if (J_ANC[i] === v) jFail('is a circular reference to ' + jPathOf(i) + '; JSON cannot represent cycles');
  }
  if (here - jBase >= MAX_DEPTH) jFail('is nested more than ' + MAX_DEPTH + ' levels deep');
  const isArray = ArrayIsArray(v);
  let errorLike = false;
  if (!isArray) {
    const proto = ObjectGetPrototypeOf(v);
    if (proto !== ObjectProto && proto !== null) {
      if (isDate(v)) { jEmit(NumberIsFinite(ReflectApply(DateGetTime, v, [])) ? JSONStringify(ReflectApply(DateToISOString, v, [])) : 'null'); return; }
      if (isPromise(v)) jFail('is a Promise; did you forget an await?');
      if (isMap(v)) jFail('is a Map, which JSON cannot represent; convert it first, e.g. Object.fromEntries(map)');
      if (isSet(v)) jFail('is a Set, which JSON cannot represent; convert it first, e.g. [...set]');
      const weak = isWeak(v);
      if (weak !== undefined) jFail('is a ' + weak + ', which JSON cannot represent');
      const ta = typedArrayName(v);
      if (ta !== undefined) jFail('is a ' + ta + ', which JSON cannot represent; convert it first, e.g. Array.from(bytes)');
      if (isArrayBuffer(v) || isDataView(v)) jFail('is binary data (ArrayBuffer/DataView), which JSON cannot represent; convert it first');
      errorLike = isError(v);
    }
  }
  J_ANC[here] = v;
  jTop = here + 1;
  if (jTop > jHigh) jHigh = jTop;
  try {
    if (isArray) {
      const n = v.length;
      jOut += '[';
      for (let i = 0; i < n; i++) {
        if (i > 0) jOut += ',';
        J_KEY[here] = i;
        jWalk(v[i]);
      }
      jEmit(']');
      return;
    }
    const keys = ObjectKeys(v);
    jOut += '{';
    let first = true;
    if (errorLike) {
      // JSON would turn an Error into {}: keep what a reader needs.
      jEmit('"name":');
      J_KEY[here] = 'name';
      jWalk(StringCtor(v.name));
      jEmit(',"message":');
      J_KEY[here] = 'message';
      jWalk(StringCtor(v.message));
      first = false;
    }
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      if (errorLike && (key === 'name' || key === 'message')) continue;
      const x = v[key];
      if (x === undefined) continue;
      jOut += (first ? '' : ',') + JSONStringify(key) + ':';
      first = false;
      J_KEY[here] = key;
      jWalk(x);
    }
    jEmit('}');
  } finally {
    jTop = here;
  }
});
// Serializes v as JSON text. Throws TypeError naming the path of anything JSON can't represent faithfully
// (functions, symbols, BigInt, cycles, Maps, Promises...), or OUTPUT_LIMIT once the text passes maxChars.
const toJSONText = ((root, rootPath, maxChars) => {
  const sBase = jBase, sTop = jTop, sOut = jOut, sMax = jMax, sRoot = jRoot;
  jBase = jTop;
  jOut = '';
  jMax = maxChars;
  jRoot = rootPath;
  try {
    jWalk(root);
    return jOut;
  } finally {
    if (sTop === 0) {
      // Outermost call: drop references to the copied objects so they can be collected.
      for (let i = 0; i < jHigh; i++) { J_ANC[i] = undefined; J_KEY[i] = undefined; }
      jHigh = 0;
    }
    jBase = sBase;
    jTop = sTop;
    jOut = sOut;
    jMax = sMax;
    jRoot = sRoot;
  }
});
