// Package-manager windows: which files a package manager wrote. The kernel
// emits the exec of a configured package manager (exec_watch, flag
// DW_EXEC_WATCH_PACKAGE_MANAGER); from that exec until the process exits, a
// window is open for its container (cgroup id). A drifted file executed later
// whose ctime (as the kernel recorded it at that exec) falls inside a window
// was last changed while that package manager ran: it gets an `installedBy`
// fact, which the policy can except. ctime only moves forward (any change sets
// it to "now"), so a file dropped after the manager exited cannot be moved
// into the window; one written by a sibling process while the manager runs
// is attributed to it (see README, "Package managers").
import { closeSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { ExecEvent, ProcessFileRecord } from '../pipeline/decode.js';
import type { Metrics } from '../pipeline/metrics.js';
import { FileFlag } from '../pipeline/records.js';
import { processExitAddon, type ClockReading, type NativeExitWatcher } from '../native/process-exit.js';

/** Command names watched by default (the basename of what was executed, as the kernel sets comm). */
export const DEFAULT_PACKAGE_MANAGERS: readonly string[] = [
  'dpkg', 'apt', 'apt-get', 'aptitude', 'rpm', 'dnf', 'dnf5', 'yum', 'microdnf', 'tdnf', 'apk',
  'pip', 'pip3', 'npm', 'yarn', 'pnpm', 'gem', 'bundle', 'composer',
];


/** What a finding says about the package manager that last changed its file. */
export interface InstalledBy {
  /** The manager's command name at its exec (the innermost window that holds the file's ctime). */
  manager: string;
  hostPid: number;
  /** RFC 3339: the manager's exec, and its exit as the sensor learnt it (absent while it runs). */
  windowStart: string;
  windowEnd?: string;
  /** Every manager whose window holds the ctime, innermost first (dpkg, then the apt-get that ran it). */
  managers: string[];
}

/** Tells when a process exits; injectable (tests), native pidfds by default. */
export interface ProcessExits {
  /**
   * Watches the process that made an exec record (host pid and its task start
   * time, monotonic ns). Returns false when it is gone already, or the pid is
   * another process's now; else onExit(realtimeNs) runs once at its exit.
   */
  watch(hostPid: number, startTimeNs: bigint, onExit: (realtimeNs: bigint) => void): { stop(): void } | false;
  /** The clocks read back to back. */
  clocks(): ClockReading;
  close(): void;
}

/** Field 22 of /proc/<pid>/stat: the task's start, boot clock, in USER_HZ ticks. */
function startTicks(procRoot: string, pid: number): number | undefined {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return undefined;
  }
}

/**
 * Exits through pidfds: pidfd_open(pid), then the pid is checked to still be
 * the recorded process (its start time), so the fd is tied to it and a reused
 * pid is never watched. A thread in the addon waits on the fds.
 */
export function pidfdExits(procRoot = '/proc'): ProcessExits {
  const addon = processExitAddon();
  const waiting = new Map<number, (realtimeNs: bigint) => void>();
  let next = 1;
  let watcher: NativeExitWatcher | undefined;
  const ensure = () =>
    (watcher ??= new addon.ExitWatcher((token, ns) => {
      const cb = waiting.get(token);
      waiting.delete(token);
      cb?.(ns);
    }));
  return {
    clocks: () => addon.clocks(),
    watch(hostPid, startTimeNs, onExit) {
      let fd: number;
      try {
        fd = addon.pidfdOpen(hostPid);
      } catch {
        return false; // ESRCH: exited (and reaped) already
      }
      // Opened first, checked second: if the pid still has the recorded start
      // time now, the fd (taken before) is that process.
      const c = addon.clocks();
      const tickNs = 1_000_000_000n / BigInt(c.clkTck || 100);
      const expected = Number((startTimeNs + (c.boottimeNs - c.monotonicNs)) / tickNs);
      const seen = startTicks(procRoot, hostPid);
      if (seen === undefined || Math.abs(seen - expected) > 1) {
        closeSync(fd);
        return false;
      }
      const w = ensure();
      const token = next;
      next = next >= 0x7ffffff0 ? 1 : next + 1;
      waiting.set(token, onExit);
      w.add(fd, token);
      return {
        stop() {
          waiting.delete(token);
          w.remove(token);
        },
      };
    },
    close() {
      waiting.clear();
      watcher?.close();
      watcher = undefined;
    },
  };
}

interface Window {
  manager: string;
  hostPid: number;
  startTimeNs: bigint;
  /** Realtime ns (ctime's clock), converted when the window opened and closed. */
  startNs: bigint;
  endNs?: bigint;
  watch?: { stop(): void };
}

export interface PackageWindowsOptions {
  metrics: Metrics;
  managers?: readonly string[];
  exits?: ProcessExits;
  /** Windows whose manager still runs (each holds a pidfd); beyond, a manager is not tracked (counted). */
  maxOpen?: number;
  /** Windows kept per container, open or closed; the oldest closed one goes first (counted). */
  maxPerContainer?: number;
  /** Containers with windows; the least recently used goes first (counted). */
  maxContainers?: number;
}

const ns = (sec: bigint, nsec: number) => sec * 1_000_000_000n + BigInt(nsec);
const iso = (realtimeNs: bigint) => new Date(Number(realtimeNs / 1_000_000n)).toISOString();

export class PackageWindows {
  private readonly managers: Set<string>;
  private readonly exits: ProcessExits;
  private readonly metrics: Metrics;
  private readonly maxOpen: number;
  private readonly maxPerContainer: number;
  private readonly byCgroup: LRUCache<number, Window[]>;
  private open = 0;

  constructor(opts: PackageWindowsOptions) {
    this.metrics = opts.metrics;
    this.managers = new Set((opts.managers ?? DEFAULT_PACKAGE_MANAGERS).map((m) => m.slice(0, 15)));
    this.exits = opts.exits ?? pidfdExits();
    this.maxOpen = opts.maxOpen ?? 256;
    this.maxPerContainer = opts.maxPerContainer ?? 32;
    this.byCgroup = new LRUCache<number, Window[]>({
      max: opts.maxContainers ?? 4096,
      dispose: (list, _key, reason) => {
        for (const w of list) this.forget(w);
        if (reason === 'evict') this.metrics.inc('package_windows_dropped_total', { reason: 'containers' }, list.length);
      },
    });
    for (const reason of ['not_image', 'script_not_image', 'name']) this.metrics.inc('package_windows_refused_total', { reason }, 0);
    for (const reason of ['open_limit', 'per_container', 'containers']) this.metrics.inc('package_windows_dropped_total', { reason }, 0);
    this.metrics.inc('package_windows_total', {}, 0);
    this.metrics.gauge('package_windows_open', () => this.open);
  }

  /**
   * Why an exec the kernel flagged as a package manager opens no window, if
   * it does not: the container names its files, so only the image's own
   * package manager counts (the file, and a #! script too, from the image),
   * and for a binary the executed file's own name must be a package manager
   * (a symlink named "apt-get" to any image binary is not one).
   */
  private refusal(rec: ExecEvent): string | undefined {
    if (rec.layer !== 'LOWER') return 'not_image';
    if (rec.fileFlags & FileFlag.SCRIPT) return rec.scriptLayer === 'LOWER' ? undefined : 'script_not_image';
    return this.managers.has(basename(rec.path).slice(0, 15)) ? undefined : 'name';
  }

  /** Every exec record, in ring-buffer order (before any later record is judged). */
  observe(rec: ExecEvent): void {
    if (!rec.watchPackageManager) return;
    const refused = this.refusal(rec);
    if (refused) {
      this.metrics.inc('package_windows_refused_total', { reason: refused });
      return;
    }
    const key = rec.cgroupKey;
    const list = this.byCgroup.get(key) ?? [];
    const hostPid = rec.hostPid;
    const startTimeNs = rec.startTimeNs;
    // A manager that execs another watched name keeps its first window.
    if (list.some((w) => w.endNs === undefined && w.hostPid === hostPid && w.startTimeNs === startTimeNs)) return;
    if (this.open >= this.maxOpen) {
      this.metrics.inc('package_windows_dropped_total', { reason: 'open_limit' });
      return;
    }
    if (list.length >= this.maxPerContainer) {
      const oldest = list.findIndex((w) => w.endNs !== undefined);
      if (oldest < 0) {
        this.metrics.inc('package_windows_dropped_total', { reason: 'per_container' });
        return;
      }
      list.splice(oldest, 1);
      this.metrics.inc('package_windows_dropped_total', { reason: 'per_container' });
    }
    const c = this.exits.clocks();
    // A binary by its own (checked) name: the kernel also matches a symlink's target name.
    const name = rec.fileFlags & FileFlag.SCRIPT ? rec.comm : basename(rec.path).slice(0, 15);
    const w: Window = { manager: name, hostPid, startTimeNs, startNs: rec.ktimeNs + (c.realtimeNs - c.boottimeNs) };
    const watch = this.exits.watch(hostPid, startTimeNs, (endNs) => {
      if (w.endNs !== undefined) return;
      w.endNs = endNs;
      delete w.watch;
      this.open--;
    });
    if (watch) {
      w.watch = watch;
      this.open++;
    } else w.endNs = c.realtimeNs; // exited before we looked: the window ends when we learnt it
    list.push(w);
    this.byCgroup.set(key, list);
    this.metrics.inc('package_windows_total');
  }

  /** The windows of the record's container that hold the file's ctime, innermost first. */
  installedBy(rec: ProcessFileRecord): InstalledBy | undefined {
    const list = this.byCgroup.get(rec.cgroupKey);
    if (!list) return undefined;
    const ctime = ns(rec.ctimeSec, rec.ctimeNsec);
    const holding = list.filter((w) => ctime >= w.startNs && (w.endNs === undefined || ctime <= w.endNs)).sort((a, b) => (b.startNs > a.startNs ? 1 : b.startNs < a.startNs ? -1 : 0));
    const inner = holding[0];
    if (!inner) return undefined;
    return {
      manager: inner.manager,
      hostPid: inner.hostPid,
      windowStart: iso(inner.startNs),
      ...(inner.endNs !== undefined ? { windowEnd: iso(inner.endNs) } : {}),
      managers: [...new Set(holding.map((w) => w.manager))],
    };
  }

  private forget(w: Window): void {
    if (w.endNs === undefined) {
      w.watch?.stop();
      w.endNs = 0n;
      this.open--;
    }
  }

  close(): void {
    this.byCgroup.clear();
    this.exits.close();
  }
}
