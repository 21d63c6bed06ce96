/**
 * Context footprint: the tokens a host puts in the model's context for a catalog of tools, listed
 * directly (a) against codemode's own `tools/list` (b), plus a scripted three-step workflow done by direct
 * tool calls against one `execute`.
 *
 *   npm run build && node --no-node-snapshot --experimental-strip-types bench/footprint.ts [--write-docs]
 *
 * - Catalogs: the real servers server-everything, server-filesystem and server-memory, each alone and all
 *   three together, and synthetic catalogs of 10, 100, 1,000 and 5,000 tools with realistic schemas
 *   (bench/fixtures/synthetic-catalog-server.mjs, generated deterministically).
 * - (a) is every upstream tool as a host hands it to the model: `{ name, description, inputSchema,
 *   outputSchema }` as compact JSON, listed by an SDK client straight from each server over stdio.
 * - (b) is the same serialization of what the built `codemode serve --stdio` lists: execute (with the
 *   declarations inlined when the catalog is small), search and get_schema.
 * - Tokens are counted with gpt-tokenizer's o200k_base encoding (GPT-4o / o-series / GPT-5).
 * - Goals (issue 16): (b) <= 1,500 tokens for every catalog, and (b) <= 10% of (a) from 100 tools up. The
 *   bench exits 1 when one is missed.
 *
 * `--write-docs` also writes docs/footprint.md (tables, method, machine) and docs/footprint.svg (the plot,
 * drawn here: log-scale tool count against log-scale tokens).
 */
import { cpus, tmpdir } from 'node:os';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CallToolResultSchema, ListToolsResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/codemode.js');
const SERVER_BIN = (name: string) => join(ROOT, `node_modules/@modelcontextprotocol/server-${name}/dist/index.js`);
const SYNTHETIC = join(ROOT, 'bench/fixtures/synthetic-catalog-server.mjs');
const INVENTORY = join(ROOT, 'examples/inventory-server.mjs');
const TOKENIZER = `gpt-tokenizer ${(JSON.parse(readFileSync(join(ROOT, 'node_modules/gpt-tokenizer/package.json'), 'utf8')) as { version: string }).version}, o200k_base encoding`;

const GOAL_MAX_TOKENS = 1_500;
const GOAL_MAX_RATIO = 0.1;
const GOAL_RATIO_FROM_TOOLS = 100;
const LIST_TIMEOUT_MS = 300_000;

interface ServerSpec {
  command: string;
  args: string[];
  env?: Record<string, string>;
}

interface Catalog {
  name: string;
  kind: 'real' | 'synthetic';
  /** Upstream servers by namespace, as in an mcpServers config. */
  servers: Record<string, ServerSpec>;
}

interface Listing {
  tools: Tool[];
  instructions: string;
}

interface Row {
  catalog: string;
  kind: Catalog['kind'];
  tools: number;
  direct: number;
  directInstructions: number;
  codemode: number;
  codemodeInstructions: number;
  /** Tokens of each part of codemode's listing. */
  parts: { name: string; description: number; inputSchema: number; declarations: number; declarationChars: number }[];
  inlined: boolean;
}

/** A tool as hosts put it in the model's context: annotations and titles are for the UI, not the model. */
function modelView(tool: Tool): Record<string, unknown> {
  return {
    name: tool.name,
    ...(tool.description !== undefined ? { description: tool.description } : {}),
    inputSchema: tool.inputSchema,
    ...(tool.outputSchema !== undefined ? { outputSchema: tool.outputSchema } : {}),
  };
}

const tokensOf = (tools: Tool[]) => countTokens(JSON.stringify(tools.map(modelView)));

async function connectStdio(spec: ServerSpec): Promise<{ client: Client; stderr: () => string }> {
  const transport = new StdioClientTransport({ command: spec.command, args: spec.args, env: { ...getDefaultEnvironment(), ...spec.env }, stderr: 'pipe' });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const client = new Client({ name: 'bench-footprint', version: '1.0.0' });
  await client.connect(transport, { timeout: LIST_TIMEOUT_MS });
  return { client, stderr: () => stderr };
}

/** tools/list, every page. The raw request skips the SDK's compiling of 5,000 output-schema validators. */
async function listAll(client: Client): Promise<Tool[]> {
  const tools: Tool[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.request({ method: 'tools/list', params: cursor !== undefined ? { cursor } : {} }, ListToolsResultSchema, { timeout: LIST_TIMEOUT_MS });
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return tools;
}

async function listDirect(spec: ServerSpec): Promise<Listing> {
  const { client } = await connectStdio(spec);
  try {
    return { tools: await listAll(client), instructions: client.getInstructions() ?? '' };
  } finally {
    await client.close();
  }
}

function textOf(result: CallToolResult): string {
  return result.content.map((c) => (c.type === 'text' ? c.text : JSON.stringify(c))).join('\n');
}

/** Starts the built `codemode serve --stdio` over the given servers; the caller closes the client. */
async function startCodemode(dir: string, servers: Record<string, ServerSpec>): Promise<{ client: Client; stderr: () => string }> {
  const config = join(dir, `mcp-${Object.keys(servers).join('-')}.json`);
  await writeFile(config, JSON.stringify({ mcpServers: servers }, null, 2));
  return connectStdio({ command: process.execPath, args: ['--no-node-snapshot', CLI, 'serve', '--stdio', '--config', config, '--log-level', 'warn'] });
}

async function listCodemode(dir: string, catalog: Catalog, upstream: Map<string, Listing>): Promise<Listing> {
  const { client, stderr } = await startCodemode(dir, catalog.servers);
  try {
    const tools = await listAll(client);
    // A server that failed to start would make (b) look small: check that every upstream's first tool is known.
    for (const ns of Object.keys(catalog.servers)) {
      const first = upstream.get(ns)!.tools[0]!.name;
      const res = await client.request({ method: 'tools/call', params: { name: 'get_schema', arguments: { tools: [`${ns}.${first}`] } } }, CallToolResultSchema, { timeout: LIST_TIMEOUT_MS });
      if (res.isError) throw new Error(`codemode does not know ${ns}.${first}: ${textOf(res)}\n${stderr()}`);
    }
    return { tools, instructions: client.getInstructions() ?? '' };
  } finally {
    await client.close();
  }
}

const DECLARATIONS_MARKER = 'The API, as TypeScript declarations:';

function codemodeParts(tools: Tool[]): Row['parts'] {
  return tools.map((t) => {
    const description = t.description ?? '';
    const at = description.indexOf(DECLARATIONS_MARKER);
    return {
      name: t.name,
      description: countTokens(description),
      inputSchema: countTokens(JSON.stringify(t.inputSchema)),
      declarations: at === -1 ? 0 : countTokens(description.slice(at)),
      declarationChars: at === -1 ? 0 : description.length - at,
    };
  });
}

// ---------------------------------------------------------------------------------------------------------
// The three-step workflow: which products are low on stock, and how many units do pending orders still need?

const WORKFLOW_CODE = `const { products } = await tools.inventory.list_products({});
const low = products.filter((p) => p.stock < 5);
const details = await Promise.all(low.map((p) => tools.inventory.get_product({ sku: p.sku })));
const { orders } = await tools.inventory.search_orders({ status: 'pending' });
return details.map((p) => ({
  sku: p.sku,
  name: p.name,
  stock: p.stock,
  pendingUnits: orders.flatMap((o) => o.items).filter((i) => i.sku === p.sku).reduce((n, i) => n + i.quantity, 0),
}));`;

interface Exchange {
  step: string;
  /** What the model writes: the tool call, as `{ name, arguments }` JSON. */
  call: string;
  /** What comes back into the context: the result's content text. */
  result: string;
}

interface Workflow {
  direct: Exchange[];
  codemode: Exchange[];
}

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

async function workflow(dir: string): Promise<Workflow> {
  const spec: ServerSpec = { command: process.execPath, args: [INVENTORY] };
  const direct: Exchange[] = [];
  let expected: unknown;
  {
    const { client } = await connectStdio(spec);
    try {
      const call = async (step: string, name: string, args: Record<string, unknown>) => {
        const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
        if (result.isError) throw new Error(`${name} failed: ${textOf(result)}`);
        direct.push({ step, call: JSON.stringify({ name, arguments: args }), result: textOf(result) });
        return result.structuredContent as Record<string, unknown>;
      };
      type Product = { sku: string; name: string; stock: number };
      const { products } = (await call('1. list_products', 'list_products', {})) as { products: Product[] };
      const details: Product[] = [];
      for (const p of products.filter((x) => x.stock < 5)) details.push((await call(`2. get_product ${p.sku}`, 'get_product', { sku: p.sku })) as Product);
      const { orders } = (await call('3. search_orders', 'search_orders', { status: 'pending' })) as { orders: { items: { sku: string; quantity: number }[] }[] };
      expected = details.map((p) => ({
        sku: p.sku,
        name: p.name,
        stock: p.stock,
        pendingUnits: orders.flatMap((o) => o.items).filter((i) => i.sku === p.sku).reduce((n, i) => n + i.quantity, 0),
      }));
    } finally {
      await client.close();
    }
  }
  const { client } = await startCodemode(dir, { inventory: spec });
  try {
    const result = await client.request({ method: 'tools/call', params: { name: 'execute', arguments: { code: WORKFLOW_CODE } } }, CallToolResultSchema, { timeout: LIST_TIMEOUT_MS });
    if (result.isError) throw new Error(`execute failed: ${textOf(result)}`);
    const got = (result.structuredContent as { result: unknown }).result;
    if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(`execute answered ${JSON.stringify(got)}, the direct calls ${JSON.stringify(expected)}`);
    return { direct, codemode: [{ step: 'execute', call: JSON.stringify({ name: 'execute', arguments: { code: WORKFLOW_CODE } }), result: textOf(result) }] };
  } finally {
    await client.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Output

const fmt = (n: number) => n.toLocaleString('en-US');
const pct = (r: number) => `${(r * 100).toFixed(r < 0.01 ? 2 : 1)}%`;

function goalsOf(rows: Row[]): { maxTokens: Row[]; ratio: Row[] } {
  return {
    maxTokens: rows.filter((r) => r.codemode > GOAL_MAX_TOKENS),
    ratio: rows.filter((r) => r.tools >= GOAL_RATIO_FROM_TOOLS && r.codemode > GOAL_MAX_RATIO * r.direct),
  };
}

function mainTable(rows: Row[]): string[] {
  return [
    '| catalog | tools | (a) direct tokens | (b) codemode tokens | (b) / (a) | declarations inlined |',
    '|---|---:|---:|---:|---:|---|',
    ...rows.map((r) => `| ${r.catalog} | ${fmt(r.tools)} | ${fmt(r.direct)} | ${fmt(r.codemode)} | ${pct(r.codemode / r.direct)} | ${r.inlined ? 'yes' : 'no'} |`),
  ];
}

function goalLines(rows: Row[]): string[] {
  const g = goalsOf(rows);
  const worst = Math.max(...rows.map((r) => r.codemode));
  const big = rows.filter((r) => r.tools >= GOAL_RATIO_FROM_TOOLS);
  const worstRatio = Math.max(...big.map((r) => r.codemode / r.direct));
  return [
    `- (b) <= ${fmt(GOAL_MAX_TOKENS)} tokens for every catalog: ${g.maxTokens.length === 0 ? 'MET' : 'MISSED'} (largest (b): ${fmt(worst)} tokens${g.maxTokens.length > 0 ? `; over: ${g.maxTokens.map((r) => `${r.catalog} ${fmt(r.codemode)}`).join(', ')}` : ''})`,
    `- (b) <= ${GOAL_MAX_RATIO * 100}% of (a) from ${GOAL_RATIO_FROM_TOOLS} tools up: ${g.ratio.length === 0 ? 'MET' : 'MISSED'} (largest ratio there: ${pct(worstRatio)}${g.ratio.length > 0 ? `; over: ${g.ratio.map((r) => r.catalog).join(', ')}` : ''})`,
  ];
}

function partsTable(rows: Row[]): string[] {
  const out = ['| catalog | execute description (of it: inlined declarations) | execute inputSchema | search description + inputSchema | get_schema description + inputSchema |', '|---|---:|---:|---:|---:|'];
  for (const r of rows) {
    const by = (n: string) => r.parts.find((p) => p.name === n);
    const e = by('execute');
    const s = by('search');
    const g = by('get_schema');
    out.push(
      `| ${r.catalog} | ${e ? `${fmt(e.description)} (${fmt(e.declarations)})` : '-'} | ${e ? fmt(e.inputSchema) : '-'} | ${s ? `${fmt(s.description)} + ${fmt(s.inputSchema)}` : '-'} | ${g ? `${fmt(g.description)} + ${fmt(g.inputSchema)}` : '-'} |`,
    );
  }
  return out;
}

function instructionsTable(rows: Row[]): string[] {
  return [
    '| catalog | (a) + upstream instructions | (b) + codemode instructions |',
    '|---|---:|---:|',
    ...rows.map((r) => `| ${r.catalog} | ${fmt(r.direct + r.directInstructions)} (${fmt(r.directInstructions)}) | ${fmt(r.codemode + r.codemodeInstructions)} (${fmt(r.codemodeInstructions)}) |`),
  ];
}

function workflowTable(w: Workflow): string[] {
  const sum = (xs: Exchange[], f: (e: Exchange) => number) => xs.reduce((n, e) => n + f(e), 0);
  const line = (label: string, xs: Exchange[]) => {
    const rb = sum(xs, (e) => bytes(e.result));
    const rt = sum(xs, (e) => countTokens(e.result));
    const cb = sum(xs, (e) => bytes(e.call));
    const ct = sum(xs, (e) => countTokens(e.call));
    return { label, calls: xs.length, rb, rt, cb, ct };
  };
  const d = line('direct tool calls, each result passed to the model', w.direct);
  const c = line('one `execute` returning only the answer', w.codemode);
  const row = (x: typeof d) => `| ${x.label} | ${x.calls} | ${fmt(x.rb)} B / ${fmt(x.rt)} | ${fmt(x.cb)} B / ${fmt(x.ct)} | ${fmt(x.rb + x.cb)} B / ${fmt(x.rt + x.ct)} |`;
  return [
    '| workflow: low-stock products and the units pending orders need | model round trips | tool results into context (bytes / tokens) | calls the model writes (bytes / tokens) | total (bytes / tokens) |',
    '|---|---:|---:|---:|---:|',
    row(d),
    row(c),
    `| ratio (execute / direct) | | ${pct(c.rb / d.rb)} / ${pct(c.rt / d.rt)} | ${pct(c.cb / d.cb)} / ${pct(c.ct / d.ct)} | ${pct((c.rb + c.cb) / (d.rb + d.cb))} / ${pct((c.rt + c.ct) / (d.rt + d.ct))} |`,
  ];
}

// ---------------------------------------------------------------------------------------------------------
// The plot: hand-drawn SVG, log x (tools) and log y (tokens).

function svgPlot(rows: Row[]): string {
  const W = 760;
  const H = 480;
  const m = { left: 78, right: 24, top: 40, bottom: 60 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const xs = rows.map((r) => r.tools);
  const ys = rows.flatMap((r) => [r.direct, r.codemode, GOAL_MAX_TOKENS]);
  const x0 = Math.floor(Math.log10(Math.min(...xs)));
  const x1 = Math.ceil(Math.log10(Math.max(...xs)));
  const y0 = Math.floor(Math.log10(Math.min(...ys)));
  const y1 = Math.ceil(Math.log10(Math.max(...ys)));
  const X = (v: number) => m.left + ((Math.log10(v) - x0) / (x1 - x0)) * pw;
  const Y = (v: number) => m.top + ph - ((Math.log10(v) - y0) / (y1 - y0)) * ph;
  const f = (n: number) => n.toFixed(1);
  const power = (e: number) => (e <= 3 ? fmt(10 ** e) : `10<tspan dy="-6" font-size="9">${e}</tspan>`);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Context tokens for a tool catalog: listed directly vs codemode</text>`,
  ];
  // Grid and ticks: decades, with faint 2x and 5x lines.
  for (let e = x0; e <= x1; e++) {
    for (const k of e < x1 ? [1, 2, 5] : [1]) {
      const x = X(k * 10 ** e);
      out.push(`<line x1="${f(x)}" y1="${m.top}" x2="${f(x)}" y2="${m.top + ph}" stroke="${k === 1 ? '#d0d0d0' : '#eeeeee'}"/>`);
      if (k === 1 || e < x1) out.push(`<text x="${f(x)}" y="${m.top + ph + 18}" text-anchor="middle" fill="${k === 1 ? '#000' : '#777'}">${fmt(k * 10 ** e)}</text>`);
    }
  }
  for (let e = y0; e <= y1; e++) {
    for (const k of e < y1 ? [1, 2, 5] : [1]) {
      const y = Y(k * 10 ** e);
      out.push(`<line x1="${m.left}" y1="${f(y)}" x2="${m.left + pw}" y2="${f(y)}" stroke="${k === 1 ? '#d0d0d0' : '#eeeeee'}"/>`);
      if (k === 1) out.push(`<text x="${m.left - 8}" y="${f(y + 4)}" text-anchor="end">${power(e)}</text>`);
    }
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 16}" text-anchor="middle" font-size="13">tools in the catalog (log scale)</text>`);
  out.push(`<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="13">tokens in context, o200k_base (log scale)</text>`);
  // Goal lines.
  const yg = Y(GOAL_MAX_TOKENS);
  out.push(`<line x1="${m.left}" y1="${f(yg)}" x2="${m.left + pw}" y2="${f(yg)}" stroke="#2ca02c" stroke-dasharray="6 4" stroke-width="1.5"/>`);
  out.push(`<text x="${m.left + pw - 6}" y="${f(yg - 6)}" text-anchor="end" fill="#2ca02c">goal: (b) &#8804; ${fmt(GOAL_MAX_TOKENS)} tokens</text>`);
  const synthetic = rows.filter((r) => r.kind === 'synthetic').sort((a, b) => a.tools - b.tools);
  const tenth = synthetic.filter((r) => r.tools >= GOAL_RATIO_FROM_TOOLS);
  if (tenth.length > 1) {
    out.push(`<polyline fill="none" stroke="#9467bd" stroke-dasharray="2 3" stroke-width="1.5" points="${tenth.map((r) => `${f(X(r.tools))},${f(Y(r.direct * GOAL_MAX_RATIO))}`).join(' ')}"/>`);
  }
  const A = '#d62728';
  const B = '#1f77b4';
  for (const [key, color] of [['direct', A], ['codemode', B]] as const) {
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${synthetic.map((r) => `${f(X(r.tools))},${f(Y(r[key]))}`).join(' ')}"/>`);
    for (const r of synthetic) out.push(`<circle cx="${f(X(r.tools))}" cy="${f(Y(r[key]))}" r="4" fill="${color}"><title>${r.catalog}: ${fmt(r[key])} tokens</title></circle>`);
    for (const r of rows.filter((x) => x.kind === 'real')) {
      const x = X(r.tools);
      const y = Y(r[key]);
      out.push(`<rect x="${f(x - 4)}" y="${f(y - 4)}" width="8" height="8" fill="#ffffff" stroke="${color}" stroke-width="1.5"><title>${r.catalog} (${r.tools} tools): ${fmt(r[key])} tokens</title></rect>`);
    }
  }
  // Name the bump: the catalogs whose declarations are inlined into execute.
  const inlined = rows.filter((r) => r.inlined);
  if (inlined.length > 0) {
    const left = Math.min(...inlined.map((r) => X(r.tools)));
    const top = Math.min(...inlined.map((r) => Y(r.codemode)));
    const lx = f(left - 10);
    out.push(`<text x="${lx}" y="${f(top - 30)}" text-anchor="end" font-size="11" fill="${B}"><tspan x="${lx}">declarations</tspan><tspan x="${lx}" dy="13">inlined in</tspan><tspan x="${lx}" dy="13">execute</tspan></text>`);
  }
  // Legend.
  const lx = m.left + 14;
  let ly = m.top + 16;
  const legend: [string, string][] = [
    [`<line x1="0" y1="0" x2="22" y2="0" stroke="${A}" stroke-width="2"/><circle cx="11" cy="0" r="4" fill="${A}"/>`, '(a) tools listed directly, synthetic catalogs'],
    [`<rect x="7" y="-4" width="8" height="8" fill="#ffffff" stroke="${A}" stroke-width="1.5"/>`, '(a) tools listed directly, real servers'],
    [`<line x1="0" y1="0" x2="22" y2="0" stroke="${B}" stroke-width="2"/><circle cx="11" cy="0" r="4" fill="${B}"/>`, '(b) codemode tools/list, synthetic catalogs'],
    [`<rect x="7" y="-4" width="8" height="8" fill="#ffffff" stroke="${B}" stroke-width="1.5"/>`, '(b) codemode tools/list, real servers'],
    [`<line x1="0" y1="0" x2="22" y2="0" stroke="#9467bd" stroke-dasharray="2 3" stroke-width="1.5"/>`, 'goal: (b) at most 10% of (a), from 100 tools'],
  ];
  out.push(`<rect x="${lx - 8}" y="${ly - 12}" width="330" height="${legend.length * 18 + 6}" fill="#ffffff" fill-opacity="0.9" stroke="#bbbbbb"/>`);
  for (const [mark, label] of legend) {
    out.push(`<g transform="translate(${lx} ${ly})">${mark}</g><text x="${lx + 30}" y="${ly + 4}">${label}</text>`);
    ly += 18;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function machine(): string {
  const cpu = cpus();
  return `${cpu.length} vCPU (${cpu[0]?.model.trim() ?? 'unknown'}), Linux, Node ${process.versions.node}`;
}

function markdown(rows: Row[], w: Workflow, date: string): string {
  const g = goalsOf(rows);
  const met = g.maxTokens.length === 0 && g.ratio.length === 0;
  const biggest = rows.filter((r) => r.kind === 'synthetic').reduce((a, b) => (b.tools > a.tools ? b : a));
  const perTool = (r: Row) => Math.round(r.direct / r.tools);
  const inlined = rows.filter((r) => r.inlined);
  return [
    '# Context footprint',
    '',
    'What a catalog of tools costs in the model\'s context before any work is done: every tool listed directly by the host, (a), against codemode\'s own `tools/list`, (b), which offers `execute`, `search` and `get_schema` over the same tools. Generated by `bench/footprint.ts --write-docs` (issue 16).',
    '',
    `- Measured ${date} on ${machine()}.`,
    `- Tokens: ${TOKENIZER} (the tokenizer of GPT-4o, the o-series and GPT-5). Other models' tokenizers differ by some percent; the ratios hardly move.`,
    '- (a): each upstream server started alone over stdio and listed by an SDK client; every tool serialized as `{ name, description, inputSchema, outputSchema }` compact JSON, the fields hosts send to the model (titles and annotations are UI and are left out). Hosts wrap this in their own function-calling format, which adds a few tokens per tool, so (a) is a lower bound.',
    '- (b): the built `codemode serve --stdio` over the same servers, its `tools/list` serialized the same way. When the declarations of the whole catalog are short, `execute`\'s description inlines them, so the model can call the tools at once; otherwise it names the namespaces and points to `search` and `get_schema`.',
    `- Synthetic catalogs come from \`bench/fixtures/synthetic-catalog-server.mjs\`: a deterministic SaaS-like API (20 services, CRUD-style verbs such as list/get/create/update/delete/search/export), with one-to-three-sentence descriptions, 2-8 typed and described parameters, enums, defaults, bounds, nested objects, and output schemas on \`get\` tools. They average ${fmt(perTool(biggest))} tokens per tool; the real servers here average ${rows.filter((r) => r.kind === 'real').map((r) => `${fmt(perTool(r))} (${r.catalog})`).join(', ')}.`,
    '',
    '## (a) against (b)',
    '',
    ...mainTable(rows),
    '',
    `Goals: ${met ? 'both met' : 'not all met'}.`,
    '',
    ...goalLines(rows),
    '',
    '![Tokens in context against catalog size, both series, log-log](footprint.svg)',
    '',
    `(a) grows with the catalog: ${fmt(biggest.direct)} tokens for ${fmt(biggest.tools)} tools, more than most models' context windows hold. (b) is nearly flat once the catalog is too large to inline: \`execute\` names the namespaces and their tool counts, and the model fetches the declarations it needs with \`search\` and \`get_schema\`, paying for those tools only.`,
    '',
    ...(inlined.length > 0
      ? [
          `Small catalogs are different: while the whole catalog's TypeScript declarations fit the inline limit, \`execute\`'s description carries them, which saves the model a discovery round trip but costs up to ${fmt(Math.max(...inlined.map((r) => r.codemode)))} tokens (${inlined.map((r) => `${r.catalog}: ${fmt(r.codemode)}`).join(', ')}), ${inlined.some((r) => r.codemode > r.direct) ? 'more than listing those tools directly, and ' : ''}${inlined.some((r) => r.codemode > GOAL_MAX_TOKENS) ? `over the ${fmt(GOAL_MAX_TOKENS)}-token goal` : `within the ${fmt(GOAL_MAX_TOKENS)}-token goal`}. The largest synthetic catalog that is still inlined is found by bisection, so the table shows the worst case.`,
          '',
          ...inlineHint(rows),
          '',
        ]
      : []),
    '### Where (b)\'s tokens go',
    '',
    'Tokens per part of codemode\'s listing (the inlined declarations are part of the execute description).',
    '',
    ...partsTable(rows),
    '',
    '### With server instructions',
    '',
    'Hosts also put the `instructions` from `initialize` in the context. Totals with them (the instructions alone in brackets):',
    '',
    ...instructionsTable(rows),
    '',
    '## A three-step workflow',
    '',
    'The question "which products are low on stock (under 5 units), and how many units do pending orders still need?" against the example inventory server (`examples/inventory-server.mjs`): `list_products`, then `get_product` for each low-stock product, then `search_orders` for pending orders, then a summary. Done directly, every call is a model round trip and every result goes into the context; done with codemode, the model writes one `execute` whose code makes the same calls and returns only the summary. Both answers are checked to be equal. The table counts the tool results the model reads and the calls it writes; the tool definitions are in the tables above.',
    '',
    ...workflowTable(w),
    '',
    'The inventory holds seven products, so these results are small; the direct path grows with every product and order listed, while execute\'s answer grows only with the answer.',
    '',
    'Rerun: `npm run build && node --no-node-snapshot --experimental-strip-types bench/footprint.ts --write-docs`.',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------

async function measure(dir: string, c: Catalog, upstream: Map<string, Listing>): Promise<Row> {
  for (const [ns, spec] of Object.entries(c.servers)) {
    if (!upstream.has(ns)) upstream.set(ns, await listDirect(spec));
  }
  const lists = Object.keys(c.servers).map((ns) => upstream.get(ns)!);
  const tools = lists.flatMap((l) => l.tools);
  const listing = await listCodemode(dir, c, upstream);
  const parts = codemodeParts(listing.tools);
  return {
    catalog: c.name,
    kind: c.kind,
    tools: tools.length,
    direct: tokensOf(tools),
    directInstructions: lists.reduce((n, l) => n + countTokens(l.instructions), 0),
    codemode: tokensOf(listing.tools),
    codemodeInstructions: countTokens(listing.instructions),
    parts,
    inlined: parts.some((p) => p.declarations > 0),
  };
}

const syntheticCatalog = (n: number): Catalog => ({
  name: `synthetic ${fmt(n)}`,
  kind: 'synthetic',
  servers: { [`synthetic${n}`]: { command: process.execPath, args: [SYNTHETIC, '--tools', String(n)] } },
});

/**
 * The largest synthetic catalog whose declarations codemode still inlines into `execute` (a bisection:
 * inlining depends only on the declarations' length, which grows with the prefix). That catalog is the
 * worst case of (b): the declarations are as long as the server allows, on top of the fixed text.
 */
async function largestInlined(dir: string, upstream: Map<string, Listing>, max = 64): Promise<Row | undefined> {
  let lo = 0; // largest size known to inline (0: none yet)
  let hi = max + 1; // smallest size known not to
  let best: Row | undefined;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    const row = await measure(dir, syntheticCatalog(mid), upstream);
    if (row.inlined) {
      lo = mid;
      best = row;
    } else {
      hi = mid;
    }
  }
  if (best) best.catalog = `synthetic ${best.tools} (largest inlined)`;
  return best;
}

/** When (b) misses the token goal: what the inlined declarations cost, and the inline limit that would fit. */
function inlineHint(rows: Row[]): string[] {
  const inlined = rows.filter((r) => r.inlined);
  const plain = rows.filter((r) => !r.inlined);
  if (inlined.length === 0 || plain.length === 0 || inlined.every((r) => r.codemode <= GOAL_MAX_TOKENS)) return [];
  const floor = Math.max(...plain.map((r) => r.codemode));
  const lines = [`(b) without inlined declarations is at most ${fmt(floor)} tokens here; the inlined declarations cost:`];
  let charsPerToken = Infinity;
  for (const r of inlined) {
    const e = r.parts.find((p) => p.declarations > 0)!;
    charsPerToken = Math.min(charsPerToken, e.declarationChars / e.declarations);
    lines.push(`- ${r.catalog}: ${fmt(e.declarations)} tokens for ${fmt(e.declarationChars)} characters (${(e.declarationChars / e.declarations).toFixed(2)} characters per token); (b) ${fmt(r.codemode)}`);
  }
  const budget = GOAL_MAX_TOKENS - floor;
  lines.push('', `To keep (b) <= ${fmt(GOAL_MAX_TOKENS)}, inlined declarations may cost ${fmt(budget)} tokens: at the densest ${charsPerToken.toFixed(2)} characters per token measured, an inline limit of about ${fmt(Math.floor((budget * charsPerToken) / 100) * 100)} characters.`);
  return lines;
}

async function main(): Promise<number> {
  const writeDocs = process.argv.includes('--write-docs');
  const dir = await mkdtemp(join(tmpdir(), 'codemode-bench-footprint-'));
  try {
    const fsRoot = join(dir, 'files');
    await mkdir(fsRoot);
    const real: Record<string, ServerSpec> = {
      everything: { command: process.execPath, args: [SERVER_BIN('everything')] },
      filesystem: { command: process.execPath, args: [SERVER_BIN('filesystem'), fsRoot] },
      memory: { command: process.execPath, args: [SERVER_BIN('memory')], env: { MEMORY_FILE_PATH: join(dir, 'memory.jsonl') } },
    };
    const catalogs: Catalog[] = [
      { name: 'example inventory server', kind: 'real', servers: { inventory: { command: process.execPath, args: [INVENTORY] } } },
      { name: 'server-everything', kind: 'real', servers: { everything: real.everything! } },
      { name: 'server-filesystem', kind: 'real', servers: { filesystem: real.filesystem! } },
      { name: 'server-memory', kind: 'real', servers: { memory: real.memory! } },
      { name: 'all three', kind: 'real', servers: real },
      ...[10, 100, 1_000, 5_000].map(syntheticCatalog),
    ];

    // Each upstream is listed directly once (the 5,000-tool one too) and cached for (a).
    const upstream = new Map<string, Listing>();
    const rows: Row[] = [];
    for (const c of catalogs) {
      rows.push(await measure(dir, c, upstream));
      process.stderr.write(`footprint: ${c.name} done\n`);
    }
    const worst = await largestInlined(dir, upstream);
    if (worst) rows.splice(rows.findIndex((r) => r.kind === 'synthetic'), 0, worst);
    process.stderr.write('footprint: largest inlined catalog done\n');
    const w = await workflow(dir);

    const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const lines = [
      `tokenizer: ${TOKENIZER}; machine: ${machine()}; ${date}`,
      '',
      ...mainTable(rows),
      '',
      ...goalLines(rows),
      '',
      'codemode tools/list, tokens per part:',
      '',
      ...partsTable(rows),
      '',
      ...inlineHint(rows),
      '',
      'with server instructions (instructions alone in brackets):',
      '',
      ...instructionsTable(rows),
      '',
      ...workflowTable(w),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    if (writeDocs) {
      await writeFile(join(ROOT, 'docs/footprint.svg'), svgPlot(rows));
      await writeFile(join(ROOT, 'docs/footprint.md'), markdown(rows, w, date));
      process.stdout.write('\nwrote docs/footprint.md and docs/footprint.svg\n');
    }
    const g = goalsOf(rows);
    return g.maxTokens.length === 0 && g.ratio.length === 0 ? 0 : 1;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
