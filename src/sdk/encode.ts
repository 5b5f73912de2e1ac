// Builds exec records byte for byte as the kernel does (events.h), for
// decoder and signature tests that need cases no recording has.
import { ANCESTOR_SIZE, EXEC, EXEC_VERSION, EventKind, FRAME_HEADER, HDR } from '../pipeline/records.js';

export interface RecordSpec {
  hostPid?: number;
  hostPpid?: number;
  pid?: number;
  ppid?: number;
  uid?: number;
  gid?: number;
  mntNs?: number;
  pidNs?: number;
  cgroupId?: bigint;
  inode?: bigint;
  dev?: number;
  ctimeSec?: bigint;
  ctimeNsec?: number;
  mode?: number;
  nlink?: number;
  fsMagic?: number;
  fileFlags?: number;
  truncFlags?: number;
  /** ScriptFlag.KNOWN | the script's FileFlag bits (a bprm_check hook saw it). */
  scriptFlags?: number;
  ktimeNs?: bigint;
  startTimeNs?: bigint;
  comm?: string;
  filename?: string;
  /** Path as the process sees it; stored leaf first like the kernel does. */
  path?: string;
  args?: string[];
  cgroup?: string;
  cgroupParent?: string;
  session?: number;
  /** Host pid of the exec session's first process (the kernel's session leader). */
  sessionHostPid?: number;
  ancestors?: Array<{ hostPid: number; comm: string }>;
  version?: number;
  kind?: number;
}

const z = (s: string) => Buffer.from(s + '\0');

export function encodeExec(s: RecordSpec = {}): Buffer {
  const filename = z(s.filename ?? '/tmp/x');
  const path = s.path ?? '/tmp/x';
  const parts = path.startsWith('/') ? path.slice(1).split('/').filter(Boolean) : [path];
  const pathBuf = Buffer.concat(parts.reverse().map(z));
  const argv = Buffer.concat((s.args ?? ['/tmp/x']).map(z));
  const cg = z(s.cgroup ?? '');
  const cgp = z(s.cgroupParent ?? '');
  const size = EXEC.data + filename.length + pathBuf.length + argv.length + cg.length + cgp.length;
  const b = Buffer.alloc(size);
  b.writeUInt16LE(s.kind ?? EventKind.EXEC, HDR.kind);
  b.writeUInt16LE(s.version ?? EXEC_VERSION, HDR.version);
  b.writeUInt32LE(size, HDR.size);
  b.writeBigUInt64LE(s.ktimeNs ?? 1_000_000_000n, HDR.ktimeNs);
  b.writeUInt32LE(s.hostPid ?? 4242, EXEC.hostPid);
  b.writeUInt32LE(s.hostPid ?? 4242, EXEC.hostTid);
  b.writeUInt32LE(s.hostPpid ?? 4241, EXEC.hostPpid);
  b.writeUInt32LE(s.pid ?? 7, EXEC.nsPid);
  b.writeUInt32LE(s.pid ?? 7, EXEC.nsTid);
  b.writeUInt32LE(s.ppid ?? 1, EXEC.nsPpid);
  b.writeUInt32LE(s.uid ?? 0, EXEC.uid);
  b.writeUInt32LE(s.gid ?? 0, EXEC.gid);
  b.writeBigUInt64LE(s.cgroupId ?? 1n, EXEC.cgroupId);
  b.writeUInt32LE(s.mntNs ?? 4026532001, EXEC.mntNs);
  b.writeUInt32LE(s.pidNs ?? 4026532002, EXEC.pidNs);
  b.writeBigUInt64LE(s.inode ?? 1234n, EXEC.inode);
  b.writeUInt32LE(s.dev ?? (0 << 20) | 52, EXEC.dev);
  b.writeUInt32LE(s.mode ?? 0o100755, EXEC.mode);
  b.writeUInt32LE(s.nlink ?? 1, EXEC.nlink);
  b.writeUInt32LE(s.fsMagic ?? 0x794c7630, EXEC.fsMagic);
  b.writeBigInt64LE(s.ctimeSec ?? 1_795_000_000n, EXEC.ctimeSec);
  b.writeUInt32LE(s.ctimeNsec ?? 0, EXEC.ctimeNsec);
  b.writeUInt32LE(s.fileFlags ?? 0, EXEC.fileFlags);
  b.writeUInt32LE(s.truncFlags ?? 0, EXEC.truncFlags);
  b.writeUInt16LE(s.scriptFlags ?? 0, EXEC.scriptFlags);
  b.writeUInt16LE(filename.length, EXEC.filenameLen);
  b.writeUInt16LE(pathBuf.length, EXEC.pathLen);
  b.writeUInt16LE(argv.length, EXEC.argvLen);
  b.writeUInt16LE(cg.length, EXEC.cgroupLen);
  b.writeUInt16LE(parts.length, EXEC.pathDepth);
  b.writeBigUInt64LE(s.startTimeNs ?? 999_000_000n, EXEC.startTimeNs);
  b.write((s.comm ?? 'x').slice(0, 15), EXEC.comm);
  b[EXEC.session] = s.session ?? 1;
  b.writeUInt32LE(s.sessionHostPid ?? 0, EXEC.sessionHostPid);
  const anc = s.ancestors ?? [];
  b[EXEC.ancestorsLen] = anc.length;
  b.writeUInt16LE(cgp.length, EXEC.cgparentLen);
  anc.slice(0, 4).forEach((a, i) => {
    b.writeUInt32LE(a.hostPid, EXEC.ancestors + i * ANCESTOR_SIZE);
    b.write(a.comm.slice(0, 15), EXEC.ancestors + i * ANCESTOR_SIZE + 4);
  });
  Buffer.concat([filename, pathBuf, argv, cg, cgp]).copy(b, EXEC.data);
  return b;
}

/** Frames records exactly as Loader.consume() does. */
export function frame(records: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const r of records) {
    const total = (FRAME_HEADER + r.length + 7) & ~7;
    const f = Buffer.alloc(total);
    f.writeUInt32LE(r.length, 0);
    r.copy(f, FRAME_HEADER);
    parts.push(f);
  }
  return Buffer.concat(parts);
}
