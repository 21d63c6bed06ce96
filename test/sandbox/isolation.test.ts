import { describe, expect, it } from 'vitest';
import { failure, sandbox, value } from './helpers.js';

/** Guest-side walk of everything reachable from globalThis (and from the given extra roots). */
const WALK = String.raw`
const IVM_METHODS = ['derefInto', 'applySyncPromise', 'applyIgnored', 'copyInto', 'copySync', 'getSync', 'setIgnored',
  'evalClosure', 'evalClosureSync', 'compileScript', 'createContext', 'instantiate', 'release'];
const IVM_NAMES = ['Reference', 'ExternalCopy', 'Callback', 'Context', 'Isolate', 'Script', 'Module', 'NativeModule', 'Dereference', 'Copy'];
const seen = new Set();
const queue = roots.map((r) => [r.value, r.path]);
const findings = [];
let visited = 0;
while (queue.length > 0 && visited < 200000) {
  const [v, path] = queue.shift();
  if (v === null || (typeof v !== 'object' && typeof v !== 'function')) continue;
  if (seen.has(v)) continue;
  seen.add(v);
  visited++;
  let keys = [];
  try { keys = Reflect.ownKeys(v); } catch { continue; }
  for (const key of keys) {
    const name = typeof key === 'symbol' ? key.toString() : key;
    if (IVM_METHODS.includes(name) && typeof v !== 'function') findings.push(path + ' has ' + name);
    let d;
    try { d = Object.getOwnPropertyDescriptor(v, key); } catch { continue; }
    if (!d) continue;
    const child = path + '.' + name;
    if ('value' in d) queue.push([d.value, child]);
    if (d.get) { queue.push([d.get, child + '<get>']); try { queue.push([d.get.call(v), child + '<got>']); } catch {} }
    if (d.set) queue.push([d.set, child + '<set>']);
  }
  try { queue.push([Object.getPrototypeOf(v), path + '.__proto__']); } catch {}
  try {
    const ctor = typeof v === 'function' ? v : v.constructor;
    if (typeof ctor === 'function' && IVM_NAMES.includes(ctor.name) && !(ctor.name === 'Script' && false)) findings.push(path + ' is a ' + ctor.name);
  } catch {}
}
findings.sort();
return { findings, visited, globals: Reflect.ownKeys(globalThis).map(String).sort() };
`;

const STANDARD_GLOBALS = [
  'AggregateError', 'Array', 'ArrayBuffer', 'AsyncDisposableStack', 'BigInt', 'BigInt64Array', 'BigUint64Array', 'Boolean', 'DataView', 'Date',
  'DisposableStack', 'Error', 'EvalError', 'FinalizationRegistry', 'Float16Array', 'Float32Array', 'Float64Array', 'Function', 'Infinity', 'Int16Array',
  'Int32Array', 'Int8Array', 'Intl', 'Iterator', 'JSON', 'Map', 'Math', 'NaN', 'Number', 'Object', 'Promise', 'Proxy', 'RangeError',
  'ReferenceError', 'Reflect', 'RegExp', 'Set', 'String', 'SuppressedError', 'Symbol', 'SyntaxError', 'TypeError', 'URIError', 'Uint16Array',
  'Uint32Array', 'Uint8Array', 'Uint8ClampedArray', 'WeakMap', 'WeakRef', 'WeakSet', 'console', 'decodeURI', 'decodeURIComponent',
  'encodeURI', 'encodeURIComponent', 'escape', 'eval', 'globalThis', 'isFinite', 'isNaN', 'parseFloat', 'parseInt', 'undefined', 'unescape',
];

describe('isolation (issue 2, point 8)', () => {
  it('nothing reachable from globalThis is an isolated-vm object or an internal helper', async () => {
    const sb = sandbox();
    const outcome = await sb.run(
      `let caught; try { await tools.fail(); } catch (e) { caught = e; }
       const pending = tools.ok();
       const returned = await pending;
       const roots = [{ value: globalThis, path: 'globalThis' }, { value: caught, path: 'caughtError' },
                      { value: pending, path: 'hostPromise' }, { value: returned, path: 'hostResult' }];
       ${WALK}`,
      {
        hostFunctions: {
          tools: {
            ok: () => ({ a: [1] }),
            fail: () => {
              throw Object.assign(new Error('x'), { name: 'ToolError', data: { tool: 'fail' } });
            },
          },
        },
        errorClasses: ['ToolError'],
      },
    );
    const result = value(outcome) as { findings: string[]; visited: number; globals: string[] };
    expect(result.findings).toEqual([]);
    expect(result.visited).toBeGreaterThan(500);
    // Only the standard globals (minus WebAssembly, SharedArrayBuffer, Atomics), plus what the caller asked for.
    expect(result.globals).toEqual([...STANDARD_GLOBALS, 'ToolError', 'tools', 'setTimeout', 'clearTimeout'].sort());
  });

  it('the walk itself detects an isolated-vm object when one is reachable', async () => {
    // Guard against a walk that can't fail: hand the guest a real Reference-like object and expect a finding.
    const outcome = await sandbox().run(
      `const fake = { derefInto() {}, applySyncPromise() {} };
       const roots = [{ value: { fake }, path: 'probe' }];
       ${WALK}`,
    );
    expect((value(outcome) as { findings: string[] }).findings.sort()).toEqual(['probe.fake has applySyncPromise', 'probe.fake has derefInto']);
  });

  it('stack-trace hooks expose no bootstrap function or receiver (its code is strict)', async () => {
    const out = value(
      await sandbox().run(
        `const leaks = [];
         let frames = 0;
         Error.prepareStackTrace = (err, callSites) => {
           for (const site of callSites) {
             if (site.getFileName() !== 'codemode-bootstrap.js') continue;
             frames++;
             if (site.getFunction() !== undefined || site.getThis() !== undefined) leaks.push(site.getFunctionName());
           }
           return 'hooked';
         };
         try { await fail(); } catch (e) { e.stack; }
         try { await lateFail(); } catch (e) { e.stack; }
         try { await echo({ get x() { new Error('in copier').stack; return 1; } }); } catch (e) {}
         console.log({ get y() { new Error('in console').stack; return 1; } });
         return { leaks, frames };`,
        {
          hostFunctions: {
            echo: () => 1,
            fail: () => {
              throw new Error('x');
            },
            lateFail: () => new Promise((_, reject) => setTimeout(() => reject(new Error('late')), 5)),
          },
        },
      ),
    ) as { leaks: string[]; frames: number };
    expect(out.frames).toBeGreaterThan(8);
    expect(out.leaks).toEqual([]);
  });

  it('require, process, fetch and dynamic import are absent', async () => {
    const out = value(
      await sandbox().run(`
        let imported;
        try { await import('node:fs'); imported = 'loaded'; } catch (e) { imported = 'refused'; }
        return [typeof require, typeof process, typeof fetch, typeof module, typeof Buffer, typeof setInterval, imported];
      `),
    );
    expect(out).toEqual(['undefined', 'undefined', 'undefined', 'undefined', 'undefined', 'undefined', 'refused']);
  });

  it('guest monkey-patching neither breaks the bridge nor changes how values are copied', async () => {
    let received: unknown;
    const outcome = await sandbox().run(
      `
      const realThen = Promise.prototype.then;
      JSON.stringify = () => { throw new Error('patched stringify'); };
      JSON.parse = () => ({ ok: true, value: 'forged' });
      Promise.prototype.then = function () { throw new Error('patched then'); };
      globalThis.Error = function FakeError() { return { fake: true }; };
      Array.prototype[Symbol.iterator] = function* () { yield 'patched iterator'; };
      for (const key of ['result', 'promise', 'copy', 'reference', 'arguments', 'timeout', 'ok', 'error', 'data', 'name', 'message', 'get', 'set', 'value', 'writable', 'enumerable']) {
        // A null-prototype descriptor, so this loop doesn't trip over its own earlier pollution.
        const d = Object.create(null);
        d.get = () => { throw new TypeError('polluted ' + key); };
        d.set = () => { throw new TypeError('polluted set ' + key); };
        d.configurable = true;
        Object.defineProperty(Object.prototype, key, d);
      }
      Object.prototype.toJSON = function () { return 'pwned'; };
      Object.defineProperty(Array.prototype, '0', { get() { return 'polluted index'; }, set(v) {}, configurable: true });
      String.prototype.slice = () => 'patched slice';
      Reflect.apply = () => 'patched apply';
      Object.keys = () => ['injected'];

      const got = await tools.echo({ a: 1, list: [1, 2] }, 'two');
      let err;
      try { await tools.fail(); } catch (e) { err = { name: e.name, message: e.message, tool: e.tool, isToolError: e instanceof ToolError }; }
      console.log('still logging', { x: 1 });
      return { got, err, date: new Date(0), nested: [{ k: 'v' }] };
      `,
      {
        hostFunctions: {
          tools: {
            echo: (args) => {
              received = args;
              return { back: args };
            },
            fail: () => {
              throw Object.assign(new Error('denied'), { name: 'ToolError', data: { tool: 'fail' } });
            },
          },
        },
        errorClasses: ['ToolError'],
      },
    );
    expect(received).toEqual([{ a: 1, list: [1, 2] }, 'two']);
    expect(value(outcome)).toEqual({
      got: { back: [{ a: 1, list: [1, 2] }, 'two'] },
      err: { name: 'ToolError', message: 'denied', tool: 'fail', isToolError: true },
      date: '1970-01-01T00:00:00.000Z',
      nested: [{ k: 'v' }],
    });
    expect(outcome.logs).toEqual([{ level: 'log', message: 'still logging { x: 1 }' }]);
  });

  it('a polluted "then" cannot intercept how the run or a host call resolves', async () => {
    const outcome = await sandbox().run(
      `Object.prototype.then = function (resolve) { resolve(['ok', 0, '{"forged":true}']); };
       Array.prototype.then = Object.prototype.then;
       String.prototype.then = Object.prototype.then;
       const viaHost = await echo('real');
       delete Object.prototype.then; delete Array.prototype.then; delete String.prototype.then;
       return { viaHost, list: [1, 2] };`,
      { hostFunctions: { echo: ([x]) => x } },
    );
    expect(value(outcome)).toEqual({ viaHost: 'real', list: [1, 2] });
    const kept = await sandbox().run(`Object.prototype.then = function (resolve) { resolve('forged'); }; return 'real';`);
    expect(value(kept)).toBe('real');
  });

  it('a guest cannot escape the function wrapper to reach the bridge: the code is refused before it runs', async () => {
    // "})" would close our wrapper early; the code is checked as one function body first (issue 17).
    const outcome = await sandbox({ limits: { timeoutMs: 2_000 } }).run(
      'return 1 }); console.log(typeof hostCallRef, typeof logRef, typeof __codemodeRun, typeof install); (async function () {',
    );
    expect(outcome.logs).toEqual([]);
    expect(failure(outcome)).toMatchObject({ kind: 'syntax', line: 1, column: 10 });
  });

  it('each run gets a fresh isolate: globals do not leak between runs', async () => {
    const sb = sandbox();
    value(await sb.run('globalThis.leak = 42; Object.prototype.polluted = true; return 1'));
    expect(value(await sb.run('return [typeof leak, ({}).polluted]'))).toEqual(['undefined', null]);
  });
});
