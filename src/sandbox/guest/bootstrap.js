// @ts-check
/*
 * The guest bootstrap: the JavaScript that runs inside every fresh isolate before user code (loaded as text
 * by ../bootstrap.ts and compiled in the isolate; never imported by Node). It is one function expression
 * of the three host bridges (isolated-vm References): `hostCallRef` (applySyncPromise with
 * `[id, index, argsJson]`), `logRef` (applyIgnored with `[level, message]`) and `timerRef` (applyIgnored
 * with `[id, delayMs]`, or `[id, -1]` to cancel).
 *
 * It keeps them, and every builtin it relies on, in its closure, so user code can neither reach an
 * isolated-vm object nor change the bridge's behaviour by patching `JSON`, `Object.prototype`,
 * `Promise.prototype.then`, `Error` and friends. It returns `[install, settleCall, fireTimer, report]`.
 *
 * Checked by tsc (tsconfig.guest.json: ECMAScript builtins only, no Node or DOM types, so a host global
 * used by mistake is a type error) and by eslint (a script with ECMAScript globals only).
 *
 * Rules for editing this file (they are what keep the guest out):
 * - Use only builtins captured at the top (`ReflectApply(captured, thisArg, args)` for methods).
 * - Objects handed to isolated-vm or to `Object.defineProperty` have null prototypes, so a polluted
 *   `Object.prototype` can't add options or turn a data descriptor into an accessor.
 * - Never write into a fresh ordinary array or object by assignment to a key that may be missing
 *   (a setter on the prototype would run); array literals and null-prototype objects are safe.
 * - No template literals with host values: this file is the source, byte for byte.
 */
// The script's completion value is this function; the host takes it from there (prepared-isolate.ts).
// eslint-disable-next-line @typescript-eslint/no-unused-expressions
(function (hostCallRef, logRef, timerRef) {
'use strict';
// Typed loosely on purpose: the bootstrap adds, replaces and deletes globals by name.
const G = /** @type {any} */ (globalThis);
const ObjectCreate = Object.create;
const ObjectKeys = Object.keys;
const ObjectDefineProperty = Object.defineProperty;
const ObjectGetPrototypeOf = Object.getPrototypeOf;
const ObjectGetOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
// Descriptors and getters of properties the language itself defines: present in every isolate (the casts
// only tell the checker so; a missing one would throw here, before any user code, as it did uncast).
/** @type {(o: object, k: PropertyKey) => PropertyDescriptor} */
const ownDescriptor = (o, k) => /** @type {PropertyDescriptor} */ (ObjectGetOwnPropertyDescriptor(o, k));
/** @type {(o: object, k: PropertyKey) => Function} */
const getterOf = (o, k) => /** @type {Function} */ (ownDescriptor(o, k).get);
const ObjectHasOwn = Object.hasOwn;
const ObjectProto = Object.prototype;
const ArrayIsArray = Array.isArray;
const JSONStringify = JSON.stringify;
const JSONParse = JSON.parse;
const ReflectApply = Reflect.apply;
const ErrorCtor = Error;
const TypeErrorCtor = TypeError;
const StringCtor = String;
const NumberIsFinite = Number.isFinite;
const StringSlice = String.prototype.slice;
const StringCharCodeAt = String.prototype.charCodeAt;
const RegExpExec = RegExp.prototype.exec;
const SymbolToString = Symbol.prototype.toString;
const DateGetTime = Date.prototype.getTime;
const DateToISOString = Date.prototype.toISOString;
const MapSize = getterOf(Map.prototype, 'size');
const SetSize = getterOf(Set.prototype, 'size');
const MapEntries = Map.prototype.entries;
const SetValues = Set.prototype.values;
const MapIterNext = ObjectGetPrototypeOf(new Map().entries()).next;
const SetIterNext = ObjectGetPrototypeOf(new Set().values()).next;
const WeakMapHas = WeakMap.prototype.has;
const WeakSetHas = WeakSet.prototype.has;
const TypedArrayTag = getterOf(ObjectGetPrototypeOf(Uint8Array.prototype), Symbol.toStringTag);
const ArrayBufferByteLength = getterOf(ArrayBuffer.prototype, 'byteLength');
const DataViewByteLength = getterOf(DataView.prototype, 'byteLength');
const PromiseCtor = Promise;
// The constructor behind "new AsyncFunction(body)": it parses body as exactly one async function body, and
// refuses one that closes the function early. Captured before user code can reach it.
const AsyncFunctionCtor = ObjectGetPrototypeOf(async function () {}).constructor;
const refApplyIgnored = logRef.applyIgnored;
const refApplySyncPromise = hostCallRef.applySyncPromise;
const syncCallOptions = ObjectCreate(null);
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

// WebAssembly.Memory is not counted by the isolate's memory limit. SharedArrayBuffer and Atomics serve no
// purpose in a single-threaded guest and Atomics.wait can block the thread; remove all three.
delete G.WebAssembly;
delete G.SharedArrayBuffer;
delete G.Atomics;

// Resizable ArrayBuffers (new ArrayBuffer(n, { maxByteLength })) reserve address space and commit pages outside
// isolated-vm's array-buffer allocator, so the memory limit never saw them: 400 MB passed a 100 MB limit.
// Every ArrayBuffer is built fixed-length instead: the options argument is dropped. The constructor is swapped
// for a Proxy (same name, statics, prototype, instanceof) wherever the guest could reach it. The handler has
// no prototype, so a trap planted on Object.prototype can never be looked up on it.
{
  const ArrayBufferCtor = ArrayBuffer;
  const ReflectConstruct = Reflect.construct;
  const handler = ObjectCreate(null);
  handler.construct = (target, args, newTarget) => ReflectConstruct(target, [args.length > 0 ? args[0] : undefined], newTarget);
  const FixedArrayBuffer = new Proxy(ArrayBufferCtor, handler);
  const d = ObjectCreate(null);
  d.value = FixedArrayBuffer;
  d.writable = true;
  d.configurable = true;
  d.enumerable = false;
  ObjectDefineProperty(G, 'ArrayBuffer', d);
  ObjectDefineProperty(ArrayBufferCtor.prototype, 'constructor', d);
}

// Every promise reaction isolated-vm and this bootstrap set up (the run's own promise, awaits of host calls)
// reads promise.constructor and constructor[Symbol.species]. A getter the guest planted on either threw there,
// outside any guest try/catch, and the run failed as a misleading "unhandled rejection". Both are locked to
// their standard values (non-configurable, so they cannot be redefined); nothing else about Promise changes.
{
  const speciesGetter = getterOf(PromiseCtor, Symbol.species);
  const sd = ObjectCreate(null);
  sd.get = speciesGetter;
  sd.configurable = false;
  sd.enumerable = false;
  ObjectDefineProperty(PromiseCtor, Symbol.species, sd);
  const cd = ObjectCreate(null);
  cd.value = PromiseCtor;
  cd.writable = false;
  cd.configurable = false;
  cd.enumerable = false;
  ObjectDefineProperty(PromiseCtor.prototype, 'constructor', cd);
}

const desc = (value, enumerable) => {
  const d = ObjectCreate(null);
  d.value = value;
  d.writable = true;
  d.configurable = true;
  d.enumerable = enumerable === true;
  return d;
};
const defineValue = (obj, key, value, enumerable) => { ObjectDefineProperty(obj, key, desc(value, enumerable)); };
const slice = (s, a, b) => ReflectApply(StringSlice, s, [a, b]);
const isIdent = (k) => { IDENT.lastIndex = 0; return ReflectApply(RegExpExec, IDENT, [k]) !== null; };
const tryBrand = (getter, v) => { try { ReflectApply(getter, v, []); return true; } catch { return false; } };
const isDate = (v) => tryBrand(DateGetTime, v);
const isMap = (v) => tryBrand(MapSize, v);
const isSet = (v) => tryBrand(SetSize, v);
const typedArrayName = (v) => ReflectApply(TypedArrayTag, v, []);
const isArrayBuffer = (v) => tryBrand(ArrayBufferByteLength, v);
const isDataView = (v) => tryBrand(DataViewByteLength, v);
const isWeak = (v) => {
  try { ReflectApply(WeakMapHas, v, [ObjectProto]); return 'WeakMap'; } catch { /* not a WeakMap */ }
  try { ReflectApply(WeakSetHas, v, [ObjectProto]); return 'WeakSet'; } catch { /* not a WeakSet */ }
  return undefined;
};
const isPromise = (v) => { try { return v instanceof PromiseCtor; } catch { return false; } };
const isError = (v) => { try { return v instanceof ErrorCtor; } catch { return false; } };

// Functions used in every run are wrapped in parentheses: V8 then compiles them eagerly, so the code cache
// made from this source covers them and each new isolate skips their lazy compilation (~0.2 ms per run).

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

// ---- host functions ----
// The guest sends [id, index, argsJson] with applySyncPromise. The host answers with the envelope (see
// unwrap) at once
// when the host function settled within the host's current turn (one round trip), or with '' and later
// through settleCall(id, envelope). A late answer resolves a promise this closure made with the captured
// Promise constructor, with a string, so no patched "then" (or other guest code) sits in between.
// Errors are made inside the async wrapper, so their stacks run through the user's code.
const calls = ObjectCreate(null);
let nextCallId = 0;
const toGuestError = ((e) => {
  const name = ObjectHasOwn(e, 'name') && typeof e.name === 'string' ? e.name : 'Error';
  const message = ObjectHasOwn(e, 'message') && typeof e.message === 'string' ? e.message : '';
  const Cls = errorClasses[name];
  const err = Cls !== undefined ? new Cls(message) : new ErrorCtor(message);
  if (Cls === undefined && name !== 'Error') defineValue(err, 'name', name, false);
  const data = ObjectHasOwn(e, 'data') ? e.data : null;
  if (data !== null && typeof data === 'object' && !ArrayIsArray(data)) {
    const keys = ObjectKeys(data);
    for (let i = 0; i < keys.length; i++) defineValue(err, keys[i], data[keys[i]], true);
  }
  return err;
});
const settleCall = ((id, envelope) => {
  hostTasks++;
  const resolve = calls[id];
  if (resolve === undefined) return;
  delete calls[id];
  // A reply to a settled run is dropped: the call stays pending, so no guest code resumes after the outcome.
  if (settled) return;
  resolve(envelope);
});
// Envelopes: 'u' (undefined), 'v' + JSON value, or 'e' + JSON {name, message, data?}.
const unwrap = ((envelope) => {
  const kind = envelope[0];
  if (kind === 'u') return undefined;
  let parsed;
  try { parsed = JSONParse(slice(envelope, 1)); } catch { throw new ErrorCtor('malformed reply from the host'); }
  if (kind === 'v') return parsed;
  throw toGuestError(parsed);
});
const refusedAfterEnd = (label) => new ErrorCtor(label + ': the run has already ended, so host calls are refused');
// UTF-8 length of s, counting no further than max + 4 (the caller only asks whether it exceeds max).
const utf8Length = ((s, max) => {
  let n = 0;
  const len = s.length;
  for (let i = 0; i < len && n <= max; i++) {
    const c = ReflectApply(StringCharCodeAt, s, [i]);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < len) {
      const d = ReflectApply(StringCharCodeAt, s, [i + 1]);
      if (d >= 0xdc00 && d <= 0xdfff) { n += 4; i++; } else n += 3;
    } else n += 3;
  }
  return n;
});
const makeHostFunction = ((index, label, name) => {
  const f = async function (...args) {
    if (settled) throw refusedAfterEnd(label);
    let argsJson;
    try {
      // UTF-8 never takes fewer bytes than UTF-16 code units, so the copier stops at maxArgBytes characters;
      // only text that might encode past the byte cap is measured (3 MiB of "€" passed a 1 MiB cap by length).
      argsJson = toJSONText(args, label + ' arguments', maxArgBytes);
      if (argsJson.length > maxArgBytes / 3 && utf8Length(argsJson, maxArgBytes) > maxArgBytes) throw OUTPUT_LIMIT;
    } catch (err) {
      if (err === OUTPUT_LIMIT) throw new ErrorCtor(label + ': arguments are larger than the ' + maxArgBytes + '-byte limit (in UTF-8)');
      throw err;
    }
    // One microtask before the call leaves. The run's reaction to the user's function settling is queued the
    // moment it settles, so it runs before this; a call started after that moment (by a .then callback queued
    // earlier, say) then sees settled and never reaches the host, whether the calls before it were answered
    // at once or later. Without this, fast host functions let such calls through and slow ones did not.
    await undefined;
    if (settled) throw refusedAfterEnd(label);
    if (pending >= maxPending) {
      throw new ErrorCtor(label + ': too many host calls pending at once (limit ' + maxPending + '); await some before starting more');
    }
    const id = ++nextCallId;
    pending++;
    let envelope;
    try {
      // Blocks this isolate at most until the host's current turn ends.
      envelope = ReflectApply(refApplySyncPromise, hostCallRef, [undefined, [id, index, argsJson], syncCallOptions]);
      if (envelope === '') envelope = await new PromiseCtor((resolve) => { calls[id] = resolve; });
    } finally {
      pending--;
    }
    return unwrap(envelope);
  };
  defineValue(f, 'name', name, false);
  return f;
});
// ---- timers ----
// setTimeout/clearTimeout backed by host timers. The host clears every timer when the run settles, so no
// callback runs after that; the guest side refuses new timers once settled. A callback that throws fails the
// run (the first such error is reported when the run ends), as an uncaught exception would in Node.
const timers = ObjectCreate(null);
let nextTimerId = 0;
let liveTimers = 0;
let timerError;
let timerFailed = false;
const MAX_TIMERS = 1000;
// Every setTimeout/clearTimeout is a message to the host thread, and applyIgnored does not wait: a guest
// looping on clearTimeout(setTimeout(...)) queued messages faster than the host could drain them, starving
// its event loop (the wall-clock timer never fired) until the process died of heap exhaustion. So the
// number of timers one run may ever create is capped too; with it, the host handles at most 2 messages each.
let timersCreated = 0;
const MAX_TIMERS_PER_RUN = 10000;
const MAX_DELAY = 2147483647;
const guestSetTimeout = function setTimeout(callback, delay, ...args) {
  if (typeof callback !== 'function') throw new TypeErrorCtor('setTimeout: the callback must be a function');
  if (settled) return 0;
  if (liveTimers >= MAX_TIMERS) throw new ErrorCtor('setTimeout: too many pending timers (limit ' + MAX_TIMERS + ')');
  if (timersCreated >= MAX_TIMERS_PER_RUN) {
    throw new ErrorCtor('setTimeout: too many timers created in this run (limit ' + MAX_TIMERS_PER_RUN + '); wait on fewer, longer timers');
  }
  timersCreated++;
  let ms = typeof delay === 'number' ? delay : 0;
  if (!(ms >= 0)) ms = 0;
  if (ms > MAX_DELAY) ms = MAX_DELAY;
  const id = ++nextTimerId;
  const entry = ObjectCreate(null);
  entry.callback = callback;
  entry.args = args;
  timers[id] = entry;
  liveTimers++;
  ReflectApply(refApplyIgnored, timerRef, [undefined, [id, ms]]);
  return id;
};
const guestClearTimeout = function clearTimeout(id) {
  if (typeof id !== 'number') return;
  const entry = timers[id];
  if (entry === undefined) return;
  delete timers[id];
  liveTimers--;
  ReflectApply(refApplyIgnored, timerRef, [undefined, [id, -1]]);
};
const fireTimer = (id) => {
  hostTasks++;
  const entry = timers[id];
  if (entry === undefined || settled) return;
  delete timers[id];
  liveTimers--;
  try {
    ReflectApply(entry.callback, undefined, entry.args);
  } catch (err) {
    if (!timerFailed) { timerFailed = true; timerError = err; }
  }
};
defineValue(G, 'setTimeout', guestSetTimeout, false);
defineValue(G, 'clearTimeout', guestClearTimeout, false);

// ---- Intl ----
// ICU memory behind Intl objects lives outside the V8 heap, so the memory limit does not see it: retaining
// new Intl.DateTimeFormat() objects in a loop took host RSS past 1 GB in 3 s with a 64 MB limit, and so did
// retaining Segmenter#segment() results. So each run may create only so many of them (reuse one formatter).
const IntlNS = G.Intl;
const RangeErrorCtor = RangeError;
const ReflectConstruct = Reflect.construct;
const ProxyCtor = Proxy;
const ObjectGetOwnPropertyNames = Object.getOwnPropertyNames;
const MAX_INTL_OBJECTS = 1000;
const MAX_SEGMENTS = 20000;
let intlObjects = 0;
let segmentCalls = 0;
if (IntlNS !== null && typeof IntlNS === 'object') {
  const names = ObjectGetOwnPropertyNames(IntlNS);
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    const d = ownDescriptor(IntlNS, name);
    const C = d.value;
    // Constructors only (getCanonicalLocales and supportedValuesOf have no prototype).
    if (typeof C !== 'function' || !ObjectHasOwn(C, 'prototype')) continue;
    const count = () => {
      if (++intlObjects > MAX_INTL_OBJECTS) {
        throw new RangeErrorCtor('Intl.' + name + ': too many Intl objects created in this run (limit ' + MAX_INTL_OBJECTS + '); create one and reuse it');
      }
    };
    const handler = ObjectCreate(null);
    handler.construct = (target, args, newTarget) => { count(); return ReflectConstruct(target, args, newTarget); };
    handler.apply = (target, thisArg, args) => { count(); return ReflectApply(target, thisArg, args); };
    const wrapped = new ProxyCtor(C, handler);
    // The prototype's constructor would hand the unwrapped constructor back.
    defineValue(C.prototype, 'constructor', wrapped, false);
    defineValue(IntlNS, name, wrapped, false);
  }
  const Segmenter = IntlNS.Segmenter;
  if (typeof Segmenter === 'function') {
    const proto = ownDescriptor(Segmenter, 'prototype').value;
    const segment = proto.segment;
    defineValue(proto, 'segment', /** @this {unknown} */ function segment_(input) {
      if (++segmentCalls > MAX_SEGMENTS) {
        throw new RangeErrorCtor('Intl.Segmenter.prototype.segment: called too often in this run (limit ' + MAX_SEGMENTS + ')');
      }
      return ReflectApply(segment, this, [input]);
    }, false);
    defineValue(proto.segment, 'name', 'segment', false);
    // Each iterator over the segments copies an ICU break iterator too (+323 MB in 0.6 s, kept in an array):
    // iterators have a cap of their own, as large as segment()'s (containing() keeps no iterator).
    const segmentsProto = ObjectGetPrototypeOf(ReflectApply(segment, ReflectConstruct(Segmenter, []), ['']));
    let segmentIterators = 0;
    const countSegments = (what) => {
      if (++segmentIterators > MAX_SEGMENTS) throw new RangeErrorCtor('Intl Segments ' + what + ': called too often in this run (limit ' + MAX_SEGMENTS + ')');
    };
    const iterate = segmentsProto[Symbol.iterator];
    if (typeof iterate === 'function') {
      defineValue(segmentsProto, Symbol.iterator, /** @this {unknown} */ function iterator() { countSegments('[Symbol.iterator]'); return ReflectApply(iterate, this, []); }, false);
      defineValue(segmentsProto[Symbol.iterator], 'name', '[Symbol.iterator]', false);
    }
  }
  // Locale#maximize() and #minimize() create Locale objects without the constructor: count them as such.
  const Locale = IntlNS.Locale;
  if (typeof Locale === 'function') {
    const proto = ownDescriptor(Locale, 'prototype').value;
    for (const method of ['maximize', 'minimize']) {
      const original = proto[method];
      if (typeof original !== 'function') continue;
      const wrapped = {
        [method]() {
          if (++intlObjects > MAX_INTL_OBJECTS) {
            throw new RangeErrorCtor('Intl.Locale.prototype.' + method + ': too many Intl objects created in this run (limit ' + MAX_INTL_OBJECTS + '); create one and reuse it');
          }
          return ReflectApply(original, this, []);
        },
      }[method];
      defineValue(proto, method, wrapped, false);
    }
  }
}

const makeErrorClass = (name) => {
  const Cls = class extends ErrorCtor {};
  defineValue(Cls, 'name', name, false);
  defineValue(Cls.prototype, 'name', name, false);
  return Cls;
};

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
return [install, settleCall, fireTimer, report];
});
