import { describe, expect, it } from 'vitest';
import type { HostCallContext } from '../../src/sandbox/types.js';
import { failure, ON_PROCESS_POOL, sandbox, value } from './helpers.js';

describe('host functions (issue 2, point 3)', () => {
  it('appear as async functions, optionally nested in namespaces', async () => {
    const out = value(
      await sandbox().run(
        `const p = tools.github.search('q');
         return [typeof tools.github.search, p instanceof Promise, await p, await add(2, 3), tools.github.search.name];`,
        {
          hostFunctions: {
            add: ([a, b]) => (a as number) + (b as number),
            tools: { github: { search: async ([q]) => ({ q, hits: 2 }) } },
          },
        },
      ),
    );
    expect(out).toEqual(['function', true, { q: 'q', hits: 2 }, 5, 'search']);
  });

  it('calls made together run concurrently on the host', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const slow = async (): Promise<number> => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 100));
      inFlight--;
      return 1;
    };
    const started = performance.now();
    const out = value(await sandbox().run('const r = await Promise.all([slow(), slow(), slow(), slow()]); return r.length', { hostFunctions: { slow } }));
    expect(out).toBe(4);
    expect(maxInFlight).toBe(4);
    expect(performance.now() - started).toBeLessThan(350);
  });

  it('arguments and results cross as copies, never references', async () => {
    let received: unknown;
    const shared = { n: 1, list: [1] };
    const out = value(
      await sandbox().run(
        `const arg = { n: 1, inner: { k: 'v' } };
         await keep(arg);
         arg.inner.k = 'changed in guest';
         const got = await give();
         got.n = 99; got.list.push(2);
         return { again: await give(), got };`,
        {
          hostFunctions: {
            keep: ([a]) => {
              received = a;
            },
            give: () => shared,
          },
        },
      ),
    );
    expect(received).toEqual({ n: 1, inner: { k: 'v' } });
    expect(shared).toEqual({ n: 1, list: [1] });
    expect(out).toEqual({ again: { n: 1, list: [1] }, got: { n: 99, list: [1, 2] } });
  });

  it('rejects non-JSON arguments inside the guest, naming the argument', async () => {
    let called = false;
    const error = failure(
      await sandbox().run('await tools.x.y(1, { cb() {} })', {
        hostFunctions: {
          tools: {
            x: {
              y: () => {
                called = true;
              },
            },
          },
        },
      }),
    );
    expect(called).toBe(false);
    expect(error.kind).toBe('runtime');
    expect(error.message).toContain('tools.x.y arguments[1].cb is a function');
  });

  it('refuses host results that JSON would empty or drop without a word, naming what and where', async () => {
    const results: Record<string, unknown> = {
      map: { m: new Map([[1, 2]]) },
      set: { s: new Set([1]) },
      bytes: { u: new Uint8Array([7]) },
      fn: { cb: () => 1 },
      top: () => 1,
      promise: { p: Promise.resolve(1) },
      big: { n: 10n },
    };
    const hostFunctions = { give: ([name]: unknown[]) => results[name as string] };
    const out = value(
      await sandbox().run(
        `const out = {};
         for (const name of ${JSON.stringify(Object.keys(results))}) {
           try { out[name] = await give(name); } catch (e) { out[name] = e.message; }
         }
         return out;`,
        { hostFunctions },
      ),
    ) as Record<string, string>;
    expect(out.map).toMatch(/^give returned a value that cannot be copied into the sandbox: "m" is a Map/);
    expect(out.set).toMatch(/"s" is a Set/);
    expect(out.bytes).toMatch(/"u" is binary data/);
    expect(out.fn).toMatch(/"cb" is a function/);
    expect(out.top).toMatch(/the value is a function/);
    expect(out.promise).toMatch(/"p" is a Promise/);
    expect(out.big).toMatch(/"n" is a BigInt \(10n\)/);
    // What JSON carries faithfully is unchanged: dates as ISO strings, undefined members left out, class
    // instances as their fields, errors with their name and message.
    class Point {
      x = 1;
      y = 2;
    }
    const fine = value(
      await sandbox().run('return await give()', {
        hostFunctions: { give: () => ({ when: new Date(0), gone: undefined, p: new Point(), e: new RangeError('too far') }) },
      }),
    );
    expect(fine).toEqual({ when: '1970-01-01T00:00:00.000Z', p: { x: 1, y: 2 }, e: { name: 'RangeError', message: 'too far' } });
    // An error that refers to itself is a cycle (it overflowed the stack once), and deep plain data still
    // crosses as deep as JSON itself allows.
    const selfRef = Object.assign(new Error('me'), { self: undefined as unknown });
    selfRef.self = selfRef;
    let deep: unknown = 1;
    for (let i = 0; i < 3000; i++) deep = [deep];
    const edge = value(
      await sandbox().run(
        `let cyclic; try { await give('self'); } catch (e) { cyclic = e.message; }
         let v = await give('deep'); let depth = 0; while (Array.isArray(v)) { v = v[0]; depth++; }
         return { cyclic, depth };`,
        { hostFunctions: { give: ([what]) => (what === 'self' ? { e: selfRef } : deep) } },
      ),
    ) as { cyclic: string; depth: number };
    expect(edge.cyclic).toMatch(/circular/i);
    expect(edge.depth).toBe(3000);
  });

  it('copying stays correct when a getter calls a host function mid-copy (re-entrant copier)', async () => {
    const seen: unknown[] = [];
    const record = (args: unknown[]): void => {
      seen.push(args);
    };
    const error = failure(
      await sandbox().run(
        `const inner = { deep: [1, { z: true }] };
         const arg = { a: 1, get b() { second(inner, 'x'); return [2, 3]; }, c: { d: 'e' } };
         await first(arg);
         const bad = { list: [0, { get g() { second({ ok: 1 }); return () => 1; } }] };
         await first(bad);`,
        { hostFunctions: { first: record, second: record } },
      ),
    );
    expect(seen).toEqual([[{ deep: [1, { z: true }] }, 'x'], [{ a: 1, b: [2, 3], c: { d: 'e' } }], [{ ok: 1 }]]);
    expect(error.message).toContain('first arguments[0].list[1].g is a function');
  });

  it('arguments over maxResultBytes throw inside the guest without calling the host', async () => {
    let calls = 0;
    const sb = sandbox({ limits: { maxResultBytes: 100 } });
    const out = value(
      await sb.run('try { await f("x".repeat(200)); } catch (e) { return e.message } ', {
        hostFunctions: {
          f: () => {
            calls++;
          },
        },
      }),
    );
    expect(out).toBe('f: arguments are larger than the 100-byte limit (in UTF-8)');
    expect(calls).toBe(0);
  });

  it('host errors reach the guest as catchable Errors with message, name and data', async () => {
    const fail = (): never => {
      const err = new Error('upstream said no') as Error & { data?: unknown };
      err.name = 'ToolError';
      err.data = { tool: 'gh.search', status: 403 };
      throw err;
    };
    const out = value(
      await sandbox().run(
        `try { await fail(); } catch (e) {
           return { isError: e instanceof Error, isToolError: e instanceof ToolError, name: e.name, message: e.message,
                    tool: e.tool, status: e.status, ctor: e.constructor.name };
         }`,
        { hostFunctions: { fail }, errorClasses: ['ToolError'] },
      ),
    );
    expect(out).toEqual({ isError: true, isToolError: true, name: 'ToolError', message: 'upstream said no', tool: 'gh.search', status: 403, ctor: 'ToolError' });
  });

  it('without errorClasses the name still crosses on a plain Error', async () => {
    const out = value(
      await sandbox().run('try { await fail() } catch (e) { return [e instanceof Error, e.name, e.message] }', {
        hostFunctions: {
          fail: () => {
            throw new TypeError('typed');
          },
        },
      }),
    );
    expect(out).toEqual([true, 'TypeError', 'typed']);
  });

  it('an uncaught host error fails the run with the error name, message, data and the user line', async () => {
    const fail = async (): Promise<never> => {
      throw Object.assign(new Error('nope'), { name: 'ToolError', data: { tool: 't' } });
    };
    const error = failure(await sandbox().run('const a = 1;\nawait fail();', { hostFunctions: { fail }, errorClasses: ['ToolError'] }));
    expect(error).toMatchObject({ kind: 'runtime', name: 'ToolError', message: 'nope', data: { tool: 't' }, line: 2 });
  });

  it('a host error that arrives late (after the host turn) also maps to the user line', async () => {
    const slowFail = (): Promise<never> =>
      new Promise((_, reject) => setTimeout(() => reject(Object.assign(new Error('slow no'), { name: 'ToolError', data: { tool: 's' } })), 10));
    const error = failure(await sandbox().run('const a = 1;\n\nawait slowFail();', { hostFunctions: { slowFail }, errorClasses: ['ToolError'] }));
    expect(error).toMatchObject({ kind: 'runtime', name: 'ToolError', message: 'slow no', data: { tool: 's' }, line: 3 });
    const out = value(await sandbox().run('try { await slowFail() } catch (e) { return [e instanceof ToolError, e.tool] }', { hostFunctions: { slowFail }, errorClasses: ['ToolError'] }));
    expect(out).toEqual([true, 's']);
  });

  it('no host behaviour produces an unhandled rejection or crash', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const hostFunctions = {
        syncThrow: () => {
          throw new Error('sync');
        },
        immediateReject: () => Promise.reject(new Error('immediate')),
        throwString: () => {
          throw 'just a string';
        },
        throwNull: () => {
          throw null;
        },
        rejectUndefined: () => Promise.reject(undefined),
        badResult: () => ({ big: 1n }),
        cyclic: () => {
          const o: Record<string, unknown> = {};
          o.self = o;
          return o;
        },
        throwsWeirdError: () => {
          const e = new Error('weird');
          Object.defineProperty(e, 'data', { get: () => { throw new Error('getter'); }, enumerable: true });
          throw e;
        },
        rejectsHostileError: () =>
          new Promise((_, reject) =>
            setTimeout(() => {
              const e = new Error('x');
              Object.defineProperty(e, 'name', { get: () => { throw new Error('name getter'); } });
              reject(e);
            }, 5),
          ),
        throwsProxy: () => {
          throw new Proxy(new Error('p'), { get: () => { throw new Error('trap'); }, getOwnPropertyDescriptor: () => { throw new Error('trap'); } });
        },
        badThenable: () => ({ then: () => { throw new Error('then throws'); } }),
        // A function whose own properties throw: its name was read after the call, outside any try, and its
        // later rejection went unhandled.
        hostileFunction: new Proxy(
          async () => {
            await new Promise((resolve) => setTimeout(resolve, 20));
            throw new Error('late');
          },
          {
            get(target, key, receiver) {
              if (key === 'name') throw new Error('no name');
              return Reflect.get(target, key, receiver) as unknown;
            },
          },
        ),
      };
      const out = value(
        await sandbox().run(
          `const out = [];
           for (const name of ['syncThrow', 'immediateReject', 'throwString', 'throwNull', 'rejectUndefined', 'badResult', 'cyclic', 'throwsWeirdError', 'rejectsHostileError', 'throwsProxy', 'badThenable', 'hostileFunction']) {
             try { await globalThis[name](); out.push(name + ': no error'); } catch (e) { out.push(name + ': ' + (e instanceof Error) + ' ' + e.message); }
           }
           return out;`,
          { hostFunctions },
        ),
      );
      expect(out).toEqual([
        'syncThrow: true sync',
        'immediateReject: true immediate',
        'throwString: true just a string',
        'throwNull: true null',
        'rejectUndefined: true undefined',
        expect.stringMatching(/^badResult: true badResult returned a value that cannot be copied into the sandbox/),
        expect.stringMatching(/^cyclic: true cyclic returned a value that cannot be copied/),
        'throwsWeirdError: true weird',
        'rejectsHostileError: true host function failed with an error that could not be described',
        'throwsProxy: true host function failed with an error that could not be described',
        'badThenable: true then throws',
        'hostileFunction: true late',
      ]);
      // A rejection the guest leaves unhandled while its function still runs is the guest's runtime error, not
      // a host crash. On the process pool the rejection arrives over IPC, in a later task of the isolate,
      // where isolated-vm does not report unhandled rejections.
      if (!ON_PROCESS_POOL) {
        const unhandledInGuest = failure(
          await sandbox().run('immediateReject(); await new Promise((r) => setTimeout(r, 20)); return 1', { hostFunctions }),
        );
        expect(unhandledInGuest.kind).toBe('runtime');
        expect(unhandledInGuest.message).toMatch(/Unhandled promise rejection: immediate/);
      }
      // One left unhandled after the function returned never changes the outcome (issue 17, defect 6).
      expect(value(await sandbox().run('immediateReject(); return 1', { hostFunctions }))).toBe(1);
      // Fire-and-forget calls that reject after the run ended must not surface anywhere.
      const late = {
        lateReject: () => new Promise((_, reject) => setTimeout(() => reject(new Error('late')), 20)),
        lateThrowString: () => new Promise((_, reject) => setTimeout(() => reject('late string'), 20)),
      };
      value(await sandbox().run('lateReject(); lateThrowString(); return 1', { hostFunctions: late }));
      await new Promise((r) => setTimeout(r, 60));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('host calls receive a signal that aborts when the run ends, and stats count calls', async () => {
    let seen: AbortSignal | undefined;
    const hang = (_args: unknown[], ctx: HostCallContext): Promise<never> => {
      seen = ctx.signal;
      return new Promise(() => undefined);
    };
    const outcome = await sandbox().run('hang(); await quick(); return "done"', { hostFunctions: { hang, quick: () => 1 } });
    expect(value(outcome)).toBe('done');
    expect(outcome.stats.hostCalls).toBe(2);
    expect(outcome.stats.pendingHostCalls).toBe(1);
    expect(seen?.aborted).toBe(true);
  });

  it('no host call starts after the run has settled', async () => {
    let calls = 0;
    const outcome = await sandbox().run(
      // The guest keeps a reference and tries again from a late microtask chain.
      'const f = count; Promise.resolve().then(async () => { for (let i = 0; i < 100; i++) await null; await f().catch(() => {}); }); return 1',
      {
        hostFunctions: {
          count: () => {
            calls++;
          },
        },
      },
    );
    expect(value(outcome)).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toBe(0);
  });

  it('caps pending host calls; the call past the cap throws inside the guest', async () => {
    const sb = sandbox({ limits: { maxPendingHostCalls: 3 } });
    let started = 0;
    const out = value(
      await sb.run(
        `const ps = [wait(), wait(), wait()];
         let err;
         try { await wait(); } catch (e) { err = e.message; }
         await Promise.all(ps);
         await wait();
         return err;`,
        {
          hostFunctions: {
            wait: async () => {
              started++;
              await new Promise((r) => setTimeout(r, 10));
            },
          },
        },
      ),
    );
    expect(out).toMatch(/too many host calls pending at once \(limit 3\)/);
    expect(started).toBe(4);
  });

  it('rejects malformed hostFunctions and errorClasses as host bugs', async () => {
    const sb = sandbox();
    await expect(sb.run('1', { hostFunctions: { x: 5 as never } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(sb.run('1', { errorClasses: ['not an identifier'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(sb.run('1', { errorClasses: ['TypeError'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
