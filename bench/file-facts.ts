// Row 6: what the trust rule for file facts costs. Hashing an executable
// through safe-open (openat2 in root, O_PATH, fstat, identity check, reopen,
// read, re-check) against a plain read of the same file; and a refused
// lookup (the path swapped for a symlink), which is what a container that
// plays the swap game makes the sensor pay per finding.
import { createHash } from 'node:crypto';
import { copyFileSync, createReadStream, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openInRoot, sha256InRoot, type KernelFileId } from '../src/enrich/safe-open.js';

export interface FileFactsResult {
  fileBytes: number;
  plainUs: number;
  safeUs: number;
  refusedUs: number;
}

async function plainSha(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

const perOp = async (n: number, op: () => Promise<unknown>): Promise<number> => {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await op();
  return Number(process.hrtime.bigint() - t0) / n / 1e3;
};

export async function fileFacts(iterations = 200, source = '/bin/busybox'): Promise<FileFactsResult> {
  const root = mkdtempSync(join(tmpdir(), 'driftwatch-bench-ff-'));
  try {
    mkdirSync(join(root, 'tmp'));
    const exe = join(root, 'tmp', 'payload');
    copyFileSync(source, exe);
    symlinkSync('/etc/hostname', join(root, 'tmp', 'swapped'));
    const st = statSync(exe, { bigint: true });
    const major = Number((st.dev >> 8n) & 0xfffn);
    const minor = Number(st.dev & 0xffn) | Number((st.dev >> 12n) & ~0xffn);
    const id: KernelFileId = { dev: (major << 20) | minor, inode: st.ino, ctimeSec: st.ctimeNs / 1_000_000_000n, ctimeNsec: Number(st.ctimeNs % 1_000_000_000n) };
    const expect = { kind: 'same' as const, file: id };
    const check = await sha256InRoot(root, '/tmp/payload', { expect });
    if (check.sha256 !== (await plainSha(exe))) throw new Error(`safe-open hash differs: ${JSON.stringify(check)}`);
    // Warm up, then alternate so drift in machine load hits both alike.
    await perOp(20, () => plainSha(exe));
    await perOp(20, () => sha256InRoot(root, '/tmp/payload', { expect }));
    let plainUs = 0;
    let safeUs = 0;
    for (let round = 0; round < 4; round++) {
      plainUs += await perOp(iterations / 4, () => plainSha(exe));
      safeUs += await perOp(iterations / 4, () => sha256InRoot(root, '/tmp/payload', { expect }));
    }
    const refusedUs = await perOp(iterations * 5, () => openInRoot(root, '/tmp/swapped', { expect }));
    return { fileBytes: Number(st.size), plainUs: plainUs / 4, safeUs: safeUs / 4, refusedUs };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) fileFacts(Number(process.argv[2] ?? 200)).then((r) => console.log(r));
