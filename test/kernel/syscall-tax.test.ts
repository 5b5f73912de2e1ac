// The default sensor puts nothing on the syscall path: no program of type
// tracepoint (sys_enter_mmap) is loaded, so syscalls of other processes keep
// their fast path. Only --mmap-tracepoint, where neither BPF-LSM nor fentry
// loads, adds one. Checked on the programs the sensor holds (its fds),
// whatever other tools on the machine have loaded.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { startSensor } from '../../src/pipeline/sensor.js';
import { bpfObjectsOf, kernelSkipReason } from '../helpers/minicontainer.js';

const skip = kernelSkipReason() ?? (spawnSync('bpftool', ['version']).status === 0 ? null : 'bpftool is not installed');
if (skip) console.log(`# syscall tax tests skipped: ${skip}`);

interface ProgInfo {
  id: number;
  type: string;
  name?: string;
}

/** The BPF programs this process holds, with their kernel type. */
function ownPrograms(): ProgInfo[] {
  return bpfObjectsOf(process.pid).progs.map((id) => {
    const r = spawnSync('bpftool', ['prog', 'show', 'id', String(id), '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as ProgInfo;
  });
}

test('default sensor: no syscall tracepoint program is loaded', { skip: skip ?? false }, async () => {
  const before = new Set(ownPrograms().map((p) => p.id));
  const sensor = await startSensor({ log: createLogger('error'), sinks: [] });
  try {
    const progs = ownPrograms().filter((p) => !before.has(p.id));
    assert.ok(progs.some((p) => p.name === 'sched_process_exec' || p.name?.startsWith('sched_process')), `the exec hook is loaded: ${JSON.stringify(progs)}`);
    const tracepoints = progs.filter((p) => p.type === 'tracepoint');
    assert.deepEqual(tracepoints, [], 'no tracepoint program (sys_enter_*) by default');
    assert.notEqual(sensor.hooks.mmapHook, 'tracepoint');
  } finally {
    await sensor.stop();
  }
});

test('--mmap-tracepoint: where neither BPF-LSM nor fentry loads, the syscall tracepoint is loaded (the test can tell)', { skip: skip ?? false }, async () => {
  const sensor = await startSensor({ log: createLogger('error'), sinks: [], mmapTracepoint: true });
  try {
    const hook = sensor.hooks.mmapHook;
    const tracepoints = ownPrograms().filter((p) => p.type === 'tracepoint');
    if (hook === 'tracepoint') assert.ok(tracepoints.some((p) => p.name === 'sys_enter_mmap'), JSON.stringify(tracepoints));
    else {
      // BPF-LSM or fentry took exec mappings: the tracepoint is still not needed.
      console.log(`# exec mappings through ${hook}: the tracepoint fallback is not exercised on this kernel`);
      assert.deepEqual(tracepoints, []);
    }
  } finally {
    await sensor.stop();
  }
});
