// Folding repeats is a reporting concern: it runs on findings the policy
// kept, after everything that must see every exec (signatures, stream
// signatures, prevention). The first finding of a group goes out at once;
// when the window ends, one summary stands for the whole group and names it
// (foldOf), so the backend updates the first finding instead of adding one.
//
// The group is (container, signature, executable path, file identity). The
// identity is the content hash when it is known, else the kernel's
// (device, inode, ctime): a different binary at the same path is another
// group, so a payload cannot hide behind a harmless finding.
import { hash } from 'node:crypto';
import type { Finding } from '../pipeline/finding.js';
import type { Metrics } from '../pipeline/metrics.js';

export interface DedupOptions {
  windowMs: number;
  /** Distinct argument lists kept per group; executions beyond are counted in argsOmitted. */
  maxDistinctArgs?: number;
  /** Open groups at most; past that the oldest group is summarised early. */
  maxGroups?: number;
}

interface Group {
  first: Finding;
  count: number;
  firstSeen: string;
  lastSeen: string;
  args: Map<string, { args: string[]; count: number }>;
  argsOmitted: number;
  timer: NodeJS.Timeout;
}

/** File identity as the dedup key uses it: content when known, else what the kernel recorded. */
export function fileIdentity(f: Finding): string {
  const x = f.process?.executable;
  if (x?.sha256) return `sha256:${x.sha256}`;
  return `file:${x?.device ?? ''}:${x?.inode ?? ''}:${x?.ctime ?? ''}`;
}

/** A script an interpreter ran: its own identity, so two scripts under one interpreter are two groups. */
export function scriptIdentity(f: Finding): string {
  const s = f.process?.script;
  if (!s) return '';
  return s.sha256 ? `${s.path}\0sha256:${s.sha256}` : `${s.path}\0file:${s.device ?? ''}:${s.inode ?? ''}:${s.ctime ?? ''}`;
}

export function dedupKey(f: Finding): string {
  const where = f.container?.id || `${f.container?.mntNs}:${f.container?.pidNs}`;
  return `${where}\0${f.signature?.id}\0${f.process?.executable?.path}\0${fileIdentity(f)}\0${scriptIdentity(f)}`;
}

const uuidOf = (h: string) => `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;

export class Deduplicator {
  private groups = new Map<string, Group>();
  private windowMs: number;
  private readonly maxArgs: number;
  private readonly maxGroups: number;

  constructor(
    opts: DedupOptions,
    private readonly metrics: Metrics,
    private readonly emit: (f: Finding) => void,
  ) {
    this.windowMs = opts.windowMs;
    this.maxArgs = opts.maxDistinctArgs ?? 16;
    this.maxGroups = opts.maxGroups ?? 10_000;
  }

  /** A new window length applies to groups opened from now on. */
  setWindow(ms: number): void {
    this.windowMs = ms;
  }

  add(f: Finding): void {
    if (this.windowMs <= 0) return this.emit(f);
    const key = dedupKey(f);
    const g = this.groups.get(key);
    if (g) {
      g.count++;
      if (f.time && f.time > g.lastSeen) g.lastSeen = f.time;
      this.noteArgs(g, f.process?.args ?? []);
      this.metrics.inc('findings_folded_total', { signature: f.signature?.id ?? '' });
      return;
    }
    this.emit(f);
    if (this.groups.size >= this.maxGroups) this.summarise(this.groups.keys().next().value!);
    const time = f.time ?? '';
    const group: Group = { first: f, count: 1, firstSeen: time, lastSeen: time, args: new Map(), argsOmitted: 0, timer: setTimeout(() => this.summarise(key), this.windowMs) };
    group.timer.unref?.();
    this.noteArgs(group, f.process?.args ?? []);
    this.groups.set(key, group);
  }

  private noteArgs(g: Group, args: string[]): void {
    const k = JSON.stringify(args);
    const seen = g.args.get(k);
    if (seen) seen.count++;
    else if (g.args.size < this.maxArgs) g.args.set(k, { args, count: 1 });
    else g.argsOmitted++;
  }

  /** At the end of a window: one finding that stands for every execution of the group. */
  private summarise(key: string): void {
    const g = this.groups.get(key);
    if (!g) return;
    this.groups.delete(key);
    clearTimeout(g.timer);
    if (g.count === 1) return;
    const id = hash('sha256', `${g.first.id}\0fold\0${g.lastSeen}\0${g.count}`, 'hex');
    const summary: Finding = {
      ...g.first,
      id: uuidOf(id),
      time: g.lastSeen,
      count: g.count,
      firstSeen: g.firstSeen,
      lastSeen: g.lastSeen,
      foldOf: g.first.id ?? '',
      distinctArgs: [...g.args.values()].map((a) => ({ args: a.args, count: a.count })),
    };
    if (g.argsOmitted) summary.argsOmitted = g.argsOmitted;
    this.emit(summary);
  }

  /** Summarises every open group now (shutdown). */
  flush(): void {
    for (const key of [...this.groups.keys()]) this.summarise(key);
  }
}
