// No module of src/ imports itself through others at run time: with ES
// modules a cycle hands one side a module that has not finished evaluating.
// Type-only imports are erased by the compiler and do not count.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const src = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [join(dir, e.name)] : [],
  );
}

/** Relative modules a file loads at run time: static imports and re-exports that are not `type`-only, and import(). */
export function runtimeImports(file: string, text: string): string[] {
  const out: string[] = [];
  const statement = /^\s*(?:import|export)\s+(type\s+)?[^;'"]*?from\s+['"](\.[^'"]+)['"]|^\s*import\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/gm;
  for (const m of text.matchAll(statement)) {
    if (m[1]) continue;
    const spec = m[2] ?? m[3] ?? m[4]!;
    out.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
  }
  return out;
}

function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === 'done') return undefined;
    if (state.get(n) === 'open') return [...path.slice(path.indexOf(n)), n];
    state.set(n, 'open');
    path.push(n);
    for (const next of graph.get(n) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(n, 'done');
    return undefined;
  };
  for (const n of graph.keys()) {
    const cycle = visit(n);
    if (cycle) return cycle;
  }
  return undefined;
}

test('src/ has no import cycle', () => {
  const files = sources(src);
  assert.ok(files.length > 50, `found ${files.length} modules`);
  const graph = new Map(files.map((f) => [f, runtimeImports(f, readFileSync(f, 'utf8'))]));
  const cycle = findCycle(graph);
  assert.equal(cycle, undefined, `import cycle: ${cycle?.map((f) => f.slice(src.length + 1)).join(' → ')}`);
});

test('the cycle check sees static, dynamic and re-exported imports, and skips type-only ones', () => {
  const text = [
    "import { a } from './a.js';",
    "import type { B } from './b.js';",
    "export { c } from './c.js';",
    "export type { D } from './d.js';",
    "const { E } = await import('./e.js');",
    "import './f.js';",
    "import {\n  g,\n  type G,\n} from './g.js';",
  ].join('\n');
  const got = runtimeImports('/x/m.ts', text).map((f) => f.slice('/x/'.length));
  assert.deepEqual(got.sort(), ['a.ts', 'c.ts', 'e.ts', 'f.ts', 'g.ts']);
  assert.deepEqual(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]])), ['a', 'b', 'c', 'a']);
  assert.equal(findCycle(new Map([['a', ['b']], ['b', []], ['c', ['b']]])), undefined);
});
