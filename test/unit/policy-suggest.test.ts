// `driftwatch policy suggest` over a real SQLite store: the printed YAML is a
// valid policy that silences the repeated, fleet-wide findings and nothing
// seen once, in one container, or with other content.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SqliteStore } from '../../src/backend/sqlite-store.js';
import type { Finding } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { parsePolicy } from '../../src/policy/policy-file.js';
import { PolicyStage } from '../../src/policy/policy.js';
import { suggestRules } from '../../src/policy/suggest.js';
import { cliPath } from '../helpers/sensor-process.js';

let seq = 0;
const TOOL = '1'.repeat(64);
const PAYLOAD = '2'.repeat(64);

function finding(o: { image: string; path: string; sha?: string; host?: string; container: string; ancestry?: string[]; script?: string; count?: number; minutesAgo?: number }): Finding {
  const time = new Date(Date.now() - (o.minutesAgo ?? 5) * 60_000).toISOString();
  const sig = o.script ? 'drift.new_script' : 'drift.new_executable';
  return {
    id: `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`,
    time,
    signature: { id: sig, name: 'n', severity: 'HIGH', ...(o.script ? { data: { script: o.script } } : {}) },
    process: {
      args: [o.script ?? o.path],
      ancestry: (o.ancestry ?? ['bash']).map((comm, i) => ({ hostPid: 10 + i, comm })),
      executable: { path: o.path, layer: o.script ? 'LOWER' : 'UPPER_NEW', ...(o.sha ? { sha256: o.sha } : {}) },
    },
    container: { id: o.container.padEnd(64, '0'), image: o.image },
    host: { hostname: o.host ?? 'node-1' },
    count: o.count ?? 1,
    firstSeen: time,
    lastSeen: time,
  };
}

function corpus(): { noise: Finding[]; kept: Finding[] } {
  const noise: Finding[] = [];
  // A CLI installed at run time in every node container, on three hosts.
  for (let i = 0; i < 5; i++) noise.push(finding({ image: 'docker.io/library/node:22', path: '/usr/local/bin/tool', sha: TOOL, container: `a${i}`, host: `node-${i % 3}`, count: 4 }));
  // dpkg maintainer scripts: a different script for every package, always under dpkg.
  for (let i = 0; i < 4; i++) {
    noise.push(finding({ image: 'debian:bookworm', path: '/usr/bin/dash', script: `/var/lib/dpkg/info/pkg${i}.postinst`, container: `b${i}`, ancestry: ['dpkg', 'apt-get', 'bash'] }));
  }
  const kept = [
    // the payload at the CLI's path, other content
    finding({ image: 'docker.io/library/node:22', path: '/usr/local/bin/tool', sha: PAYLOAD, container: 'a9' }),
    // seen once
    finding({ image: 'debian:bookworm', path: '/tmp/x', sha: PAYLOAD, container: 'c0' }),
    // repeated, but in one container only
    finding({ image: 'debian:bookworm', path: '/tmp/loop', sha: TOOL, container: 'd0', count: 50 }),
    finding({ image: 'debian:bookworm', path: '/tmp/loop', sha: TOOL, container: 'd0', count: 50 }),
    // too old for --since
    ...[0, 1, 2].map((i) => finding({ image: 'old:1', path: '/usr/bin/old', sha: TOOL, container: `e${i}`, minutesAgo: 3 * 24 * 60 })),
  ];
  return { noise, kept };
}

test('policy suggest: rules for the repeated fleet-wide findings, by executable (pinned to its hashes) or by ancestor', () => {
  const { noise, kept } = corpus();
  const s = suggestRules([...noise, ...kept.slice(0, 4)]);
  assert.equal(s.length, 2);
  const tool = s.find((x) => x.rule.executable)!;
  assert.deepEqual(tool.rule, { signature: 'drift.new_executable', image: 'docker.io/library/node:22', executable: '/usr/local/bin/tool', sha256: [TOOL] });
  assert.equal(tool.containers, 5, 'the payload in one container is not part of it');
  const dpkg = s.find((x) => x.rule.ancestor)!;
  assert.deepEqual(dpkg.rule, { signature: 'drift.new_script', image: 'debian:bookworm', ancestor: 'dpkg' });
  assert.equal(dpkg.containers, 4);
  assert.match(dpkg.why, /4 different file\(s\) run under dpkg/);
});

test('policy suggest (CLI over a SQLite store): valid YAML that silences the noise and keeps the rest reported', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'suggest-'));
  try {
    const db = join(dir, 'findings.db');
    const store = SqliteStore.open(db);
    const { noise, kept } = corpus();
    await store.insert([...noise, ...kept]);
    await store.close();
    const r = spawnSync(process.execPath, [cliPath, 'policy', 'suggest', '--db', db, '--since', '24h'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^# driftwatch policy suggest: 2 rule\(s\) from 13 stored finding\(s\) since /);
    assert.match(r.stdout, /# 5 finding\(s\), 20 execution\(s\), 5 container\(s\), 3 host\(s\)/);
    const policy = parsePolicy(r.stdout, 'suggested.yaml');
    assert.equal(policy.exceptions.length, 2);
    assert.ok(policy.exceptions.every((e) => e.reason?.startsWith('suggested: ')));
    const out: Finding[] = [];
    const metrics = new Metrics();
    const stage = new PolicyStage({ ...policy, dedupWindowMs: 0 }, metrics, (f) => out.push(f));
    for (const f of [...noise, ...kept]) stage.apply(f);
    assert.deepEqual(out.map((f) => f.id), kept.map((f) => f.id));
    assert.equal(metrics.total('policy_excepted_total'), noise.length);

    const none = spawnSync(process.execPath, [cliPath, 'policy', 'suggest', '--db', db, '--since', '24h', '--min-containers', '10'], { encoding: 'utf8' });
    assert.equal(none.status, 0);
    assert.deepEqual(parsePolicy(none.stdout, 'none.yaml').exceptions, []);
    const bad = spawnSync(process.execPath, [cliPath, 'policy', 'suggest', '--db', db, '--since', 'yesterday'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--since wants an RFC 3339 time or a duration/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
