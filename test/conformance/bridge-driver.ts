/**
 * Conformance client driver for codemode-remote: `conformance client --command "node
 * test/conformance/bridge-driver.ts" --scenario <name>` appends the scenario's server URL. The
 * driver plays an MCP host: it spawns the built bridge, speaks JSON-RPC over its stdio (initialize,
 * tools/list, one tools/call), then closes stdin. It also plays the browser during OAuth: the bridge
 * runs `bridge-driver.ts --open <url>` through --open-command, which follows the authorization
 * server's redirect to the bridge's callback.
 *
 * Node builtins only, so Node runs it directly with type stripping.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);

if (args[0] === '--open') {
  // The "browser": the conformance authorization server auto-approves with a redirect to the callback.
  const res = await fetch(args[1]!, { redirect: 'follow', signal: AbortSignal.timeout(15_000) });
  await res.text();
  process.exit(res.ok ? 0 : 1);
}

const url = args.at(-1);
if (url === undefined) {
  process.stderr.write('usage: bridge-driver.ts <server-url>\n');
  process.exit(2);
}
const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? '{}') as {
  client_id?: string;
  client_secret?: string;
  private_key_pem?: string;
  signing_algorithm?: string;
  idp_client_id?: string;
  idp_id_token?: string;
  idp_token_endpoint?: string;
  /** Calls the scenario wants made, with these arguments (the SEP-2243 header scenarios). */
  toolCalls?: Array<{ name: string; arguments: Record<string, unknown> }>;
};
const bin = process.env.CODEMODE_REMOTE_BIN ?? resolve(here, '../../dist/cli/codemode-remote.js');
const configDir = mkdtempSync(join(tmpdir(), 'codemode-remote-conf-'));
const bridgeArgs = [
  bin,
  url,
  '--open-command',
  `"${process.execPath}" "${fileURLToPath(import.meta.url)}" --open`,
  '--auth-timeout',
  '20',
  '--connect-timeout',
  '20',
  '--client-metadata-url',
  'https://conformance-test.local/client-metadata.json',
];
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '';
if (scenario === 'auth/pre-registration' && context.client_id !== undefined) {
  bridgeArgs.push('--static-oauth-client-info', JSON.stringify({ client_id: context.client_id, client_secret: context.client_secret }));
}
if (scenario.startsWith('auth/client-credentials-') && context.client_id !== undefined) {
  // Machine to machine: the scenario's context carries the pre-registered client's secret or key.
  bridgeArgs.push('--oauth-grant', 'client_credentials', '--static-oauth-client-info', JSON.stringify(context));
}
if (scenario.startsWith('auth/cross-app-access') && context.idp_id_token !== undefined && context.idp_token_endpoint !== undefined) {
  // SEP-990: the IdP's ID token and token endpoint, plus the client registered at the MCP AS.
  bridgeArgs.push(
    '--oauth-grant',
    'cross_app_access',
    '--idp-token-url',
    context.idp_token_endpoint,
    '--id-token',
    context.idp_id_token,
    '--static-oauth-client-info',
    JSON.stringify({ client_id: context.client_id, client_secret: context.client_secret }),
  );
  if (context.idp_client_id !== undefined) bridgeArgs.push('--idp-client-id', context.idp_client_id);
}

const child = spawn(process.execPath, bridgeArgs, { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, CODEMODE_CONFIG_DIR: configDir } });
const waiters = new Map<number, (m: Record<string, unknown>) => void>();
let buffer = '';
child.stdout.setEncoding('utf8');
child.stdout.on('data', (chunk: string) => {
  buffer += chunk;
  let nl: number;
  while ((nl = buffer.indexOf('\n')) !== -1) {
    const line = buffer.slice(0, nl);
    buffer = buffer.slice(nl + 1);
    const message = JSON.parse(line) as Record<string, unknown>;
    if (process.env.BRIDGE_DRIVER_DEBUG === "1") process.stderr.write(`driver <- ${line.slice(0, 300)}\n`);
    const id = message.id as number | undefined;
    if (message.method !== undefined && id !== undefined) {
      // A server-to-client request (sampling, elicitation, roots): answer so nothing hangs.
      child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id, result: answerInput(String(message.method), message.params) })}\n`);
    } else if (id !== undefined) waiters.get(id)?.(message);
  }
});

/**
 * What this host answers an input request with (a server-to-client request on 2025, an entry of
 * `inputRequests` on 2026-07-28). Elicitation: accept with the schema's defaults, as a host's form would
 * be pre-filled.
 */
function answerInput(method: string, params: unknown): Record<string, unknown> {
  const schema = (params as { requestedSchema?: { properties?: Record<string, { default?: unknown }> } } | undefined)?.requestedSchema;
  const defaults = Object.fromEntries(Object.entries(schema?.properties ?? {}).flatMap(([k, p]) => (p.default === undefined ? [] : [[k, p.default]])));
  if (method === 'elicitation/create') return { action: 'accept', content: defaults };
  if (method === 'roots/list') return { roots: [] };
  if (method === 'sampling/createMessage') return { role: 'assistant', content: { type: 'text', text: 'ok' }, model: 'conformance-driver' };
  return {};
}

let nextId = 1;
function request(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> {
  const id = nextId++;
  return new Promise((resolve_, reject) => {
    const timer = setTimeout(() => reject(new Error(`${method}: no answer within 25 s`)), 25_000);
    waiters.set(id, (m) => {
      clearTimeout(timer);
      waiters.delete(id);
      if (m.error !== undefined) reject(new Error(`${method}: ${JSON.stringify(m.error)}`));
      else resolve_(m.result as Record<string, unknown>);
    });
    child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
  });
}

function sampleArgs(schema: { properties?: Record<string, { type?: string }> } | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, prop] of Object.entries(schema?.properties ?? {})) {
    out[name] = prop.type === 'number' || prop.type === 'integer' ? 2 : prop.type === 'boolean' ? true : 'x';
  }
  return out;
}

// A 2026-07-28 host (BRIDGE_DRIVER_ERA=2026, or a scenario only that revision has): no initialize; every
// request carries the envelope in _meta, and the bridge sends it on as a stateless request.
const modern = process.env.BRIDGE_DRIVER_ERA === '2026' || scenario === 'request-metadata';
const envelope = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 'codemode-remote-conformance-driver', version: '1.0.0' },
  'io.modelcontextprotocol/clientCapabilities': { sampling: {}, elicitation: {} },
};
const withEnvelope = (params: Record<string, unknown>): Record<string, unknown> => (modern ? { ...params, _meta: envelope } : params);

/**
 * tools/call as a 2026-07-28 host makes it: an `input_required` answer is answered (each input request as
 * above) and the call is made again under a new id with `inputResponses` and the server's `requestState`,
 * unchanged. A 2025 host never sees input_required: codemode-remote runs those rounds itself.
 */
async function callTool(params: Record<string, unknown>): Promise<Record<string, unknown>> {
  let result = await request('tools/call', withEnvelope(params));
  for (let round = 0; result.resultType === 'input_required'; round++) {
    if (round >= 8) throw new Error('tools/call: more than 8 input_required rounds');
    const asked = (result.inputRequests ?? {}) as Record<string, { method?: string; params?: unknown }>;
    const inputResponses = Object.fromEntries(Object.entries(asked).map(([key, r]) => [key, answerInput(String(r.method), r.params)]));
    result = await request('tools/call', withEnvelope({ ...params, inputResponses, ...(typeof result.requestState === 'string' ? { requestState: result.requestState } : {}) }));
  }
  return result;
}

let exitCode = 0;
try {
  if (modern) {
    // A host negotiates: a -32022 lists the versions the server supports, and the host retries with one.
    await request('server/discover', withEnvelope({})).catch(async (err: Error) => {
      const refusal = /"code":-32022.*"supported":\[("[^"]+")/.exec(err.message);
      if (refusal?.[1] === undefined) throw err;
      envelope['io.modelcontextprotocol/protocolVersion'] = JSON.parse(refusal[1]) as string;
      await request('server/discover', withEnvelope({}));
    });
  } else {
    await request('initialize', { protocolVersion: '2025-11-25', capabilities: { sampling: {}, elicitation: {} }, clientInfo: { name: 'codemode-remote-conformance-driver', version: '1.0.0' } });
    child.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
  }
  const listed = (await request('tools/list', withEnvelope({}))) as { tools?: Array<{ name: string; inputSchema?: { properties?: Record<string, { type?: string }> } }> };
  if (context.toolCalls !== undefined) {
    for (const call of context.toolCalls) await callTool({ name: call.name, arguments: call.arguments });
  } else if (scenario === 'sep-2322-client-request-state') {
    // The scenario's tools each test one rule of input_required rounds: every one is called, in order.
    for (const tool of listed.tools ?? []) await callTool({ name: tool.name, arguments: {} });
  } else if (scenario === 'json-schema-2020-12-preservation') {
    // The host round-trips the schema it received, so the scenario can see what the bridge preserved.
    const focal = listed.tools?.find((t) => t.name === 'json_schema_2020_12_tool');
    await callTool({ name: 'json_schema_echo', arguments: { schema: focal?.inputSchema ?? {} } });
  } else {
    const tool = listed.tools?.[0];
    if (tool !== undefined) await callTool({ name: tool.name, arguments: sampleArgs(tool.inputSchema) });
  }
} catch (err) {
  process.stderr.write(`bridge-driver: ${(err as Error).message}\n`);
  exitCode = 1;
} finally {
  child.stdin.end();
  const code = await new Promise<number | null>((r) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      r(null);
    }, 5_000);
    child.once('exit', (c) => {
      clearTimeout(timer);
      r(c);
    });
  });
  if (code === null) {
    process.stderr.write('bridge-driver: the bridge did not exit within 5 s of stdin EOF\n');
    exitCode = 1;
  }
  rmSync(configDir, { recursive: true, force: true });
}
process.exit(exitCode);
