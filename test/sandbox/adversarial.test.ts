/**
 * Red-team tests: what a hostile, model-written guest would try against the isolated-vm sandbox. Every test
 * runs real isolates and, besides its own assertions, checks that the host stayed healthy: no unhandled
 * rejection in this process, no isolate left alive, and the host's event loop kept turning.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { catastrophicErrorCount, liveIsolateCount } from '../../src/sandbox/isolated-vm-sandbox.js';
import type { HostFunctions, RunOutcome } from '../../src/sandbox/types.js';
import { failure, ON_PROCESS_POOL, sandbox, value } from './helpers.js';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});
afterEach(async () => {
  // Give any stray rejection a turn to surface before checking.
  await new Promise((resolve) => setImmediate(resolve));
  expect(unhandled).toEqual([]);
});

const hostFunctions: HostFunctions = {
  tools: {
    echo: async (args) => args,
    sync: (args) => args.length,
    fail: async () => {
      throw new Error('host failed');
    },
  },
};

/**
 * How long a run stopped by its wall clock may take end to end in these tests. They show that the limit
 * holds at all (without it these runs never end); the tight bounds live in limits-enforced.test.ts and the
 * benchmarks. 800 and 1,000 ms failed on a loaded two-core machine (808-1,019 ms, and up to 3 s at load 10).
 */
const STOPPED_WITHIN_MS = 10_000;

/** Runs `code` while counting host event-loop turns (a 20 ms interval), so starvation shows. */
async function runWatched(
  code: string,
  limits: { timeoutMs?: number; memoryMb?: number } = {},
): Promise<{ outcome: RunOutcome; ms: number; ticks: number }> {
  const sb = sandbox({ limits: { timeoutMs: 1_000, memoryMb: 64, ...limits } });
  let ticks = 0;
  const interval = setInterval(() => {
    ticks++;
  }, 20);
  const started = performance.now();
  try {
    const outcome = await sb.run(code, { hostFunctions });
    return { outcome, ms: performance.now() - started, ticks };
  } finally {
    clearInterval(interval);
    await sb.close();
    expect(liveIsolateCount()).toBe(0);
  }
}

describe('adversarial guest: host flooding', () => {
  it('a clearTimeout(setTimeout()) loop cannot flood the host thread (it starved the event loop and crashed Node)', async () => {
    const { outcome, ms } = await runWatched('for (;;) { clearTimeout(setTimeout(() => {}, 1e9)); }', { timeoutMs: 2_000 });
    const error = failure(outcome);
    // The per-run creation cap stops the loop with a catchable error long before the wall clock.
    expect(error).toMatchObject({ kind: 'runtime', message: expect.stringMatching(/too many timers created in this run/) });
    expect(ms).toBeLessThan(1_500);
  });

  it('the timer-creation cap is per run and leaves ordinary timer use alone', async () => {
    const sb = sandbox({ limits: { timeoutMs: 5_000 } });
    const code = `let n = 0;
      for (let i = 0; i < 2000; i++) clearTimeout(setTimeout(() => {}, 1000));
      await new Promise((r) => setTimeout(r, 1));
      n++;
      return n`;
    expect(value(await sb.run(code))).toBe(1);
    expect(value(await sb.run(code))).toBe(1);
    const caught = await sb.run(`try { for (let i = 0; i < 10001; i++) clearTimeout(setTimeout(() => {}, 1000)); } catch (e) { return e.message } return 'no cap'`);
    expect(value(caught)).toMatch(/too many timers created in this run \(limit 10000\)/);
  });

  it('a tight loop of host calls (sync answers, awaited or not) cannot starve the host: the wall clock holds', async () => {
    for (const code of ['for (;;) await tools.sync(1)', 'for (;;) tools.sync(1)', 'for (;;) tools.echo(1).catch(() => {})']) {
      const { outcome, ms, ticks } = await runWatched(code, { timeoutMs: 500 });
      // A flood that does not await keeps its calls' promises: on a fast run they can reach the 64 MB limit
      // before the 500 ms clock (CI saw it once). Either limit stopping the run is the point here.
      expect(['timeout', 'memory']).toContain(failure(outcome).kind);
      // On the process pool the flood crosses IPC and the result queues behind it. Both vitest projects run
      // this file at once on two cores, beside other work: the bound only shows the limit is not lost.
      expect(ms).toBeLessThan(STOPPED_WITHIN_MS);
      expect(ticks).toBeGreaterThan(5);
    }
  }, 60_000);
});

describe('adversarial guest: escaping the function wrapper (issue 17, defect 5)', () => {
  // Each of these closes the wrapper early and, before the check, ran at script top level: a host call,
  // a grab of the run global, a forged outcome string, hostile script values.
  const escapes: [string, string][] = [
    ['a host call after "})"', '}); tools.count({ by: 1 }); (async () => {'],
    ['a host call in the wrapper call\'s argument list', '}, tools.count({}), async () => {'],
    ['an assignment in the argument list', 'return globalThis.grabbed; }, (globalThis.grabbed = typeof __codemodeRun, tools.count()), 0); var __z = (function () {'],
    ['a hoisted declaration of the run global', '}); function __codemodeRun(f) { tools.count(); } (async () => {'],
    ['a forged ok outcome', "}); function g() { tools.count(); return 'ok\\n0\\n3\\n7'; } g(async function () {"],
    ['a forged error outcome', "}); function g() { return 'error\\n0\\n0\\n{\"name\":\"' + 'n'.repeat(4e7) + '\"}'; } g(async function () {"],
    ['a forged outcome nested 400,000 deep', "}); function g() { return 'ok\\n0\\n0\\n' + '['.repeat(4e5) + ']'.repeat(4e5); } g(async function () {"],
    ['a deep script value', '}); function g() { let a = []; for (let i = 0; i < 200000; i++) a = [a]; return Promise.resolve(a); } g(async function () {'],
    ['a looping thenable', '}); function g() { return { then() { tools.count(); for (;;); } }; } g(async function () {'],
    ['a ghost that keeps running', "}); g(); function g() { Promise.resolve().then(() => { tools.count(); for (;;); }); return 'ok\\n0\\n0\\n1'; } (async function () {"],
    ['a console line at top level', 'return 1 }); console.log(typeof hostCallRef, typeof logRef, typeof __codemodeRun, typeof install); (async function () {'],
    ['an escape on a later line', 'const a = 1;\nreturn a });\ntools.count(); (async () => {'],
  ];

  it.each(escapes)('code that closes the wrapper is a syntax failure before any of it runs: %s', async (_label, code) => {
    let calls = 0;
    const sb = sandbox({ limits: { timeoutMs: 5_000, memoryMb: 64 } });
    const started = performance.now();
    const outcome = await sb.run(code, {
      hostFunctions: {
        tools: {
          count: () => {
            calls++;
            return calls;
          },
        },
      },
    });
    const error = failure(outcome);
    expect(error).toMatchObject({ kind: 'syntax', name: 'SyntaxError' });
    expect(error.message).toMatch(/not one function body, so none of it ran/);
    expect(error.line).toBeGreaterThanOrEqual(1);
    expect(error.column).toBeGreaterThanOrEqual(1);
    expect(error.message.length).toBeLessThan(2_000);
    expect(calls).toBe(0);
    expect(outcome.stats.hostCalls).toBe(0);
    expect(outcome.logs).toEqual([]);
    // Refused before it ran: no loop, no wall clock.
    expect(performance.now() - started).toBeLessThan(4_000);
  });

  it('the position is the stray brace in the user code', async () => {
    const error = failure(await sandbox().run('const a = 1;\nif (a) {\n  return a;\n}}); tools.x(); (async () => {'));
    expect(error).toMatchObject({ kind: 'syntax', line: 4, column: 2 });
    expect(error.message).toMatch(/at line 4, column 2/);
  });

  it('ordinary code that mentions braces, "})" in strings, comments, templates and regexps still runs', async () => {
    const code = [
      "const s = '}); (async () => {';",
      '// }); tools.x(); (async () => {',
      '/* }) */',
      'const t = `${s} })`;',
      'const r = /\\}\\)/;',
      'const f = async () => { return 2 };',
      'return [s.length, t.length, r.test("})"), await f()]; // })',
    ].join('\n');
    expect(value(await sandbox().run(code))).toEqual([18, 21, true, 2]);
  });

  it('the run global cannot be read by the code, even by name', async () => {
    const after = await sandbox().run(`
      try { return [typeof __codemodeRun, Object.getOwnPropertyNames(globalThis).filter((n) => n.startsWith('__codemode'))]; }
      catch (e) { return e.name; }`);
    expect(value(after)).toEqual(['undefined', []]);
  });

  it('code too long to check under the memory limit is refused as memory, not run unchecked', async () => {
    // isolated-vm compiles strings up to an eighth of the heap limit: 1 Mi characters with 8 MB.
    const code = `return ${JSON.stringify('x'.repeat(1_100_000))}.length`;
    const error = failure(await sandbox({ limits: { memoryMb: 8, timeoutMs: 10_000 } }).run(code));
    expect(error).toMatchObject({ kind: 'memory', message: expect.stringMatching(/code is too long for the 8 MB memory limit/) });
  });
});

describe('adversarial guest: thrown values', () => {
  it('a data getter on a thrown error that answers differently on a second read cannot spoil the report', async () => {
    const sb = sandbox({ limits: { timeoutMs: 2_000 } });
    const error = failure(
      await sb.run(`let n = 0; const e = new Error('kept');
        Object.defineProperty(e, 'd', { enumerable: true, get() { if (n++ === 0) return 1; let a = []; for (let i = 0; i < 1e5; i++) a = [a]; return a; } });
        throw e`),
    );
    // Before the fix the getter was read twice; the deep second answer made the whole description fail.
    expect(error).toMatchObject({ kind: 'runtime', name: 'Error', message: 'kept', data: { d: 1 } });
  });

  it('thrown proxies, revoked proxies, cycles and hostile getters are reported as runtime errors or time out', async () => {
    const cases: [string, string, RegExp][] = [
      ['revoked proxy', 'const r = Proxy.revocable({}, {}); r.revoke(); throw r.proxy', /Uncaught \(not an Error\)/],
      ['self-referencing error', "const e = new Error('c'); e.self = e; e.arr = [e]; throw e", /^c$/],
      ['proxy with huge strings', "throw new Proxy({}, { get(t, k) { return k === 'message' ? 'm'.repeat(5e6) : 'x'.repeat(5e6) } })", /truncated/],
      // Unhandled while the function still runs (a rejection after it returned no longer counts).
      ['unhandled rejection of a revoked proxy', 'const r = Proxy.revocable({}, {}); r.revoke(); Promise.reject(r.proxy); await new Promise((w) => setTimeout(w, 1)); return 1', /Unhandled promise rejection/],
      ['unhandled rejection of a deep array', 'let a = []; for (let i = 0; i < 200000; i++) a = [a]; Promise.reject(a); await new Promise((w) => setTimeout(w, 1)); return 1', /Unhandled promise rejection/],
      ['unhandled rejection with a huge message', "Promise.reject(new Error('z'.repeat(2e7))); await new Promise((w) => setTimeout(w, 1)); return 1", /Unhandled promise rejection/],
    ];
    for (const [label, code, message] of cases) {
      // Room for the multi-megabyte cases on a loaded machine: a timeout here would hide the real outcome.
      const { outcome } = await runWatched(code, { timeoutMs: 10_000 });
      const error = failure(outcome);
      expect({ label, kind: error.kind }).toEqual({ label, kind: 'runtime' });
      expect(error.message.length).toBeLessThan(40_000);
      expect(error.message).toMatch(message);
    }
    // Getters, toPrimitive and prepareStackTrace hooks that never return: only the wall clock can end these.
    for (const code of [
      'throw { get message() { for (;;); } }',
      "throw { message: 'm', name: { [Symbol.toPrimitive]() { for (;;); } } }",
      "Error.prepareStackTrace = () => { for (;;); }; throw new Error('x')",
      "Error.prepareStackTrace = () => { for (;;); }; Promise.reject(new Error('e')); await null; return 1",
    ]) {
      const { outcome, ms } = await runWatched(code, { timeoutMs: 300 });
      expect(failure(outcome).kind).toBe('timeout');
      expect(ms).toBeLessThan(STOPPED_WITHIN_MS);
    }
  }, 90_000);
});

describe('adversarial guest: memory', () => {
  it('a dictionary object whose hash table outgrows the heap in one step fails the run instead of aborting Node', async () => {
    // 4 million keys: the table doubling needs one allocation larger than the 64 MB heap has left, which V8
    // treats as a fatal out-of-memory error. Before the fix this printed CALL_AND_RETRY_LAST and killed the
    // whole process (isolated-vm issues #457/#527).
    const before = catastrophicErrorCount();
    const { outcome, ticks } = await runWatched("const o = {}; for (let i = 0; i < 4e6; i++) o['k' + i] = i; return 1", { timeoutMs: 20_000 });
    expect(failure(outcome).kind).toBe('memory');
    // On the process pool the catastrophic-error handler runs in the worker; the outcome above is the check.
    if (!ON_PROCESS_POOL) expect(catastrophicErrorCount()).toBe(before + 1);
    expect(ticks).toBeGreaterThan(0);
    // The process still runs new isolates.
    expect(value(await sandbox().run('return 2'))).toBe(2);
  }, 30_000);
});

describe('adversarial guest: reaching the bridge', () => {
  it('sloppy functions called by the bootstrap (copier getters, log formatting, result copy, timers) see no caller', async () => {
    // Each probe is itself the sloppy function the bootstrap calls; its .caller would be the bootstrap frame.
    const sb = sandbox({ limits: { timeoutMs: 2_000 } });
    const outcome = await sb.run(
      `const seen = [];
       const callerOf = (f) => f.caller === null ? 'null' : typeof f.caller;
       const o = {}; Object.defineProperty(o, 'x', { enumerable: true, get: function probe() { seen.push(callerOf(probe)); return 1; } });
       await tools.echo(o);                       // host-call argument copier
       console.log(o);                            // console formatting
       await new Promise((r) => setTimeout(function probe() { seen.push(callerOf(probe)); r(); }, 0)); // timer callback
       const r = {}; Object.defineProperty(r, 'seen', { enumerable: true, get: function probe() { seen.push(callerOf(probe)); return seen; } });
       return r;                                  // result copier`,
      { hostFunctions },
    );
    expect(value(outcome)).toEqual({ seen: ['null', 'null', 'null', 'null'] });
  });

  it('CallSite getThis/getFunction from inside the copier and a failing host call expose only user code', async () => {
    const sb = sandbox({ limits: { timeoutMs: 2_000 } });
    const outcome = await sb.run(
      `const found = [];
       Error.prepareStackTrace = (e, frames) => {
         for (const f of frames) {
           const fn = f.getFunction(), self = f.getThis();
           if (fn !== undefined || (self !== undefined && self !== globalThis)) found.push([f.getFunctionName(), typeof fn, typeof self]);
         }
         return 'stack';
       };
       await tools.echo({ get x() { new Error().stack; return 1; } });
       try { await tools.echo(1n); } catch (e) { e.stack; }
       try { await tools.fail(); } catch (e) { e.stack; }
       return found.filter(([name]) => name !== 'get x');`,
      { hostFunctions },
    );
    expect(value(outcome)).toEqual([]);
  });

  it('globalThis.constructor, Function("return this"), eval and other constructors give back nothing internal', async () => {
    const sb = sandbox();
    const outcome = await sb.run(`
      const g = Function('return this')();
      const viaEval = (0, eval)('this');
      const buffer = new Int32Array(new ArrayBuffer(8)).buffer;
      return [g === globalThis, viaEval === globalThis, globalThis.constructor === Object,
        typeof g.__codemodeRun, typeof structuredClone, typeof SharedArrayBuffer, typeof Atomics, typeof WebAssembly,
        Object.getPrototypeOf(buffer).constructor.name,
        await import('node:fs').then(() => 'imported', (e) => e.constructor.name)];`);
    expect(value(outcome)).toEqual([true, true, true, 'undefined', 'undefined', 'undefined', 'undefined', 'undefined', 'ArrayBuffer', 'Error']);
  });

  it('no state crosses runs: Symbol.for registry, prototypes and globals start fresh (warm spares too)', async () => {
    const sb = sandbox({ warmIsolates: 2 });
    const write = `const s = Symbol.for('codemode.channel'); const before = Object.prototype[s];
      Object.prototype[s] = 'secret'; globalThis[s] = 'secret'; Array.prototype.leak = 1; return String(before)`;
    expect(value(await sb.run(write))).toBe('undefined');
    expect(value(await sb.run(write))).toBe('undefined');
    expect(value(await sb.run(`return [typeof globalThis[Symbol.for('codemode.channel')], typeof [].leak]`))).toEqual(['undefined', 'undefined']);
  });
});

describe('adversarial guest: hostile values', () => {
  it('a sparse array with a huge length is bounded as result, host-call argument and log argument', async () => {
    const sb = sandbox({ limits: { timeoutMs: 5_000 } });
    expect(failure(await sb.run('const a = []; a[1e9] = 1; return a')).kind).toBe('output_limit');
    const arg = await sb.run('const a = []; a[1e9] = 1; try { await tools.echo(a); return "sent"; } catch (e) { return e.message; }', { hostFunctions });
    expect(value(arg)).toMatch(/arguments are larger than/);
    const logged = await sb.run('const a = []; a[1e9] = 1; console.log(a); return 1');
    expect(value(logged)).toBe(1);
    expect(logged.logs[0]?.message).toMatch(/\.\.\. 999999901 more items/);
  });

  it('getters and setters planted on Object/Array/Error prototypes do not change what crosses the bridge', async () => {
    const sb = sandbox();
    const outcome = await sb.run(
      `const boom = (name) => ({ get() { throw new Error(name); }, configurable: true });
       Object.defineProperty(Object.prototype, 'toJSON', boom('toJSON'));
       Object.defineProperty(Object.prototype, 'length', boom('length'));
       Object.defineProperty(Object.prototype, 'constructor', boom('constructor'));
       Object.defineProperty(Array, Symbol.species, boom('species'));
       for (const k of ['name', 'message', 'stack', 'data']) Object.defineProperty(Error.prototype, k, boom('error.' + k));
       Object.defineProperty(Array.prototype, Symbol.iterator, boom('iterator'));
       const getOwn = Object.getOwnPropertyDescriptor;
       Object.defineProperty(Array.prototype, '0', { set() { throw new Error('set0'); }, configurable: true });
       // Last: from here on, descriptor literals inherit an accessor "value" (the bootstrap's must not).
       Object.defineProperty(Object.prototype, 'value', { set() { throw new Error('setValue'); }, configurable: true });
       const echoed = await tools.echo({ a: [1, { b: 'c' }] });
       let err; try { await tools.fail(); } catch (e) { err = getOwn(e, 'message').value; }
       console.log({ a: [1] });
       await new Promise((r) => setTimeout(r, 1));
       return { echoed, err };`,
      { hostFunctions },
    );
    expect(value(outcome)).toEqual({ echoed: [{ a: [1, { b: 'c' }] }], err: 'host failed' });
    expect(outcome.logs).toEqual([{ level: 'log', message: '{ a: [ 1 ] }' }]);
  });

  it('getters cannot be planted on Promise[Symbol.species] or Promise.prototype.constructor (every await reads them)', async () => {
    const sb = sandbox();
    const slowEcho = { tools: { echo: async ([x]: unknown[]) => { await new Promise((r) => setTimeout(r, 5)); return x; } } };
    for (const [target, key] of [['Promise', 'Symbol.species'], ['Promise.prototype', "'constructor'"]] as const) {
      // Before the lock, this failed the run after the await as "Unhandled promise rejection: planted".
      const outcome = await sb.run(
        `let planted = 'no';
         try { Object.defineProperty(${target}, ${key}, { get() { throw new Error('planted'); }, configurable: true }); planted = 'yes'; }
         catch (e) { planted = e.constructor.name + ': ' + e.message; }
         const echoed = await tools.echo(7);
         return { planted, echoed, isPromise: tools.echo(1) instanceof Promise };`,
        { hostFunctions: slowEcho },
      );
      expect(value(outcome)).toEqual({ planted: expect.stringMatching(/^TypeError: Cannot redefine property/), echoed: 7, isPromise: true });
      // Uncaught, the attempt fails the run at the user's own line, not as an unhandled rejection.
      const uncaught = failure(await sb.run(`await tools.echo(1);\nObject.defineProperty(${target}, ${key}, { get() { throw new Error('planted'); } });\nreturn await tools.echo(2);`, { hostFunctions: slowEcho }));
      expect(uncaught).toMatchObject({ kind: 'runtime', name: 'TypeError', line: 2 });
    }
    // Subclassing and species on subclasses still work as usual.
    expect(value(await sb.run('class P extends Promise {} const p = P.resolve(1).then((x) => x + 1); return [p instanceof P, await p]'))).toEqual([true, 2]);
  });

  it('proxies as results: revoked fails as runtime, a looping trap hits the wall clock', async () => {
    const revoked = await runWatched('const r = Proxy.revocable({}, {}); r.revoke(); return r.proxy');
    expect(failure(revoked.outcome)).toMatchObject({ kind: 'runtime', message: expect.stringMatching(/revoked/) });
    const looping = await runWatched('return new Proxy({}, { ownKeys() { for (;;); } })', { timeoutMs: 300 });
    expect(failure(looping.outcome).kind).toBe('timeout');
  });

  it('code run by the result copier after the run ended cannot start host calls or timers', async () => {
    let calls = 0;
    const sb = sandbox();
    const outcome = await sb.run(
      `let late; const o = { get x() { tools.count().then(() => { late = 'started'; }, (e) => { late = e.message; }); return setTimeout(() => {}, 0); } };
       return o;`,
      { hostFunctions: { tools: { count: () => ++calls } } },
    );
    expect(value(outcome)).toEqual({ x: 0 });
    expect(calls).toBe(0);
  });
});

describe('adversarial guest: wall clock', () => {
  it.each([
    ['a microtask loop', 'for (;;) await null'],
    ['a never-resolving await with a live timer', 'setTimeout(() => {}, 10); await new Promise(() => {})'],
    ['a self-feeding timer chain', 'const f = () => setTimeout(f, 0); f(); await new Promise(() => {})'],
    ['a catastrophic regex', "return /(a+)+$/.test('a'.repeat(40) + 'b')"],
    ['a Promise.then chain that never ends', 'let n = 0; const f = () => { n = (n + 1) % 1000; return Promise.resolve().then(f); }; await f()'],
  ])('holds for %s', async (_label, code) => {
    const { outcome, ms } = await runWatched(code, { timeoutMs: 300, memoryMb: 64 });
    expect(['timeout', 'memory']).toContain(failure(outcome).kind);
    // limits-enforced.test.ts holds the 100 ms bound on a quiet machine; this file runs beside heavy tests.
    expect(ms).toBeLessThan(STOPPED_WITHIN_MS);
  });
});

describe('adversarial guest: memory and host calls', () => {
  it('large ArrayBuffer, typed array and DataView allocations fail with kind memory', async () => {
    for (const code of ['new ArrayBuffer(2 ** 31)', 'new Float64Array(2 ** 27)', 'new DataView(new ArrayBuffer(1.5e9))']) {
      const { outcome } = await runWatched(`const x = ${code}; return 1`);
      expect(failure(outcome).kind).toBe('memory');
    }
  });

  it('many pending host calls are capped inside the guest; the rest are cancelled when the run ends', async () => {
    const signals: AbortSignal[] = [];
    const sb = sandbox({ limits: { timeoutMs: 10_000 } });
    const outcome = await sb.run(
      `const ps = []; for (let i = 0; i < 5000; i++) ps.push(tools.hang(i));
       const refused = await Promise.allSettled(ps.slice(1000));
       return refused.filter((x) => x.status === 'rejected' && /too many host calls pending/.test(x.reason.message)).length`,
      {
        hostFunctions: {
          tools: {
            hang: (_args, { signal }) => {
              signals.push(signal);
              return new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
            },
          },
        },
      },
    );
    expect(value(outcome)).toBe(4000);
    expect(outcome.stats.hostCalls).toBe(1000);
    expect(outcome.stats.pendingHostCalls).toBe(1000);
    expect(signals.every((s) => s.aborted)).toBe(true);
  });
});

describe('adversarial guest: memory outside the V8 heap', () => {
  it('retained Intl objects and Segmenter#segment() results are capped per run (ICU memory escaped the limit)', async () => {
    // Before the fix each loop ran to the wall clock with host RSS passing 1 GB in 3 s under a 64 MB limit.
    for (const [code, message] of [
      ["const a = []; for (;;) a.push(new Intl.DateTimeFormat('en', { timeZone: 'UTC' }))", /Intl\.DateTimeFormat: too many Intl objects created in this run \(limit 1000\)/],
      ["const a = []; for (;;) a.push(Intl.Collator('de'))", /Intl\.Collator: too many Intl objects/],
      ["const s = new Intl.Segmenter('en', { granularity: 'word' }); const a = []; for (;;) a.push(s.segment('abc def'))", /segment: called too often in this run \(limit 20000\)/],
      // Each iterator copies an ICU break iterator; maximize() makes Locale objects without the constructor.
      ["const s = new Intl.Segmenter('en', { granularity: 'word' }).segment('abc def'); const a = []; for (;;) a.push(s[Symbol.iterator]())", /Segments \[Symbol\.iterator\]: called too often in this run \(limit 20000\)/],
      ["const l = new Intl.Locale('en'); const a = []; for (;;) a.push(l.maximize())", /Intl\.Locale\.prototype\.maximize: too many Intl objects/],
    ] as const) {
      const { outcome } = await runWatched(code, { timeoutMs: 10_000 });
      expect(failure(outcome)).toMatchObject({ kind: 'runtime', name: 'RangeError', message: expect.stringMatching(message) });
    }
  });

  it('ordinary Intl use still works through the wrapped constructors', async () => {
    const outcome = await sandbox().run(`
      const nf = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
      const dtf = Intl.DateTimeFormat('en-US', { timeZone: 'UTC', year: 'numeric' });
      class Mine extends Intl.NumberFormat {}
      const words = [...new Intl.Segmenter('en', { granularity: 'word' }).segment('hi there')].filter((s) => s.isWordLike).map((s) => s.segment);
      return [nf.format(1234.56), dtf.format(new Date(0)), nf instanceof Intl.NumberFormat, new Mine('en').format(1) , Object.getPrototypeOf(nf).constructor === Intl.NumberFormat,
        Intl.NumberFormat.name, typeof Intl.NumberFormat.supportedLocalesOf, Intl.getCanonicalLocales('EN-us')[0], (5).toLocaleString('en'), words,
        Intl.Segmenter.prototype.segment.name];`);
    expect(value(outcome)).toEqual(['1,234.6', '1970', true, '1', true, 'NumberFormat', 'function', 'en-US', '5', ['hi', 'there'], 'segment']);
  });
});
