// @ts-check
/*
 * Guest bootstrap, part: intl: the constructors kept, with the costly entry points bounded per run.
 *
 * One of the parts ../bootstrap.ts joins, in order, into the body of one function run in each fresh isolate
 * (README.md here has the rules for editing them). Top-level names are shared by all the parts.
 */
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
