// @ts-check
/*
 * Guest bootstrap, part: the builtins the bootstrap keeps before user code can patch them, the globals it removes or replaces
 * (WebAssembly, SharedArrayBuffer, Atomics, eval-like constructors, Promise species), and small helpers.
 *
 * One of the parts ../bootstrap.ts joins, in order, into the body of one function run in each fresh isolate
 * (README.md here has the rules for editing them). Top-level names are shared by all the parts.
 */
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
