/**
 * codemode-remote decodes stdin as one UTF-8 stream (issue 17, defect 11): a character split across two
 * pipe reads reaches the upstream whole. Needs the built bridge (`npm run build`).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { BridgeHost } from '../fixtures/bridge-host.js';
import { spawnBridge } from '../fixtures/bridge-host.js';
import type { UpstreamFixture } from '../fixtures/bridge-upstream.js';
import { startUpstream } from '../fixtures/bridge-upstream.js';

const hosts: BridgeHost[] = [];
const upstreams: UpstreamFixture[] = [];

afterEach(async () => {
  for (const h of hosts.splice(0)) h.kill();
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

describe('stdin decoding', () => {
  it('keeps a multi-byte character whole when a pipe read ends inside it', async () => {
    const up = await startUpstream();
    upstreams.push(up);
    const h = spawnBridge([up.url, '--auth', 'none'], { CODEMODE_CONFIG_DIR: '/nonexistent-codemode-test' });
    hosts.push(h);
    await h.initialize();
    const message = 'price: 5€, mood: 😀';
    const line = Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: 'utf8-split', method: 'tools/call', params: { name: 'echo', arguments: { message } } })}\n`, 'utf8');
    const euro = line.indexOf(Buffer.from('€', 'utf8'));
    const emoji = line.indexOf(Buffer.from('😀', 'utf8'));
    const answered = new Promise<(typeof h.stdout)[number]>((resolve, reject) => {
      const deadline = Date.now() + 10_000;
      const poll = setInterval(() => {
        const m = h.stdout.find((x) => x.id === 'utf8-split');
        if (m !== undefined || Date.now() > deadline) {
          clearInterval(poll);
          if (m !== undefined) resolve(m);
          else reject(new Error(`no answer; stderr:\n${h.stderr()}`));
        }
      }, 20);
    });
    // Three writes with pauses between them, so the bridge gets three separate reads, each cut mid-character.
    h.child.stdin.write(line.subarray(0, euro + 1));
    await new Promise((r) => setTimeout(r, 150));
    h.child.stdin.write(line.subarray(euro + 1, emoji + 2));
    await new Promise((r) => setTimeout(r, 150));
    h.child.stdin.write(line.subarray(emoji + 2));
    const m = await answered;
    const text = ((m.result?.content as Array<{ text?: string }> | undefined) ?? []).map((c) => c.text ?? '').join('');
    expect(text).toBe(`echo: ${message}`);
  });
});
