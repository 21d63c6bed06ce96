/**
 * Upstreams started before the server exists (`startUpstreams`, what `codemode serve` and `codemode run` do
 * so that the servers' processes boot while codemode loads): the processes are spawned at once, a server
 * built from them serves their tools and closes them, and a caller that stops early closes them too. Real
 * stdio processes throughout.
 */
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { afterEach, describe, expect, it } from 'vitest';
import { CodemodeError } from '../../src/errors.js';
import { parseServersConfig } from '../../src/server/config.js';
import { createCodemodeServerFromConfig } from '../../src/server/server.js';
import { startUpstreams } from '../../src/server/upstreams.js';

const INVENTORY = fileURLToPath(new URL('../../examples/inventory-server.mjs', import.meta.url));
const inventory = { command: process.execPath, args: [INVENTORY] };

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()?.()).catch(() => undefined);
});

/** Whether a process is alive, by pid (signal 0 only checks). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  return check();
}

describe('startUpstreams', () => {
  it('spawns every stdio process before the connections are ready, and a server built on them serves their tools and closes them', async () => {
    const config = parseServersConfig(JSON.stringify({ mcpServers: { a: inventory, b: inventory } }));
    const starting = startUpstreams(config.servers, { onStderr: () => undefined, connectTimeoutMs: 20_000 });
    let ready = false;
    void starting.ready.then(() => (ready = true));
    await starting.spawned;
    // Spawned, still booting: a Node server takes far longer to boot than this await took to settle.
    expect(ready).toBe(false);
    expect(starting.settled).toBe(false);

    const server = await createCodemodeServerFromConfig(config, { upstreams: starting, connectTimeoutMs: 20_000 });
    cleanups.push(() => server.close({ graceMs: 0 }));
    expect(starting.settled).toBe(true);
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 't', version: '1' });
    await client.connect(clientSide);
    const result = await client.callTool({ name: 'execute', arguments: { code: 'return (await tools.b.get_product({ sku: "KB-101" })).name ?? "none"' } });
    expect(JSON.stringify(result)).toContain('Mechanical keyboard');
    await client.close();

    const upstreams = await starting.ready;
    const pids = [...upstreams.connections.values()].map((c) => (c.client.transport as unknown as { pid?: number }).pid);
    expect(pids).toEqual([expect.any(Number), expect.any(Number)]);
    await server.close({ graceMs: 0 });
    expect(upstreams.status().every((s) => s.state === 'closed')).toBe(true);
    for (const pid of pids) if (pid !== undefined) expect(await until(() => !alive(pid), 5_000)).toBe(true);
  });

  it('abandon() closes the connections of a caller that stopped before building a server, even mid-start', async () => {
    const config = parseServersConfig(JSON.stringify({ mcpServers: { a: inventory } }));
    const starting = startUpstreams(config.servers, { onStderr: () => undefined, connectTimeoutMs: 20_000 });
    await starting.spawned;
    await starting.abandon(); // waits for the start to finish, then closes
    const upstreams = await starting.ready;
    expect(upstreams.status()).toEqual([expect.objectContaining({ name: 'a', state: 'closed' })]);
    await expect(starting.abandon()).resolves.toBeUndefined();
  });

  it('in strict mode a failed upstream rejects ready (no unhandled rejection before anyone awaits it), and spawned still settles', async () => {
    const config = parseServersConfig(JSON.stringify({ mcpServers: { good: inventory, bad: { command: process.execPath, args: ['-e', 'process.exit(3)'] } } }));
    const starting = startUpstreams(config.servers, { strict: true, onStderr: () => undefined, connectTimeoutMs: 20_000 });
    await starting.spawned;
    // Nobody awaits `ready` until well after it rejected; vitest fails the run on an unhandled rejection.
    await until(() => starting.settled, 20_000);
    expect(starting.settled).toBe(true);
    const error = await starting.ready.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CodemodeError);
    expect(error).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', message: expect.stringContaining('"bad"') });
    await expect(starting.abandon()).resolves.toBeUndefined();
  });

  it('with no servers, spawned and ready settle at once', async () => {
    const starting = startUpstreams({});
    await starting.spawned;
    expect((await starting.ready).status()).toEqual([]);
  });
});
