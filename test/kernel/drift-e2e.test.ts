// End to end on the real kernel: the CLI loads our BPF object, real execs run
// in a minimal overlay container, and findings come out as JSON lines.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import {
  MiniContainer,
  kernelSkipReason,
  leftoverTestMounts,
  mountHostOverlay,
  waitForBpfObjectsGone,
} from '../helpers/minicontainer.js';
import { SensorProcess, argsContain, cliPath, type Finding } from '../helpers/sensor-process.js';

const skip = kernelSkipReason();
if (skip) console.log(`# kernel end-to-end tests skipped: ${skip}`);

describe('drift end to end (real kernel, overlay mini-container)', { skip: skip ?? false }, () => {
  let ct: MiniContainer;
  let sensor: SensorProcess;
  const nonce = () => randomBytes(4).toString('hex');

  before(async () => {
    ct = new MiniContainer();
    sensor = await SensorProcess.start(['--mmap-tracepoint']); // exec mappings, where LSM and fentry are refused
    assert.notDeepEqual(sensor.bpf.progs, [], 'the sensor holds its programs');
  });

  after(async () => {
    const code = await sensor?.stop('SIGTERM');
    ct?.destroy();
    assert.equal(code, 0, `sensor exits 0 on SIGTERM; stderr:\n${sensor?.stderr.slice(-1000)}`);
    // Every finding printed was also exported over gRPC to the embedded backend and stored.
    const r = spawnSync(process.execPath, [cliPath, 'findings', '--db', join(sensor.dataDir, 'findings.db'), '--json', '--limit', '10000'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const stored = new Set(r.stdout.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as Finding).id));
    assert.ok(sensor.findings.length > 5);
    for (const f of sensor.findings) assert.ok(stored.has(f.id), `finding ${f.id} (${f.signature.id}) stored by the backend`);
    sensor.cleanup();
    assert.notDeepEqual(sensor.bpf.progs, [], 'the sensor held programs');
    assert.deepEqual(await waitForBpfObjectsGone(sensor.bpf), [], 'no program or link left after the sensor stopped');
    assert.deepEqual(leftoverTestMounts(), [], 'no test mounts left');
  });

  function run(script: string): void {
    const r = ct.run(script);
    assert.equal(r.status, 0, `container script failed: ${r.stderr}`);
  }

  /** Runs a new-binary exec as a barrier: once its finding is in, earlier execs were delivered. */
  async function barrier(): Promise<void> {
    const n = nonce();
    run(`cp /bin/busybox /tmp/busybox-barrier; /tmp/busybox-barrier true ${n}`);
    await sensor.finding(argsContain(n), 'barrier finding');
  }

  test('the sensor says which hooks it attached', () => {
    assert.match(sensor.stderr, /raw_tp\/sched_process_exec/);
  });

  test('/metrics shows the kernel, pipeline and export counters; /healthz and /readyz answer', async () => {
    const n = nonce();
    run(`cp /bin/busybox /tmp/busybox-m${n}; /tmp/busybox-m${n} true ${n}`);
    await sensor.finding(argsContain(n), 'finding before scraping');
    const base = `http://127.0.0.1:${sensor.metricsPort}`;
    const text = await (await fetch(`${base}/metrics`)).text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    assert.ok(value(/^driftwatch_kernel_exec_seen (\d+)$/m) > 0, text.slice(0, 2000));
    assert.ok(value(/^driftwatch_kernel_exec_filtered (\d+)$/m) > 0);
    assert.equal(value(/^driftwatch_kernel_ringbuf_full (\d+)$/m), 0);
    assert.ok(value(/^driftwatch_findings_total\{signature="drift.new_executable"\} (\d+)$/m) >= 1);
    assert.ok(value(/^driftwatch_events_decoded_total (\d+)$/m) >= 1);
    assert.ok(value(/^driftwatch_export_spooled_total (\d+)$/m) >= 1);
    assert.ok(value(/^driftwatch_events_total\{kind="exec"\} (\d+)$/m) >= 1);
    assert.equal(value(/^driftwatch_decode_errors_total (\d+)$/m), 0, 'drop counters exist before the first drop');
    assert.ok(!Number.isNaN(value(/^driftwatch_findings_total\{signature="drift.fileless_exec"\} (\d+)$/m)), 'a zero series for a signature that has not fired');
    // Counts are typed counters; the kernel's old gauge names stay beside the _total ones.
    assert.match(text, /^# TYPE driftwatch_kernel_exec_seen_total counter$/m);
    assert.ok(value(/^driftwatch_kernel_exec_seen_total (\d+)$/m) >= value(/^driftwatch_kernel_exec_seen (\d+)$/m));
    assert.match(text, /^# TYPE driftwatch_export_spooled_total counter$/m);
    assert.match(text, /^# TYPE driftwatch_finding_latency_seconds histogram$/m);
    assert.ok(value(/^driftwatch_finding_latency_seconds_count (\d+)$/m) >= 1, 'exec → finding latency observed');
    assert.ok(value(/^driftwatch_finding_latency_seconds_sum (\S+)$/m) > 0);
    assert.ok(value(/^process_resident_memory_bytes (\d+)$/m) > 0, 'process metrics');
    assert.match(text, /^nodejs_eventloop_lag_p99_seconds \S+$/m);
    const series = text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.slice(0, l.lastIndexOf(' ')));
    assert.deepEqual(series.filter((s, i) => series.indexOf(s) !== i), [], 'every series once');
    // BPF run time advances while kernel.bpf_stats_enabled=1 (the operator's switch; restored after).
    const stats = '/proc/sys/kernel/bpf_stats_enabled';
    const was = readFileSync(stats, 'utf8').trim();
    writeFileSync(stats, '1');
    try {
      run(`cp /bin/busybox /tmp/busybox-s${n}; /tmp/busybox-s${n} true s${n}`);
      await sensor.finding(argsContain(`s${n}`), 'finding with bpf stats on');
      const on = await (await fetch(`${base}/metrics`)).text();
      assert.match(on, /^driftwatch_bpf_stats_enabled 1$/m);
      assert.ok(Number(/^driftwatch_bpf_program_run_time_ns_total\{program="sched_process_exec"\} (\d+)$/m.exec(on)?.[1]) > 0, on);
      assert.ok(Number(/^driftwatch_bpf_program_runs_total\{program="sched_process_exec"\} (\d+)$/m.exec(on)?.[1]) > 0);
      // The first finding went to the embedded backend in the meantime: its batch's round trip was timed.
      assert.ok(Number(/^driftwatch_export_latency_seconds_count (\d+)$/m.exec(on)?.[1]) >= 1, on);
    } finally {
      writeFileSync(stats, was);
    }
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
  });

  test('an image binary produces no finding', async () => {
    const n = nonce();
    run(`/bin/busybox-img true ${n}`);
    await barrier();
    assert.deepEqual(sensor.matching(argsContain(n)), []);
  });

  test('a binary copied into the container and run is drift.new_executable', async () => {
    const n = nonce();
    run(`cp /bin/busybox /tmp/busybox-${n}; /tmp/busybox-${n} true ${n}`);
    const f = await sensor.finding(argsContain(n), 'new executable finding');
    assert.equal(f.signature.id, 'drift.new_executable');
    assert.equal(f.signature.severity, 'CRITICAL');
    assert.equal(f.process.executable.path, `/tmp/busybox-${n}`);
    assert.equal(f.process.executable.layer, 'UPPER_NEW');
    assert.deepEqual(f.process.args, [`/tmp/busybox-${n}`, 'true', n]);
    assert.equal(f.process.comm, `busybox-${n}`.slice(0, 15));
    assert.equal(f.process.uid, 0);
    assert.ok(Number(f.process.executable.inode) > 0);
    assert.match(f.process.executable.device, /^\d+:\d+$/);
    assert.ok(f.host.hostname.length > 0);
    assert.ok(f.id && !Number.isNaN(Date.parse(f.time)));
    const parent = f.process['parent'] as { hostPid: number; comm?: string; executable?: string };
    assert.equal(parent.hostPid, f.process['hostPpid']);
    assert.equal(parent.comm, (f.process['ancestry'] as Array<{ comm: string }>)[0]!.comm);
  });

  test('an image binary appended to and run is drift.modified_executable', async () => {
    const n = nonce();
    run(`echo >> /bin/busybox-img; /bin/busybox-img true ${n}`);
    const f = await sensor.finding(argsContain(n), 'modified executable finding');
    assert.equal(f.signature.id, 'drift.modified_executable');
    assert.equal(f.process.executable.layer, 'UPPER_COPIED_UP');
    assert.equal(f.process.executable.path, '/bin/busybox-img');
  });

  test('a chmod-only copy-up is reported as modified (documented decision)', async () => {
    const n = nonce();
    run(`chmod 4755 /bin/busybox-img; /bin/busybox-img true ${n}`);
    const f = await sensor.finding(argsContain(n), 'chmod copy-up finding');
    assert.equal(f.signature.id, 'drift.modified_executable');
    assert.equal(f.process.executable.layer, 'UPPER_COPIED_UP');
  });

  test('a memfd exec is drift.fileless_exec', async () => {
    const n = nonce();
    run(`/bin/dwexec memfd /bin/busybox-img busybox true ${n}`);
    const f = await sensor.finding(argsContain(n), 'memfd finding');
    assert.equal(f.signature.id, 'drift.fileless_exec');
    assert.equal(f.process.executable.layer, 'MEMFD');
    assert.match(f.process.executable.path, /memfd:payload/);
  });

  test('an exec of an unlinked file is drift.fileless_exec', async () => {
    const n = nonce();
    run(`cp /bin/busybox /tmp/gone-${n}; /bin/dwexec unlinked /tmp/gone-${n} busybox true ${n}`);
    const fs = await Promise.all([
      sensor.finding((f) => argsContain(n)(f) && f.signature.id === 'drift.fileless_exec', 'unlinked fileless finding'),
      sensor.finding((f) => argsContain(n)(f) && f.signature.id === 'drift.new_executable', 'unlinked new finding'),
    ]);
    assert.equal(fs[0].process.executable.layer, 'UPPER_NEW');
  });

  test('an exec from tmpfs is drift.tmpfs_exec', async () => {
    const n = nonce();
    run(`cp /bin/busybox /dev/shm/busybox-${n}; /dev/shm/busybox-${n} true ${n}`);
    const f = await sensor.finding(argsContain(n), 'tmpfs finding');
    assert.equal(f.signature.id, 'drift.tmpfs_exec');
    assert.equal(f.process.executable.layer, 'TMPFS');
    assert.equal(f.process.executable.path, `/dev/shm/busybox-${n}`);
  });

  test('a symlink to a dropped binary reports the real file path', async () => {
    const n = nonce();
    run(`cp /bin/busybox /tmp/busybox-real-${n}; ln -s /tmp/busybox-real-${n} /tmp/busybox-link-${n}; /tmp/busybox-link-${n} true ${n}`);
    const f = await sensor.finding(argsContain(n), 'symlink finding');
    assert.equal(f.signature.id, 'drift.new_executable');
    assert.equal(f.process.executable.path, `/tmp/busybox-real-${n}`);
    assert.equal(f.process.args[0], `/tmp/busybox-link-${n}`);
  });

  test('a #! script written in the container and run is drift.new_script', async () => {
    const n = nonce();
    run(`printf '#!/bin/sh\\nsleep 0.3\\n' > /tmp/s-${n}.sh; chmod +x /tmp/s-${n}.sh; /tmp/s-${n}.sh ${n}`);
    const f = await sensor.finding((x) => argsContain(n)(x) && x.signature.id === 'drift.new_script', 'new script finding');
    assert.equal(f.signature.data['script'], `/tmp/s-${n}.sh`);
    assert.equal(f.signature.data['scriptLayer'], 'UPPER_NEW');
    assert.equal(f.signature.data['scriptLayerSource'], 'kernel', 'the kernel found the script file itself (hook or deferred fput)');
    assert.equal(f.process.executable.layer, 'LOWER', 'the exec record is the interpreter, an image binary');
  });

  test('a script that deletes itself in a container whose tree exits at once is still drift.new_script', async () => {
    const n = nonce();
    run(`printf '#!/bin/sh\nrm -f "$0"\n' > /tmp/gone-${n}.sh; chmod +x /tmp/gone-${n}.sh; exec /tmp/gone-${n}.sh ${n}`);
    const f = await sensor.finding((x) => argsContain(n)(x) && x.signature.id === 'drift.new_script', 'self-deleting script finding');
    assert.equal(f.signature.data['scriptLayer'], 'UPPER_NEW');
    assert.equal(f.signature.data['scriptLayerSource'], 'kernel');
  });

  test('an image script is not drift', async () => {
    const n = nonce();
    const r = ct.run(`true`);
    assert.equal(r.status, 0);
    run(`printf '#!/bin/sh\\ntrue\\n' > /tmp/x.sh; chmod +x /tmp/x.sh; cp /tmp/x.sh /bin/img-${n}.sh 2>/dev/null; true`);
    await barrier();
    assert.deepEqual(sensor.matching((x) => x.signature.id === 'drift.new_script' && String(x.signature.data['script']).includes(`img-${n}`)), []);
  });

  test('a dropped library injected with LD_PRELOAD is drift.exec_mapping', async () => {
    const n = nonce();
    run(`cp /mnt/vol/libdwpreload.so /tmp/lib-${n}.so; LD_PRELOAD=/tmp/lib-${n}.so /bin/true-dyn ${n}`);
    const f = await sensor.finding((x) => x.signature.id === 'drift.exec_mapping' && x.process.executable.path === `/tmp/lib-${n}.so`, 'LD_PRELOAD finding');
    assert.equal(f.process.executable.layer, 'UPPER_NEW');
    assert.equal(f.process.comm, 'true-dyn');
  });

  test('a dropped binary run through ld.so (no exec of it) is drift.exec_mapping', async () => {
    const n = nonce();
    run(`cp /bin/true-dyn /tmp/t-${n}; /lib64/ld-linux-x86-64.so.2 /tmp/t-${n}`);
    const f = await sensor.finding((x) => x.signature.id === 'drift.exec_mapping' && x.process.executable.path === `/tmp/t-${n}`, 'ld.so finding');
    assert.equal(f.process.executable.layer, 'UPPER_NEW');
  });

  test('exec from a writable volume is drift.volume_exec; from a read-only one, nothing', async () => {
    const n = nonce();
    const ro = nonce();
    run(`/mnt/ro/busybox-vol true ${ro}; /mnt/vol/busybox-vol true ${n}`);
    const f = await sensor.finding(argsContain(n), 'volume finding');
    assert.equal(f.signature.id, 'drift.volume_exec');
    assert.equal(f.signature.severity, 'MEDIUM');
    assert.equal(f.process.executable.layer, 'OTHER');
    assert.deepEqual(sensor.matching(argsContain(ro)), []);
  });

  test('drift findings carry the SHA-256 of the executable', async () => {
    const n = nonce();
    run(`cp /bin/busybox /tmp/busybox-h${n}; /tmp/busybox-h${n} sh -c 'sleep 0.3' ${n}`);
    const f = await sensor.finding(argsContain(n), 'hashed finding');
    const want = createHash('sha256').update(readFileSync(join(ct.lower, 'bin', 'busybox'))).digest('hex');
    assert.equal(f.process.executable.sha256, want);
  });

  test('a chmod-only copy-up says its content is the image\'s (sameAsImage)', async () => {
    const n = nonce();
    run(`chmod 0755 /bin/busybox-img; /bin/busybox-img sh -c 'sleep 0.3' ${n}`);
    const f = await sensor.finding(argsContain(n), 'chmod finding');
    assert.equal(f.signature.id, 'drift.modified_executable');
    assert.equal(f.process.executable.sameAsImage, true);
    const m = nonce();
    run(`echo >> /bin/busybox-img; /bin/busybox-img sh -c 'sleep 0.3' ${m}`);
    const g = await sensor.finding(argsContain(m), 'appended finding');
    assert.equal(g.process.executable.sameAsImage, false);
  });

  test('the same upper-layer exec from a host process is ignored without --include-host', async () => {
    const n = nonce();
    const host = mountHostOverlay(ct.lower);
    try {
      copyFileSync(join(ct.lower, 'bin', 'busybox'), join(host.merged, 'tmp', `busybox-${n}`));
      const r = spawnSync(join(host.merged, 'tmp', `busybox-${n}`), ['true', n]);
      assert.equal(r.status, 0);
      await barrier();
      assert.deepEqual(sensor.matching(argsContain(n)), [], 'host exec must not be reported');
    } finally {
      host.cleanup();
    }
  });
});

describe('host processes in a private mount namespace (systemd PrivateTmp=)', { skip: skip ?? false }, () => {
  test('are not containers: no finding for their upper-layer exec', async () => {
    const ct = new MiniContainer();
    const sensor = await SensorProcess.start();
    const dir = ct.dir;
    try {
      const n = randomBytes(4).toString('hex');
      // own mount namespace, host pid namespace: what a PrivateTmp= service gets
      const script = [
        'set -e',
        `mkdir -p ${dir}/pt/u ${dir}/pt/w ${dir}/pt/m`,
        `mount -t overlay overlay -o lowerdir=${ct.lower},upperdir=${dir}/pt/u,workdir=${dir}/pt/w ${dir}/pt/m`,
        `cp ${ct.lower}/bin/busybox ${dir}/pt/m/tmp/busybox-${n}`,
        `${dir}/pt/m/tmp/busybox-${n} true ${n}`,
      ].join('\n');
      const r = spawnSync('unshare', ['--mount', '/bin/sh', '-c', script], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const b = randomBytes(4).toString('hex');
      const br = ct.run(`cp /bin/busybox /tmp/busybox-b; /tmp/busybox-b true ${b}`);
      assert.equal(br.status, 0, br.stderr);
      await sensor.finding(argsContain(b), 'barrier finding');
      assert.deepEqual(sensor.matching(argsContain(n)), []);
    } finally {
      assert.equal(await sensor.stop(), 0);
      sensor.cleanup();
      ct.destroy();
    }
  });
});

describe('sensor lifecycle (real kernel)', { skip: skip ?? false }, () => {
  test('SIGKILL leaves no program or link behind (the kernel reclaims them with the fds)', async () => {
    const sensor = await SensorProcess.start();
    assert.notDeepEqual(sensor.bpf.progs, [], 'loaded while running');
    assert.notDeepEqual(sensor.bpf.links, [], 'attached while running');
    await sensor.stop('SIGKILL');
    sensor.cleanup();
    assert.deepEqual(await waitForBpfObjectsGone(sensor.bpf), []);
  });

  test('without privileges: one clear line and a non-zero exit, no stack trace', () => {
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all',
      process.execPath, cliPath, 'run'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /not allowed to load BPF programs: run as root/);
    assert.doesNotMatch(r.stderr, /\bat .*\.js:\d+/);
  });

  test('record captures real kernel events; replay finds the drift in them offline', async () => {
    const ct = new MiniContainer();
    const out = join(ct.dir, 'capture.dwrec');
    const rec = spawn(process.execPath, [cliPath, 'record', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    rec.stderr!.on('data', (d) => (err += d));
    try {
      for (let i = 0; i < 100 && !/recording to/.test(err); i++) await new Promise((r) => setTimeout(r, 100));
      const n = randomBytes(4).toString('hex');
      assert.equal(ct.run(`cp /bin/busybox /tmp/busybox-r; /tmp/busybox-r true ${n}`).status, 0);
      await new Promise((r) => setTimeout(r, 300));
      rec.kill('SIGINT');
      await once(rec, 'exit');
      assert.equal(rec.exitCode, 0, err);
      const r = spawnSync(process.execPath, [cliPath, 'replay', out, '--jsonl', '-'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const found = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Finding);
      assert.ok(found.some((f) => f.signature.id === 'drift.new_executable' && f.process.args.includes(n)), r.stdout);
    } finally {
      rec.kill('SIGKILL');
      ct.destroy();
    }
  });

  test('an unknown flag is a usage error (exit 2)', () => {
    const r = spawnSync(process.execPath, [cliPath, 'run', '--no-such-flag'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /no-such-flag/);
  });
});

describe('--include-host (real kernel)', { skip: skip ?? false }, () => {
  test('reports the host-process upper-layer exec', async () => {
    const ct = new MiniContainer();
    const sensor = await SensorProcess.start(['--include-host']);
    const host = mountHostOverlay(ct.lower);
    try {
      const n = randomBytes(4).toString('hex');
      copyFileSync(join(ct.lower, 'bin', 'busybox'), join(host.merged, 'tmp', `busybox-${n}`));
      spawnSync(join(host.merged, 'tmp', `busybox-${n}`), ['true', n]);
      const f: Finding = await sensor.finding(argsContain(n), 'host finding with --include-host');
      assert.equal(f.signature.id, 'drift.new_executable');
      assert.equal(f.container.id, '', 'host processes have no container id');
    } finally {
      host.cleanup();
      ct.destroy();
      assert.equal(await sensor.stop('SIGINT'), 0, 'exit 0 on SIGINT');
      sensor.cleanup();
    }
    assert.deepEqual(await waitForBpfObjectsGone(sensor.bpf), []);
  });
});
