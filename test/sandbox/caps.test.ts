/**
 * Guest-chosen strings stay within the caps (issue 17, defect 3): byte caps count UTF-8 bytes, and every
 * string the guest controls that leaves the sandbox (error name, message, stack, log lines) is capped with a
 * marker. Real isolates, both vitest projects.
 */
import { describe, expect, it } from 'vitest';
import { failure, sandbox, value } from './helpers.js';

describe('byte caps count UTF-8 bytes', () => {
  it('host-call arguments over maxResultBytes in UTF-8 are refused inside the guest (3 MiB of "€" passed a 1 MiB cap)', async () => {
    let calls = 0;
    const hostFunctions = {
      f: (args: unknown[]) => {
        calls++;
        return String(args[0]).length;
      },
    };
    const sb = sandbox({ limits: { timeoutMs: 10_000, memoryMb: 128 } });
    // 1 Mi characters of "€" are 3 MiB of UTF-8, under the 1 MiB cap by length alone.
    const big = await sb.run(`try { await f('€'.repeat(1024 * 1024)); return 'passed'; } catch (e) { return e.message; }`, { hostFunctions });
    expect(value(big)).toBe('f: arguments are larger than the 1048576-byte limit (in UTF-8)');
    expect(calls).toBe(0);
    expect(big.stats.hostCalls).toBe(0);
    // At the edge: ["…"] is 4 bytes of JSON around the text; "€" is 3 bytes.
    const edge = sandbox({ limits: { maxResultBytes: 3_000 } });
    expect(value(await edge.run(`return await f('€'.repeat(998))`, { hostFunctions }))).toBe(998);
    expect(value(await edge.run(`try { await f('€'.repeat(999)); return 'passed' } catch (e) { return e.message }`, { hostFunctions }))).toMatch(
      /larger than the 3000-byte limit/,
    );
    // A surrogate pair is 4 bytes: 749 of them plus 4 is 3,000 bytes.
    expect(value(await edge.run(`return await f('😀'.repeat(749))`, { hostFunctions }))).toBe(1498);
    expect(value(await edge.run(`try { await f('😀'.repeat(750)); return 'passed' } catch (e) { return e.message }`, { hostFunctions }))).toMatch(
      /larger than the 3000-byte limit/,
    );
    expect(calls).toBe(2);
  });

  it('a console line over maxLogBytes in UTF-8 is cut to the bytes left, with the truncation marker', async () => {
    const outcome = await sandbox({ limits: { maxLogBytes: 1_000 } }).run(`console.log('€'.repeat(900)); return 1`);
    expect(value(outcome)).toBe(1);
    const [line, marker] = outcome.logs;
    // Before, the guest let 900 characters through and the host dropped the whole 2,700-byte line.
    expect(line).toEqual({ level: 'log', message: '€'.repeat(333) });
    expect(marker).toMatchObject({ level: 'warn', message: expect.stringMatching(/console output truncated/) });
    const total = outcome.logs.slice(0, -1).reduce((n, l) => n + Buffer.byteLength(l.message), 0);
    expect(total).toBeLessThanOrEqual(1_000);
  });

  it('a cut never splits a character: a line of 4-byte characters is cut on a character boundary', async () => {
    const outcome = await sandbox({ limits: { maxLogBytes: 1_001 } }).run(`console.log('😀'.repeat(400)); return 1`);
    expect(outcome.logs[0]).toEqual({ level: 'log', message: '😀'.repeat(250) });
  });
});

describe('guest-controlled error strings are capped with a marker', () => {
  it('a thrown error with a huge name comes back with a short, marked name', async () => {
    const error = failure(
      await sandbox({ limits: { memoryMb: 128 } }).run(`const e = new Error('m'); Object.defineProperty(e, 'name', { value: 'n'.repeat(4e6) }); throw e`),
    );
    expect(error.message).toBe('m');
    expect(error.name?.length).toBeLessThan(1_100);
    expect(error.name).toMatch(/^n+… \[truncated \d+ characters\]$/);
  });

  it('an unhandled rejection with a huge name and stack is capped too', async () => {
    const error = failure(
      await sandbox({ limits: { memoryMb: 128, timeoutMs: 10_000 } }).run(
        `const e = new Error('x');
         Object.defineProperty(e, 'name', { value: 'n'.repeat(4e6) });
         Object.defineProperty(e, 'stack', { value: 's'.repeat(4e6) });
         Promise.reject(e);
         await new Promise((r) => setTimeout(r, 1));
         return 1`,
      ),
    );
    expect(error.kind).toBe('runtime');
    expect(error.message).toMatch(/^Unhandled promise rejection/);
    expect(error.message.length).toBeLessThan(40_000);
    expect(error.name?.length ?? 0).toBeLessThan(1_100);
    expect(error.stack?.length ?? 0).toBeLessThan(40_000);
  });
});
