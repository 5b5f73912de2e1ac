// Package-manager windows: which exec opens one, how a file's ctime is held
// against them (realtime ctime against boot-clock exec times), what is
// bounded and counted; real pidfds for real child processes; and the fact
// reaching the finding (JSON, proto, Falco) and the policy.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { driftwatch } from '#gen/finding.js';
import { PackageWindows, pidfdExits, type ProcessExits } from '../../src/enrich/package-windows.js';
import { processExitAddon } from '../../src/native/process-exit.js';
import type { OverlayFacts } from '../../src/enrich/overlay-facts.js';
import { parsePolicy } from '../../src/policy/policy-file.js';
import { PolicyStage } from '../../src/policy/policy.js';
import { decodeExecRecord } from '../../src/pipeline/decode.js';
import { createEnricher } from '../../src/pipeline/enrich.js';
import { toFalco } from '../../src/pipeline/falco-sink.js';
import { BootClock, buildFinding, type Finding } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { ExecWatch, FileFlag as F, ScriptFlag } from '../../src/pipeline/records.js';

const WATCH_PACKAGE_MANAGER = ExecWatch.PACKAGE_MANAGER;
import { encodeExec, type RecordSpec } from '../../src/sdk/encode.js';
import newExecutable from '../../src/signatures/new-executable.js';

const S = 1_000_000_000n;
const LOWER = F.OVERLAY | F.OVL_LAYOUT_FSDATA | F.FOREIGN_NS;
const UPPER = F.OVERLAY | F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS | F.OVL_LAYOUT_FSDATA | F.FOREIGN_NS;
// The realtime clock is this far ahead of the boot clock (as if booted at 1,795,000,000 s).
const OFFSET = 1_795_000_000n * S;

/** Exits driven by the test: exit(pid, realtimeNs) ends a watched process. */
function fakeExits(opts: { gone?: Set<number> } = {}) {
  const watching = new Map<number, (ns: bigint) => void>();
  let boot = 100n * S;
  const exits: ProcessExits & { exit(pid: number, realtimeNs: bigint): void; at(bootNs: bigint): void; watching: Map<number, unknown> } = {
    watching,
    clocks: () => ({ realtimeNs: boot + OFFSET, boottimeNs: boot, monotonicNs: boot, clkTck: 100 }),
    watch(pid, _start, onExit) {
      if (opts.gone?.has(pid)) return false;
      watching.set(pid, onExit);
      return { stop: () => watching.delete(pid) };
    },
    exit(pid, ns) {
      const cb = watching.get(pid);
      watching.delete(pid);
      cb?.(ns);
    },
    at(bootNs) {
      boot = bootNs;
    },
    close: () => watching.clear(),
  };
  return exits;
}

const rec = (s: RecordSpec) => decodeExecRecord(encodeExec(s));
/** apt-get from the image, exec'd at boot time `at` seconds, in cgroup 7. */
const manager = (at: bigint, o: RecordSpec = {}) =>
  rec({ comm: 'apt-get', path: '/usr/bin/apt-get', filename: '/usr/bin/apt-get', fileFlags: LOWER | WATCH_PACKAGE_MANAGER, ktimeNs: at * S, hostPid: 500, cgroupId: 7n, ...o });
/** A dropped (upper-layer) file last changed at realtime `ctime` seconds after OFFSET. */
const drifted = (ctime: bigint, o: RecordSpec = {}) =>
  rec({ comm: 'less', path: '/usr/bin/less', fileFlags: UPPER, ctimeSec: OFFSET / S + ctime, ctimeNsec: 0, ktimeNs: 500n * S, cgroupId: 7n, hostPid: 900, ...o });

test('a file changed between the manager\'s exec and its exit is installed by it; before, after and in another container it is not', () => {
  const exits = fakeExits();
  const w = new PackageWindows({ metrics: new Metrics(), exits });
  w.observe(manager(100n));
  assert.equal(w.installedBy(drifted(150n))?.manager, 'apt-get', 'while it still runs');
  exits.exit(500, OFFSET + 200n * S);
  const by = w.installedBy(drifted(150n));
  assert.deepEqual(by, {
    manager: 'apt-get',
    hostPid: 500,
    windowStart: new Date(Number((OFFSET + 100n * S) / 1_000_000n)).toISOString(),
    windowEnd: new Date(Number((OFFSET + 200n * S) / 1_000_000n)).toISOString(),
    managers: ['apt-get'],
  });
  assert.equal(w.installedBy(drifted(201n)), undefined, 'dropped after the exit');
  assert.equal(w.installedBy(drifted(99n)), undefined, 'changed before the manager ran');
  assert.equal(w.installedBy(drifted(150n, { cgroupId: 8n })), undefined, 'another container');
  // Nanoseconds count at the edges: ctime is realtime, the exec is boot time.
  assert.equal(w.installedBy(drifted(100n, { ctimeNsec: 0 }))?.manager, 'apt-get');
  assert.equal(w.installedBy(drifted(99n, { ctimeNsec: 999_999_999 })), undefined);
  assert.equal(w.installedBy(drifted(200n, { ctimeNsec: 1 })), undefined);
});

test('nested managers: the innermost is named, every holding one is listed', () => {
  const exits = fakeExits();
  const w = new PackageWindows({ metrics: new Metrics(), exits });
  w.observe(manager(100n));
  w.observe(manager(110n, { comm: 'dpkg', path: '/usr/bin/dpkg', hostPid: 501 }));
  exits.exit(501, OFFSET + 120n * S);
  exits.exit(500, OFFSET + 130n * S);
  assert.deepEqual(w.installedBy(drifted(115n))?.managers, ['dpkg', 'apt-get']);
  assert.equal(w.installedBy(drifted(115n))?.manager, 'dpkg');
  assert.deepEqual(w.installedBy(drifted(125n))?.managers, ['apt-get']);
});

test('only the image\'s own package manager opens a window; refusals are counted', () => {
  const metrics = new Metrics();
  const w = new PackageWindows({ metrics, exits: fakeExits() });
  // A dropped binary named apt-get.
  w.observe(manager(100n, { fileFlags: UPPER | WATCH_PACKAGE_MANAGER, path: '/tmp/apt-get' }));
  // A symlink named apt-get to another image binary: the kernel's path is the target's.
  w.observe(manager(100n, { path: '/usr/bin/sleep' }));
  // A symlink with another name to the image's apt-get is apt-get: named by its file.
  const viaLink = new PackageWindows({ metrics: new Metrics(), exits: fakeExits() });
  viaLink.observe(manager(100n, { comm: 'get-things' }));
  assert.equal(viaLink.installedBy(drifted(150n))?.manager, 'apt-get');
  // A dropped #! script named npm, run by the image's interpreter.
  w.observe(manager(100n, { comm: 'npm', path: '/usr/bin/env', fileFlags: LOWER | F.SCRIPT | WATCH_PACKAGE_MANAGER, scriptFlags: ScriptFlag.KNOWN | UPPER }));
  // A #! script whose layer the kernel did not see.
  w.observe(manager(100n, { comm: 'pip', path: '/usr/bin/python3.11', fileFlags: LOWER | F.SCRIPT | WATCH_PACKAGE_MANAGER }));
  // Not flagged by the kernel at all.
  w.observe(manager(100n, { fileFlags: LOWER }));
  assert.equal(w.installedBy(drifted(150n)), undefined);
  assert.equal(metrics.get('package_windows_refused_total', { reason: 'not_image' }), 1);
  assert.equal(metrics.get('package_windows_refused_total', { reason: 'name' }), 1);
  assert.equal(metrics.get('package_windows_refused_total', { reason: 'script_not_image' }), 2);
  assert.equal(metrics.get('package_windows_total'), 0);
  // The image's npm: a #! script from the image, its interpreter from the image.
  w.observe(manager(100n, { comm: 'npm', path: '/usr/bin/env', fileFlags: LOWER | F.SCRIPT | WATCH_PACKAGE_MANAGER, scriptFlags: ScriptFlag.KNOWN | LOWER }));
  assert.equal(w.installedBy(drifted(150n))?.manager, 'npm');
  assert.equal(metrics.get('package_windows_total'), 1);
});

test('a manager gone before its exit could be watched: the window ends when the sensor learnt it', () => {
  const exits = fakeExits({ gone: new Set([500]) });
  const w = new PackageWindows({ metrics: new Metrics(), exits });
  exits.at(140n * S);
  w.observe(manager(100n));
  assert.equal(w.installedBy(drifted(139n))?.windowEnd, new Date(Number((OFFSET + 140n * S) / 1_000_000n)).toISOString());
  assert.equal(w.installedBy(drifted(141n)), undefined);
});

test('open windows, windows per container and containers are bounded; every drop is counted', () => {
  const metrics = new Metrics();
  const exits = fakeExits();
  const w = new PackageWindows({ metrics, exits, maxOpen: 2, maxPerContainer: 2, maxContainers: 2 });
  w.observe(manager(100n, { hostPid: 1 }));
  w.observe(manager(101n, { hostPid: 2 }));
  w.observe(manager(102n, { hostPid: 3, cgroupId: 8n }));
  assert.equal(metrics.get('package_windows_dropped_total', { reason: 'open_limit' }), 1);
  assert.equal(exits.watching.size, 2);
  exits.exit(1, OFFSET + 110n * S);
  exits.exit(2, OFFSET + 111n * S);
  // Per container: the oldest closed window goes.
  w.observe(manager(120n, { hostPid: 4 }));
  assert.equal(metrics.get('package_windows_dropped_total', { reason: 'per_container' }), 1);
  assert.equal(w.installedBy(drifted(100n, { ctimeNsec: 500_000_000 })), undefined, 'the dropped window excepts nothing any more');
  assert.equal(w.installedBy(drifted(110n, { ctimeNsec: 500 }))?.hostPid, 2);
  // Containers: the least recently used goes, its open pidfds with it.
  w.observe(manager(130n, { hostPid: 5, cgroupId: 9n }));
  exits.exit(5, OFFSET + 140n * S);
  w.observe(manager(131n, { hostPid: 6, cgroupId: 10n }));
  assert.equal(metrics.get('package_windows_dropped_total', { reason: 'containers' }), 2, 'container 7 went, with its two windows');
  assert.ok(!exits.watching.has(4), 'an evicted container\'s open window stops being watched');
  w.close();
  assert.equal(exits.watching.size, 0);
});

/** Task start time (monotonic ns) of a live process, as the kernel records it at exec. */
function startTimeNs(pid: number): bigint {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const ticks = BigInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!);
  const c = processExitAddon().clocks();
  return ticks * (S / BigInt(c.clkTck)) - (c.boottimeNs - c.monotonicNs);
}

test('pidfds: the real exit of a real process closes its window, a reused pid is never watched', async () => {
  const exits = pidfdExits();
  try {
    const child = spawn('sleep', ['0.3']);
    await once(child, 'spawn');
    const start = startTimeNs(child.pid!);
    assert.equal(exits.watch(child.pid!, start + 5n * S, () => undefined), false, 'another start time: another process');
    let ended: bigint | undefined;
    const before = BigInt(Date.now()) * 1_000_000n;
    const handle = exits.watch(child.pid!, start, (ns) => (ended = ns));
    assert.ok(handle, 'watching the live child');
    await once(child, 'exit');
    for (let i = 0; i < 100 && ended === undefined; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(ended !== undefined, 'the exit was seen');
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    assert.ok(ended! > before + 250_000_000n && ended! <= after, `exit stamped at its time (${ended} in ${before + 250_000_000n}..${after})`);
    assert.equal(exits.watch(child.pid!, start, () => undefined), false, 'gone and reaped');
  } finally {
    exits.close();
  }
});

test('enrichment: a manager\'s exec, then a drifted file it wrote, gives the finding installedBy (JSON, proto, Falco) and the policy excepts it', async () => {
  const metrics = new Metrics();
  const exits = fakeExits();
  const packageWindows = new PackageWindows({ metrics, exits });
  const overlay = { overlayOf: async () => null, knownHash: () => undefined, executedHash: async () => ({ reason: 'gone' }), imageHash: async () => ({ reason: 'gone' }), layerOf: async () => undefined } as unknown as OverlayFacts;
  const enricher = createEnricher({ host: { mnt: 1, pid: 2 }, metrics, overlay, packageWindows, procRoot: '/nonexistent' });
  await enricher.enrich(manager(100n));
  exits.exit(500, OFFSET + 200n * S);
  const ev = await enricher.enrich(drifted(150n));
  assert.equal(ev.installedBy?.manager, 'apt-get');
  const f = buildFinding(newExecutable, ev, {}, 'node-1', new BootClock());
  assert.deepEqual(f.process?.executable?.installedBy?.managers, ['apt-get']);
  const wire = driftwatch.v1.Finding.toObject(driftwatch.v1.Finding.decode(driftwatch.v1.Finding.encode(driftwatch.v1.Finding.fromObject(f)).finish())) as { process: { executable: { installedBy: { manager: string; hostPid: number } } } };
  assert.equal(wire.process.executable.installedBy.manager, 'apt-get');
  assert.equal(wire.process.executable.installedBy.hostPid, 500);
  assert.equal((toFalco(f)['output_fields'] as Record<string, unknown>)['driftwatch.installed_by'], 'apt-get');
  assert.match(String(toFalco(f)['output']), / installed_by=apt-get /);

  const later = await enricher.enrich(drifted(300n, { path: '/tmp/fetched' }));
  assert.equal(later.installedBy, undefined, 'dropped after apt-get exited');

  const policy = parsePolicy('exceptions:\n  - installedBy: ["apt*", dpkg]\n    reason: installed by apt\n');
  const out: Finding[] = [];
  const stage = new PolicyStage(policy, metrics, (x) => out.push(x));
  stage.apply(f);
  stage.apply(buildFinding(newExecutable, later, {}, 'node-1', new BootClock()));
  // A finding about a #! script is about another file than process.executable.
  const script = buildFinding(newExecutable, ev, { data: { script: '/tmp/s.sh' } }, 'node-1', new BootClock());
  stage.apply(script);
  assert.deepEqual(out.map((x) => x.process?.executable?.path), ['/tmp/fetched', '/usr/bin/less']);
  assert.equal(metrics.get('policy_excepted_total', { signature: 'drift.new_executable', rule: '0' }), 1);
});

test('policy: installedBy takes a glob or a list of them, and nothing else', () => {
  assert.deepEqual(parsePolicy('exceptions:\n  - installedBy: dpkg').exceptions[0]?.installedBy, ['dpkg']);
  assert.deepEqual(parsePolicy('exceptions:\n  - installedBy: [dpkg, "npm*"]').exceptions[0]?.installedBy, ['dpkg', 'npm*']);
  assert.throws(() => parsePolicy('exceptions:\n  - installedBy: []'), /exceptions\[0\]\.installedBy: expected a non-empty list of patterns/);
  assert.throws(() => parsePolicy('exceptions:\n  - installedBy: [1]'), /exceptions\[0\]\.installedBy/);
});
