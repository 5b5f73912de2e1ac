// The start-up self-test and `driftwatch doctor` on the real kernel: the
// self-test passes through the running sensor and none of its execs becomes a
// finding; /readyz waits for it; SIGUSR1 and POST /selftest rerun it; doctor
// fills every row. Then things are broken on purpose (the data dir on an
// overlay, capabilities dropped, a runtime socket nobody answers) and the
// self-test and doctor name what broke.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { kernelSkipReason, MiniContainer } from '../helpers/minicontainer.js';
import { SensorProcess, cliPath } from '../helpers/sensor-process.js';

const skip = kernelSkipReason();
if (skip) console.log(`# self-test and doctor tests skipped: ${skip}`);

const ROWS = [
  'kernel', 'overlay BTF', 'overlay layout', 'BPF programs', 'LSM / bprm_check', 'syscall tracepoints', 'cgroups',
  'container runtimes', 'capabilities', 'data dir', 'backend', 'self-test',
];
const CHECKS = ['upper', 'copied_up', 'memfd', 'tmpfs', 'script', 'hash'];

interface Row { check: string; status: 'ok' | 'degraded' | 'missing'; detail: string; fix?: string }
interface Report { rows: Row[]; selftest?: { ok: boolean; userNamespace: boolean; checks: Array<{ check: string; ok: boolean; source?: string }> } }

const work = mkdtempSync(join(tmpdir(), 'dw-selftest-test-'));
const mounts: string[] = [];
after(() => {
  for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
  rmSync(work, { recursive: true, force: true });
});

function doctor(args: string[], wrap: string[] = []): { status: number | null; report: Report; stderr: string } {
  const cmd = [...wrap, process.execPath, cliPath, 'doctor', '--json', ...args];
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', timeout: 120_000 });
  assert.ok(r.stdout, `doctor printed nothing: ${r.stderr}`);
  return { status: r.status, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
}
const row = (rep: Report, check: string): Row => {
  const r = rep.rows.find((x) => x.check === check);
  assert.ok(r, `no ${check} row`);
  return r;
};

async function get(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: res.status, body: await res.text() };
}
const gauge = (metrics: string, check: string) => Number(new RegExp(`^driftwatch_selftest\\{check="${check}"\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
const counter = (metrics: string, name: string) => Number(new RegExp(`^driftwatch_${name} (\\S+)$`, 'm').exec(metrics)?.[1]);

describe('self-test and doctor on this kernel', { skip: skip ?? false }, () => {
  test('doctor: every row, the self-test passes through freshly loaded programs, exit 0', () => {
    const dataDir = mkdtempSync(join(work, 'data-'));
    const { status, report, stderr } = doctor(['--data-dir', dataDir]);
    assert.deepEqual(report.rows.map((r) => r.check), ROWS);
    for (const r of report.rows) assert.ok(['ok', 'degraded', 'missing'].includes(r.status));
    assert.equal(row(report, 'kernel').status, 'ok');
    assert.equal(row(report, 'BPF programs').status, 'ok');
    assert.match(row(report, 'BPF programs').detail, /sched_process_exec/);
    assert.match(row(report, 'overlay layout').detail, /d_fsdata|ovl_entry/);
    assert.equal(row(report, 'data dir').status, 'ok');
    assert.equal(row(report, 'self-test').status, 'ok', JSON.stringify(report.rows));
    assert.deepEqual(report.selftest?.checks.map((c) => [c.check, c.ok]), CHECKS.map((c) => [c, true]));
    // the kernel answers for scripts: through the hook, or without one (degraded row) from the exec's deferred fput
    const hook = row(report, 'LSM / bprm_check');
    const source = report.selftest?.checks.find((c) => c.check === 'script')?.source;
    assert.equal(source, 'kernel', `script layer source with the hook row ${hook.status}`);
    if (hook.status !== 'ok') assert.match(hook.fix ?? '', /deferred fput/);
    assert.equal(status, 0, stderr);
    const table = spawnSync(process.execPath, [cliPath, 'doctor', '--data-dir', dataDir], { encoding: 'utf8', timeout: 120_000 });
    for (const name of ROWS) assert.match(table.stdout, new RegExp(`^${name.replace(/[/]/g, '\\/')}\\s+(ok|degraded|missing)\\s`, 'm'));
    assert.match(table.stdout, /^drift detection works on this node/m);
  });

  test('run: /readyz waits for the self-test, the gauge says pass, reruns on SIGUSR1 and POST, no finding from it', async () => {
    const ct = new MiniContainer();
    const s = await SensorProcess.start();
    try {
      await s.waitFor(() => /self-test (passed|FAILED)/.test(s.stderr), 30_000, 'the self-test');
      assert.match(s.stderr, /self-test passed: drift from the upper layer, copied-up files, memfd, tmpfs and #! scripts is detected/);
      const port = s.metricsPort;
      assert.deepEqual(await get(port, '/readyz'), { status: 200, body: 'ready\n' });
      let m = (await get(port, '/metrics')).body;
      for (const c of CHECKS) assert.equal(gauge(m, c), 1, `selftest{check="${c}"}`);
      assert.equal(counter(m, 'selftest_runs_total'), 1);
      assert.ok(counter(m, 'selftest_events_total') >= 5, 'the five probe execs were claimed');

      const posted = JSON.parse((await get(port, '/selftest', 'POST')).body) as { ok: boolean; checks: unknown[] };
      assert.equal(posted.ok, true);
      assert.equal(posted.checks.length, CHECKS.length);
      process.kill(s.pid, 'SIGUSR1');
      await s.waitFor(() => (s.stderr.match(/self-test passed/g) ?? []).length >= 3, 30_000, 'the SIGUSR1 rerun');
      m = (await get(port, '/metrics')).body;
      assert.equal(counter(m, 'selftest_runs_total'), 3);

      // drift next to it is still reported: the self-test claims only its own tree
      ct.run('cp /bin/busybox /tmp/dropped && /tmp/dropped true dw-after-selftest');
      await s.finding((f) => f.process.args.includes('dw-after-selftest') && f.signature.id === 'drift.new_executable', 'drift after the self-test');
      const leaked = s.findings.filter((f) => f.process.args.includes('--probe') || f.process.comm === 'dw-selftest' || /^\/(bin\/(new|copied|script)|shm\/probe)$/.test(f.process.executable.path));
      assert.deepEqual(leaked, [], 'self-test execs never become findings');
    } finally {
      assert.equal(await s.stop('SIGTERM'), 0);
      const stored = spawnSync(process.execPath, [cliPath, 'findings', '--db', join(s.dataDir, 'findings.db'), '--json'], { encoding: 'utf8' });
      assert.doesNotMatch(stored.stdout, /--probe/, 'nothing of the self-test was exported');
      s.cleanup();
      ct.destroy();
    }
  });

  test('broken on purpose: the data dir on an overlay; the self-test fails, /readyz stays 503 naming why, doctor says so', async () => {
    // a data dir that is itself on overlayfs, as when the DaemonSet's hostPath is left out
    const o = mkdtempSync(join(work, 'ovl-'));
    for (const d of ['l', 'u', 'w', 'm']) mkdirSync(join(o, d));
    const r = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${o}/l,upperdir=${o}/u,workdir=${o}/w`, `${o}/m`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    mounts.push(`${o}/m`);
    const s = await SensorProcess.start(['--data-dir', `${o}/m`]);
    try {
      await s.waitFor(() => /self-test (passed|FAILED)/.test(s.stderr), 30_000, 'the self-test');
      assert.match(s.stderr, /self-test FAILED, drift detection is incomplete on this node: cannot mount an overlay on the data dir's filesystem/);
      const ready = await get(s.metricsPort, '/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.body, /not ready: self-test failed: cannot mount an overlay/);
      const m = (await get(s.metricsPort, '/metrics')).body;
      for (const c of CHECKS) assert.equal(gauge(m, c), 0, `selftest{check="${c}"}`);
    } finally {
      await s.stop();
      s.cleanup();
    }
    const { report, status } = doctor(['--data-dir', `${o}/m`]);
    assert.equal(row(report, 'self-test').status, 'missing');
    assert.match(row(report, 'self-test').detail, /cannot mount an overlay on the data dir's filesystem/);
    assert.equal(status, 1);
  });

  test('broken on purpose: CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN dropped; doctor names them and the self-test cannot run', () => {
    const dataDir = mkdtempSync(join(work, 'data-'));
    const drop = '-bpf,-perfmon,-sys_admin';
    const { report, status } = doctor(['--data-dir', dataDir], ['setpriv', '--bounding-set', drop, '--inh-caps', drop]);
    assert.equal(row(report, 'capabilities').status, 'missing');
    assert.match(row(report, 'capabilities').fix ?? '', /CAP_BPF and CAP_PERFMON/);
    assert.equal(row(report, 'BPF programs').status, 'missing');
    assert.equal(row(report, 'self-test').status, 'missing');
    assert.match(row(report, 'self-test').detail, /not run: not allowed to load BPF programs/);
    assert.equal(status, 1);
  });

  test('the DaemonSet\'s capabilities (no CAP_SYS_ADMIN): the self-test passes in a user namespace', () => {
    const dataDir = mkdtempSync(join(work, 'data-'));
    const { report } = doctor(['--data-dir', dataDir], ['setpriv', '--bounding-set', '-sys_admin', '--inh-caps', '-sys_admin']);
    assert.doesNotMatch(row(report, 'capabilities').detail, /SYS_ADMIN/);
    // The DaemonSet's capability set must load the programs (a local struct
    // with CO-RE relocations once made libbpf search module BTF, which needs
    // CAP_SYS_ADMIN): fail, never skip, when it does not.
    assert.notEqual(row(report, 'BPF programs').status, 'missing', row(report, 'BPF programs').detail);
    assert.equal(row(report, 'self-test').status, 'ok', row(report, 'self-test').detail);
    assert.equal(report.selftest?.userNamespace, true);
  });

  test('broken on purpose: a CRI socket nobody answers; doctor names the socket', () => {
    const sock = join(work, 'containerd.sock');
    // a socket file left behind by a runtime that is gone: bound, nobody listening
    spawnSync('python3', ['-c', `import socket;s=socket.socket(socket.AF_UNIX);s.bind(${JSON.stringify(sock)})`]);
    const dataDir = mkdtempSync(join(work, 'data-'));
    const { report } = doctor(['--data-dir', dataDir, '--cri-socket', sock]);
    const rt = row(report, 'container runtimes');
    assert.equal(rt.status, 'degraded');
    assert.match(rt.detail, new RegExp(`not reachable: ${sock.replace(/[.]/g, '\\.')} \\(ECONNREFUSED\\)`));
    assert.match(rt.fix ?? '', /mount the runtime socket/);
  });
});
