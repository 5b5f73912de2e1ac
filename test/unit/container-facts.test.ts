// File facts for processes that are gone: read through a live process of the
// container (found by its cgroup and mount namespace) or from the runtime's
// upper dir, only when the file is the one the kernel recorded. Real files,
// real /proc, a cgroup tree laid out in a temp dir (its directory inode
// stands for the cgroup id, as on cgroup2).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ContainerStorage } from '../../src/enrich/container-storage.js';
import { MetadataResolver, type ContainerMetadata } from '../../src/enrich/metadata.js';
import { decodeBatch } from '../../src/pipeline/decode.js';
import { createEnricher } from '../../src/pipeline/enrich.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { FileFlag } from '../../src/pipeline/records.js';
import { encodeExec, frame, type RecordSpec } from '../../src/sdk/encode.js';
import type { DetectionEvent } from '../../src/sdk/signature.js';

const dir = mkdtempSync(join(tmpdir(), 'dw-facts-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ID = 'a'.repeat(64);
const UPPER_NEW = FileFlag.OVERLAY | FileFlag.OVL_UPPER_DENTRY | FileFlag.OVL_UPPER_ALIAS;
const DEAD_PID = 4_000_000; // above any pid_max: no such process
const ownMntNs = Number(/\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/mnt'))![1]);

/** The kernel's dev_t (major << 20 | minor) of a user-space st_dev (glibc's encoding). */
function kernelDev(dev: number): number {
  const d = BigInt(dev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return (major << 20) | minor;
}

/** A record as the kernel would write it for the file at path (identity from stat). */
function recordFor(file: string, containerPath: string, extra: RecordSpec = {}) {
  const st = statSync(file, { bigint: true });
  const spec: RecordSpec = {
    hostPid: DEAD_PID,
    fileFlags: UPPER_NEW,
    inode: st.ino,
    dev: kernelDev(Number(st.dev)),
    ctimeSec: st.ctimeNs / 1_000_000_000n,
    ctimeNsec: Number(st.ctimeNs % 1_000_000_000n),
    path: containerPath,
    args: [containerPath],
    cgroup: ID,
    cgroupParent: 'docker',
    mntNs: ownMntNs,
    pidNs: 1,
    ...extra,
  };
  return decodeBatch(frame([encodeExec(spec)])).events[0]!;
}

function enricherWith(rootfs: ContainerMetadata['rootfs'] | undefined, storage = new ContainerStorage({ cgroupRoot: join(dir, 'no-cgroups') })) {
  const metrics = new Metrics();
  const source = { name: 'test', lookup: async (id: string): Promise<ContainerMetadata> => ({ id, runtime: 'docker', ...(rootfs ? { rootfs } : {}) }) };
  const enricher = createEnricher({ host: { mnt: 1, pid: 2 }, metrics, resolver: new MetadataResolver([source]), storage });
  return { metrics, enrich: async (rec: ReturnType<typeof recordFor>) => (await enricher.enrich(rec)) as DetectionEvent };
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

test('the process is gone: the hash comes from the runtime\'s upper dir when inode and ctime match', async () => {
  const upper = join(dir, 'upper1');
  mkdirSync(join(upper, 'tmp'), { recursive: true });
  writeFileSync(join(upper, 'tmp', 'payload'), 'dropped payload 1', { mode: 0o755 });
  const { enrich, metrics } = enricherWith({ upper, lowers: [] });
  const ev = await enrich(recordFor(join(upper, 'tmp', 'payload'), '/tmp/payload'));
  assert.equal(ev.file?.sha256, sha('dropped payload 1'));
  assert.equal(ev.file?.source, 'runtime_storage');
  assert.equal(metrics.total('file_hash_unavailable_total'), 0);
});

test('a file swapped in at the same path is not hashed: reason replaced, counted', async () => {
  const upper = join(dir, 'upper2');
  mkdirSync(join(upper, 'tmp'), { recursive: true });
  writeFileSync(join(upper, 'tmp', 'payload'), 'what ran');
  const rec = recordFor(join(upper, 'tmp', 'payload'), '/tmp/payload');
  writeFileSync(join(upper, 'tmp', 'other'), 'an innocent file');
  renameSync(join(upper, 'tmp', 'other'), join(upper, 'tmp', 'payload'));
  const { enrich, metrics } = enricherWith({ upper, lowers: [] });
  const ev = await enrich(rec);
  assert.equal(ev.file?.sha256, undefined);
  assert.equal(ev.file?.sha256Unavailable, 'replaced');
  assert.equal(metrics.get('file_hash_unavailable_total', { reason: 'replaced' }), 1);
});

test('no live process and no runtime storage: reason container_gone, counted', async () => {
  const file = join(dir, 'lonely');
  writeFileSync(file, 'x');
  const { enrich, metrics } = enricherWith(undefined);
  const ev = await enrich(recordFor(file, '/lonely'));
  assert.equal(ev.file?.sha256Unavailable, 'container_gone');
  assert.equal(metrics.get('file_hash_unavailable_total', { reason: 'container_gone' }), 1);
});

test('a live process of the container (its cgroup, same mount namespace) reaches the file through /proc/<pid>/root', async () => {
  // the container's cgroup: <root>/docker/<id>, whose directory inode is the cgroup id; this process is its member
  const cgRoot = join(dir, 'cgroup');
  const cg = join(cgRoot, 'docker', ID);
  mkdirSync(cg, { recursive: true });
  writeFileSync(join(cg, 'cgroup.procs'), `${process.pid}\n`);
  const file = join(dir, 'in-container-file');
  writeFileSync(file, 'seen through a sibling');
  const storage = new ContainerStorage({ cgroupRoot: cgRoot });
  const { enrich } = enricherWith(undefined, storage);
  const ev = await enrich(recordFor(file, file, { cgroupId: statSync(cg, { bigint: true }).ino }));
  assert.equal(ev.file?.sha256, sha('seen through a sibling'));
  assert.equal(ev.file?.source, 'container_process');

  // the same names under another cgroup id (a recreated cgroup) are not taken for it
  const other = new ContainerStorage({ cgroupRoot: cgRoot });
  assert.deepEqual(await other.livePids({ cgroupId: 12345n, cgroup: ID, cgroupParent: 'docker', mntNs: ownMntNs }), []);
  // a member in another mount namespace is not used
  assert.deepEqual(await storage.livePids({ cgroupId: statSync(cg, { bigint: true }).ino, cgroup: ID, cgroupParent: 'docker', mntNs: ownMntNs + 1 }), []);
});

test('a copied-up file in the upper dir matches through its image copy\'s inode number (overlay keeps it), and only with the recorded ctime', async () => {
  const upper = join(dir, 'upper-cu');
  const lower = join(dir, 'lower-cu');
  mkdirSync(join(upper, 'bin'), { recursive: true });
  mkdirSync(join(lower, 'bin'), { recursive: true });
  writeFileSync(join(lower, 'bin', 'tool'), 'image tool');
  writeFileSync(join(upper, 'bin', 'tool'), 'image tool', { mode: 0o755 }); // chmod copy-up: same content
  const up = statSync(join(upper, 'bin', 'tool'), { bigint: true });
  const low = statSync(join(lower, 'bin', 'tool'), { bigint: true });
  const copiedUp = FileFlag.OVERLAY | FileFlag.OVL_UPPER_DENTRY | FileFlag.OVL_UPPER_ALIAS | FileFlag.OVL_HAS_LOWER;
  const as = (inode: bigint) => recordFor(join(upper, 'bin', 'tool'), '/bin/tool', { fileFlags: copiedUp, inode, ctimeSec: up.ctimeNs / 1_000_000_000n, ctimeNsec: Number(up.ctimeNs % 1_000_000_000n) });
  const { enrich } = enricherWith({ upper, lowers: [lower] });
  const ev = await enrich(as(low.ino));
  assert.equal(ev.file?.sha256, sha('image tool'));
  assert.equal(ev.file?.source, 'runtime_storage');
  assert.equal(ev.file?.sameAsImage, true);
  // an inode number that is neither the upper file's nor an image copy's: refused
  const other = await enricherWith({ upper, lowers: [lower] }).enrich(as(low.ino + 7n));
  assert.equal(other.file?.sha256, undefined);
  assert.equal(other.file?.sha256Unavailable, 'replaced');
});
