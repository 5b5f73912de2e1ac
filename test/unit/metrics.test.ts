// /metrics as Prometheus scrapes it, over real HTTP: typed counters, gauges
// and latency histograms from the sensor's own registry, the kernel's
// counters read at scrape, and the two latency histograms fed by a real
// pipeline run and a real exporter.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Exporter } from '../../src/export/exporter.js';
import { createLogger } from '../../src/log.js';
import type { NativeLoader } from '../../src/native/loader.js';
import { startOpsServer } from '../../src/ops/http.js';
import { BootClock } from '../../src/pipeline/finding.js';
import { registerKernelMetrics } from '../../src/pipeline/kernel-metrics.js';
import { LATENCY_BUCKETS, Metrics } from '../../src/pipeline/metrics.js';
import { FileFlag } from '../../src/pipeline/records.js';
import { startSensor } from '../../src/pipeline/sensor.js';
import { replayLoader } from '../../src/recording.js';
import { encodeExec, frame } from '../../src/sdk/encode.js';

async function scrape(metrics: Metrics): Promise<{ type: string; text: string }> {
  const ops = await startOpsServer({ address: '127.0.0.1:0', metrics, ready: () => true });
  try {
    const res = await fetch(`http://127.0.0.1:${ops.port}/metrics`);
    assert.equal(res.status, 200);
    return { type: res.headers.get('content-type') ?? '', text: await res.text() };
  } finally {
    await ops.close();
  }
}

const sample = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
};
const typeOf = (text: string, name: string) => new RegExp(`^# TYPE ${name} (\\w+)$`, 'm').exec(text)?.[1];

test('metrics: counters, read-at-scrape counters, gauges and histograms come out typed, with help, over HTTP', async () => {
  const m = new Metrics();
  m.inc('events_decoded_total', {}, 1000);
  m.inc('findings_total', { signature: 'drift.new_executable' });
  m.inc('findings_total', { signature: 'drift.new_executable' }, 2);
  m.inc('findings_total', { signature: 'drift.fileless_exec' }, 0);
  m.inc('policy_excepted_total', { signature: 'a"b\\c\nd', rule: '0' });
  let sent = 7;
  m.counterFrom('export_sent_total', () => sent);
  m.gauge('export_spool_bytes', () => 4096);
  m.gauge('enrichment_inflight', () => {
    throw new Error('gone');
  });
  m.observe('finding_latency_seconds', 0.003);
  m.observe('finding_latency_seconds', 0.2);
  m.observe('finding_latency_seconds', -1); // a clock that went back: not observed

  const { type, text } = await scrape(m);
  assert.match(type, /^text\/plain; version=0\.0\.4/);
  assert.equal(typeOf(text, 'driftwatch_events_decoded_total'), 'counter');
  assert.equal(sample(text, 'driftwatch_events_decoded_total'), 1000);
  assert.equal(sample(text, 'driftwatch_findings_total{signature="drift.new_executable"}'), 3);
  assert.equal(sample(text, 'driftwatch_findings_total{signature="drift.fileless_exec"}'), 0, 'a zero series before the first finding');
  assert.match(text, /^# HELP driftwatch_findings_total Findings made, by signature\.$/m);
  assert.equal(sample(text, 'driftwatch_policy_excepted_total{signature="a\\"b\\\\c\\nd",rule="0"}'), 1, 'label values escaped');
  assert.equal(typeOf(text, 'driftwatch_export_sent_total'), 'counter');
  assert.equal(sample(text, 'driftwatch_export_sent_total'), 7);
  assert.equal(typeOf(text, 'driftwatch_export_spool_bytes'), 'gauge');
  assert.equal(sample(text, 'driftwatch_export_spool_bytes'), 4096);
  assert.ok(Number.isNaN(sample(text, 'driftwatch_enrichment_inflight')), 'an unreadable gauge is NaN');
  assert.match(text, /^driftwatch_enrichment_inflight Nan$/im);

  assert.equal(typeOf(text, 'driftwatch_finding_latency_seconds'), 'histogram');
  assert.equal(sample(text, 'driftwatch_finding_latency_seconds_count'), 2);
  assert.ok(Math.abs(sample(text, 'driftwatch_finding_latency_seconds_sum') - 0.203) < 1e-9);
  assert.equal(sample(text, 'driftwatch_finding_latency_seconds_bucket{le="0.001"}'), 0);
  assert.equal(sample(text, 'driftwatch_finding_latency_seconds_bucket{le="0.005"}'), 1);
  assert.equal(sample(text, 'driftwatch_finding_latency_seconds_bucket{le="0.25"}'), 2);
  assert.equal(sample(text, 'driftwatch_finding_latency_seconds_bucket{le="+Inf"}'), 2);
  assert.equal([...text.matchAll(/^driftwatch_finding_latency_seconds_bucket\{/gm)].length, LATENCY_BUCKETS.length + 1);

  // Read at scrape, and through the sync API the log summary uses.
  sent = 9;
  assert.equal(sample((await scrape(m)).text, 'driftwatch_export_sent_total'), 9);
  assert.equal(m.get('export_sent_total'), 9);
  assert.equal(m.get('findings_total', { signature: 'drift.new_executable' }), 3);
  assert.equal(m.total('findings_total'), 3);
  assert.deepEqual(
    m.snapshot().filter((s) => s.name.startsWith('finding_latency_seconds')).map((s) => [s.name, s.value]),
    [['finding_latency_seconds_count', 2], ['finding_latency_seconds_sum', 0.203]],
  );
});

test('metrics: each Metrics is its own registry; process metrics only where asked for', async () => {
  const a = new Metrics();
  const b = new Metrics({ processMetrics: true });
  a.inc('reloads_total');
  b.inc('reloads_total', {}, 5);
  const ta = (await scrape(a)).text;
  const tb = (await scrape(b)).text;
  assert.equal(sample(ta, 'driftwatch_reloads_total'), 1);
  assert.equal(sample(tb, 'driftwatch_reloads_total'), 5);
  assert.doesNotMatch(ta, /^process_/m);
  assert.equal(typeOf(tb, 'process_cpu_user_seconds_total'), 'counter');
  assert.ok(sample(tb, 'process_resident_memory_bytes') > 0);
  assert.equal(typeOf(tb, 'nodejs_eventloop_lag_p99_seconds'), 'gauge');
  assert.equal(typeOf(tb, 'nodejs_gc_duration_seconds'), 'histogram');
});

test('metrics: a label set that differs from the first use of a name, or a bad increment, is refused where it is made', () => {
  const m = new Metrics();
  m.inc('findings_total', { signature: 'x' });
  assert.throws(() => m.inc('findings_total', { sig: 'x' }), /findings_total: labels sig differ from signature/);
  assert.throws(() => m.inc('findings_total'), /labels \(none\) differ from signature/);
  m.gauge('selftest', () => 1, { check: 'exec' });
  assert.throws(() => m.counterFrom('selftest', () => 1, { check: 'exec' }), /selftest is a gauge, not a counter/);
  for (const bad of [-1, NaN, Infinity]) assert.throws(() => m.inc('reloads_total', {}, bad), /reloads_total: a counter cannot change by/);
});

test('metrics: the kernel stats map and BPF program stats are counters read at scrape; the old gauge names stay', async () => {
  let closed = false;
  const stats = { exec_seen: 40, ovl_unresolved: 3, records_pending: 1 };
  const kernel = {
    stats: () => {
      if (closed) throw new Error('closed');
      return stats;
    },
    programStats: () => {
      if (closed) throw new Error('closed');
      return [{ name: 'sched_process_exec', id: 7, runTimeNs: 123456, runCount: 40 }];
    },
  } as unknown as NativeLoader;
  const m = new Metrics();
  registerKernelMetrics(m, kernel);
  const { text } = await scrape(m);
  assert.equal(typeOf(text, 'driftwatch_kernel_exec_seen_total'), 'counter');
  assert.equal(sample(text, 'driftwatch_kernel_exec_seen_total'), 40);
  assert.equal(sample(text, 'driftwatch_kernel_ovl_unresolved_total'), 3);
  assert.equal(typeOf(text, 'driftwatch_kernel_exec_seen'), 'gauge');
  assert.equal(sample(text, 'driftwatch_kernel_exec_seen'), 40);
  assert.match(text, /^# HELP driftwatch_kernel_exec_seen Deprecated gauge: the counter driftwatch_kernel_exec_seen_total\.$/m);
  assert.equal(typeOf(text, 'driftwatch_kernel_records_pending'), 'gauge', 'a level, not a count');
  assert.doesNotMatch(text, /driftwatch_kernel_records_pending_total/);
  assert.equal(sample(text, 'driftwatch_bpf_program_runs_total{program="sched_process_exec"}'), 40);
  assert.equal(sample(text, 'driftwatch_bpf_program_run_time_ns_total{program="sched_process_exec"}'), 123456);
  assert.ok([0, 1].includes(sample(text, 'driftwatch_bpf_stats_enabled')));

  // A closed loader: its counters are absent, not a made-up 0 (the cache of the last read runs out first).
  closed = true;
  await new Promise((r) => setTimeout(r, 150));
  const after = (await scrape(m)).text;
  assert.ok(Number.isNaN(sample(after, 'driftwatch_kernel_exec_seen_total')), after);
  assert.ok(Number.isNaN(sample(after, 'driftwatch_bpf_program_runs_total{program="sched_process_exec"}')));
});

test('metrics: exec → finding latency is observed per finding written, from the kernel timestamp; summaries are not', async () => {
  const clock = new BootClock();
  const lagNs = 50_000_000n; // the events happened 50 ms before the replay
  const at = clock.nowNs() - lagNs;
  const drift = (hostPid: number, path: string) =>
    encodeExec({
      hostPid,
      fileFlags: FileFlag.OVERLAY | FileFlag.OVL_UPPER_DENTRY | FileFlag.OVL_UPPER_ALIAS,
      path,
      args: [path],
      cgroup: `libpod-${'1'.padStart(64, '0')}`,
      cgroupParent: 'libpod_parent',
      cgroupId: 77n,
      ktimeNs: at,
    });
  const loader = replayLoader([frame([drift(101, '/tmp/a'), drift(102, '/tmp/b'), drift(103, '/tmp/a')])]);
  let written = 0;
  const sensor = await startSensor({
    log: createLogger('error', () => {}),
    loader,
    hostNamespaces: { mnt: 1, pid: 2 },
    pollIntervalMs: 0,
    hostname: 't',
    sinks: [{ write: () => void written++, close() {} }],
  });
  await loader.done;
  await sensor.stop();
  const count = sensor.metrics.snapshot().find((s) => s.name === 'finding_latency_seconds_count')?.value;
  const sum = sensor.metrics.snapshot().find((s) => s.name === 'finding_latency_seconds_sum')?.value ?? NaN;
  assert.ok(written > 2, `findings written: ${written}`);
  // The repeat of /tmp/a is folded: its summary, made when the window closes, is written but not timed.
  assert.ok(sensor.metrics.total('findings_folded_total') >= 1);
  assert.equal(count, written - 1);
  assert.ok(sum >= (Number(lagNs) / 1e9) * count!, `sum ${sum} for ${count} findings`);
});

test('metrics: export latency is observed per batch, from sending to the answer', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dw-metrics-'));
  const m = new Metrics();
  let batches = 0;
  const exporter = new Exporter({
    spoolDir: dir,
    flushMs: 1,
    transport: {
      async export(findings) {
        batches++;
        await new Promise((r) => setTimeout(r, 30));
        return { kind: 'ok', stored: findings.length, duplicates: 0, rejected: 0 };
      },
      close() {},
    },
    observeLatency: (s) => m.observe('export_latency_seconds', s),
  });
  try {
    exporter.export({ id: '1' });
    assert.equal(await exporter.flush(), true);
    exporter.export({ id: '2' });
    assert.equal(await exporter.flush(), true);
  } finally {
    await exporter.shutdown(0);
    rmSync(dir, { recursive: true, force: true });
  }
  const { text } = await scrape(m);
  assert.equal(sample(text, 'driftwatch_export_latency_seconds_count'), batches);
  assert.ok(batches >= 2);
  assert.ok(sample(text, 'driftwatch_export_latency_seconds_sum') >= 0.029 * batches);
  assert.equal(sample(text, 'driftwatch_export_latency_seconds_bucket{le="0.025"}'), 0);
});
