// #! scripts seen by a bprm_check hook: the kernel's script flags, the
// loader's fallback from LSM to fentry to none, and findings that need no
// overlay lookup (the script may be gone by then).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { bpfLsmActive, loadWithScriptHook, scriptHookCandidates, type LoaderOptions, type NativeLoader } from '../../src/native/loader.js';
import { decodeExecRecord } from '../../src/pipeline/decode.js';
import type { Finding } from '../../src/pipeline/finding.js';
import { FileFlag as F, FS_MAGIC, ScriptFlag } from '../../src/pipeline/records.js';
import { startSensor } from '../../src/pipeline/sensor.js';
import { replayLoader } from '../../src/recording.js';
import { encodeExec, frame, type RecordSpec } from '../../src/sdk/encode.js';

const UPPER = F.OVERLAY | F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS | F.OVL_LAYOUT_FSDATA;
const HOST = { mnt: 1, pid: 2 };
// A container's interpreter (an image file) running a script; the script path names no real file.
// Each its own container (mount namespace), so dedup does not fold them.
let containers = 0;
const scriptExec = (scriptFlags: number, n: string): RecordSpec => ({
  fileFlags: F.OVERLAY | F.SCRIPT | F.FOREIGN_NS,
  filename: `/tmp/gone-${n}.sh`,
  path: '/bin/sh',
  args: ['/bin/sh', `/tmp/gone-${n}.sh`, n],
  scriptFlags,
  mntNs: 4026532000 + ++containers,
  pidNs: 4026532100,
});

test('script flags: round trip and the script\'s own layer', () => {
  assert.equal(decodeExecRecord(encodeExec(scriptExec(0, 'a'))).scriptLayer, undefined, 'no hook: unknown');
  assert.equal(decodeExecRecord(encodeExec(scriptExec(F.OVERLAY, 'a'))).scriptLayer, undefined, 'bits without KNOWN are not trusted');
  const table: Array<[number, string]> = [
    [ScriptFlag.KNOWN | F.OVERLAY | F.OVL_LAYOUT_FSDATA, 'LOWER'],
    [ScriptFlag.KNOWN | UPPER, 'UPPER_NEW'],
    [ScriptFlag.KNOWN | UPPER | F.OVL_HAS_LOWER, 'UPPER_COPIED_UP'],
    [ScriptFlag.KNOWN | F.TMPFS, 'TMPFS'],
    [ScriptFlag.KNOWN, 'OTHER'],
  ];
  for (const [flags, layer] of table) {
    const r = decodeExecRecord(encodeExec(scriptExec(flags, 'a')));
    assert.equal(r.scriptFlags, flags);
    assert.equal(r.scriptLayer, layer);
    assert.equal(r.layer, 'LOWER', 'the exec\'d file is still the interpreter');
  }
});

test('script hook: BPF-LSM is tried only where it is active; none is always last', () => {
  assert.deepEqual(scriptHookCandidates(true), ['lsm', 'fentry', 'none']);
  assert.deepEqual(scriptHookCandidates(false), ['fentry', 'none']);
  const dir = mkdtempSync(join(tmpdir(), 'dw-lsm-'));
  try {
    writeFileSync(join(dir, 'with'), 'lockdown,capability,landlock,yama,bpf\n');
    writeFileSync(join(dir, 'without'), 'lockdown,capability,bpfx,apparmor\n');
    assert.equal(bpfLsmActive(join(dir, 'with')), true);
    assert.equal(bpfLsmActive(join(dir, 'without')), false);
    assert.equal(bpfLsmActive(join(dir, 'absent')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function fakeLoader(refuse: Set<string>, log: string[]): (o: LoaderOptions) => NativeLoader {
  return (o) => ({
    load() {
      log.push(`load ${o.scriptHook}`);
      if (refuse.has(o.scriptHook!)) throw Object.assign(new Error('Operation not permitted'), { code: 'EPERM' });
    },
    close: () => void log.push(`close ${o.scriptHook}`),
    attach: () => [], programs: () => [], attachProgram: (n: string) => n, consume: () => 0, stats: () => ({}), overlayPath: () => 'module BTF', programStats: () => [],
  });
}

test('script hook: falls back from a refused hook, closing what it opened', () => {
  const log: string[] = [];
  const r = loadWithScriptHook({}, ['lsm', 'fentry', 'none'], fakeLoader(new Set(['lsm', 'fentry']), log));
  assert.equal(r.scriptHook, 'none');
  assert.deepEqual(r.refused, [{ hook: 'lsm', reason: 'EPERM' }, { hook: 'fentry', reason: 'EPERM' }]);
  assert.deepEqual(log, ['load lsm', 'close lsm', 'load fentry', 'close fentry', 'load none']);
  const ok = loadWithScriptHook({}, ['fentry', 'none'], fakeLoader(new Set(), []));
  assert.equal(ok.scriptHook, 'fentry');
  assert.deepEqual(ok.refused, []);
});

test('script hook: a failure without any hook is the real error', () => {
  assert.throws(() => loadWithScriptHook({}, ['fentry', 'none'], fakeLoader(new Set(['fentry', 'none']), [])), /Operation not permitted/);
});

test('sensor: a script the kernel saw needs no lookup: found even though it is gone; image scripts are not', async () => {
  const found: Finding[] = [];
  const batch = frame([
    encodeExec(scriptExec(ScriptFlag.KNOWN | UPPER, 'new')),
    encodeExec(scriptExec(ScriptFlag.KNOWN | UPPER | F.OVL_HAS_LOWER, 'changed')),
    encodeExec(scriptExec(ScriptFlag.KNOWN | F.TMPFS, 'shm')),
    encodeExec(scriptExec(ScriptFlag.KNOWN | F.OVERLAY, 'image')),
    encodeExec({ ...scriptExec(0, 'unknown'), fsMagic: FS_MAGIC.OVERLAY }),
  ]);
  const loader = replayLoader([batch]);
  const sensor = await startSensor({
    log: createLogger('error', () => {}), loader, hostNamespaces: HOST, pollIntervalMs: 1,
    sinks: [{ write: (f) => found.push(f), close() {} }],
  });
  await loader.done;
  await sensor.stop();
  const scripts = found.filter((f) => f.signature!.id === 'drift.new_script');
  const byArg = Object.fromEntries(scripts.map((f) => [f.process!.args!.at(-1), f.signature!.data]));
  assert.deepEqual(Object.keys(byArg).sort(), ['changed', 'new', 'shm']);
  assert.equal(byArg['new']!['scriptLayer'], 'UPPER_NEW');
  assert.equal(byArg['new']!['scriptLayerSource'], 'kernel');
  assert.equal(byArg['changed']!['scriptLayer'], 'UPPER_COPIED_UP');
  assert.equal(byArg['shm']!['scriptLayer'], 'TMPFS');
  assert.equal(found.length, 3, 'nothing else fires for an image interpreter');
  // Without the hook the script is looked up, and a script that is gone is counted, not reported.
  assert.equal(sensor.metrics.get('script_layer_unknown_total'), 1);
});

function fakeMmapLoader(refuse: (o: LoaderOptions) => string | undefined, log: string[]): (o: LoaderOptions) => NativeLoader {
  return (o) => ({
    load() {
      log.push(`load ${o.scriptHook}/${o.mmapHook}`);
      const code = refuse(o);
      if (code) throw Object.assign(new Error(code), { code });
    },
    close: () => void log.push('close'),
    attach: () => [], programs: () => [], attachProgram: (n: string) => n, consume: () => 0, stats: () => ({}), programStats: () => [], overlayPath: () => 'vmlinux BTF',
  });
}

test('exec-mapping hook: rides with the script hook; the syscall tracepoint only when opted in', () => {
  const log: string[] = [];
  const epermOnHooks = (o: LoaderOptions) => (o.scriptHook !== 'none' ? 'EPERM' : undefined);
  // This host: LSM inactive, fentry refused: no tracepoint unless asked for.
  const off = loadWithScriptHook({}, ['fentry', 'none'], fakeMmapLoader(epermOnHooks, log));
  assert.deepEqual([off.scriptHook, off.mmapHook], ['none', 'none']);
  assert.deepEqual(log, ['load fentry/fentry', 'close', 'load none/none'], 'EPERM refuses the mechanism: not retried without the mmap hook');
  const on = loadWithScriptHook({ mmapFallback: 'tracepoint' }, ['fentry', 'none'], fakeMmapLoader(epermOnHooks, []));
  assert.deepEqual([on.scriptHook, on.mmapHook], ['none', 'tracepoint']);
  // fentry works, but security_mmap_file cannot be traced: keep the script hook, fall back for mappings.
  const log2: string[] = [];
  const noMmapFentry = (o: LoaderOptions) => (o.mmapHook === 'fentry' ? 'ESRCH' : undefined);
  const r = loadWithScriptHook({ mmapFallback: 'tracepoint' }, ['fentry', 'none'], fakeMmapLoader(noMmapFentry, log2));
  assert.deepEqual([r.scriptHook, r.mmapHook], ['fentry', 'tracepoint']);
  assert.deepEqual(log2, ['load fentry/fentry', 'close', 'load fentry/tracepoint']);
  assert.deepEqual(r.refused, []);
  const lsm = loadWithScriptHook({}, ['lsm', 'fentry', 'none'], fakeMmapLoader(() => undefined, []));
  assert.deepEqual([lsm.scriptHook, lsm.mmapHook], ['lsm', 'lsm']);
});
