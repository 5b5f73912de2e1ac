// Interpreters whose script operand is checked for drift: the configured
// list, expanded into exec_watch entries (the kernel's comm lookup), and the
// argv rules that find the script operand of each interpreter family.
import type { ExecWatchEntry } from '../native/loader.js';
import { WatchKind } from './records.js';

/**
 * Default list. `name:x` says that a short option cluster holding x runs
 * inline code (only where every short option is a flag, so the kernel can
 * judge it: the shells); `{a..b}` expands to the numbers a to b (comm is the
 * name the file was run by, and distributions ship python3.11, perl5.36.0,
 * ruby3.1, php8.2 beside the short names).
 */
export const DEFAULT_INTERPRETERS: readonly string[] = [
  'sh:c', 'bash:c', 'dash:c', 'ash:c', 'zsh:c', 'ksh:c', 'mksh:c', 'busybox:c',
  'python', 'python2', 'python2.{0..7}', 'python3', 'python3.{0..19}',
  'perl', 'perl5.{8..40}.{0..9}',
  'ruby', 'ruby{1..3}.{0..9}',
  'node', 'nodejs',
  'php', 'php{5..8}', 'php{5..8}.{0..9}',
];

const MAX_EXPANSION = 1000;

/** `a{1..3}b` → a1b a2b a3b (every range in the word, left to right). */
export function expandRanges(word: string): string[] {
  const m = /\{(\d+)\.\.(\d+)\}/.exec(word);
  if (!m) return [word];
  const [from, to] = [Number(m[1]), Number(m[2])];
  if (to < from || to - from > 200) throw new Error(`interpreters: bad range in ${JSON.stringify(word)}`);
  const out: string[] = [];
  for (let n = from; n <= to; n++) {
    out.push(...expandRanges(word.slice(0, m.index) + n + word.slice(m.index + m[0].length)));
    if (out.length > MAX_EXPANSION) throw new Error(`interpreters: ${JSON.stringify(word)} expands to more than ${MAX_EXPANSION} names`);
  }
  return out;
}

export interface InterpreterSpec {
  name: string;
  inlineOption?: string;
}

/** Parses `name[:x]` entries; names longer than comm's 15 bytes are cut (the kernel compares the cut name). */
export function parseInterpreters(list: readonly string[]): InterpreterSpec[] {
  const out: InterpreterSpec[] = [];
  for (const item of list) {
    const m = /^([^:/\s]+)(?::([A-Za-z]))?$/.exec(item);
    if (!m) throw new Error(`interpreters: expected name or name:<option letter> (got ${JSON.stringify(item)})`);
    for (const name of expandRanges(m[1]!)) out.push({ name, ...(m[2] ? { inlineOption: m[2] } : {}) });
  }
  return out;
}

/** Multi-call binaries: the applet (argv[0], or argv[1] when run by this name) is what runs. */
export const MULTICALL = new Set(['busybox', 'toybox']);

export function interpreterWatchEntries(list: readonly string[] = DEFAULT_INTERPRETERS): ExecWatchEntry[] {
  return parseInterpreters(list).map((s) => ({
    comm: s.name,
    kinds: WatchKind.INTERPRETER,
    ...(s.inlineOption ? { inlineOption: s.inlineOption } : {}),
    ...(MULTICALL.has(s.name) ? { multiCall: true } : {}),
  }));
}

export type Family = 'shell' | 'python' | 'perl' | 'ruby' | 'node' | 'php' | 'busybox';

const SHELLS = new Set(['sh', 'bash', 'dash', 'ash', 'zsh', 'ksh', 'mksh']);

/** The interpreter family of a comm or file name (python3.11 → python); undefined for names outside the rules. */
export function familyOf(name: string): Family | undefined {
  if (SHELLS.has(name)) return 'shell';
  if (name === 'busybox') return 'busybox';
  if (/^python[0-9.]*$/.test(name)) return 'python';
  if (/^perl[0-9.]*$/.test(name)) return 'perl';
  if (/^ruby[0-9.]*$/.test(name)) return 'ruby';
  if (name === 'node' || name === 'nodejs') return 'node';
  if (/^php[0-9.]*$/.test(name)) return 'php';
  return undefined;
}

/** Short options that take a value in the next argument (or attached), per family. */
const VALUE_OPTS: Record<Exclude<Family, 'busybox'>, { short: string; long: RegExp }> = {
  shell: { short: 'oO', long: /^--(rcfile|init-file)$/ },
  python: { short: 'WX', long: /^--check-hash-based-pycs$/ },
  perl: { short: '', long: /^$/ },
  ruby: { short: 'CEIrx', long: /^$/ },
  node: { short: 'r', long: /^--(require|import|loader|experimental-loader|conditions|input-type|inspect-port|title|env-file|max-old-space-size)$/ },
  php: { short: 'cdz', long: /^$/ },
};
/** Options after which the code is not a file operand: inline code, a module, stdin. */
const CODE_OPTS: Record<Exclude<Family, 'busybox'>, { short: string; long: RegExp; kind: Record<string, OperandKind> }> = {
  shell: { short: 'cs', long: /^$/, kind: { c: 'inline', s: 'stdin' } },
  python: { short: 'cm', long: /^$/, kind: { c: 'inline', m: 'module' } },
  perl: { short: 'eE', long: /^$/, kind: { e: 'inline', E: 'inline' } },
  ruby: { short: 'e', long: /^$/, kind: { e: 'inline' } },
  node: { short: 'ep', long: /^--(eval|print)$/, kind: { e: 'inline', p: 'inline', '--eval': 'inline', '--print': 'inline' } },
  php: { short: 'rR', long: /^$/, kind: { r: 'inline', R: 'inline' } },
};

export type OperandKind = 'file' | 'inline' | 'module' | 'stdin' | 'none';

export interface Operand {
  kind: OperandKind;
  /** The family whose rules applied (a busybox shell applet is a shell). */
  family?: Family;
  /** The script operand as given (relative to the process's cwd unless absolute). */
  path?: string;
  /** Inline code, when cheap to keep (recorded as data, never judged). */
  code?: string;
}

/**
 * The script operand of an interpreter's argv (argv[0] included), by its
 * family's option rules. Unknown options are taken as flags, so an operand
 * is never skipped for them.
 */
export function scriptOperand(family: Family, argv: readonly string[]): Operand {
  let args = argv.slice(1);
  if (family === 'busybox') {
    // The applet is argv[0]'s name; run as `busybox <applet> ...`, the next argument.
    let applet = (argv[0] ?? '').slice((argv[0] ?? '').lastIndexOf('/') + 1);
    if (MULTICALL.has(applet)) {
      applet = args[0] ?? '';
      args = args.slice(1);
    }
    if (!SHELLS.has(applet)) return { kind: 'none' };
    family = 'shell';
  }
  const f = family as Exclude<Family, 'busybox'>;
  const op = scan(f, args);
  return { ...op, family: f };
}

function scan(f: Exclude<Family, 'busybox'>, args: string[]): Operand {
  const value = VALUE_OPTS[f];
  const code = CODE_OPTS[f];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return args[i + 1] !== undefined ? { kind: 'file', path: args[i + 1]! } : { kind: 'stdin' };
    if (a === '-') return { kind: 'stdin' };
    if (a.startsWith('--')) {
      const name = a.split('=')[0]!;
      if (code.long.test(name)) return { kind: code.kind[name] ?? 'inline', ...(args[i + 1] !== undefined && !a.includes('=') ? { code: args[i + 1]! } : {}) };
      if (value.long.test(name) && !a.includes('=')) i++;
      continue;
    }
    if ((a.startsWith('-') || (f === 'shell' && a.startsWith('+'))) && a.length > 1) {
      const letters = a.slice(1);
      for (let j = 0; j < letters.length; j++) {
        const l = letters[j]!;
        if (code.short.includes(l)) {
          const attached = letters.slice(j + 1);
          // A shell's -c takes its code from the first operand, wherever the cluster puts c.
          if (f === 'shell') return { kind: code.kind[l]!, ...(l === 'c' && args.slice(i + 1).find((x) => !x.startsWith('-')) !== undefined ? { code: args.slice(i + 1).find((x) => !x.startsWith('-'))! } : {}) };
          const text = attached || args[i + 1];
          return { kind: code.kind[l]!, ...(code.kind[l] === 'inline' && text !== undefined ? { code: text } : {}) };
        }
        if (value.short.includes(l)) {
          if (j === letters.length - 1) i++; // the value is the next argument
          break; // the rest of the cluster is the value
        }
      }
      continue;
    }
    return { kind: 'file', path: a };
  }
  return { kind: 'none' };
}

