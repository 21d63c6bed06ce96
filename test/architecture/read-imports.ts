/**
 * Reads what a module loads, and whether it touches stdout, with TypeScript's own parser: comments,
 * strings and template literals are tokens to it, not text that a regex has to guess its way around.
 *
 * @module
 */
import ts from 'typescript';

/** How a module names another one. */
export type RefKind = 'import' | 'export' | 'import-type' | 'dynamic' | 'require';

export interface ModuleRef {
  /** The specifier; for a computed one, its text with each `${...}` (or the whole argument) as `*`. */
  spec: string;
  kind: RefKind;
  /** True when the specifier is not a plain string: the reader can't know what it loads. */
  computed: boolean;
  line: number;
}

export interface ModuleFacts {
  refs: ModuleRef[];
  /** Lines that call `createRequire` (its `require` is then read like any other). */
  createRequire: number[];
  /** Lines that reach the process's stdout, with how. */
  stdout: { line: number; how: string }[];
}

const PROCESS_MODULES = new Set(['process', 'node:process']);
const MODULE_MODULES = new Set(['module', 'node:module']);

/** The specifier an argument names: literal text, or the static parts of a template with `*` for the rest. */
function specifierOf(arg: ts.Expression | undefined): { spec: string; computed: boolean } {
  if (arg === undefined) return { spec: '*', computed: true };
  if (ts.isStringLiteral(arg) || ts.isNoSubstitutionTemplateLiteral(arg)) return { spec: arg.text, computed: false };
  if (ts.isTemplateExpression(arg)) {
    return { spec: arg.head.text + arg.templateSpans.map((span) => `*${span.literal.text}`).join(''), computed: true };
  }
  return { spec: '*', computed: true };
}

function nameOf(node: ts.PropertyName | ts.ModuleExportName | ts.BindingName): string | undefined {
  return ts.isIdentifier(node) || ts.isStringLiteral(node) ? node.text : undefined;
}

export function readModule(source: string, fileName = 'module.ts'): ModuleFacts {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const facts: ModuleFacts = { refs: [], createRequire: [], stdout: [] };
  const lineOf = (node: ts.Node) => file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1;
  const add = (kind: RefKind, arg: ts.Expression | undefined, at: ts.Node) => facts.refs.push({ ...specifierOf(arg), kind, line: lineOf(at) });

  // Names bound in this file to node:process (besides the global `process`), to createRequire, and to
  // the functions createRequire returned. Imports are hoisted, so collect them before walking the rest.
  const processNames = new Set(['process']);
  const createRequireNames = new Set<string>();
  const requireNames = new Set(['require']);
  for (const stmt of file.statements) {
    if (!ts.isImportDeclaration(stmt) || !ts.isStringLiteral(stmt.moduleSpecifier) || !stmt.importClause) continue;
    const from = stmt.moduleSpecifier.text;
    const { name, namedBindings } = stmt.importClause;
    if (PROCESS_MODULES.has(from)) {
      if (name) processNames.add(name.text);
      if (namedBindings && ts.isNamespaceImport(namedBindings)) processNames.add(namedBindings.name.text);
    }
    if (MODULE_MODULES.has(from) && namedBindings && ts.isNamedImports(namedBindings)) {
      for (const el of namedBindings.elements) if (nameOf(el.propertyName ?? el.name) === 'createRequire') createRequireNames.add(el.name.text);
    }
    if (MODULE_MODULES.has(from) && (name || (namedBindings && ts.isNamespaceImport(namedBindings)))) {
      // `module.createRequire(...)` through a default or namespace import.
      createRequireNames.add(`${name?.text ?? (namedBindings as ts.NamespaceImport).name.text}.createRequire`);
    }
  }

  const isProcess = (e: ts.Expression): boolean =>
    (ts.isIdentifier(e) && processNames.has(e.text)) ||
    (ts.isPropertyAccessExpression(e) && e.name.text === 'process' && ts.isIdentifier(e.expression) && e.expression.text === 'globalThis');
  const isCreateRequire = (e: ts.Expression): boolean => createRequireNames.has(e.getText(file));

  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      add(node.importClause?.isTypeOnly ? 'import-type' : 'import', node.moduleSpecifier, node);
      const bindings = node.importClause?.namedBindings;
      if (ts.isStringLiteral(node.moduleSpecifier) && PROCESS_MODULES.has(node.moduleSpecifier.text) && bindings && ts.isNamedImports(bindings)) {
        for (const el of bindings.elements) if (nameOf(el.propertyName ?? el.name) === 'stdout') facts.stdout.push({ line: lineOf(el), how: `import { stdout } from '${node.moduleSpecifier.text}'` });
      }
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      add(node.isTypeOnly ? 'import-type' : 'export', node.moduleSpecifier, node);
      if (ts.isStringLiteral(node.moduleSpecifier) && PROCESS_MODULES.has(node.moduleSpecifier.text) && node.exportClause && ts.isNamedExports(node.exportClause)) {
        for (const el of node.exportClause.elements) if (nameOf(el.propertyName ?? el.name) === 'stdout') facts.stdout.push({ line: lineOf(el), how: `export { stdout } from '${node.moduleSpecifier.text}'` });
      }
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add('require', node.moduleReference.expression, node);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add('import-type', node.argument.literal as ts.Expression, node);
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword) add('dynamic', node.arguments[0], node);
      else if (isCreateRequire(callee)) {
        facts.createRequire.push(lineOf(node));
        // `const req = createRequire(url)`: req(...) and req.resolve(...) load modules from here on.
        if (ts.isVariableDeclaration(node.parent) && ts.isIdentifier(node.parent.name)) requireNames.add(node.parent.name.text);
      } else if (ts.isCallExpression(callee) && isCreateRequire(callee.expression)) add('require', node.arguments[0], node); // createRequire(url)('x')
      else if (ts.isIdentifier(callee) && requireNames.has(callee.text)) add('require', node.arguments[0], node);
      else if (ts.isPropertyAccessExpression(callee) && callee.name.text === 'resolve' && ts.isIdentifier(callee.expression) && requireNames.has(callee.expression.text)) {
        add('require', node.arguments[0], node);
      }
    } else if (ts.isPropertyAccessExpression(node) && node.name.text === 'stdout' && isProcess(node.expression)) {
      facts.stdout.push({ line: lineOf(node), how: node.getText(file) });
    } else if (ts.isElementAccessExpression(node) && isProcess(node.expression) && specifierOf(node.argumentExpression).spec === 'stdout') {
      facts.stdout.push({ line: lineOf(node), how: node.getText(file) });
    } else if (ts.isVariableDeclaration(node) && node.initializer && isProcess(node.initializer) && ts.isObjectBindingPattern(node.name)) {
      // const { stdout } = process
      for (const el of node.name.elements) if (nameOf(el.propertyName ?? el.name) === 'stdout') facts.stdout.push({ line: lineOf(el), how: `{ stdout } = ${node.initializer.getText(file)}` });
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return facts;
}
