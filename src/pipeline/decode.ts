// Records out of a drained batch. Each record is copied out of the reused
// batch buffer (one small copy) and wrapped in an ExecEvent whose strings
// are decoded on first access: signatures that look only at the layer never
// pay for argv or the path.
import { classify, type Layer } from './classify.js';
import {
  MMAP,
  MMAP_VERSION,
  ANCESTOR_SIZE,
  COMM_LEN,
  EXEC,
  EXEC_VERSION,
  EventKind,
  ExecWatch,
  FRAME_HEADER,
  HDR,
  HEADER_SIZE,
  MAX_ANCESTORS,
  SESSION_NAMES,
  ScriptFlag,
  TruncFlag,
  type SessionName,
} from './records.js';

export class DecodeError extends Error {}

export interface Ancestor {
  hostPid: number;
  comm: string;
}

const cstr = (b: Buffer, start: number, len: number): string => {
  const end = b.indexOf(0, start);
  return b.toString('utf8', start, end >= 0 && end < start + len ? end : start + len);
};

/** What exec and mmap records share: a process and the file it ran. */
export interface ProcessFileRecord {
  readonly kind: 'exec' | 'mmap_exec';
  readonly raw: Buffer;
  readonly ktimeNs: bigint;
  readonly hostPid: number;
  readonly hostPpid: number;
  readonly pid: number;
  readonly ppid: number;
  readonly uid: number;
  readonly gid: number;
  readonly comm: string;
  readonly args: string[];
  readonly argsTruncated: boolean;
  readonly filename: string;
  readonly startTimeNs: bigint;
  readonly session: SessionName;
  readonly ancestors: Ancestor[];
  readonly cgroupId: bigint;
  readonly cgroupKey: number;
  readonly mntNs: number;
  readonly pidNs: number;
  readonly cgroup: string;
  readonly cgroupParent: string;
  readonly inode: bigint;
  readonly dev: number;
  readonly device: string;
  readonly mode: number;
  readonly nlink: number;
  readonly fsMagic: number;
  readonly ctimeSec: bigint;
  readonly ctimeNsec: number;
  readonly fileFlags: number;
  readonly layer: Layer;
  readonly path: string;
  readonly pathTruncated: boolean;
}

/** Path components are stored leaf first; a pseudo-filesystem root (memfd:...) is a name. */
function joinPath(raw: Buffer, start: number, len: number): string {
  const parts = raw.toString('utf8', start, start + len).split('\0').filter((p) => p && p !== '/');
  parts.reverse();
  const joined = parts.join('/');
  return parts.length === 1 && parts[0]!.includes(':') ? joined : `/${joined}`;
}

/**
 * Records are views into the reused batch buffer while the batch is being
 * handled (no copy for the common event that is judged at once); detach()
 * copies the bytes out for an event that has to outlive the batch.
 */
abstract class RecordView {
  constructor(public raw: Buffer) {}
  private owned = false;
  detach(): this {
    if (!this.owned) {
      this.raw = Buffer.from(this.raw);
      this.owned = true;
    }
    return this;
  }
}

export class ExecEvent extends RecordView implements ProcessFileRecord {
  readonly kind = 'exec' as const;
  private cache: { filename?: string; path?: string; args?: string[]; cgroup?: string; cgroupParent?: string; comm?: string; ancestors?: Ancestor[] } = {};
  private layerOnce: Layer | undefined = undefined;

  get ktimeNs(): bigint { return this.raw.readBigUInt64LE(HDR.ktimeNs); }
  get hostPid(): number { return this.raw.readUInt32LE(EXEC.hostPid); }
  get hostTid(): number { return this.raw.readUInt32LE(EXEC.hostTid); }
  get hostPpid(): number { return this.raw.readUInt32LE(EXEC.hostPpid); }
  get pid(): number { return this.raw.readUInt32LE(EXEC.nsPid); }
  get tid(): number { return this.raw.readUInt32LE(EXEC.nsTid); }
  get ppid(): number { return this.raw.readUInt32LE(EXEC.nsPpid); }
  get uid(): number { return this.raw.readUInt32LE(EXEC.uid); }
  get gid(): number { return this.raw.readUInt32LE(EXEC.gid); }
  get cgroupId(): bigint { return this.raw.readBigUInt64LE(EXEC.cgroupId); }
  /** The cgroup id as a number key (ids stay far below 2^53). */
  get cgroupKey(): number { return this.raw.readUInt32LE(EXEC.cgroupId + 4) * 2 ** 32 + this.raw.readUInt32LE(EXEC.cgroupId); }
  get mntNs(): number { return this.raw.readUInt32LE(EXEC.mntNs); }
  get pidNs(): number { return this.raw.readUInt32LE(EXEC.pidNs); }
  get inode(): bigint { return this.raw.readBigUInt64LE(EXEC.inode); }
  get dev(): number { return this.raw.readUInt32LE(EXEC.dev); }
  /** "major:minor" of the kernel dev_t (major << 20 | minor). */
  get device(): string { const d = this.dev; return `${d >>> 20}:${d & 0xfffff}`; }
  get mode(): number { return this.raw.readUInt32LE(EXEC.mode); }
  get nlink(): number { return this.raw.readUInt32LE(EXEC.nlink); }
  get fsMagic(): number { return this.raw.readUInt32LE(EXEC.fsMagic); }
  get ctimeSec(): bigint { return this.raw.readBigInt64LE(EXEC.ctimeSec); }
  get ctimeNsec(): number { return this.raw.readUInt32LE(EXEC.ctimeNsec); }
  get fileFlags(): number { return this.raw.readUInt32LE(EXEC.fileFlags); }
  get truncFlags(): number { return this.raw.readUInt32LE(EXEC.truncFlags); }
  get scriptFlags(): number { return this.raw.readUInt16LE(EXEC.scriptFlags); }
  /** The #! script's layer as the kernel saw it, when a bprm_check hook ran. */
  get scriptLayer(): Layer | undefined {
    const f = this.scriptFlags;
    return f & ScriptFlag.KNOWN ? classify(f & ScriptFlag.FILE_MASK) : undefined;
  }
  /** An interpreter (exec_watch) with a script-like operand; an image exec sent for this alone is not drift. */
  get watchInterpreter(): boolean { return (this.fileFlags & ExecWatch.INTERPRETER) !== 0; }
  /** A package manager (exec_watch); an image exec sent for this alone is not drift. */
  get watchPackageManager(): boolean { return (this.fileFlags & ExecWatch.PACKAGE_MANAGER) !== 0; }
  /** Held stopped by the kernel for user space's verdict on its script. */
  get watchHeld(): boolean { return (this.fileFlags & ExecWatch.HELD) !== 0; }
  get startTimeNs(): bigint { return this.raw.readBigUInt64LE(EXEC.startTimeNs); }
  get session(): SessionName { return SESSION_NAMES[this.raw[EXEC.session]!] ?? 'unknown'; }
  get sessionHostPid(): number { return this.raw.readUInt32LE(EXEC.sessionHostPid); }
  /** Every exec signature asks: classified once per record. */
  get layer(): Layer { return (this.layerOnce ??= classify(this.fileFlags)); }
  get pathTruncated(): boolean { return (this.truncFlags & TruncFlag.PATH) !== 0; }
  get argsTruncated(): boolean { return (this.truncFlags & TruncFlag.ARGV) !== 0; }

  get comm(): string { return (this.cache.comm ??= cstr(this.raw, EXEC.comm, COMM_LEN)); }

  private lens() {
    const r = this.raw;
    return {
      filename: r.readUInt16LE(EXEC.filenameLen),
      path: r.readUInt16LE(EXEC.pathLen),
      argv: r.readUInt16LE(EXEC.argvLen),
      cgroup: r.readUInt16LE(EXEC.cgroupLen),
      cgparent: r.readUInt16LE(EXEC.cgparentLen),
    };
  }

  /** bprm->filename: what the caller asked to execute. */
  get filename(): string {
    return (this.cache.filename ??= cstr(this.raw, EXEC.data, this.lens().filename));
  }

  /** The executed file's path as the process sees it (symlinks resolved). */
  get path(): string {
    if (this.cache.path === undefined) {
      const l = this.lens();
      this.cache.path = joinPath(this.raw, EXEC.data + l.filename, l.path);
    }
    return this.cache.path;
  }

  get args(): string[] {
    if (this.cache.args === undefined) {
      const l = this.lens();
      const start = EXEC.data + l.filename + l.path;
      const s = this.raw.toString('utf8', start, start + l.argv);
      const args = s.split('\0');
      if (args.length && args[args.length - 1] === '') args.pop();
      this.cache.args = args;
    }
    return this.cache.args;
  }

  /** Leaf name of the process's cgroup (names the container for most runtimes). */
  get cgroup(): string {
    if (this.cache.cgroup === undefined) {
      const l = this.lens();
      this.cache.cgroup = cstr(this.raw, EXEC.data + l.filename + l.path + l.argv, l.cgroup);
    }
    return this.cache.cgroup;
  }

  get cgroupParent(): string {
    if (this.cache.cgroupParent === undefined) {
      const l = this.lens();
      this.cache.cgroupParent = cstr(this.raw, EXEC.data + l.filename + l.path + l.argv + l.cgroup, l.cgparent);
    }
    return this.cache.cgroupParent;
  }

  get ancestors(): Ancestor[] {
    if (this.cache.ancestors === undefined) {
      const n = Math.min(this.raw[EXEC.ancestorsLen]!, MAX_ANCESTORS);
      const out: Ancestor[] = [];
      for (let i = 0; i < n; i++) {
        const off = EXEC.ancestors + i * ANCESTOR_SIZE;
        out.push({ hostPid: this.raw.readUInt32LE(off), comm: cstr(this.raw, off + 4, COMM_LEN) });
      }
      this.cache.ancestors = out;
    }
    return this.cache.ancestors;
  }
}

/** A drifted file mapped executable (mmap PROT_EXEC): LD_PRELOAD, ld.so /tmp/x. */
export class MmapEvent extends RecordView implements ProcessFileRecord {
  readonly kind = 'mmap_exec' as const;
  private cache: { path?: string; cgroup?: string; cgroupParent?: string; comm?: string } = {};

  get ktimeNs(): bigint { return this.raw.readBigUInt64LE(HDR.ktimeNs); }
  get hostPid(): number { return this.raw.readUInt32LE(MMAP.hostPid); }
  get hostTid(): number { return this.raw.readUInt32LE(MMAP.hostTid); }
  get hostPpid(): number { return 0; }
  get pid(): number { return this.raw.readUInt32LE(MMAP.nsPid); }
  get ppid(): number { return 0; }
  get uid(): number { return this.raw.readUInt32LE(MMAP.uid); }
  get gid(): number { return 0; }
  get args(): string[] { return []; }
  get argsTruncated(): boolean { return false; }
  get filename(): string { return ''; }
  get session(): SessionName { return 'unknown'; }
  get ancestors(): Ancestor[] { return []; }
  get cgroupId(): bigint { return this.raw.readBigUInt64LE(MMAP.cgroupId); }
  get cgroupKey(): number { return this.raw.readUInt32LE(MMAP.cgroupId + 4) * 2 ** 32 + this.raw.readUInt32LE(MMAP.cgroupId); }
  get mntNs(): number { return this.raw.readUInt32LE(MMAP.mntNs); }
  get pidNs(): number { return this.raw.readUInt32LE(MMAP.pidNs); }
  get inode(): bigint { return this.raw.readBigUInt64LE(MMAP.inode); }
  get dev(): number { return this.raw.readUInt32LE(MMAP.dev); }
  get device(): string { const d = this.dev; return `${d >>> 20}:${d & 0xfffff}`; }
  get mode(): number { return this.raw.readUInt32LE(MMAP.mode); }
  get nlink(): number { return this.raw.readUInt32LE(MMAP.nlink); }
  get fsMagic(): number { return this.raw.readUInt32LE(MMAP.fsMagic); }
  get ctimeSec(): bigint { return this.raw.readBigInt64LE(MMAP.ctimeSec); }
  get ctimeNsec(): number { return this.raw.readUInt32LE(MMAP.ctimeNsec); }
  get fileFlags(): number { return this.raw.readUInt32LE(MMAP.fileFlags); }
  get prot(): number { return this.raw.readUInt32LE(MMAP.prot); }
  get mmapFlags(): number { return this.raw.readUInt32LE(MMAP.mmapFlags); }
  get startTimeNs(): bigint { return this.raw.readBigUInt64LE(MMAP.startTimeNs); }
  get layer(): Layer { return classify(this.fileFlags); }
  get pathTruncated(): boolean { return (this.raw.readUInt32LE(MMAP.truncFlags) & TruncFlag.PATH) !== 0; }
  get comm(): string { return (this.cache.comm ??= cstr(this.raw, MMAP.comm, COMM_LEN)); }
  get path(): string {
    return (this.cache.path ??= joinPath(this.raw, MMAP.data, this.raw.readUInt16LE(MMAP.pathLen)));
  }
  get cgroup(): string {
    return (this.cache.cgroup ??= cstr(this.raw, MMAP.data + this.raw.readUInt16LE(MMAP.pathLen), this.raw.readUInt16LE(MMAP.cgroupLen)));
  }
  get cgroupParent(): string {
    const start = MMAP.data + this.raw.readUInt16LE(MMAP.pathLen) + this.raw.readUInt16LE(MMAP.cgroupLen);
    return (this.cache.cgroupParent ??= cstr(this.raw, start, this.raw.readUInt16LE(MMAP.cgparentLen)));
  }
}

export type DecodedEvent = ExecEvent | MmapEvent;

/** Validates one record; returns a view over it (see RecordView.detach) or throws DecodeError with the reason. */
export function decodeRecord(rec: Buffer): DecodedEvent {
  if (rec.length < HEADER_SIZE) throw new DecodeError(`record of ${rec.length} bytes is shorter than its header`);
  const kind = rec.readUInt16LE(HDR.kind);
  const version = rec.readUInt16LE(HDR.version);
  const size = rec.readUInt32LE(HDR.size);
  if (size > rec.length) throw new DecodeError(`record claims ${size} bytes, has ${rec.length}`);
  if (kind === EventKind.MMAP_EXEC) {
    if (version !== MMAP_VERSION) throw new DecodeError(`mmap record version ${version}, expected ${MMAP_VERSION}`);
    if (size < MMAP.data) throw new DecodeError(`mmap record of ${size} bytes is shorter than its fixed part`);
    const l = rec.readUInt16LE(MMAP.pathLen) + rec.readUInt16LE(MMAP.cgroupLen) + rec.readUInt16LE(MMAP.cgparentLen);
    if (MMAP.data + l > size) throw new DecodeError(`mmap record strings (${l} bytes) overrun its size ${size}`);
    return new MmapEvent(size === rec.length ? rec : rec.subarray(0, size));
  }
  if (kind !== EventKind.EXEC) throw new DecodeError(`unknown record kind ${kind}`);
  if (version !== EXEC_VERSION) throw new DecodeError(`exec record version ${version}, expected ${EXEC_VERSION}`);
  if (size < EXEC.data) throw new DecodeError(`exec record of ${size} bytes is shorter than its fixed part`);
  const lens =
    rec.readUInt16LE(EXEC.filenameLen) + rec.readUInt16LE(EXEC.pathLen) + rec.readUInt16LE(EXEC.argvLen) +
    rec.readUInt16LE(EXEC.cgroupLen) + rec.readUInt16LE(EXEC.cgparentLen);
  if (EXEC.data + lens > size) throw new DecodeError(`exec record strings (${lens} bytes) overrun its size ${size}`);
  return new ExecEvent(size === rec.length ? rec : rec.subarray(0, size)); // frames hold exactly one record
}

export interface BatchResult {
  events: DecodedEvent[];
  errors: string[];
}

/** Splits a framed batch and decodes every record; bad records are reported, not thrown. */
export function decodeBatch(batch: Buffer, length = batch.length): BatchResult {
  const events: DecodedEvent[] = [];
  const errors: string[] = [];
  let off = 0;
  while (off + FRAME_HEADER <= length) {
    const len = batch.readUInt32LE(off);
    const end = off + FRAME_HEADER + len;
    if (len === 0 || end > length) {
      errors.push(`frame at ${off} of ${len} bytes overruns the batch (${length})`);
      break;
    }
    try {
      events.push(decodeRecord(batch.subarray(off + FRAME_HEADER, end)));
    } catch (e) {
      errors.push(e instanceof Error ? e.message : String(e));
    }
    off += (FRAME_HEADER + len + 7) & ~7;
  }
  return { events, errors };
}

/** decodeRecord for callers that only handle exec records. */
export function decodeExecRecord(rec: Buffer): ExecEvent {
  const e = decodeRecord(rec);
  if (e.kind !== 'exec') throw new DecodeError(`expected an exec record, got ${e.kind}`);
  return e;
}
