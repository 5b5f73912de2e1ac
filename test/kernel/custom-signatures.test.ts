// Custom signatures cannot take the sensor down: on the real kernel, the CLI
// loads a signature that loops forever, one that eats memory and one that
// works. While the bad ones spin in their workers, the built-in drift findings
// keep coming and /healthz answers; the bad ones are stopped, disabled,
// logged by name and counted in /metrics; the good one's finding comes from
// its worker.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MiniContainer, kernelSkipReason, leftoverTestMounts, waitForBpfObjectsGone } from '../helpers/minicontainer.js';
import { SensorProcess, argsContain } from '../helpers/sensor-process.js';

const skip = kernelSkipReason();
if (skip) console.log(`# custom signature isolation tests skipped: ${skip}`);

const TRIGGER = `dw-trigger-${randomBytes(4).toString('hex')}`;
const MARK = `dw-mark-${randomBytes(4).toString('hex')}`;

const module = (id: string, body: string) => `import { defineSignature } from 'driftwatch/sdk';
export default defineSignature({
  id: '${id}', name: '${id} test', version: '1', description: 'test', severity: 'LOW', events: ['exec'],
  onEvent(event, ctx) { ${body} },
});
`;

/** The value of a counter series with these labels (any order, with or without the prefix), or 0. */
function counter(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    const m = /^(?:driftwatch_)?(\w+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (Object.entries(labels).every(([k, v]) => m[2]!.split(',').includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return 0;
}

describe('custom signatures in workers (real kernel, overlay mini-container)', { skip: skip ?? false }, () => {
  let ct: MiniContainer;
  let sensor: SensorProcess;
  let dir: string;
  const nonce = () => randomBytes(4).toString('hex');

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dw-custom-sigs-'));
    writeFileSync(join(dir, 'loop.mjs'), module('custom.loop', `if (event.exec.args.includes('${TRIGGER}')) while (true) {}`));
    writeFileSync(join(dir, 'hog.mjs'), module('custom.hog', `if (event.exec.args.includes('${TRIGGER}')) { const keep = []; for (;;) keep.push(new Array(1e5).fill(keep.length)); }`));
    writeFileSync(join(dir, 'marker.ts'), module('custom.marker', `if (event.exec.args.includes('${MARK}')) ctx.emit({ data: { seen: event.exec.path } });`));
    ct = new MiniContainer();
    // A budget of 4 s keeps the loop spinning through the drift execs below.
    sensor = await SensorProcess.start(['--signatures', join(dir, 'loop.mjs'), '--signatures', dir, '--signature-budget-ms', '4000']);
  });

  after(async () => {
    const code = await sensor?.stop('SIGTERM');
    ct?.destroy();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, `sensor exits 0 on SIGTERM; stderr:\n${sensor?.stderr.slice(-1500)}`);
    sensor.cleanup();
    assert.deepEqual(await waitForBpfObjectsGone(sensor.bpf), [], 'no program or link left after the sensor stopped');
    assert.deepEqual(leftoverTestMounts(), [], 'no test mounts left');
  });

  function run(script: string): void {
    const r = ct.run(script);
    assert.equal(r.status, 0, `container script failed: ${r.stderr}`);
  }

  test('a looping and a memory-hungry signature are stopped; built-in findings keep flowing and /healthz answers meanwhile', async () => {
    assert.match(sensor.stderr, /custom signatures: custom\.loop, custom\.hog, custom\.marker/);
    const base = `http://127.0.0.1:${sensor.metricsPort}`;
    const t = nonce();
    run(`cp /bin/busybox /tmp/busybox-t${t}; /tmp/busybox-t${t} true ${TRIGGER} ${t}`);
    await sensor.finding(argsContain(t), 'the built-in finding of the triggering exec');
    // The bad signatures now spin in their workers. Drift findings keep coming, each
    // well within a bound far above the normal tens of milliseconds, and the ops server answers.
    const latencies: number[] = [];
    const loopStopped = () => /custom\.loop .*stopped and disabled/.test(sensor.stderr);
    let whileSpinning = 0;
    for (let i = 0; i < 8; i++) {
      const n = nonce();
      const start = Date.now();
      run(`cp /bin/busybox /tmp/busybox-d${n}; /tmp/busybox-d${n} true ${n}`);
      const f = await sensor.finding(argsContain(n), `drift finding ${i} while the bad signatures run`, 5_000);
      assert.equal(f.signature.id, 'drift.new_executable');
      if (!loopStopped()) whileSpinning++;
      latencies.push(Date.now() - start);
      const h = Date.now();
      const health = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2_000) });
      assert.equal(health.status, 200);
      latencies.push(Date.now() - h);
    }
    assert.ok(Math.max(...latencies) < 5_000, `latencies ${latencies.join(', ')} ms`);
    assert.ok(whileSpinning >= 3, `${whileSpinning} drift findings arrived while the looping signature was still spinning`);
    // Both are stopped, by name, with the reason, and counted.
    await sensor.waitFor(() => /custom\.loop .*stopped and disabled/.test(sensor.stderr) && /custom\.hog .*stopped and disabled/.test(sensor.stderr), 20_000, 'both stopped');
    assert.match(sensor.stderr, /custom signature custom\.loop \(custom\.loop test\) stopped and disabled until the next reload: spent over 4000 ms on one event/);
    assert.match(sensor.stderr, /custom signature custom\.hog \(custom\.hog test\) stopped and disabled until the next reload: exceeded its memory limit \(64 MB heap\)/);
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.equal(counter(text, 'signature_stopped_total', { signature: 'custom.loop', reason: 'time_budget' }), 1, text);
    assert.equal(counter(text, 'signature_stopped_total', { signature: 'custom.hog', reason: 'memory' }), 1);
    assert.equal(counter(text, 'signatures_disabled_total', { signature: 'custom.loop' }), 1);
    assert.equal(counter(text, 'signatures_disabled_total', { signature: 'custom.hog' }), 1);
    assert.equal(counter(text, 'signatures_disabled_total', { signature: 'custom.marker' }), 0);
  });

  test('a working custom signature makes its finding from its worker, through the same policy and sinks', async () => {
    const n = nonce();
    run(`cp /bin/busybox /tmp/busybox-k${n}; /tmp/busybox-k${n} true ${MARK} ${n}`);
    const f = await sensor.finding((x) => x.signature.id === 'custom.marker' && x.process.args.includes(n), 'the custom finding');
    assert.equal(f.signature.data['seen'], `/tmp/busybox-k${n}`);
    assert.equal(f.process.executable.layer, 'UPPER_NEW');
    assert.equal(f.host.hostname.length > 0, true);
    // The built-in saw the same exec: both came out of the one pipeline.
    await sensor.finding((x) => x.signature.id === 'drift.new_executable' && x.process.args.includes(n), 'the built-in finding of the same exec');
    const text = await (await fetch(`http://127.0.0.1:${sensor.metricsPort}/metrics`)).text();
    assert.ok(counter(text, 'findings_total', { signature: 'custom.marker' }) >= 1, text);
  });

  test('SIGHUP loads the modules afresh: a stopped signature, fixed, runs again', async () => {
    writeFileSync(join(dir, 'loop.mjs'), module('custom.loop', `if (event.exec.args.includes('${MARK}')) ctx.emit({ data: { fixed: 'yes' } });`));
    const reloads = () => (sensor.stderr.match(/reloaded: \d+ signature/g) ?? []).length;
    const before = reloads();
    process.kill(sensor.pid, 'SIGHUP');
    await sensor.waitFor(() => reloads() > before, 20_000, 'the reload');
    const n = nonce();
    run(`cp /bin/busybox /tmp/busybox-r${n}; /tmp/busybox-r${n} true ${MARK} ${n}`);
    const f = await sensor.finding((x) => x.signature.id === 'custom.loop' && x.process.args.includes(n), 'the fixed signature\'s finding');
    assert.equal(f.signature.data['fixed'], 'yes');
    await sensor.finding((x) => x.signature.id === 'custom.marker' && x.process.args.includes(n), 'the marker, reloaded too');
  });
});
