import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePolicy, PolicyError } from '../../src/policy/config.js';
import { PolicyStage } from '../../src/policy/policy.js';
import { globToRegExp } from '../../src/policy/glob.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import type { Finding } from '../../src/pipeline/finding.js';

const bad: Array<[string, string, RegExp]> = [
  ['unknown top-level key', 'exeptions: []', /exeptions: unknown key/],
  ['bad severity override', 'signatures:\n  drift.new_executable:\n    severity: URGENT', /signatures\.drift\.new_executable\.severity: invalid severity "URGENT"/],
  ['enabled not boolean', 'signatures:\n  x:\n    enabled: "no"', /signatures\.x\.enabled: expected true or false/],
  ['exception that matches everything', 'exceptions:\n  - reason: oops', /exceptions\[0\]: matches everything/],
  ['unknown exception key', 'exceptions:\n  - imag: x', /exceptions\[0\]\.imag: unknown key/],
  ['bad dedup window', 'dedup:\n  window: soon', /dedup\.window: expected a duration/],
  ['not YAML', 'a: [1, 2', /not valid YAML/],
];
for (const [name, text, re] of bad) {
  test(`policy: ${name} is rejected naming the key`, () => {
    assert.throws(() => parsePolicy(text, 'policy.yaml'), (e: unknown) => e instanceof PolicyError && re.test(e.message));
  });
}

test('policy: JSON works too', () => {
  assert.equal(parsePolicy('{"dedup": {"window": "5s"}}', 'p.json').dedupWindowMs, 5000);
});

test('glob: * stays within a path segment, ** crosses them', () => {
  assert.ok(globToRegExp('/usr/local/bin/*').test('/usr/local/bin/node'));
  assert.ok(!globToRegExp('/usr/local/*').test('/usr/local/bin/node'));
  assert.ok(globToRegExp('/usr/local/**').test('/usr/local/lib/node_modules/x/bin/y'));
  assert.ok(globToRegExp('docker.io/library/node:*').test('docker.io/library/node:22'));
  assert.ok(!globToRegExp('a.c').test('abc'), 'dots are literal');
});

const f = (over: Partial<{ sig: string; path: string; image: string; name: string; ns: string; args: string[]; same: boolean; id: string; time: string; cid: string }> = {}): Finding => ({
  id: over.id ?? Math.random().toString(16),
  time: over.time ?? '2026-01-01T00:00:00.000Z',
  signature: { id: over.sig ?? 'drift.new_executable', name: 'n', severity: 'CRITICAL' },
  process: { args: over.args ?? ['/tmp/x'], executable: { path: over.path ?? '/tmp/x', layer: 'UPPER_NEW', ...(over.same !== undefined ? { sameAsImage: over.same } : {}) } },
  container: { id: over.cid ?? 'c'.repeat(64), ...(over.image ? { image: over.image } : {}), ...(over.name ? { name: over.name } : {}) },
  ...(over.ns ? { kubernetes: { namespace: over.ns } } : {}),
  host: { hostname: 'h' },
});

function stage(text: string) {
  const out: Finding[] = [];
  const metrics = new Metrics();
  return { out, metrics, s: new PolicyStage(parsePolicy(text, 'p.yaml'), metrics, (x) => out.push(x)) };
}

test('policy: exceptions by image, container, namespace, executable, args and signature', () => {
  const { out, metrics, s } = stage(`
dedup: { window: 0s }
exceptions:
  - image: "docker.io/library/node:*"
    executable: "/usr/local/lib/node_modules/**"
  - container: "build-*"
  - namespace: ci
  - signature: drift.tmpfs_exec
    args: "*--self-test*"
`);
  s.apply(f({ image: 'docker.io/library/node:22', path: '/usr/local/lib/node_modules/npm/bin/x' }));
  s.apply(f({ image: 'docker.io/library/node:22', path: '/tmp/evil' }));
  s.apply(f({ name: 'build-42' }));
  s.apply(f({ ns: 'ci' }));
  s.apply(f({ sig: 'drift.tmpfs_exec', args: ['/dev/shm/t', '--self-test'] }));
  s.apply(f({ sig: 'drift.new_executable', args: ['/dev/shm/t', '--self-test'] }));
  assert.deepEqual(out.map((x) => x.process?.executable?.path), ['/tmp/evil', '/tmp/x']);
  assert.equal(metrics.total('policy_excepted_total'), 4);
});

test('policy: severity overrides, the same-as-image downgrade and disabled signatures', () => {
  const { out, s } = stage(`
dedup: { window: 0s }
sameAsImageSeverity: LOW
signatures:
  drift.new_executable: { severity: HIGH }
  drift.volume_exec: { enabled: false }
`);
  s.apply(f());
  s.apply(f({ sig: 'drift.modified_executable', same: true }));
  s.apply(f({ sig: 'drift.modified_executable', same: false }));
  assert.deepEqual(out.map((x) => x.signature?.severity), ['HIGH', 'LOW', 'CRITICAL']);
  assert.equal(s.enabled('drift.volume_exec'), false);
  assert.equal(s.enabled('drift.new_executable'), true);
});
test('policy: exceptions by container label ("key=value" glob), e.g. Docker-in-Docker for nested overlays', () => {
  const { out, metrics, s } = stage(`
dedup: { window: 0s }
exceptions:
  - signature: drift.nested_overlay_exec
    label: "role=docker-in-docker"
  - label: "app.kubernetes.io/name=buildkit*"
`);
  const labelled = (labels: Record<string, string>, sig = 'drift.nested_overlay_exec', path = '/x') => {
    const x = f({ sig, path });
    x.container = { ...x.container, labels };
    return x;
  };
  s.apply(labelled({ role: 'docker-in-docker' }, 'drift.nested_overlay_exec', '/excepted'));
  s.apply(labelled({ role: 'docker-in-docker' }, 'drift.new_executable', '/drift-in-dind'));
  s.apply(labelled({ role: 'web' }, 'drift.nested_overlay_exec', '/other-role'));
  s.apply(labelled({ 'app.kubernetes.io/name': 'buildkitd' }, 'drift.new_executable', '/buildkit'));
  s.apply(f({ sig: 'drift.nested_overlay_exec', path: '/no-labels' }));
  assert.deepEqual(out.map((x) => x.process?.executable?.path), ['/drift-in-dind', '/other-role', '/no-labels']);
  assert.equal(metrics.total('policy_excepted_total'), 2);
  assert.throws(() => parsePolicy('exceptions:\n  - label: 3\n', 'p.yaml'), /exceptions\[0\]\.label: expected a non-empty string/);
});
