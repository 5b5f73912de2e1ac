// Prevention policy: parsing, what the kernel is asked to do per container,
// the exceptions compiled for it, and the bytes written into its maps.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ContainerInfo } from '../../src/pipeline/container.js';
import { parsePolicy, PolicyError } from '../../src/policy/policy-file.js';
import { Kind } from '../../src/prevent/kinds.js';
import { configValue, containerValue, exceptionKey, PreventionMaps, type MapWriter } from '../../src/prevent/maps.js';
import { inScope, planPrevention } from '../../src/prevent/plan.js';
import { builtinSignatures } from '../../src/signatures/index.js';

const ids = builtinSignatures.map((s) => s.id);
const plan = (yaml: string) => planPrevention(parsePolicy(yaml, 'policy.yaml'), ids);
const ct = (over: Partial<ContainerInfo> = {}): ContainerInfo => ({ inContainer: true, id: 'a'.repeat(64), ...over });

test('policy: action and prevention settings parse; defaults are alert, enabled, no dry run', () => {
  const p = parsePolicy('signatures:\n  drift.new_executable: { action: prevent }\nprevention: { dryRun: true }\n', 'p.yaml');
  assert.equal(p.signatures['drift.new_executable']?.action, 'prevent');
  assert.deepEqual(p.prevention, { enabled: true, dryRun: true, scope: {}, unknownContainers: 'prevent', scriptHold: { timeoutMs: 2000, onTimeout: 'continue' } });
  const hold = parsePolicy('signatures:\n  drift.interpreted_script: { action: prevent }\nprevention: { scriptHold: { timeout: 500ms, onTimeout: kill } }\n', 'p.yaml');
  assert.deepEqual(hold.prevention?.scriptHold, { timeoutMs: 500, onTimeout: 'kill' });
  const scoped = parsePolicy("prevention:\n  scope: { images: 'reg/app:*', labels: { tier: web } }\n", 'p.yaml');
  assert.deepEqual(scoped.prevention?.scope, { images: ['reg/app:*'], labels: { tier: 'web' } });
  assert.equal(scoped.prevention?.unknownContainers, 'alert', 'scoped: an unknown container may be outside the scope');
  assert.equal(parsePolicy('', 'p.yaml').prevention, undefined);
});

const bad: Array<[string, string, RegExp]> = [
  ['an unknown action', 'signatures:\n  drift.new_executable: { action: block }', /signatures\.drift\.new_executable\.action: expected alert or prevent/],
  ['enabled not boolean', 'prevention: { enabled: yes please }', /prevention\.enabled: expected true or false/],
  ['an unknown scope key', 'prevention: { scope: { image: x } }', /prevention\.scope\.image: unknown key/],
  ['an empty scope list', 'prevention: { scope: { namespaces: [] } }', /prevention\.scope\.namespaces: expected a non-empty list/],
  ['a bad unknownContainers', 'prevention: { unknownContainers: maybe }', /prevention\.unknownContainers: expected alert or prevent/],
  ['a bad scriptHold.onTimeout', 'prevention: { scriptHold: { onTimeout: maybe } }', /prevention\.scriptHold\.onTimeout: must be continue or kill/],
  ['a bad scriptHold.timeout', 'prevention: { scriptHold: { timeout: soon } }', /prevention\.scriptHold\.timeout: expected a duration/],
];
for (const [name, text, re] of bad) {
  test(`policy: ${name} is rejected naming the key`, () => {
    assert.throws(() => parsePolicy(text, 'policy.yaml'), (e: unknown) => e instanceof PolicyError && re.test(e.message));
  });
}

test('plan: only signatures the kernel can decide may prevent', () => {
  assert.throws(() => plan('signatures:\n  drift.exec_mapping: { action: prevent }'), /drift\.exec_mapping\.action: prevent is not possible: the kernel cannot decide it/);
  assert.throws(() => plan('signatures:\n  example.custom: { action: prevent }'), /no such signature/);
  const p = plan('signatures:\n  drift.new_executable: { action: prevent }\n  drift.fileless_exec: { action: prevent }\n  drift.tmpfs_exec: { enabled: false, action: prevent }');
  assert.equal(p.kinds, Kind.UPPER_NEW | Kind.MEMFD | Kind.UNLINKED, 'a disabled signature prevents nothing');
  assert.equal(plan('signatures:\n  drift.new_executable: { severity: LOW }').kinds, 0, 'no action: alert only');
});

test('plan: scope by namespace, image, container name and labels; all given criteria must match', () => {
  const scope = { namespaces: ['prod-*'], images: ['reg/app:*', 'reg/api:*'], labels: { tier: 'web' } };
  const k8s = (ns: string) => ({ namespace: ns, pod: 'p', podUid: 'u', container: 'c' });
  assert.ok(inScope(scope, ct({ image: 'reg/api:2', labels: { tier: 'web' }, kubernetes: k8s('prod-eu') })));
  assert.ok(!inScope(scope, ct({ image: 'reg/api:2', labels: { tier: 'web' }, kubernetes: k8s('dev') })));
  assert.ok(!inScope(scope, ct({ image: 'reg/db:1', labels: { tier: 'web' }, kubernetes: k8s('prod-eu') })));
  assert.ok(!inScope(scope, ct({ image: 'reg/app:1', kubernetes: k8s('prod-eu') })), 'a missing label is not a match');
  assert.ok(inScope({ containers: ['web-*'] }, ct({ name: 'web-1' })));
  assert.ok(inScope({}, ct()), 'no scope: every container');
  const p = plan("signatures:\n  drift.new_executable: { action: prevent }\nprevention: { scope: { containers: ['web-*'] } }");
  assert.equal(p.forContainer(ct({ name: 'web-1' })).kinds, Kind.UPPER_NEW);
  assert.equal(p.forContainer(ct({ name: 'db-1' })).kinds, 0, 'out of scope: nothing is stopped');
  assert.equal(p.unknown.kinds, 0, 'scoped: unknown containers alert by default');
  const unscoped = plan('signatures:\n  drift.new_executable: { action: prevent }');
  assert.equal(unscoped.unknown.kinds, Kind.UPPER_NEW, 'unscoped: unknown containers are in scope');
});

test('plan: exceptions become container-wide kind removals or kernel path matches', () => {
  const p = plan(`
signatures:
  drift.new_executable: { action: prevent }
  drift.tmpfs_exec: { action: prevent }
exceptions:
  - { signature: drift.new_executable, image: 'reg/builder:*' }
  - { signature: drift.new_executable, executable: /opt/plugins/** }
  - { signature: drift.tmpfs_exec, container: 'web-*', executable: /dev/shm/helper }
  - { signature: drift.volume_exec, args: '*--x*' }
`);
  assert.equal(p.forContainer(ct({ image: 'reg/builder:1' })).kinds, Kind.TMPFS, 'the builder image may drop binaries');
  const web = p.forContainer(ct({ name: 'web-1', image: 'reg/app:1' }));
  assert.equal(web.kinds, Kind.UPPER_NEW | Kind.TMPFS);
  assert.deepEqual(web.exceptions, [
    { rule: 1, path: '/opt/plugins/', prefix: true, kinds: Kind.UPPER_NEW },
    { rule: 2, path: '/dev/shm/helper', prefix: false, kinds: Kind.TMPFS },
  ]);
  assert.deepEqual(p.unknown.exceptions.map((e) => e.rule), [1], 'rules naming containers need metadata: not for unknown containers');
  assert.equal(p.unknown.kinds, Kind.UPPER_NEW | Kind.TMPFS, 'the image rule cannot apply to an unknown container');
});

test('plan: an exception the kernel cannot match is an error when it covers a prevented signature', () => {
  const sig = 'signatures:\n  drift.new_executable: { action: prevent }\n';
  assert.throws(() => plan(`${sig}exceptions:\n  - { executable: '/opt/*/bin/x' }`), /exceptions\[0\]\.executable: with action: prevent the kernel matches only an exact path or a directory/);
  assert.throws(() => plan(`${sig}exceptions:\n  - { signature: 'drift.*', args: '*--safe*' }`), /exceptions\[0\]\.args: arguments cannot be matched in the kernel/);
  assert.doesNotThrow(() => plan(`${sig}exceptions:\n  - { signature: drift.tmpfs_exec, args: '*--safe*' }`), 'alert-only signatures keep every exception form');
});

test('maps: config, container and LPM key bytes as prevent.bpf.h lays them out', () => {
  assert.deepEqual([...configValue({ enabled: true, dryRun: false, unknownKinds: 5, unknownExcSet: 2 })], [1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0]);
  assert.deepEqual([...containerValue(3, 7)], [3, 0, 0, 0, 7, 0, 0, 0]);
  const exact = exceptionKey(9, { path: '/a/b', prefix: false });
  assert.equal(exact.length, 256);
  assert.equal(exact.readUInt32LE(0), 32 + 8 * 5, 'exact: the set id and the path with its NUL');
  assert.equal(exact.readUInt32LE(4), 9);
  assert.equal(exact.toString('utf8', 8, 12), '/a/b');
  assert.equal(exact[12], 0);
  assert.equal(exceptionKey(9, { path: '/a/', prefix: true }).readUInt32LE(0), 32 + 8 * 3, 'prefix: no NUL');
});

test('maps: a longer prefix carries the kinds of the shorter ones (the trie answers with one entry); sets are shared', () => {
  const writes: Array<[string, Buffer, Buffer]> = [];
  const w: MapWriter = { mapUpdate: (m, k, v) => void writes.push([m, k, v]), mapDelete: () => true, mapClear: () => 0 };
  const maps = new PreventionMaps(w);
  const plan1 = {
    kinds: Kind.UPPER_NEW | Kind.TMPFS,
    exceptions: [
      { rule: 0, path: '/opt/', prefix: true, kinds: Kind.UPPER_NEW },
      { rule: 1, path: '/opt/tools/', prefix: true, kinds: Kind.TMPFS },
    ],
  };
  maps.container(10n, plan1);
  maps.container(11n, plan1);
  const lpm = writes.filter(([m]) => m === 'prevent_exceptions');
  assert.equal(lpm.length, 2, 'two containers, one exception set');
  const tools = lpm.find(([, k]) => k.toString('utf8', 8).startsWith('/opt/tools/'))!;
  assert.equal(tools[2].readUInt32LE(0), Kind.UPPER_NEW | Kind.TMPFS);
  const cts = writes.filter(([m]) => m === 'prevent_containers');
  assert.deepEqual(cts.map(([, , v]) => v.readUInt32LE(4)), [1, 1]);
});

test('policy stage: an exception never hides an exec the kernel stopped; actions are counted per signature', async () => {
  const { PolicyStage } = await import('../../src/policy/policy.js');
  const { Metrics } = await import('../../src/pipeline/metrics.js');
  const { toFalco } = await import('../../src/pipeline/falco-sink.js');
  const metrics = new Metrics();
  const out: string[] = [];
  const stage = new PolicyStage(parsePolicy('exceptions:\n  - { image: reg/app:* }\ndedup: { window: 0s }', 'p.yaml'), metrics, (f) => void out.push(`${f.id}:${f.action}`));
  const finding = (id: string, action: string) =>
    ({ id, signature: { id: 'drift.new_executable', name: 'n', severity: 'CRITICAL' }, container: { id: 'c', image: 'reg/app:1' }, process: {}, action }) as never;
  stage.apply(finding('a', 'alert'));
  stage.apply(finding('b', 'would_prevent'));
  stage.apply(finding('c', 'prevented'));
  assert.deepEqual(out, ['c:prevented']);
  assert.equal(metrics.get('findings_action_total', { signature: 'drift.new_executable', action: 'prevented' }), 1);
  assert.equal(metrics.get('policy_excepted_total', { signature: 'drift.new_executable', rule: '0' }), 2);
  const falco = toFalco(finding('d', 'prevented')) as { output: string; output_fields: Record<string, unknown> };
  assert.equal(falco.output_fields['driftwatch.action'], 'prevented');
  assert.match(falco.output, /action=prevented/);
});

test('plan: volume execs are stopped only in described containers', () => {
  const p = plan('signatures:\n  drift.volume_exec: { action: prevent }\n  drift.tmpfs_exec: { action: prevent }');
  assert.equal(p.forContainer(ct()).kinds, Kind.VOLUME | Kind.TMPFS);
  assert.equal(p.unknown.kinds, Kind.TMPFS);
});
