// The finding: the contract every consumer (JSONL, gRPC, SIEM) builds on.
// Fields are only ever added, never renamed.
import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { recordOf, type AnySignature, type DetectionEvent, type EmitOptions } from '../sdk/signature.js';
import type { FindingJson } from '#gen/finding-json.js';
import { ExecOutcome } from './records.js';

/** A finding is the proto3 JSON mapping of driftwatch.v1.Finding (types generated from proto/). */
export type Finding = FindingJson;

/**
 * The kernel's clock (CLOCK_BOOTTIME, what events are stamped with): now, and
 * as wall-clock time. Node reads CLOCK_MONOTONIC, which differs from it by the
 * time the machine was suspended; that difference and the wall clock's offset
 * are re-read now and then.
 */
export class BootClock {
  private suspendedNs = 0n;
  private wallAtBootMs = 0;
  private readAt = -Infinity;
  constructor(private readonly uptimePath = '/proc/uptime') {}

  private calibrate(): void {
    const now = Date.now();
    if (now - this.readAt <= 60_000) return;
    const before = process.hrtime.bigint();
    const uptimeSec = readFileSync(this.uptimePath, 'utf8').split(' ')[0]!;
    const mono = (before + process.hrtime.bigint()) / 2n;
    // /proc/uptime is cut to 10 ms: a difference it cannot tell from none is none.
    const diff = BigInt(Math.round(Number(uptimeSec) * 1000)) * 1_000_000n - mono;
    this.suspendedNs = diff > -20_000_000n && diff < 1_000_000n ? 0n : diff + 5_000_000n;
    this.wallAtBootMs = now - Number(this.nowNsCalibrated() / 1000n) / 1000;
    this.readAt = now;
  }

  private nowNsCalibrated(): bigint {
    return process.hrtime.bigint() + this.suspendedNs;
  }

  /** CLOCK_BOOTTIME now, in ns: comparable with an event's ktimeNs. */
  nowNs(): bigint {
    this.calibrate();
    return this.nowNsCalibrated();
  }

  toDate(bootNs: bigint): Date {
    this.calibrate();
    return new Date(this.wallAtBootMs + Number(bootNs / 1_000_000n));
  }
}

/** The kernel timestamp of the event a finding was made from (none for summaries). */
const eventTimes = new WeakMap<Finding, bigint>();

export function eventTimeOf(f: Finding): bigint | undefined {
  return eventTimes.get(f);
}

/** What the kernel did to the exec (prevention): the finding's action. */
export function actionOf(ev: DetectionEvent): 'alert' | 'prevented' | 'would_prevent' {
  if (ev.kind !== 'exec') return 'alert';
  const f = ev.exec.fileFlags;
  if (f & (ExecOutcome.PREVENTED | ExecOutcome.DENIED)) return 'prevented';
  if (f & ExecOutcome.WOULD_PREVENT) return 'would_prevent';
  if (ev.held === 'killed' || ev.held === 'timeout_killed') return 'prevented';
  return 'alert';
}

/** Same process, same file, same signature → same id, across retries and restarts. */
export function findingId(hostname: string, ev: DetectionEvent, signatureId: string): string {
  const e = recordOf(ev);
  const h = hash('sha256', `${hostname}\0${e.hostPid}\0${e.startTimeNs}\0${e.ktimeNs}\0${signatureId}\0${e.dev}\0${e.inode}`, 'hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function buildFinding(
  sig: AnySignature,
  ev: DetectionEvent,
  opts: EmitOptions,
  hostname: string,
  clock: BootClock,
): Finding {
  const e = recordOf(ev);
  const c = ev.container;
  const f: Finding = {
    id: findingId(hostname, ev, sig.id),
    time: clock.toDate(e.ktimeNs).toISOString(),
    signature: {
      id: sig.id,
      name: sig.name,
      severity: opts.severity ?? sig.severity,
      version: sig.version,
      description: sig.description,
    },
    process: {
      pid: e.pid,
      uid: e.uid,
      comm: e.comm,
      args: e.args,
      argsTruncated: e.argsTruncated,
      filename: e.filename,
      hostPid: e.hostPid,
      startTime: clock.toDate(e.startTimeNs).toISOString(),
      execSession: e.session === 'exec',
      session: e.session,
      ancestry: e.ancestors,
      executable: {
        path: e.path,
        layer: e.layer,
        inode: e.inode.toString(),
        device: e.device,
        mode: e.mode,
        nlink: e.nlink,
        ctime: new Date(Number(e.ctimeSec) * 1000 + Math.floor(e.ctimeNsec / 1e6)).toISOString(),
        fsMagic: `0x${e.fsMagic.toString(16)}`,
        pathTruncated: e.pathTruncated,
      },
    },
    container: {
      id: c.id ?? '',
      mntNs: e.mntNs,
      pidNs: e.pidNs,
      cgroupId: e.cgroupId.toString(),
      cgroup: e.cgroup,
    },
    host: { hostname },
  };
  // The mmap hook reads neither the parent nor the gid: absent, not 0.
  if (ev.kind === 'exec') {
    const p = f.process!;
    p.ppid = e.ppid;
    p.gid = e.gid;
    p.hostPpid = e.hostPpid;
    const parent: NonNullable<NonNullable<Finding['process']>['parent']> = { hostPid: e.hostPpid };
    const parentComm = e.ancestors[0]?.comm;
    if (parentComm) parent.comm = parentComm;
    if (ev.parentExecutable) parent.executable = ev.parentExecutable;
    p.parent = parent;
  }
  const s = f.signature!;
  if (sig.mitre) s.mitre = sig.mitre;
  if (sig.tags) s.tags = sig.tags;
  if (opts.data) s.data = opts.data;
  const x = f.process!.executable!;
  if (ev.file?.sha256) x.sha256 = ev.file.sha256;
  if (ev.file?.sameAsImage !== undefined) x.sameAsImage = ev.file.sameAsImage;
  if (ev.file?.sha256Unavailable) x.sha256Unavailable = ev.file.sha256Unavailable;
  if (ev.file?.sameAsImageUnavailable) x.sameAsImageUnavailable = ev.file.sameAsImageUnavailable;
  if (ev.file?.source) x.factsSource = ev.file.source;
  if (ev.installedBy) x.installedBy = { ...ev.installedBy, managers: [...ev.installedBy.managers] };
  const script = ev.kind === 'exec' ? ev.interpreted?.file : undefined;
  if (script) {
    const sx: NonNullable<NonNullable<Finding['process']>['script']> = { path: script.path, layer: script.layer ?? 'UNKNOWN' };
    if (script.inode) sx.inode = script.inode;
    if (script.device) sx.device = script.device;
    if (script.ctime) sx.ctime = script.ctime;
    if (script.sha256) sx.sha256 = script.sha256;
    if (script.sha256Unavailable) sx.sha256Unavailable = script.sha256Unavailable;
    if (script.sameAsImage !== undefined) sx.sameAsImage = script.sameAsImage;
    if (script.sameAsImageUnavailable) sx.sameAsImageUnavailable = script.sameAsImageUnavailable;
    if (script.source) sx.factsSource = script.source;
    f.process!.script = sx;
  }
  const ct = f.container!;
  if (c.runtime) ct.runtime = c.runtime;
  if (c.name) ct.name = c.name;
  if (c.image) ct.image = c.image;
  if (c.imageId) ct.imageId = c.imageId;
  if (c.labels && Object.keys(c.labels).length) ct.labels = c.labels;
  if (c.kubernetes) f.kubernetes = c.kubernetes;
  else if (c.podUid) f.kubernetes = { podUid: c.podUid };
  f.action = actionOf(ev);
  f.count = 1;
  f.firstSeen = f.time;
  f.lastSeen = f.time;
  eventTimes.set(f, e.ktimeNs);
  return f;
}
