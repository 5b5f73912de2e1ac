// The finding: the contract every consumer (JSONL, gRPC, SIEM) builds on.
// Fields are only ever added, never renamed.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { DetectionEvent, EmitOptions, Severity, SignatureDefinition } from '../signatures/sdk.js';
import type { Layer } from './classify.js';

export interface Finding {
  id: string;
  time: string;
  signature: {
    id: string;
    name: string;
    severity: Severity;
    version: string;
    description: string;
    mitre?: { technique: string; tactic: string };
    tags?: string[];
    data?: Record<string, string | number | boolean>;
  };
  process: {
    pid: number;
    ppid: number;
    uid: number;
    gid: number;
    comm: string;
    args: string[];
    argsTruncated: boolean;
    filename: string;
    hostPid: number;
    hostPpid: number;
    startTime: string;
    execSession: boolean;
    session: string;
    ancestry: Array<{ hostPid: number; comm: string }>;
    parent?: { hostPid: number; comm?: string; executable?: string };
    executable: {
      path: string;
      layer: Layer;
      inode: string;
      device: string;
      mode: number;
      nlink: number;
      ctime: string;
      fsMagic: string;
      pathTruncated: boolean;
    };
  };
  container: {
    id: string | null;
    runtime?: string;
    name?: string;
    image?: string;
    imageId?: string;
    labels?: Record<string, string>;
    mntNs: number;
    pidNs: number;
    cgroupId: string;
    cgroup: string;
  };
  kubernetes?: { namespace?: string; pod?: string; podUid?: string; container?: string };
  host: { hostname: string };
}

/** Wall-clock time of a boot-clock timestamp; the offset is re-read now and then. */
export class BootClock {
  private offsetMs = 0;
  private readAt = 0;
  constructor(private readonly uptimePath = '/proc/uptime') {}

  private offset(): number {
    const now = Date.now();
    if (now - this.readAt > 60_000) {
      const uptimeSec = Number(readFileSync(this.uptimePath, 'utf8').split(' ')[0]);
      this.offsetMs = now - uptimeSec * 1000;
      this.readAt = now;
    }
    return this.offsetMs;
  }

  toDate(bootNs: bigint): Date {
    return new Date(this.offset() + Number(bootNs / 1_000_000n));
  }
}

/** Same process, same file, same signature → same id, across retries and restarts. */
export function findingId(hostname: string, ev: DetectionEvent, signatureId: string): string {
  const e = ev.exec;
  const h = createHash('sha256')
    .update(`${hostname}\0${e.hostPid}\0${e.startTimeNs}\0${e.ktimeNs}\0${signatureId}\0${e.dev}\0${e.inode}`)
    .digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function buildFinding(
  sig: SignatureDefinition,
  ev: DetectionEvent,
  opts: EmitOptions,
  hostname: string,
  clock: BootClock,
): Finding {
  const e = ev.exec;
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
      ppid: e.ppid,
      uid: e.uid,
      gid: e.gid,
      comm: e.comm,
      args: e.args,
      argsTruncated: e.argsTruncated,
      filename: e.filename,
      hostPid: e.hostPid,
      hostPpid: e.hostPpid,
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
      id: c.id,
      mntNs: e.mntNs,
      pidNs: e.pidNs,
      cgroupId: e.cgroupId.toString(),
      cgroup: e.cgroup,
    },
    host: { hostname },
  };
  f.process.parent = { hostPid: e.hostPpid };
  const parentComm = e.ancestors[0]?.comm;
  if (parentComm) f.process.parent.comm = parentComm;
  if (ev.parentExecutable) f.process.parent.executable = ev.parentExecutable;
  if (sig.mitre) f.signature.mitre = sig.mitre;
  if (sig.tags) f.signature.tags = sig.tags;
  if (opts.data) f.signature.data = opts.data;
  if (c.runtime) f.container.runtime = c.runtime;
  if (c.name) f.container.name = c.name;
  if (c.image) f.container.image = c.image;
  if (c.imageId) f.container.imageId = c.imageId;
  if (c.labels && Object.keys(c.labels).length) f.container.labels = c.labels;
  if (c.kubernetes) f.kubernetes = c.kubernetes;
  else if (c.podUid) f.kubernetes = { podUid: c.podUid };
  return f;
}
