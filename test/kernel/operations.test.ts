// Operations on the real kernel: a config file drives the sensor, findings in
// Falco's JSON shape, SIGHUP reloads the policy without losing events, logs
// stay quiet under a burst, SIGTERM drains into the backend.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { programIdsOf, programsStillLoaded } from '../helpers/bpf-programs.js';
import { MiniContainer, kernelSkipReason } from '../helpers/minicontainer.js';
import { SensorProcess, cliPath } from '../helpers/sensor-process.js';

const skip = kernelSkipReason();
if (skip) console.log(`# operations tests skipped: ${skip}`);

/** Falco's output shape, as written by --output falco-json. */
interface FalcoLine {
  uuid: string;
  rule: string;
  priority: string;
  time: string;
  output: string;
  output_fields: Record<string, unknown>;
}

describe('operations (real kernel, config file, falco-json, SIGHUP, SIGTERM)', { skip: skip ?? false }, () => {
  let ct: MiniContainer;
  let sensor: SensorProcess;
  let dir: string;
  let policy: string;
  const nonce = () => randomBytes(4).toString('hex');
  const lines = () => sensor.findings as unknown as FalcoLine[];
  // The mini-container's own setup execs (sh, chroot) carry the script in their arguments: match the executable.
  const withArg = (n: string) => (l: FalcoLine) => new RegExp(`-[fb]?${n}$`).test(String(l.output_fields['proc.exepath']));
  const run = (script: string) => {
    const r = ct.run(script);
    assert.equal(r.status, 0, r.stderr);
  };
  const dropAndRun = (path: string, n: string) => `mkdir -p /tmp/allowed; cp /bin/busybox ${path}; ${path} true ${n}`;

  let programs: number[] = [];

  before(async () => {
    ct = new MiniContainer();
    dir = mkdtempSync(join(tmpdir(), 'dw-ops-'));
    policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'exceptions:\n  - executable: "/tmp/allowed/*"\n    reason: excepted until the reload\n');
    const config = join(dir, 'config.yaml');
    // The file names the policy and asks for jsonl; the environment overrides that with falco-json.
    writeFileSync(config, `output: jsonl\npolicy: ${policy}\n`);
    sensor = await SensorProcess.start(['--config', config], { env: { DRIFTWATCH_OUTPUT: 'falco-json' } });
    programs = programIdsOf(sensor.pid);
    assert.notDeepEqual(programs, [], 'the sensor holds its programs');
  });

  after(async () => {
    const code = await sensor?.stop('SIGTERM');
    ct?.destroy();
    assert.equal(code, 0, sensor?.stderr.slice(-1000));
    // SIGTERM drained: every finding written was stored by the embedded backend.
    const r = spawnSync(process.execPath, [cliPath, 'findings', '--db', join(sensor.dataDir, 'findings.db'), '--json', '--limit', '10000'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const stored = new Set(r.stdout.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { id: string }).id));
    assert.ok(lines().length >= 20);
    for (const l of lines()) assert.ok(stored.has(l.uuid), `finding ${l.uuid} (${l.rule}) stored`);
    sensor.cleanup();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(await programsStillLoaded(programs), [], 'no program of this sensor left');
  });

  // falco-json here came from DRIFTWATCH_OUTPUT over the file's jsonl; the file's policy is the
  // exception the SIGHUP test starts from: both sources are in force.
  test('--output falco-json (from the environment, over the file) writes Falco\'s shape for a real drift', async () => {
    const n = nonce();
    run(dropAndRun(`/tmp/busybox-f${n}`, n));
    await sensor.waitFor(() => lines().some(withArg(n)), 15_000, 'falco line');
    const l = lines().find(withArg(n))!;
    assert.equal(lines().filter(withArg(n)).length, 1, JSON.stringify(lines().filter(withArg(n)), null, 1));
    assert.equal(l.rule, 'New executable in container');
    assert.equal(l.priority, 'Critical');
    assert.ok(!Number.isNaN(Date.parse(l.time)));
    assert.equal(l.output_fields['proc.exepath'], `/tmp/busybox-f${n}`);
    assert.equal(l.output_fields['proc.is_exe_upper_layer'], true);
    assert.match(l.output, new RegExp(`proc\\.exepath=/tmp/busybox-f${n}`));
    assert.equal((l as unknown as { signature?: unknown }).signature, undefined, 'not the jsonl contract');
  });

  test('SIGHUP swaps the policy; a bad policy on reload keeps the running one; no event is lost meanwhile', async () => {
    const barrier = async () => {
      const b = nonce();
      run(dropAndRun(`/tmp/busybox-b${b}`, b));
      await sensor.waitFor(() => lines().some(withArg(b)), 15_000, 'barrier');
    };
    const reloads = () => (sensor.stderr.match(/"msg":"reloaded: /g) ?? []).length;
    const excepted = nonce();
    run(dropAndRun(`/tmp/allowed/busybox-${excepted}`, excepted));
    await barrier();
    assert.equal(lines().filter(withArg(excepted)).length, 0, 'excepted before the reload');

    // A broken policy: the reload is refused and the exception still holds.
    writeFileSync(policy, 'signatures:\n  drift.new_executable: { severity: URGENT }\n');
    process.kill(sensor.pid, 'SIGHUP');
    await sensor.waitFor(() => /reload failed, keeping the running configuration: .*severity/.test(sensor.stderr), 10_000, 'reload failure');
    const still = nonce();
    run(dropAndRun(`/tmp/allowed/busybox-${still}`, still));
    await barrier();
    assert.equal(lines().filter(withArg(still)).length, 0, 'still excepted after a failed reload');

    // The exception is removed; SIGHUPs arrive while 20 drift execs run.
    writeFileSync(policy, 'exceptions: []\n');
    const before = reloads();
    const burst = Array.from({ length: 20 }, () => nonce());
    const hups = spawn('sh', ['-c', `for i in 1 2 3 4 5; do kill -HUP ${sensor.pid}; sleep 0.1; done`], { stdio: 'ignore' });
    const logLinesBefore = sensor.stderr.split('\n').length;
    run(burst.map((n) => dropAndRun(`/tmp/allowed/busybox-${n}`, n)).join('; '));
    await new Promise((r) => hups.once('exit', r));
    await sensor.waitFor(() => reloads() >= before + 5, 10_000, 'five reloads');
    for (const n of burst) await sensor.waitFor(() => lines().some(withArg(n)), 15_000, `finding ${n} across reloads`);
    const after = nonce();
    run(dropAndRun(`/tmp/allowed/busybox-${after}`, after));
    await sensor.waitFor(() => lines().some(withArg(after)), 15_000, 'finding after the reload');
    // Logs never carry a line per event: 20 findings, a handful of lines (the reloads).
    const newLogLines = sensor.stderr.split('\n').length - logLinesBefore;
    assert.ok(newLogLines <= 5 + 2, `log lines during the burst: ${newLogLines}`);
    assert.doesNotMatch(sensor.stderr, new RegExp(burst[0]!), 'no finding is logged');
  });
});
