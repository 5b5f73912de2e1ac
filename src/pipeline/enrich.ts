// Enrichment: host or container, what the node knows about the container,
// and facts about the file (content hash, same as the image, the layer of a
// #! script). Lookups never hold the stream for long: metadata answers from
// cache or gives up after its wait and the event goes on (counted).
import { readlink } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import { ContainerStorage } from '../enrich/container-storage.js';
import type { ContainerMetadata, MetadataResolver } from '../enrich/metadata.js';
import { idKey, OverlayFacts, type OverlayDirs } from '../enrich/overlay-facts.js';
import type { PackageWindows } from '../enrich/package-windows.js';
import { UNREADABLE_REASONS, type KernelFileId } from '../enrich/safe-open.js';
import type { FileFactReason } from '../sdk/signature.js';

const FILE_FACT_REASONS: readonly FileFactReason[] = [...UNREADABLE_REASONS, 'container_gone', 'timeout'];
import type { DetectionEvent, FileFacts, InterpretedScript, ScriptFacts } from '../sdk/signature.js';
import { scriptFileFacts } from '../enrich/script-file.js';
import { familyOf, scriptOperand } from './interpreters.js';
import { HeldExec, HOLD_VERDICTS, type HoldSettings } from '../prevent/held.js';
import { isDriftedScript } from '../sdk/signature.js';
import { isUnlinked } from './classify.js';
import { containerOf, type HostNamespaces } from './container.js';
import type { DecodedEvent, ExecEvent } from './decode.js';
import type { Metrics } from './metrics.js';
import { FileFlag } from './records.js';

export interface Enricher {
  /** Synchronous when there is nothing to look up (the common case), else a promise. */
  enrich(rec: DecodedEvent): DetectionEvent | Promise<DetectionEvent>;
}

export interface EnricherOptions {
  host: HostNamespaces;
  metrics: Metrics;
  resolver?: MetadataResolver;
  procRoot?: string;
  overlay?: OverlayFacts;
  storage?: ContainerStorage;
  /** How long file facts (hash, image comparison, script layer) may hold an event; default 10 s. */
  fileFactsTimeoutMs?: number;
  /** Package-manager windows: see every exec in order, and say which manager last changed a drifted file. */
  packageWindows?: PackageWindows;
  /** For interpreters the kernel held stopped: how long, and whether the policy excepts the script. */
  hold?: () => { settings: HoldSettings; excepted: (ev: DetectionEvent) => boolean };
}

/** How long file facts wait for the runtime's storage of a container whose processes are all gone. */
const STORAGE_WAIT_MS = 2_000;

/** p's value, or onTimeout's after ms: a container can make a file lookup hang (FUSE). */
function withDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((res) => {
    timer = setTimeout(() => res(onTimeout()), ms);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Parent pid → executable, briefly: one shell spawning many payloads is read once. */
const parents = new LRUCache<number, { exe: string | undefined }>({ max: 4096, ttl: 2_000 });

/** The parent's executable, if it is still alive (it usually is: it just forked us). */
async function parentExecutable(hostPpid: number, procRoot: string): Promise<string | undefined> {
  if (hostPpid <= 0) return undefined;
  const hit = parents.get(hostPpid);
  if (hit) return hit.exe;
  const exe = await readlink(`${procRoot}/${hostPpid}/exe`).catch(() => undefined);
  parents.set(hostPpid, { exe });
  return exe;
}

export function createEnricher(opts: EnricherOptions): Enricher {
  const procRoot = opts.procRoot ?? '/proc';
  const overlay = opts.overlay ?? new OverlayFacts({ procRoot, onHashRead: () => opts.metrics.inc('file_hash_reads_total') });
  const storage = opts.storage ?? new ContainerStorage({ procRoot });
  const { metrics, resolver } = opts;
  const deadlineMs = opts.fileFactsTimeoutMs ?? 10_000;
  // Zero series per reason, so an alert on a rising reason works from the start.
  metrics.inc('file_hash_reads_total', {}, 0);
  for (const reason of FILE_FACT_REASONS) {
    metrics.inc('file_hash_unavailable_total', { reason }, 0);
    metrics.inc('same_as_image_unavailable_total', { reason }, 0);
  }

  /** The process, then its ancestors up to the container's init: whoever is still alive. */
  const lineage = (rec: DecodedEvent): number[] =>
    rec.kind === 'exec' ? [rec.hostPid, ...rec.ancestors.map((a) => a.hostPid), rec.sessionHostPid] : [rec.hostPid];

  /** The lineage, then other live processes of the container in the mount namespace the exec saw (an exec session's too). */
  const livePids = async (rec: DecodedEvent): Promise<number[]> => {
    const own = lineage(rec);
    return [...new Set([...own, ...(await storage.livePids(rec, own))])];
  };

  /** The overlay dirs: from a live process's mounts, else from the runtime's storage. */
  async function overlayDirs(rec: DecodedEvent, pids: number[], meta: () => Promise<ContainerMetadata | undefined>): Promise<OverlayDirs | null> {
    return (await overlay.overlayOf(rec.mntNs, pids)) ?? (await meta())?.rootfs ?? null;
  }

  const lookups = new Map<string, Promise<FileFacts>>();
  async function fileFacts(rec: DecodedEvent, slowMeta: () => Promise<ContainerMetadata | undefined>): Promise<FileFacts> {
    const upper = rec.layer === 'UPPER_NEW' || rec.layer === 'UPPER_COPIED_UP';
    const id: KernelFileId = { dev: rec.dev, inode: rec.inode, ctimeSec: rec.ctimeSec, ctimeNsec: rec.ctimeNsec };
    // A file already hashed (by the kernel's identity: device, inode, ctime) needs no
    // process or overlay lookup. A copied-up file also needs its image copy: the full path.
    if (rec.layer === 'UPPER_COPIED_UP') return lookUpFileFacts(rec, id, upper, slowMeta);
    const known = overlay.knownHash(id);
    if (known) return { sha256: known.sha256, source: known.source };
    // Execs of a file whose lookup is under way wait for it instead of repeating it.
    const key = idKey(id);
    const pending = lookups.get(key);
    if (pending) {
      const facts = await pending;
      if (facts.sha256) return { ...facts }; // a miss was the first exec's processes: look with ours
    }
    const lookup = lookUpFileFacts(rec, id, upper, slowMeta);
    if (!pending) {
      lookups.set(key, lookup);
      void lookup.finally(() => lookups.delete(key));
    }
    return lookup;
  }

  async function lookUpFileFacts(rec: DecodedEvent, id: KernelFileId, upper: boolean, slowMeta: () => Promise<ContainerMetadata | undefined>): Promise<FileFacts> {
    const facts: FileFacts = {};
    const reachable = !rec.pathTruncated && rec.path.startsWith('/');
    const pids = reachable ? await livePids(rec) : lineage(rec);
    // The upper dir outlives the container's processes: only there is a longer wait for the runtime's answer worth it.
    const dirs = upper ? await overlayDirs(rec, pids, slowMeta) : null;
    const unlinked = isUnlinked(rec.fileFlags);
    const hashed = await overlay.executedHash({
      id,
      ...(rec.pathTruncated || unlinked ? {} : { path: rec.path }),
      ...(rec.kind === 'exec' ? { exePid: rec.hostPid } : {}),
      rootPids: pids,
      mntNs: rec.mntNs,
      upper,
      upperNew: rec.layer === 'UPPER_NEW',
      dirs,
    });
    if (hashed.reason === undefined) {
      facts.sha256 = hashed.sha256;
      facts.source = hashed.source;
    } else facts.sha256Unavailable = hashed.reason;
    if (hashed.sha256 && dirs && rec.layer === 'UPPER_COPIED_UP' && !rec.pathTruncated) {
      const image = await overlay.imageHash(dirs, rec.path);
      if (image.reason === undefined) facts.sameAsImage = image.sha256 === hashed.sha256;
      else facts.sameAsImageUnavailable = image.reason;
    }
    return facts;
  }

  async function scriptFacts(exec: ExecEvent, meta: () => Promise<ContainerMetadata | undefined>): Promise<ScriptFacts> {
    const path = exec.filename;
    const seen = exec.scriptLayer; // the kernel saw the script itself: no lookup, no race
    if (seen) return { path, layer: seen, source: 'kernel' };
    const dirs = await overlayDirs(exec, await livePids(exec), meta);
    const layer = dirs ? await overlay.layerOf(dirs, path) : undefined;
    return layer ? { path, layer, source: 'overlay' } : { path };
  }

  for (const kind of ['file', 'inline', 'module', 'stdin', 'none']) metrics.inc('interpreter_operands_total', { kind }, 0);

  for (const reason of FILE_FACT_REASONS) metrics.inc('script_file_unavailable_total', { reason }, 0);
  for (const verdict of HOLD_VERDICTS) metrics.inc('held_execs_total', { verdict }, 0);
  metrics.inc('held_continued_early_total', {}, 0);

  /**
   * A held interpreter's verdict: killed when its script is drift (or could
   * not be read as a regular file) and no exception covers it, continued
   * otherwise; at the hold timeout, the policy's onTimeout.
   */
  function judgeHeld(ev: DetectionEvent & { kind: 'exec' }, held: HeldExec, facts: Promise<InterpretedScript>): Promise<void> {
    const { settings, excepted } = opts.hold?.() ?? { settings: { timeoutMs: 2000, onTimeout: 'continue' as const }, excepted: () => false };
    const timer = setTimeout(() => held.decide(settings.onTimeout === 'kill', true), settings.timeoutMs);
    timer.unref();
    return facts.then(
      (s) => {
        clearTimeout(timer);
        const f = s.file;
        const drift = isDriftedScript(f) || f?.layerUnavailable === 'not_regular' || f?.layerUnavailable === 'replaced';
        held.decide(drift && !excepted({ ...ev, interpreted: s }));
      },
      () => {
        clearTimeout(timer);
        held.decide(settings.onTimeout === 'kill', true);
      },
    ).finally(() => {
      const v = held.verdict;
      if (v) ev.held = v;
    });
  }

  /** A watched interpreter's operand, by its family's option rules (argv only: no lookup). */
  const operandOf = (exec: ExecEvent): InterpretedScript & { path?: string } => {
    const family = familyOf(exec.comm) ?? familyOf(exec.path.slice(exec.path.lastIndexOf('/') + 1)) ?? 'shell';
    const op = scriptOperand(family, exec.args);
    return { family: op.family ?? family, operand: op.kind, ...(op.code !== undefined ? { code: op.code.slice(0, 256) } : {}), ...(op.path !== undefined ? { path: op.path } : {}) };
  };

  /** For a script file operand: its layer and hash, read inside the container (script-file.ts). */
  async function interpretedScript(exec: ExecEvent, op: InterpretedScript & { path?: string }, meta: () => Promise<ContainerMetadata | undefined>): Promise<InterpretedScript> {
    const { path, ...out } = op;
    if (op.operand !== 'file' || !path) return out;
    const pids = await livePids(exec);
    out.file = await scriptFileFacts({
      procRoot,
      pid: exec.hostPid,
      otherPids: pids.filter((p) => p !== exec.hostPid),
      mntNs: exec.mntNs,
      operand: path,
      overlay,
      dirs: () => overlayDirs(exec, pids, meta),
    });
    return out;
  }

  return {
    enrich(rec) {
      // In ring-buffer order, before anything is awaited: a manager's exec is
      // seen before any later exec of a file it wrote.
      if (rec.kind === 'exec') opts.packageWindows?.observe(rec);
      const container = containerOf(rec, opts.host);
      const ev: DetectionEvent = rec.kind === 'exec' ? { kind: 'exec', exec: rec, container } : { kind: 'mmap_exec', mmap: rec, container };
      // Host events are dropped right after this: spend nothing on them.
      if (!container.inContainer) {
        // Never leave a process stopped: one the kernel held is continued at once.
        if (rec.kind === 'exec' && rec.watchHeld) new HeldExec(rec.hostPid, { dev: rec.dev, inode: rec.inode }, metrics, procRoot).decide(false);
        return ev;
      }

      const work: Array<Promise<unknown>> = [];
      // Anything looked up asynchronously outlives the batch buffer: own the bytes first.
      const watched = rec.kind === 'exec' && rec.watchInterpreter;
      const needsWork = rec.layer !== 'LOWER' || isUnlinked(rec.fileFlags) || (rec.fileFlags & FileFlag.SCRIPT) !== 0 || watched || (!!resolver && !!container.id);
      if (needsWork) rec.detach();
      const meta: Promise<ContainerMetadata | undefined> = resolver && container.id ? resolver.resolve(container.id, container.runtime) : Promise.resolve(undefined);
      // Only where the file is reachable nowhere else (the container's processes are all gone).
      let slow: Promise<ContainerMetadata | undefined> | undefined;
      const slowMeta = () =>
        (slow ??= meta.then((m) => m ?? (resolver && container.id ? resolver.settle?.(container.id, STORAGE_WAIT_MS) : undefined)).catch(() => undefined));
      // Image files (only sent when recording everything, or as a script's
      // interpreter) need no file facts: they cannot be drift themselves.
      const drifted = rec.layer !== 'LOWER' || isUnlinked(rec.fileFlags);
      if (drifted && rec.layer !== 'MEMFD' && opts.packageWindows) {
        const by = opts.packageWindows.installedBy(rec);
        if (by) ev.installedBy = by;
      }
      if (drifted) {
        work.push(
          withDeadline(fileFacts(rec, slowMeta), deadlineMs, (): FileFacts => ({ sha256Unavailable: 'timeout' })).then((f) => {
            ev.file = f;
            if (f.sha256Unavailable) metrics.inc('file_hash_unavailable_total', { reason: f.sha256Unavailable });
            if (f.sameAsImageUnavailable) metrics.inc('same_as_image_unavailable_total', { reason: f.sameAsImageUnavailable });
          }),
        );
      }
      if (ev.kind === 'exec') {
        const exec = ev.exec;
        if (drifted) work.push(parentExecutable(exec.hostPpid, procRoot).then((p) => p && (ev.parentExecutable = p)));
        if (watched) {
          const op = operandOf(exec);
          // Held stopped by the kernel: the pidfd is taken now, while it cannot have exited.
          const held = exec.watchHeld ? new HeldExec(exec.hostPid, { dev: exec.dev, inode: exec.inode }, metrics, procRoot) : undefined;
          const lookup = interpretedScript(exec, op, slowMeta);
          if (held) work.push(judgeHeld(ev, held, lookup));
          work.push(
            withDeadline(lookup, deadlineMs, (): InterpretedScript => {
              const { path = '', ...rest } = op;
              return { ...rest, file: { path, operand: path, layerUnavailable: 'timeout', sha256Unavailable: 'timeout' } };
            }).then((s) => {
              ev.interpreted = s;
              metrics.inc('interpreter_operands_total', { kind: s.operand });
              if (s.file?.layerUnavailable) metrics.inc('script_file_unavailable_total', { reason: s.file.layerUnavailable });
            }),
          );
        }
        if (exec.fileFlags & FileFlag.SCRIPT) {
          work.push(
            withDeadline(scriptFacts(exec, () => meta), deadlineMs, (): ScriptFacts => ({ path: exec.filename })).then((script) => {
              ev.script = script;
              if (!script.layer) metrics.inc('script_layer_unknown_total');
            }),
          );
        }
      }
      const fill = (m: ContainerMetadata): void => {
        if (m.runtime !== 'unknown') container.runtime = m.runtime;
        if (m.name) container.name = m.name;
        if (m.image) container.image = m.image;
        if (m.imageId) container.imageId = m.imageId;
        if (m.labels) container.labels = m.labels;
        if (m.kubernetes) container.kubernetes = { ...(container.podUid ? { podUid: container.podUid } : {}), ...m.kubernetes };
      };
      if (work.length === 0 && !(resolver && container.id)) return ev;
      return Promise.all(work).then(async () => {
        if (!resolver || !container.id) return ev;
        // A drift candidate (a file or a script) waits for a lookup already under way, up to
        // the storage wait: a container that exited at once is often the one being looked up.
        const candidate = drifted || (rec.fileFlags & FileFlag.SCRIPT) !== 0 || watched;
        const m = (await meta) ?? (candidate ? await slowMeta() : undefined);
        if (m) fill(m);
        else metrics.inc('enrichment_incomplete_total');
        return ev;
      });
    },
  };
}
