// Doctor's pure parts: capabilities from /proc/<pid>/status bits, the table
// and its verdict, and the scriptHook setting's candidate hooks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, resolveConfig, scriptHookCandidatesFor } from '../../src/config.js';
import { capabilities, doctorTable, type DoctorRow } from '../../src/ops/doctor.js';

test('doctor: capabilities are read bit by bit from CapEff', () => {
  // CAP_BPF (39), CAP_PERFMON (38), CAP_SYS_PTRACE (19), CAP_DAC_READ_SEARCH (2): the DaemonSet without SYS_RESOURCE
  const eff = (1n << 39n) | (1n << 38n) | (1n << 19n) | (1n << 2n);
  const caps = capabilities(`Name:\tnode\nCapEff:\t${eff.toString(16).padStart(16, '0')}\n`);
  assert.deepEqual([...caps].sort(), ['BPF', 'DAC_READ_SEARCH', 'PERFMON', 'SYS_PTRACE']);
  assert.deepEqual([...capabilities('CapEff:\t0000000000000000\n')], []);
  assert.deepEqual([...capabilities('CapEff:\t000001ffffffffff\n')].sort(), ['BPF', 'DAC_READ_SEARCH', 'PERFMON', 'SYS_ADMIN', 'SYS_PTRACE', 'SYS_RESOURCE']);
});

test('doctor: the table shows each row with its fix and a verdict from the worst row', () => {
  const rows: DoctorRow[] = [
    { check: 'kernel', status: 'ok', detail: 'Linux 6.1' },
    { check: 'LSM / bprm_check', status: 'degraded', detail: 'no hook', fix: 'boot with lsm=...,bpf' },
  ];
  const t = doctorTable({ node: 'x', rows });
  assert.match(t, /^kernel {12}ok {8}Linux 6\.1$/m);
  assert.match(t, /^LSM \/ bprm_check {2}degraded {2}no hook\n {28}→ boot with lsm=\.\.\.,bpf$/m);
  assert.match(t, /drift detection works on this node, with the gaps above\n$/);
  const missing = doctorTable({ node: 'x', rows: [...rows, { check: 'self-test', status: 'missing', detail: 'not run' }] });
  assert.match(missing, /drift detection does NOT fully work on this node\n$/);
  assert.match(doctorTable({ node: 'x', rows: [rows[0]!] }), /drift detection works on this node\n$/);
});

test('config: scriptHook pins the bprm_check hook, and a bad value names the key', () => {
  assert.equal(scriptHookCandidatesFor('auto'), undefined);
  assert.deepEqual(scriptHookCandidatesFor('none'), ['none']);
  assert.deepEqual(scriptHookCandidatesFor('fentry'), ['fentry', 'none']);
  assert.equal(resolveConfig({}, { DRIFTWATCH_SCRIPT_HOOK: 'lsm' }).scriptHook, 'lsm');
  assert.throws(() => resolveConfig({}, { DRIFTWATCH_SCRIPT_HOOK: 'kprobe' }), (e: Error) => e instanceof ConfigError && /^scriptHook: must be one of/.test(e.message));
  assert.equal(resolveConfig({}, { DRIFTWATCH_SELFTEST: 'false' }).selftest, false);
});
