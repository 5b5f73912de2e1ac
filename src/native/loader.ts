// Typed facade over the ebpf-napi-loader addon (native/). The addon is a
// thin class; everything it returns is plain data.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WATCH_COMM_MAX, WATCH_INLINE_OPT_SHIFT, WATCH_MULTICALL, WatchKind } from '../pipeline/records.js';

export interface LoaderOptions {
  emitAll?: boolean;
  ringBufferBytes?: number;
  ignoreTgid?: number;
  benchGenerator?: boolean;
  /** Host namespaces: enables volume and script checks in the kernel. */
  hostMntNs?: number;
  hostPidNs?: number;
  /** Which bprm_check program sees #! scripts; see loadWithScriptHook. Default none. */
  scriptHook?: ScriptHook;
  /** Which program sees executable mappings; see loadWithScriptHook. Default none. */
  mmapHook?: MmapHook;
  /** Read overlay by layout facts even where its BTF exists (tests and A/B benchmarks). */
  ovlForceFacts?: boolean;
  /**
   * exec_watch's first stage (execWatchPrefilter), fixed for the object's
   * life. Without it every name passes to the map's filter.
   */
  watchPrefilter?: Buffer;
}

export type ScriptHook = 'lsm' | 'fentry' | 'none';
/**
 * lsm and fentry see mmap calls only. The sys_enter_mmap tracepoint makes
 * every syscall of every task on the node take the slow path, so it is only
 * loaded when asked for (mmapTracepoint) and neither LSM nor fentry loads.
 */
export type MmapHook = 'lsm' | 'fentry' | 'tracepoint' | 'none';

export interface ProgramStats {
  name: string;
  id: number;
  runTimeNs: number;
  runCount: number;
  recursionMisses: number;
}

export interface NativeLoader {
  load(): void;
  attach(): string[];
  /** Names of the programs that can be attached. */
  programs(): string[];
  /** Attaches one program; returns its section name (e.g. raw_tp/sched_process_exec). */
  attachProgram(name: string): string;
  /** Drains the ring buffer into buf; returns bytes written ([u32 len][u32 0][record][pad 8] frames). */
  consume(buf: Buffer): number;
  /**
   * Calls onReadable (once per arm()) when the ring buffer holds records; a
   * thread waits on it, so an idle sensor does not poll. Optional: loaders
   * without it (replays, tests) are polled.
   */
  watch?(onReadable: () => void): void;
  arm?(): void;
  unwatch?(): void;
  stats(): Record<string, number>;
  /** How overlay files are told apart here: 'vmlinux BTF', 'module BTF' or 'layout facts (...)'. */
  overlayPath(): string;
  programStats(): ProgramStats[];
  /** Benchmark generator: count records, synthetic or (templates > 0) copies of bench_tmpl entries. */
  benchGenerate?(count: number, templates?: number): { written: number; dropped: number };
  /** Map entries as bytes in the map's own layout (src/prevent/maps.ts); sizes are checked. */
  mapUpdate?(map: string, key: Buffer, value: Buffer): void;
  /** false when the key was not there. */
  mapDelete?(map: string, key: Buffer): boolean;
  /** Deletes every entry; returns how many. */
  mapClear?(map: string): number;
  close(): void;
}

/** One exec_watch entry: a comm (the exec'd file's basename) and its DW_WATCH_* value. */
export interface ExecWatchEntry {
  comm: string;
  /** WatchKind bits (records.ts). */
  kinds: number;
  /** Interpreters: the short option letter whose cluster makes the first operand inline code (sh -c). */
  inlineOption?: string;
  /** A multi-call binary (busybox): its applet, not its name, says what runs. */
  multiCall?: boolean;
}

/** The map key: comm as the kernel sets it, cut to 15 bytes and NUL-padded. */
export function execWatchKey(comm: string): Buffer {
  const key = Buffer.alloc(16);
  const bytes = Buffer.from(comm, 'utf8');
  if (!bytes.length || bytes.includes(0) || bytes.includes(0x2f)) throw new Error(`exec watch: not a file name: ${JSON.stringify(comm)}`);
  bytes.copy(key, 0, 0, Math.min(bytes.length, WATCH_COMM_MAX));
  return key;
}

export function execWatchValue(kinds: number, inlineOption?: string, multiCall = false): Buffer {
  const v = Buffer.alloc(4);
  let n = (kinds & (WatchKind.INTERPRETER | WatchKind.PACKAGE_MANAGER)) | (multiCall ? WATCH_MULTICALL : 0);
  if (inlineOption) {
    if (!/^[A-Za-z]$/.test(inlineOption)) throw new Error(`exec watch: inline option must be one letter: ${JSON.stringify(inlineOption)}`);
    n |= inlineOption.charCodeAt(0) << WATCH_INLINE_OPT_SHIFT;
  }
  v.writeUInt32LE(n >>> 0);
  return v;
}

const M64 = (1n << 64n) - 1n;
export const WATCH_FILTER_WORDS = 64;

/** The exec_watch_filter bit of a key (the hash in bpf/tracee/watch.bpf.h, watch_maybe). */
export function watchFilterBit(key: Buffer): number {
  const w0 = key.readBigUInt64LE(0);
  const w1 = key.readBigUInt64LE(8);
  const h = (((w0 ^ ((w1 * 0xc2b2ae3d27d4eb4fn) & M64)) * 0x9e3779b97f4a7c15n) & M64) >> 52n;
  return Number(h);
}

/** The filter's value: one bit per key, WATCH_FILTER_WORDS little-endian u64 words. */
export function execWatchFilter(keys: Buffer[]): Buffer {
  const b = Buffer.alloc(WATCH_FILTER_WORDS * 8);
  for (const k of keys) {
    const bit = watchFilterBit(k);
    b[bit >> 3] = b[bit >> 3]! | (1 << (bit & 7));
  }
  return b;
}

export const WATCH_PRE_WORDS = 4;
const BYTES_7F = 0x7f7f7f7f7f7f7f7fn;
const BYTES_80 = 0x8080808080808080n;

/**
 * The two first-stage bits of a key (watch_pre in bpf/tracee/watch.bpf.h):
 * its first 8 bytes with the bytes '.' to '9' cleared, hashed.
 */
export function watchPrefilterBits(key: Buffer): [number, number] {
  const w0 = key.readBigUInt64LE(0);
  const low = w0 & BYTES_7F;
  const inRange = ((low + 0x5252525252525252n) & M64) & ~((low + 0x4646464646464646n) & M64) & ~w0 & BYTES_80;
  const f = w0 & ~((inRange >> 7n) * 0xffn) & M64;
  const h = (f * 0x9e3779b97f4a7c15n) & M64;
  return [Number(h >> 56n), Number((h >> 48n) & 0xffn)];
}

/** The first stage for these keys: WATCH_PRE_WORDS little-endian u64 words, the loader's watchPrefilter. */
export function execWatchPrefilter(keys: Buffer[]): Buffer {
  const b = Buffer.alloc(WATCH_PRE_WORDS * 8);
  for (const k of keys) for (const bit of watchPrefilterBits(k)) b[bit >> 3] = b[bit >> 3]! | (1 << (bit & 7));
  return b;
}

/** The prefilter an object must be loaded with for these entries (their keys after the 15-byte cut). */
export function execWatchPrefilterFor(entries: ExecWatchEntry[]): Buffer {
  return execWatchPrefilter(entries.map((e) => execWatchKey(e.comm)));
}

/**
 * Fills exec_watch (the image execs the kernel still sends) with the union
 * of the configured interpreters and package managers: entries with the same
 * key (also after the 15-byte cut) merge their kinds; an inline option is
 * kept where one says it. Starts over each call. Returns the keys written.
 * loadedWith is the watchPrefilter the object was loaded with: a name it does
 * not pass could never be seen, so that is an error (the list is fixed at load).
 */
export function setExecWatch(loader: Pick<NativeLoader, 'mapUpdate' | 'mapClear'>, entries: ExecWatchEntry[], loadedWith?: Buffer): number {
  if (!loader.mapUpdate || !loader.mapClear) throw new Error('exec watch: this loader cannot write maps');
  if (loadedWith) {
    for (const e of entries) {
      const passes = watchPrefilterBits(execWatchKey(e.comm)).every((bit) => (loadedWith[bit >> 3]! & (1 << (bit & 7))) !== 0);
      if (!passes) throw new Error(`exec watch: ${JSON.stringify(e.comm)} is not in the list the kernel object was loaded with (the interpreter and package-manager lists take effect at start)`);
    }
  }
  const merged = new Map<string, { key: Buffer; kinds: number; inlineOption?: string; multiCall?: boolean }>();
  for (const e of entries) {
    const key = execWatchKey(e.comm);
    const id = key.toString('hex');
    const m = merged.get(id) ?? { key, kinds: 0 };
    m.kinds |= e.kinds;
    m.inlineOption ??= e.inlineOption;
    m.multiCall ||= e.multiCall ?? false;
    merged.set(id, m);
  }
  // Filter bits are only ever added while the map changes: a key is never in the map without its bit.
  const keys = [...merged.values()].map((m) => m.key);
  loader.mapUpdate('exec_watch_filter', Buffer.alloc(4), execWatchFilter(keys));
  loader.mapClear('exec_watch');
  for (const m of merged.values()) loader.mapUpdate('exec_watch', m.key, execWatchValue(m.kinds, m.inlineOption, m.multiCall));
  return merged.size;
}

/** An error from the addon: code is the errno name (EPERM, ENOENT, ...). */
export interface LoaderError extends Error {
  code?: string;
  errno?: number;
  libbpfLog?: string;
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const addonPath = join(repoRoot, 'native', 'build', 'Release', 'ebpf_napi_loader.node');

/** Flags and resolve bits for openat2, as the addon was compiled with them. */
export interface Openat2Constants {
  AT_FDCWD: number;
  O_RDONLY: number;
  O_PATH: number;
  O_DIRECTORY: number;
  O_NOFOLLOW: number;
  O_NONBLOCK: number;
  O_NOCTTY: number;
  O_CLOEXEC: number;
  RESOLVE_NO_XDEV: number;
  RESOLVE_NO_MAGICLINKS: number;
  RESOLVE_NO_SYMLINKS: number;
  RESOLVE_BENEATH: number;
  RESOLVE_IN_ROOT: number;
}

interface Addon {
  Loader: new (opts: LoaderOptions) => NativeLoader;
  statNames: string[];
  /** openat2(2) on the thread pool; rejects with an Error whose code is the errno name. */
  openat2(dirfd: number, path: string, flags: number, resolve: number): Promise<number>;
  openat2Constants: Openat2Constants;
  /** pidfd_open(2): a descriptor naming the process (close it with fs.close). */
  pidfdOpen(pid: number): number;
  /** pidfd_send_signal(2). */
  pidfdSendSignal(fd: number, signal: number): void;
  /** malloc_trim(0): the C heap's free pages back to the kernel; true when some were released. */
  mallocTrim(): boolean;
}

let addon: Addon | undefined;

export function loadAddon(): Addon {
  if (addon) return addon;
  if (!existsSync(addonPath)) throw new Error('native addon not built: run scripts/setup.sh');
  addon = createRequire(import.meta.url)(addonPath) as Addon;
  return addon;
}

export function createLoader(opts: LoaderOptions = {}): NativeLoader {
  return new (loadAddon().Loader)(opts);
}

/** Is BPF-LSM among the active LSMs? (Loaded LSM programs never run otherwise.) */
export function bpfLsmActive(lsmFile = '/sys/kernel/security/lsm'): boolean {
  try {
    return readFileSync(lsmFile, 'utf8').trim().split(',').includes('bpf');
  } catch {
    return false;
  }
}

/** The script hooks worth trying on this kernel, best first; none always last. */
export function scriptHookCandidates(lsmActive = bpfLsmActive()): ScriptHook[] {
  return lsmActive ? ['lsm', 'fentry', 'none'] : ['fentry', 'none'];
}

/**
 * Opens and loads the object with the first script hook the kernel accepts:
 * fentry and BPF-LSM programs are refused by some kernels (EPERM under
 * lockdown or sandboxes, no ftrace direct calls, LSM not active). That is a
 * feature probe by trying, never a version check. Loading without a script
 * hook only fails for reasons the other programs have too, so it is final.
 *
 * The exec-mapping hook rides on the same mechanism: with the LSM (fentry)
 * script hook comes lsm/mmap_file (fentry/security_mmap_file). A kernel that
 * refuses the mechanism (EPERM) refuses both; any other failure is retried
 * with the script hook alone. Without either, `mmapFallback` decides
 * (tracepoint: opt-in, it costs every syscall; none: no exec mappings).
 */
export function loadWithScriptHook(
  opts: Omit<LoaderOptions, 'scriptHook' | 'mmapHook'> & { mmapFallback?: 'tracepoint' | 'none' },
  candidates: ScriptHook[] = scriptHookCandidates(),
  create: (o: LoaderOptions) => NativeLoader = createLoader,
): { loader: NativeLoader; scriptHook: ScriptHook; mmapHook: MmapHook; refused: Array<{ hook: ScriptHook; reason: string }> } {
  const { mmapFallback = 'none', ...base } = opts;
  const refused: Array<{ hook: ScriptHook; reason: string }> = [];
  for (const hook of candidates) {
    const mmapHooks: MmapHook[] = hook === 'none' ? [mmapFallback] : [hook, mmapFallback];
    for (const mmapHook of mmapHooks) {
      const loader = create({ ...base, scriptHook: hook, mmapHook });
      try {
        loader.load();
        return { loader, scriptHook: hook, mmapHook, refused };
      } catch (err) {
        loader.close();
        if (hook === 'none') throw err;
        const e = err as LoaderError;
        const last = mmapHook === mmapHooks[mmapHooks.length - 1];
        if (e.code === 'EPERM' || last) {
          refused.push({ hook, reason: e.code ?? e.message });
          break;
        }
      }
    }
  }
  throw new Error('no script hook candidates (none must be last)');
}
