import { describe, expect, it } from 'vitest';
import type { HostCallContext } from '../../src/sandbox/types.js';
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
});
