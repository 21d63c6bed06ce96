import { beforeAll, describe, expect, it } from 'vitest';
import { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import type { HostCallContext } from '../../src/sandbox/types.js';
import { ON_PROCESS_POOL, failure, sandbox, value } from './helpers.js';

const LIMIT_MS = 300;
// Issue 2 bounds abort at 50 ms for the in-process sandbox. On the process pool the abort and its answer
// each cross a process boundary (IPC), so the same suite allows that hop some slack there.
const ABORT_MS = ON_PROCESS_POOL ? 100 : 50;

async function timed(promise: Promise<unknown>): Promise<number> {
  const started = performance.now();
  await promise;
  return performance.now() - started;
}

// The first run in a process compiles the bootstrap and warms up the host code; keep that out of the timings.
beforeAll(async () => {
  const warmup = new IsolatedVmSandbox({ warmIsolates: 0 });
  try {
    await warmup.run('return await f()', { hostFunctions: { f: () => 1 } });
  } finally {
    await warmup.close();
  }
});

describe('wall clock (issue 2, point 5)', () => {
  const hung = (_args: unknown[], _ctx: HostCallContext): Promise<never> => new Promise(() => undefined);
  it.each([
    ['a synchronous loop', 'while (true) {}'],
    ['a loop after an awaited host call', 'await ping(); for (;;) {}'],
    ['a never-resolving promise', 'await new Promise(() => {})'],
    ['a hung host call', 'await hung()'],
    ['a catastrophic regex', 'return /^(a+)+$/.test("a".repeat(40) + "b")'],
    ['a loop that catches everything', 'for (;;) { try { while (true) {} } catch {} }'],
  ])('stops %s with kind timeout within 100 ms of the limit', async (_label, code) => {
    const sb = sandbox({ limits: { timeoutMs: LIMIT_MS } });
    let outcome;
    const total = await timed((async () => (outcome = await sb.run(code, { hostFunctions: { ping: () => 1, hung } })))());
    // The wall clock runs from the moment the run leaves the queue (on the process pool it can wait there
    // for the worker that replaces one that had to stop the previous test's run).
    const ms = total - outcome!.stats.queuedMs;
    expect(failure(outcome!).kind).toBe('timeout');
    expect(failure(outcome!).message).toMatch(/300 ms time limit/);
    expect(ms).toBeGreaterThanOrEqual(LIMIT_MS - 5);
    expect(ms).toBeLessThan(LIMIT_MS + 100);
  });

  it('a hung host call gets an aborted signal at the timeout', async () => {
    let signal: AbortSignal | undefined;
    const outcome = await sandbox({ limits: { timeoutMs: 100 } }).run('await hang()', {
      hostFunctions: {
        hang: (_args, ctx) => {
          signal = ctx.signal;
          return new Promise(() => undefined);
        },
      },
    });
    expect(failure(outcome).kind).toBe('timeout');
    expect(outcome.stats.pendingHostCalls).toBe(1);
    expect(signal?.aborted).toBe(true);
  });
});

describe('memory (issue 2, point 6)', () => {
  const mem = { memoryMb: 32, timeoutMs: 20_000 };
  it.each([
    ['a heap bomb before any await', 'const a = []; while (true) a.push({ x: Math.random(), y: [1, 2, 3] })'],
    ['a heap bomb after an await', 'await ping(); const a = []; while (true) a.push({ x: Math.random(), y: [1, 2, 3] })'],
    ['typed arrays', 'const a = []; for (let i = 0; i < 100; i++) a.push(new Uint8Array(8 * 1024 * 1024)); return a.length'],
    ['typed arrays after an await', 'await ping(); const a = []; for (let i = 0; i < 100; i++) a.push(new Float64Array(1024 * 1024)); return a.length'],
    ['one huge ArrayBuffer', 'return new ArrayBuffer(512 * 1024 * 1024).byteLength'],
    ['string growth', 'const parts = []; for (let i = 0; ; i++) parts.push("x".repeat(4096) + i)'],
    // Resizable buffers were allocated outside the limit's accounting (400 MB passed a 100 MB limit); now
    // every buffer is fixed-length, so these are ordinary allocations.
    ['a resizable ArrayBuffer created past the limit', 'const b = new ArrayBuffer(400 * 2 ** 20, { maxByteLength: 2 ** 31 }); new Uint8Array(b).fill(1); return b.byteLength'],
    ['resizable buffers from a subclass', 'class B extends ArrayBuffer { constructor(n) { super(n, { maxByteLength: 2 ** 30 }); } } const a = []; for (let i = 0; i < 8; i++) a.push(new B(128 * 2 ** 20)); return a.length'],
  ])('%s gives kind memory', async (_label, code) => {
    const outcome = await sandbox({ limits: mem }).run(code, { hostFunctions: { ping: () => 1 } });
    const error = failure(outcome);
    expect(error.kind).toBe('memory');
    expect(error.message).toMatch(/memory limit/);
  });

  it('WebAssembly, SharedArrayBuffer and Atomics are unavailable', async () => {
    expect(value(await sandbox().run('return [typeof WebAssembly, typeof SharedArrayBuffer, typeof Atomics, "WebAssembly" in globalThis]'))).toEqual([
      'undefined',
      'undefined',
      'undefined',
      false,
    ]);
  });

  it('every ArrayBuffer is fixed-length, whichever way the guest reaches the constructor', async () => {
    const code = `
      const C = new Uint8Array(4).buffer.constructor;
      Object.prototype.construct = function (target) { globalThis.leaked = target; return {}; };
      Object.prototype.get = function (target) { globalThis.leaked = target; };
      const made = [
        new ArrayBuffer(8, { maxByteLength: 64 }),
        new C(8, { maxByteLength: 64 }),
        Reflect.construct(ArrayBuffer, [8, { maxByteLength: 64 }]),
        new (class extends ArrayBuffer {})(8, { maxByteLength: 64 }),
      ];
      void ArrayBuffer.isView;
      let resize = 'resized';
      try { made[0].resize(400 * 2 ** 20); } catch (e) { resize = e.name; }
      return {
        resize,
        resizable: made.map((b) => b.resizable),
        lengths: made.map((b) => b.byteLength),
        same: C === ArrayBuffer && made.every((b) => b instanceof ArrayBuffer),
        name: ArrayBuffer.name,
        leaked: typeof globalThis.leaked,
      };`;
    expect(value(await sandbox().run(code))).toEqual({ resize: 'TypeError', resizable: [false, false, false, false], lengths: [8, 8, 8, 8], same: true, name: 'ArrayBuffer', leaked: 'undefined' });
  });

  it('host RSS stays bounded across repeated memory blowups', async () => {
    const sb = sandbox({ limits: { memoryMb: 64, timeoutMs: 20_000 } });
    const before = process.memoryUsage().rss;
    let peak = before;
    // Sampled while the runs allocate (the guest runs on its own thread, so this timer keeps firing), not
    // only after each run has freed its memory.
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 2);
    try {
      for (let i = 0; i < 4; i++) {
        const code = i % 2 === 0 ? 'const a = []; while (true) a.push(new Uint8Array(1 << 20))' : 'const a = []; while (true) a.push([Math.random()])';
        expect(failure(await sb.run(code)).kind).toBe('memory');
        peak = Math.max(peak, process.memoryUsage().rss);
      }
    } finally {
      clearInterval(sampler);
    }
    // The limit is 64 MB (measured peak: +80 MB in-process); isolated-vm documents up to 2-3x overshoot for a
    // determined attacker. Without a limit these loops would grow for the whole 20 s wall clock. On the
    // process pool the memory is in the worker, which has its own RSS ceiling (test/sandbox-process/memory.test.ts).
    expect((peak - before) / 2 ** 20).toBeLessThan(64 * 3);
  });
});

describe('abort (issue 2, point 7)', () => {
  it('aborting gives kind aborted within 50 ms and aborts in-flight host calls', async () => {
    const sb = sandbox();
    const controller = new AbortController();
    let hostSignal: AbortSignal | undefined;
    let entered!: () => void;
    const inHost = new Promise<void>((r) => (entered = r));
    const running = sb.run('await hang()', {
      signal: controller.signal,
      hostFunctions: {
        hang: (_args, ctx) => {
          hostSignal = ctx.signal;
          entered();
          return new Promise(() => undefined);
        },
      },
    });
    await inHost;
    expect(hostSignal?.aborted).toBe(false);
    const started = performance.now();
    controller.abort();
    const outcome = await running;
    expect(performance.now() - started).toBeLessThan(ABORT_MS);
    expect(failure(outcome).kind).toBe('aborted');
    expect(hostSignal?.aborted).toBe(true);
  });

  it('aborting a CPU-bound run stops it within 50 ms', async () => {
    const controller = new AbortController();
    const running = sandbox().run('while (true) {}', { signal: controller.signal });
    await new Promise((r) => setTimeout(r, 50));
    const started = performance.now();
    controller.abort();
    expect(failure(await running).kind).toBe('aborted');
    expect(performance.now() - started).toBeLessThan(ABORT_MS);
  });

  it('an already-aborted signal never starts the run', async () => {
    let called = false;
    const outcome = await sandbox().run('await f()', {
      signal: AbortSignal.abort(),
      hostFunctions: {
        f: () => {
          called = true;
        },
      },
    });
    expect(failure(outcome).kind).toBe('aborted');
    expect(called).toBe(false);
  });

  it('a run waiting in the queue can be aborted, and frees nothing it never took', async () => {
    const sb = sandbox({ maxConcurrency: 1, limits: { timeoutMs: 2_000 } });
    const blocker = new AbortController();
    const first = sb.run('while (true) {}', { signal: blocker.signal });
    const queued = new AbortController();
    let ran = false;
    const second = sb.run('await mark(); return 2', {
      signal: queued.signal,
      hostFunctions: {
        mark: () => {
          ran = true;
        },
      },
    });
    await new Promise((r) => setTimeout(r, 30));
    const started = performance.now();
    queued.abort();
    const outcome = await second;
    expect(performance.now() - started).toBeLessThan(ABORT_MS);
    expect(failure(outcome).kind).toBe('aborted');
    blocker.abort();
    expect(failure(await first).kind).toBe('aborted');
    // The queue still works afterwards.
    expect(value(await sb.run('return 3'))).toBe(3);
    expect(ran).toBe(false);
  });
});
