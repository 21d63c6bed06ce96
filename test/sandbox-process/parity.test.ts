import { describe, expect, it } from 'vitest';
import type { HostCallContext } from '../../src/sandbox/types.js';
import { ProcessSandbox } from '../../src/sandbox/process/process-sandbox.js';
import { failure, startSandbox, value } from './helpers.js';

// The full sandbox and code mode suites also run on ProcessSandbox (vitest project "process"); these are
// the relay-specific cases found while making them pass.
describe('relayed host functions behave as in-process', () => {
  it('names like __proto__, constructor and toString are plain own keys in namespaces', async () => {
    const sb = await startSandbox();
    const tree = Object.create(null) as Record<string, unknown>;
    const ns = Object.create(null) as Record<string, unknown>;
    ns['__proto__'] = () => 'proto';
    ns.constructor = () => 'ctor';
    ns.toString = () => 'str';
    tree.ns = ns;
    const out = value(
      await sb.run('return [await ns.__proto__(), await ns.constructor(), await ns.toString(), Object.keys(ns).sort()]', {
        hostFunctions: tree as never,
      }),
    );
    expect(out).toEqual(['proto', 'ctor', 'str', ['__proto__', 'constructor', 'toString']]);
  });

  it('calls made just before the code returns reach their host function, then get their signal aborted', async () => {
    const sb = await startSandbox();
    const started: string[] = [];
    const aborted: string[] = [];
    const hang = ([name]: unknown[], ctx: HostCallContext): Promise<never> => {
      started.push(name as string);
      // Like a queue in front of a tool: the call starts a microtask later.
      return Promise.resolve().then(() => {
        ctx.signal.addEventListener('abort', () => aborted.push(name as string));
        return new Promise<never>(() => undefined);
      });
    };
    const outcome = await sb.run('hang("a"); hang("b"); return "early"', { hostFunctions: { hang } });
    expect(value(outcome)).toBe('early');
    expect(outcome.stats).toMatchObject({ hostCalls: 2, pendingHostCalls: 2 });
    expect(started).toEqual(['a', 'b']);
    await new Promise((r) => setTimeout(r, 20));
    expect(aborted).toEqual(['a', 'b']);
  });

  it('host-side errors of run() (bad errorClasses) reject with the in-process code', async () => {
    const sb = await startSandbox();
    await expect(sb.run('1', { errorClasses: ['TypeError'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/shadow a standard global/) });
    await expect(sb.run('1', { hostFunctions: { x: 5 as never } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(failure(await sb.run('throw new RangeError("r")'))).toMatchObject({ kind: 'runtime', name: 'RangeError', line: 1 });
  });

  it('hostile host errors (throwing getters, proxies) reach the guest as a described failure; the parent survives', async () => {
    const sb = await startSandbox();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const hostFunctions = {
        hostileName: () => {
          const e = new Error('x');
          Object.defineProperty(e, 'name', { get: () => { throw new Error('name getter'); } });
          throw e;
        },
        proxy: () => {
          throw new Proxy(new Error('p'), { get: () => { throw new Error('trap'); }, getOwnPropertyDescriptor: () => { throw new Error('trap'); } });
        },
      };
      const out = value(
        await sb.run('const out = []; for (const f of [hostileName, proxy]) { try { await f(); } catch (e) { out.push(e.message); } } return out', { hostFunctions }),
      );
      expect(out).toEqual(['host function failed with an error that could not be described', 'host function failed with an error that could not be described']);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('maxQueuedRuns bounds the runs waiting beyond maxConcurrency (OVERLOADED), as in-process', async () => {
    const sb = await startSandbox({ maxConcurrency: 1, maxQueuedRuns: 1, limits: { timeoutMs: 5_000 } });
    const blocker = new AbortController();
    const running = sb.run('while (true) {}', { signal: blocker.signal });
    const queued = sb.run('return "queued"');
    await expect(sb.run('return "overflow"')).rejects.toMatchObject({ code: 'OVERLOADED' });
    blocker.abort();
    expect(failure(await running).kind).toBe('aborted');
    expect(value(await queued)).toBe('queued');
    expect(value(await sb.run('return "room again"'))).toBe('room again');
    expect(() => new ProcessSandbox({ pool: sb.pool, maxQueuedRuns: -1 })).toThrow(/maxQueuedRuns/);
  });
});
