/**
 * Tools named in any script (issue 16): identifiers keep Unicode letters, so a Chinese, Cyrillic or Arabic
 * server is usable; names that only look different after normalization still collide, and are refused.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/codemode/catalog.js';
import { CodeMode } from '../../src/codemode/codemode.js';
import { generateDeclarations } from '../../src/codemode/declarations.js';
import { isIdentifier, toIdentifier } from '../../src/codemode/naming.js';
import { localTools } from '../../src/codemode/sources.js';
import { isCodemodeError } from '../../src/errors.js';
import type { IsolatedVmSandbox } from '../../src/sandbox/isolated-vm-sandbox.js';
import { root, testSandbox } from './helpers.js';

const run = promisify(execFile);

const cn = () =>
  localTools('天气', [
    { name: '天气预报', description: '城市天气预报', input: { type: 'object', properties: { 城市: { type: 'string' } }, required: ['城市'] }, handler: (a) => ({ 城市: a['城市'], 温度: 21 }) },
    { name: '股票价格', description: '股票价格查询', handler: () => 42 },
  ]);
const ru = () =>
  localTools('курсы', [
    { name: 'курс-валют', handler: () => 'RUB' },
    { name: 'погода', handler: () => 'снег' },
  ]);
const ar = () =>
  localTools('أسعار', [
    { name: 'سعر_الصرف', handler: () => 3.75 },
    { name: 'الطقس', handler: () => 'مشمس' },
  ]);

describe('toIdentifier keeps Unicode letters', () => {
  it('keeps letters of every script and replaces only what cannot be part of an identifier', () => {
    expect(toIdentifier('天气预报')).toBe('天气预报');
    expect(toIdentifier('股票价格')).toBe('股票价格');
    expect(toIdentifier('курс-валют')).toBe('курс_валют');
    expect(toIdentifier('سعر الصرف')).toBe('سعر_الصرف');
    expect(toIdentifier('ünïcode tool')).toBe('ünïcode_tool');
    expect(toIdentifier('天气 report-v2')).toBe('天气_report_v2');
    // Not identifier parts: punctuation, emoji, the invisible joiners.
    expect(toIdentifier('☀️weather')).toBe('__weather');
    expect(toIdentifier('a\u200db')).toBe('a_b');
    // Cannot start an identifier: a digit or a combining mark gets a prefix.
    expect(toIdentifier('2fa')).toBe('_2fa');
    expect(toIdentifier('\u0301x')).toBe('_\u0301x');
    for (const name of ['天气预报', 'курс-валют', 'سعر الصرف', 'a\u200db', '\u0301x', '☀️', 'ｇｅｔ', '१२३']) {
      const id = toIdentifier(name);
      expect(isIdentifier(id), `${name} -> ${id}`).toBe(true);
      // V8 agrees that it is an identifier.
      expect(() => new Function(`const ${id} = 1; return ${id};`)).not.toThrow();
    }
  });

  it('maps look-alike spellings of one name to one identifier (NFKC): composed and decomposed, fullwidth', () => {
    expect(toIdentifier('caf\u00e9')).toBe(toIdentifier('cafe\u0301'));
    expect(toIdentifier('ｇｅｔ')).toBe('get');
  });
});

describe('a catalog of tools named in Chinese, Cyrillic and Arabic', () => {
  let sandbox: IsolatedVmSandbox;
  let mode: CodeMode;
  beforeAll(async () => {
    sandbox = testSandbox();
    mode = await CodeMode.create({ sources: [cn(), ru(), ar()], sandbox });
  });
  afterAll(async () => {
    await mode?.close();
    await sandbox?.close();
  });

  it('loads, and its tools are callable by identifier and by original name', async () => {
    const r = await mode.execute(`
      const a = await tools.天气.天气预报({ 城市: '北京' });
      const b = await tools.天气.股票价格();
      const c = await tools.курсы.курс_валют();
      const d = await callTool('курсы.курс-валют', {});
      const e = await tools.أسعار.سعر_الصرف();
      const f = await callTool('أسعار.الطقس', {});
      return { a, b, c, d, e, f };`);
    expect(r.ok, JSON.stringify(r)).toBe(true);
    if (!r.ok) return;
    expect(r.value).toEqual({ a: { 城市: '北京', 温度: 21 }, b: 42, c: 'RUB', d: 'RUB', e: 3.75, f: 'مشمس' });
  });

  it('search finds a tool by its name in its own script', () => {
    const hits = mode.search('股票价格');
    expect(hits[0]?.name).toBe('天气.股票价格');
  });

  it('declarations compile under tsc --strict and type the Unicode parameters', async () => {
    const catalog = await Catalog.load([cn(), ru(), ar()]);
    const decl = generateDeclarations(catalog.entries, {});
    expect(decl).toContain('天气预报');
    const usage = `
async function use() {
  const r = await tools.天气.天气预报({ 城市: '上海' });
  await tools.курсы.погода();
  await tools.أسعار.الطقس();
  // @ts-expect-error 城市 is required
  await tools.天气.天气预报({});
  return r;
}
void use;
export {};
`;
    const dir = await mkdtemp(join(tmpdir(), 'codemode-unicode-'));
    try {
      await writeFile(join(dir, 'api.d.ts'), decl);
      await writeFile(join(dir, 'use.ts'), usage);
      await writeFile(
        join(dir, 'tsconfig.json'),
        JSON.stringify({ compilerOptions: { strict: true, noEmit: true, target: 'ES2022', lib: ['ES2022'], types: [] }, files: ['api.d.ts', 'use.ts'] }),
      );
      const out = await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', dir], { timeout: 60_000 }).then(
        () => '',
        (err: { stdout?: string; message: string }) => err.stdout || err.message,
      );
      expect(out).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('collisions stay refused with a clear error', () => {
  it('refuses two tools that differ only in composition (é against e + combining acute)', async () => {
    const err = await Catalog.load([
      localTools('menu', [
        { name: 'caf\u00e9', handler: () => 1 },
        { name: 'cafe\u0301', handler: () => 2 },
      ]),
    ]).catch((e: unknown) => e);
    expect(isCodemodeError(err, 'TOOL_NAME_COLLISION')).toBe(true);
    expect((err as Error).message).toMatch(/both become the identifier tools\.menu\.café/);
  });

  it('refuses a fullwidth name next to its ASCII twin, and two names that differ only in punctuation', async () => {
    const wide = await Catalog.load([localTools('x', [{ name: 'get', handler: () => 1 }, { name: 'ｇｅｔ', handler: () => 2 }])]).catch((e: unknown) => e);
    expect(isCodemodeError(wide, 'TOOL_NAME_COLLISION')).toBe(true);
    const punct = await Catalog.load([localTools('x', [{ name: '天气-预报', handler: () => 1 }, { name: '天气.预报', handler: () => 2 }])]).catch((e: unknown) => e);
    expect(isCodemodeError(punct, 'TOOL_NAME_COLLISION')).toBe(true);
  });

  it('keeps confusables from different scripts apart (Latin "pay" and Cyrillic "раy" are two tools), each callable', async () => {
    const sandbox = testSandbox();
    const mode = await CodeMode.create({
      sources: [localTools('shop', [{ name: 'pay', handler: () => 'latin' }, { name: '\u0440\u0430y', handler: () => 'cyrillic' }])],
      sandbox,
    });
    try {
      const r = await mode.execute(`return [await callTool('shop.pay', {}), await callTool('shop.\u0440\u0430y', {})];`);
      expect(r.ok && r.value).toEqual(['latin', 'cyrillic']);
    } finally {
      await mode.close();
      await sandbox.close();
    }
  });
});
