// Loads custom signatures: .ts, .js and .mjs modules, named one by one or
// as directories (every module in it), TypeScript included (Node strips the
// types; no build step). A module default-exports a definition, or an array
// of them. `driftwatch/sdk` (and `rxjs`) resolve to this sensor's wherever
// the module lives.
import { readdirSync, statSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SEVERITIES, type AnySignature, type EventKindName, type SignatureDefinition, type StreamSignatureDefinition } from '../sdk/signature.js';

const EXTENSIONS = new Set(['.ts', '.mts', '.js', '.mjs']);
const EVENT_KINDS: readonly EventKindName[] = ['exec', 'mmap_exec'];

export interface LoadError {
  file: string;
  reason: string;
}

let hooked = false;
/** Makes `driftwatch/sdk` and `rxjs` resolve to the sensor's; once per thread (hooks are per thread). */
export function resolveSdkImports(): void {
  if (hooked) return;
  hooked = true;
  const sdk = new URL('../sdk/index.js', import.meta.url).href;
  const testing = new URL('../sdk/testing.js', import.meta.url).href;
  registerHooks({
    resolve(specifier, context, next) {
      if (specifier === 'driftwatch/sdk') return { url: sdk, shortCircuit: true };
      if (specifier === 'driftwatch/sdk/testing') return { url: testing, shortCircuit: true };
      // Stream signatures are RxJS operators: they get the sensor's RxJS wherever they live.
      if (specifier === 'rxjs' || specifier.startsWith('rxjs/')) return next(specifier, { ...context, parentURL: import.meta.url });
      return next(specifier, context);
    },
  });
}

/** Why a module's export is not a usable signature, or null. */
export function invalidSignature(def: unknown): string | null {
  if (!def || typeof def !== 'object') return 'the default export is not a signature definition';
  const d = def as Partial<SignatureDefinition & StreamSignatureDefinition>;
  if (typeof d.id !== 'string' || !/^[a-z0-9][a-z0-9_.-]*$/i.test(d.id)) return 'id must be a non-empty string of letters, digits, . _ -';
  if (typeof d.name !== 'string' || !d.name) return `${d.id}: name is missing`;
  if (!SEVERITIES.includes(d.severity as never)) return `${d.id}: invalid severity ${JSON.stringify(d.severity)} (one of ${SEVERITIES.join(', ')})`;
  if (!Array.isArray(d.events) || d.events.length === 0 || !d.events.every((e) => EVENT_KINDS.includes(e))) {
    return `${d.id}: events must list some of ${EVENT_KINDS.join(', ')}`;
  }
  const perEvent = typeof d.onEvent === 'function';
  const stream = typeof d.detect === 'function';
  if (perEvent === stream) return `${d.id}: ${perEvent ? 'onEvent and detect both given (a signature is one kind or the other)' : 'onEvent is missing (or detect, for a stream signature)'}`;
  return null;
}

const isModule = (f: string): boolean => EXTENSIONS.has(extname(f)) && !f.endsWith('.d.ts');
const isTest = (f: string): boolean => /\.(test|spec)\.[cm]?[jt]s$/.test(f);

/**
 * The module files that `paths` name: a file as itself, a directory as its
 * modules (tests and declarations left out), each file once, in order.
 */
export function moduleFiles(paths: string[], errors: LoadError[]): string[] {
  const files: string[] = [];
  for (const path of paths) {
    const p = resolve(path);
    try {
      if (statSync(p).isDirectory()) {
        files.push(
          ...readdirSync(p)
            .filter((f) => isModule(f) && !isTest(f))
            .map((f) => join(p, f))
            .filter((f) => statSync(f).isFile())
            .sort(),
        );
      } else if (isModule(p)) files.push(p);
      else errors.push({ file: p, reason: `not a signature module (expected ${[...EXTENSIONS].join(', ')})` });
    } catch (err) {
      errors.push({ file: p, reason: `cannot read: ${(err as Error).message}` });
    }
  }
  return [...new Set(files)];
}

/**
 * Loads the modules that `paths` name (files or directories) into this
 * thread, for tests and tools; the sensor loads them isolated
 * (isolated-signatures.ts). Bad modules are reported with the file and the
 * reason and left out; `taken` holds ids already in use (built-ins).
 */
export async function loadCustomSignatures(
  paths: string | string[],
  taken: Set<string>,
  /** Load the files again even if imported before (reload after an edit). */
  fresh = false,
): Promise<{ signatures: AnySignature[]; errors: LoadError[] }> {
  resolveSdkImports();
  const signatures: AnySignature[] = [];
  const errors: LoadError[] = [];
  const files = moduleFiles(typeof paths === 'string' ? [paths] : paths, errors);
  for (const file of files) {
    let mod: { default?: unknown };
    try {
      const url = pathToFileURL(file).href + (fresh ? `?reload=${Date.now()}` : '');
      mod = (await import(url)) as { default?: unknown };
    } catch (err) {
      errors.push({ file, reason: (err as Error).message.split('\n')[0] ?? String(err) });
      continue;
    }
    const defs = Array.isArray(mod.default) ? mod.default : [mod.default];
    for (const def of defs) {
      const why = invalidSignature(def);
      if (why) {
        errors.push({ file, reason: why });
        continue;
      }
      const sig = def as AnySignature;
      if (taken.has(sig.id)) {
        errors.push({ file, reason: `duplicate signature id ${sig.id}` });
        continue;
      }
      taken.add(sig.id);
      signatures.push(sig);
    }
  }
  return { signatures, errors };
}
