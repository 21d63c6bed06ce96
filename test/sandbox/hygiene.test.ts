import ivm from 'isolated-vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveIsolateCount, setIsolateClassForTesting } from '../../src/sandbox/isolated-vm-sandbox.js';
import { sandbox } from './helpers.js';

// Count real dispose() calls per isolate, and calls on an isolate that is already disposed. isolated-vm's
// prototype is frozen, so the sandbox creates isolates through a swappable class.
const disposeCalls = new WeakMap<object, number>();
let doubleDisposals = 0;
let disposeOnDisposed = 0;
let totalDisposals = 0;

class CountingIsolate extends ivm.Isolate {
  override dispose(): void {
    const n = (disposeCalls.get(this) ?? 0) + 1;
    disposeCalls.set(this, n);
    totalDisposals++;
    if (n > 1) doubleDisposals++;
    if (this.isDisposed) disposeOnDisposed++;
    super.dispose();
  }
}

let restore: (() => void) | undefined;
beforeAll(() => {
  restore = setIsolateClassForTesting(CountingIsolate);
});
afterAll(() => {
  restore?.();
});

function rssMb(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

describe('hygiene (issue 2, point 10)', () => {
  it('1,000 sequential runs mixing success, timeout, memory and errors leave no isolates alive and RSS near baseline', async () => {
    // Short timeouts keep the loop fast; the other runs get room so a loaded machine can't turn them into timeouts.
    const quick = sandbox({ limits: { timeoutMs: 40, memoryMb: 16 } });
    const roomy = sandbox({ limits: { timeoutMs: 10_000, memoryMb: 16 } });
    const hostFunctions = { echo: ([x]: unknown[]) => x };
    const kinds: Record<string, number> = {};
    const run = async (i: number): Promise<void> => {
      let code: string;
      switch (i % 10) {
        case 0:
          code = i % 20 === 0 ? 'while (true) {}' : 'await echo(1); await new Promise(() => {})';
          break;
        case 1:
          code = 'const a = []; for (let i = 0; i < 64; i++) a.push(new Uint8Array(1 << 20)); return a.length';
          break;
        case 2:
          code = 'await echo(1); null.boom';
          break;
        case 3:
          code = 'let = ;';
          break;
        default:
          code = 'console.log("run", await echo(1)); return { i: await echo(2), list: [1, 2, 3] }';
      }
      const outcome = await (i % 10 === 0 ? quick : roomy).run(code, { hostFunctions });
      const kind = outcome.ok ? 'ok' : outcome.error.kind;
      kinds[kind] = (kinds[kind] ?? 0) + 1;
      // Each run disposes its isolate before it resolves.
      expect(liveIsolateCount()).toBe(0);
    };
    for (let i = 0; i < 50; i++) await run(i);
    const baseline = rssMb();
    for (let i = 50; i < 1000; i++) await run(i);
    const after = rssMb();
    expect(kinds).toEqual({ ok: 600, timeout: 100, memory: 100, runtime: 100, syntax: 100 });
    expect(liveIsolateCount()).toBe(0);
    expect(doubleDisposals).toBe(0);
    expect(disposeOnDisposed).toBe(0);
    expect(totalDisposals).toBeGreaterThanOrEqual(900);
    expect(after - baseline).toBeLessThan(64);
  }, 120_000);

  it('heap-limit disposals by isolated-vm itself are never followed by our dispose', async () => {
    const sb = sandbox({ limits: { memoryMb: 16, timeoutMs: 20_000 } });
    const before = totalDisposals;
    for (let i = 0; i < 3; i++) {
      const outcome = await sb.run(i % 2 ? 'const a = []; while (true) a.push({ n: a.length })' : 'await null; const a = []; while (true) a.push([a.length])');
      expect(outcome.ok ? 'ok' : outcome.error.kind).toBe('memory');
    }
    expect(liveIsolateCount()).toBe(0);
    expect(disposeOnDisposed).toBe(0);
    expect(doubleDisposals).toBe(0);
    // isolated-vm disposed these isolates; we must not have called dispose on them.
    expect(totalDisposals - before).toBe(0);
  }, 60_000);

  it('warm isolates are counted while idle and disposed by close()', async () => {
    const sb = sandbox({ warmIsolates: 2 });
    for (let i = 0; i < 100 && liveIsolateCount() < 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect(liveIsolateCount()).toBe(2);
    const outcome = await sb.run('return 5');
    expect(outcome.ok && outcome.value).toBe(5);
    for (let i = 0; i < 100 && liveIsolateCount() < 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect(liveIsolateCount()).toBe(2);
    await sb.close();
    await sb.close();
    expect(liveIsolateCount()).toBe(0);
  });
});
