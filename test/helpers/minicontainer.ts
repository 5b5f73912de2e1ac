// A minimal container for kernel tests: a busybox image as the overlay lower
// layer, mounted inside a private mount + pid namespace and chroot'ed into.
// The mounts live only in that namespace, so they vanish with its last
// process even if a test fails half way.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];
const APPLETS = ['sh', 'true', 'cp', 'chmod', 'ln', 'cat', 'echo', 'mkdir', 'rm', 'sleep', 'ls', 'touch', 'mount'];

/** Why kernel tests cannot run here, or null when they can. */
export function kernelSkipReason(): string | null {
  if (process.platform !== 'linux') return 'kernel tests need Linux';
  if (process.getuid?.() !== 0) return 'kernel tests need root (BPF, mounts, namespaces)';
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'kernel has no BTF (/sys/kernel/btf/vmlinux)';
  if (!readFileSync('/proc/filesystems', 'utf8').includes('overlay')) {
    spawnSync('modprobe', ['overlay']);
    if (!readFileSync('/proc/filesystems', 'utf8').includes('overlay')) return 'overlayfs is not available';
  }
  if (!busyboxPath()) return 'busybox-static is not installed';
  if (!existsSync(join(repoRoot, 'native', 'build', 'Release', 'ebpf_napi_loader.node'))) return 'native addon not built';
  return null;
}

function busyboxPath(): string | undefined {
  return BUSYBOX_CANDIDATES.find((p) => existsSync(p));
}

let dwexecCache: string | undefined;
/** Static build of test/fixtures/dwexec.c (memfd and unlinked-file exec). */
export function dwexecBinary(): string {
  if (dwexecCache && existsSync(dwexecCache)) return dwexecCache;
  const outDir = join(repoRoot, '.test-artifacts');
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, 'dwexec');
  execFileSync('cc', ['-static', '-O2', '-o', out, join(repoRoot, 'test', 'fixtures', 'dwexec.c')]);
  dwexecCache = out;
  return out;
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

let preloadCache: string | undefined;
/** A tiny shared library (test/fixtures/preload.c) to inject with LD_PRELOAD. */
export function preloadLibrary(): string {
  if (preloadCache && existsSync(preloadCache)) return preloadCache;
  const out = join(repoRoot, '.test-artifacts', 'libdwpreload.so');
  mkdirSync(dirname(out), { recursive: true });
  execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', out, join(repoRoot, 'test', 'fixtures', 'preload.c')]);
  preloadCache = out;
  return out;
}

/** The host's dynamic loader and libc, and a dynamic binary using them. */
function dynamicRuntime(): Array<[string, string]> {
  const out = execFileSync('ldd', ['/bin/true'], { encoding: 'utf8' });
  const files: Array<[string, string]> = [['/bin/true', 'bin/true-dyn']];
  for (const m of out.matchAll(/(\/\S+\.so[^\s]*)/g)) files.push([m[1]!, m[1]!.slice(1)]);
  return files;
}

/** One image (lower dir) per test file; each run gets a fresh upper layer. */
export class MiniContainer {
  readonly dir: string;
  readonly lower: string;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'driftwatch-ct-'));
    this.lower = join(this.dir, 'lower');
    const bin = join(this.lower, 'bin');
    mkdirSync(bin, { recursive: true });
    for (const d of ['tmp', 'dev/shm', 'proc', 'etc', 'mnt/vol', 'mnt/ro']) mkdirSync(join(this.lower, d), { recursive: true });
    // A dynamic binary with its loader and libraries, for LD_PRELOAD and ld.so cases.
    for (const [from, to] of dynamicRuntime()) {
      mkdirSync(dirname(join(this.lower, to)), { recursive: true });
      copyFileSync(from, join(this.lower, to));
    }
    // Volumes: a writable and a read-only bind mount of host directories.
    for (const v of ['vol', 'ro']) {
      mkdirSync(join(this.dir, v), { recursive: true });
      cpSync(busyboxPath()!, join(this.dir, v, 'busybox-vol'));
    }
    // busybox re-runs applets through /proc/self/exe by name: keep the name.
    cpSync(busyboxPath()!, join(bin, 'busybox'));
    for (const a of APPLETS) symlinkSync('busybox', join(bin, a));
    // A second image binary to modify, and the fileless launcher.
    cpSync(busyboxPath()!, join(bin, 'busybox-img'));
    cpSync(dwexecBinary(), join(bin, 'dwexec'));
    cpSync(preloadLibrary(), join(this.dir, 'vol', 'libdwpreload.so'));
  }

  /**
   * Runs `script` with /bin/sh inside a fresh overlay of the image, in new
   * mount and pid namespaces; /dev/shm inside is a tmpfs.
   */
  run(script: string, opts: { timeoutMs?: number; cgroup?: string } = {}): RunResult {
    const { runDir, args } = this.prepare(script);
    // In a cgroup of its own (a directory of the unified hierarchy), when asked: moved there before unshare runs.
    const argv = opts.cgroup ? ['/bin/sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', opts.cgroup, 'unshare', ...args] : ['unshare', ...args];
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: opts.timeoutMs ?? 20_000 });
    rmSync(runDir, { recursive: true, force: true });
    return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  /**
   * Like run, without waiting: the test can act while the container lives.
   * `output` holds what the script printed so far.
   */
  start(script: string, opts: { timeoutMs?: number } = {}): { output: () => string; done: Promise<RunResult> } {
    const { runDir, args } = this.prepare(script);
    const child = spawn('unshare', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.timeoutMs ?? 20_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const done = new Promise<RunResult>((res) =>
      child.on('close', (status) => {
        rmSync(runDir, { recursive: true, force: true });
        res({ status, stdout, stderr });
      }),
    );
    return { output: () => stdout, done };
  }

  private prepare(script: string): { runDir: string; args: string[] } {
    const runDir = mkdtempSync(join(this.dir, 'run-'));
    const upper = join(runDir, 'upper');
    const work = join(runDir, 'work');
    const merged = join(runDir, 'merged');
    for (const d of [upper, work, merged]) mkdirSync(d);
    const setup = [
      'set -e',
      'mount --make-rprivate /',
      `mount -t overlay overlay -o lowerdir=${this.lower},upperdir=${upper},workdir=${work} ${merged}`,
      `mount -t tmpfs tmpfs ${merged}/dev/shm`,
      `mount -t proc proc ${merged}/proc`,
      `mount --bind ${this.dir}/vol ${merged}/mnt/vol`,
      `mount --bind ${this.dir}/ro ${merged}/mnt/ro`,
      `mount -o remount,bind,ro ${merged}/mnt/ro`,
      `exec chroot ${merged} /bin/sh -c "$1"`,
    ].join('\n');
    return { runDir, args: ['--mount', '--pid', '--fork', '/bin/sh', '-c', setup, 'minicontainer', script] };
  }

  destroy(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** An overlay mounted in the host's own mount namespace (for host-process cases). */
export function mountHostOverlay(lower: string): { merged: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-host-'));
  const [upper, work, merged] = ['upper', 'work', 'merged'].map((d) => join(dir, d)) as [string, string, string];
  for (const d of [upper, work, merged]) mkdirSync(d);
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged]);
  return {
    merged,
    cleanup: () => {
      spawnSync('umount', ['-l', merged]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The BPF programs and links a process holds (from its fds), by id. Other
 * sensors may run on the same machine: leak checks look at these ids only,
 * never at every program with our names.
 */
export interface BpfObjects {
  progs: number[];
  links: number[];
}

export function bpfObjectsOf(pid: number): BpfObjects {
  const progs = new Set<number>();
  const links = new Set<number>();
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return { progs: [], links: [] };
  }
  for (const fd of fds) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const link = /^link_id:\s*(\d+)$/m.exec(info);
    const prog = /^prog_id:\s*(\d+)$/m.exec(info);
    if (link) links.add(Number(link[1]));
    else if (prog) progs.add(Number(prog[1]));
  }
  return { progs: [...progs].sort((x, y) => x - y), links: [...links].sort((x, y) => x - y) };
}

function loadedIds(kind: 'prog' | 'link'): Set<number> {
  const r = spawnSync('bpftool', [kind, 'show', '--json'], { encoding: 'utf8' });
  if (r.status !== 0) return new Set();
  return new Set((JSON.parse(r.stdout || '[]') as Array<{ id: number }>).map((o) => o.id));
}

/** Which of ids the kernel still has, as "prog:<id>"/"link:<id>"; programs are freed after their last fd closes (RCU): allow it a moment. */
export async function waitForBpfObjectsGone(ids: BpfObjects, timeoutMs = 5_000): Promise<string[]> {
  const left = () => {
    const progs = loadedIds('prog');
    const links = loadedIds('link');
    return [...ids.progs.filter((i) => progs.has(i)).map((i) => `prog:${i}`), ...ids.links.filter((i) => links.has(i)).map((i) => `link:${i}`)];
  };
  const deadline = Date.now() + timeoutMs;
  let l = left();
  while (l.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    l = left();
  }
  return l;
}

/** Overlay mounts left behind by tests in the host namespace. */
export function leftoverTestMounts(): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.includes('driftwatch-ct-') || l.includes('driftwatch-host-'));
}

/**
 * A cgroup that names a container (`driftwatch-test/<64 hex>` in the unified
 * hierarchy), for tests that must tell their own mini-containers from the
 * other ones on the machine: the sensor describes it like any container, by
 * its id. remove() after the processes in it have exited.
 */
export function containerCgroup(unifiedRoot: string): { id: string; path: string; remove: () => void } {
  const id = randomBytes(32).toString('hex');
  const parent = join(unifiedRoot, 'driftwatch-test');
  const path = join(parent, id);
  mkdirSync(path, { recursive: true });
  return {
    id,
    path,
    remove: () => {
      spawnSync('rmdir', [path]);
      spawnSync('rmdir', [parent]); // fails while another test's cgroup is there: fine
    },
  };
}
