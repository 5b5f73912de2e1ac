import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPolicy, parsePolicy, PolicyError } from '../../src/policy/policy-file.js';
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
  assert.ok(globToRegExp('/usr/bin/{curl,wget}').test('/usr/bin/wget'), 'alternatives');
  assert.ok(!globToRegExp('/usr/bin/{curl,wget}').test('/usr/bin/nc'));
  assert.ok(globToRegExp('/app/**').test('/app/.cache/x'), 'leading dots match');
  assert.ok(!globToRegExp('/app/*').test('/app/'), '* needs a character');
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

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const HASH = 'ab'.repeat(32);

/** A finding as the sensor builds it, with process lineage and container facts. */
const g = (o: { ancestry?: string[]; parentExe?: string; sha?: string; imageId?: string; labels?: Record<string, string>; session?: string; ns?: string } = {}): Finding => ({
  id: Math.random().toString(16),
  time: '2026-01-01T00:00:00.000Z',
  signature: { id: 'drift.new_executable', name: 'n', severity: 'CRITICAL' },
  process: {
    args: ['/usr/bin/x'],
    session: o.session ?? 'init',
    ancestry: (o.ancestry ?? ['sh']).map((comm, i) => ({ hostPid: 100 + i, comm })),
    parent: { hostPid: 100, comm: (o.ancestry ?? ['sh'])[0]!, ...(o.parentExe ? { executable: o.parentExe } : {}) },
    executable: { path: '/usr/bin/x', layer: 'UPPER_NEW', ...(o.sha ? { sha256: o.sha } : {}) },
  },
  container: { id: 'c'.repeat(64), ...(o.imageId ? { imageId: o.imageId } : {}), ...(o.labels ? { labels: o.labels } : {}) },
  ...(o.ns ? { kubernetes: { namespace: o.ns } } : {}),
  host: { hostname: 'h' },
});

test('policy: exceptions by ancestor, parent, sha256, imageId, labels and session', () => {
  const { out, metrics, s } = stage(`
dedup: { window: 0s }
exceptions:
  - ancestor: dpkg
  - parent: /usr/local/bin/build-*
  - sha256: [${HASH.toUpperCase()}]
  - imageId: "sha256:feed*"
  - labels: { team: "ci-*", tier: build }
  - session: exec
    ancestor: kubectl-debug
`);
  const kept = [
    g({ ancestry: ['sh', 'bash'] }),
    g({ ancestry: ['dpkgx'] }),
    g({ parentExe: '/usr/bin/build-x' }),
    g({ sha: 'cd'.repeat(32) }),
    g({ imageId: 'sha256:beef' }),
    g({ labels: { team: 'ci-web' } }),
    g({ labels: { team: 'prod', tier: 'build' } }),
    g({ session: 'init', ancestry: ['kubectl-debug'] }),
  ];
  const excepted = [
    g({ ancestry: ['sh', 'sh', 'dpkg', 'apt-get'] }),
    g({ parentExe: '/usr/local/bin/build-42' }),
    g({ sha: HASH }),
    g({ imageId: 'sha256:feedface' }),
    g({ imageId: 'feedface' }),
    g({ labels: { team: 'ci-web', tier: 'build', other: 'x' } }),
    g({ session: 'exec', ancestry: ['kubectl-debug'] }),
  ];
  for (const x of [...kept, ...excepted]) s.apply(x);
  assert.deepEqual(out, kept);
  assert.equal(metrics.total('policy_excepted_total'), excepted.length);
});

const badFields: Array<[string, string, RegExp]> = [
  ['sha256 not a hash', 'exceptions:\n  - sha256: [abc]', /exceptions\[0\]\.sha256\[0\]: expected 64 hex digits/],
  ['empty labels', 'exceptions:\n  - labels: {}', /exceptions\[0\]\.labels: expected at least one label/],
  ['label not a glob', 'exceptions:\n  - labels: { a: 1 }', /exceptions\[0\]\.labels\.a: expected a non-empty glob/],
  ['bad session', 'exceptions:\n  - session: shell', /exceptions\[0\]\.session: expected init or exec/],
  ['ancestor not a string', 'exceptions:\n  - ancestor: [dpkg]', /exceptions\[0\]\.ancestor: expected a non-empty string/],
];
for (const [name, text, re] of badFields) {
  test(`policy: ${name} is rejected naming the key`, () => {
    assert.throws(() => parsePolicy(text, 'policy.yaml'), (e: unknown) => e instanceof PolicyError && re.test(e.message));
  });
}

test('policy: the shipped examples parse, and the package-managers one excepts what runs under a package manager and what one installed, nothing else', () => {
  for (const file of ['package-managers.yaml', 'ci-build.yaml']) loadPolicy(join(repoRoot, 'examples', 'policy', file));
  const pol = loadPolicy(join(repoRoot, 'examples', 'policy', 'package-managers.yaml'));
  const out: Finding[] = [];
  const s = new PolicyStage(pol, new Metrics(), (x) => out.push(x));
  const postinst = g({ ancestry: ['hello.postinst', 'dpkg', 'apt-get', 'bash'] });
  const npmHook = g({ ancestry: ['sh', 'npm install -g '] });
  const dropped = g({ ancestry: ['sh', 'bash'] });
  const installed = (...managers: string[]) => {
    const f = g({ ancestry: ['bash'] });
    f.process!.executable!.installedBy = { manager: managers[0]!, hostPid: 1, windowStart: f.time!, managers };
    return f;
  };
  const less = installed('dpkg', 'apt-get');
  const cli = installed('npm');
  const otherTool = installed('make');
  for (const x of [postinst, npmHook, dropped, less, cli, otherTool]) s.apply(x);
  assert.deepEqual(out, [dropped, otherTool]);
  out.length = 0;
  const ci = new PolicyStage(loadPolicy(join(repoRoot, 'examples', 'policy', 'ci-build.yaml')), new Metrics(), (x) => out.push(x));
  ci.apply(g({ ns: 'ci-web' }));
  ci.apply(g({ labels: { 'driftwatch.io/role': 'build' } }));
  ci.apply(g({ ns: 'prod' }));
  assert.equal(out.length, 1);
});
