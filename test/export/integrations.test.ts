// Falco http_output and OTLP logs, each against a real receiver on loopback,
// through the same spool and retries as the backend export: nothing lost to
// failures or an outage, nothing sent twice, and what arrives has the shape
// Falcosidekick and an OpenTelemetry Collector read.
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Exporter } from '../../src/export/exporter.js';
import { FalcoHttpTransport } from '../../src/export/falco-http-transport.js';
import { OtlpLogsTransport } from '../../src/export/otlp-logs-transport.js';
import type { Finding } from '../../src/pipeline/finding.js';
import { makeFindings } from '../helpers/findings.js';
import { startFalcoReceiver, startOtlpReceiver } from '../helpers/receivers.js';

async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let tmp: string;
before(() => void (tmp = mkdtempSync(join(tmpdir(), 'driftwatch-integrations-'))));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('Falco http_output (real HTTP receiver on loopback)', () => {
  test('each finding POSTed once in Falco\'s shape and in order, through 503s and an outage', { timeout: 60_000 }, async () => {
    let rx = await startFalcoReceiver();
    const port = rx.port;
    const spoolDir = join(tmp, 'falco-spool');
    const exporter = new Exporter({ transport: new FalcoHttpTransport({ url: rx.url }), spoolDir, maxBatch: 1, backoffBaseMs: 20, backoffMaxMs: 200 });
    try {
      const first = makeFindings(10, 'falco-a');
      rx.failNext(2, 503);
      for (const f of first) exporter.export(f);
      await until(() => rx.alerts.length === 10, 20_000, 'the first ten alerts');
      assert.ok(exporter.metrics.export_retries_total >= 2, 'the 503s were retried');
      assert.deepEqual(rx.alerts.map((a) => a['uuid']), first.map((f) => f.id), 'in order, each once');
      assert.deepEqual(rx.problems, []);
      const a = rx.alerts[0]!;
      assert.equal(a['priority'], 'Critical');
      assert.equal(a['rule'], first[0]!.signature!.name);
      assert.equal((a['output_fields'] as Record<string, unknown>)['proc.exepath'], first[0]!.process!.executable!.path);
      assert.deepEqual([...rx.userAgents], ['driftwatch']);

      // The receiver goes away; findings wait in the spool and go out when it is back.
      const got = [...rx.alerts];
      await rx.close();
      const second = makeFindings(10, 'falco-b');
      for (const f of second) exporter.export(f);
      await until(() => exporter.metrics.export_retries_total >= 5, 10_000, 'retries while it is down');
      rx = await startFalcoReceiver(port);
      await until(() => rx.alerts.length === 10, 20_000, 'the second ten alerts after the outage');
      assert.deepEqual([...got, ...rx.alerts].map((x) => x['uuid']), [...first, ...second].map((f) => f.id));

      // A finding the receiver refuses for good is dropped, counted, and the rest go on.
      rx.failNext(1, 400);
      const third = makeFindings(3, 'falco-c');
      for (const f of third) exporter.export(f);
      await until(() => rx.alerts.length === 12, 20_000, 'the two accepted ones');
      assert.equal(exporter.metrics.export_rejected_total, 1);
      assert.deepEqual(rx.alerts.slice(10).map((x) => x['uuid']), third.slice(1).map((f) => f.id));
    } finally {
      await exporter.shutdown(0);
      await rx.close();
    }
  });

  test('findings spooled while the receiver is down are sent by the next exporter on the same spool', { timeout: 60_000 }, async () => {
    const rx = await startFalcoReceiver();
    const port = rx.port;
    await rx.close();
    const spoolDir = join(tmp, 'falco-restart');
    const url = `http://127.0.0.1:${port}/`;
    const down = new Exporter({ transport: new FalcoHttpTransport({ url }), spoolDir, maxBatch: 1, backoffBaseMs: 20, backoffMaxMs: 100 });
    const batch = makeFindings(5, 'falco-restart');
    for (const f of batch) down.export(f);
    await down.shutdown(200); // the sensor stops with the receiver still down
    const back = await startFalcoReceiver(port);
    const up = new Exporter({ transport: new FalcoHttpTransport({ url }), spoolDir, maxBatch: 1, backoffBaseMs: 20, backoffMaxMs: 100 });
    try {
      await until(() => back.alerts.length === 5, 20_000, 'the spooled alerts');
      assert.deepEqual(back.alerts.map((a) => a['uuid']), batch.map((f) => f.id));
    } finally {
      await up.shutdown(0);
      await back.close();
    }
  });

  test('a URL that is not http(s) is refused when the output is made', () => {
    assert.throws(() => new FalcoHttpTransport({ url: 'ftp://x/' }), /not an http\(s\) URL/);
    assert.throws(() => new FalcoHttpTransport({ url: 'not a url' }));
  });
});

describe('OTLP logs (real gRPC LogsService on loopback)', () => {
  const enrich = (f: Finding, i: number): Finding => ({
    ...f,
    container: { ...f.container, name: `web-${i}`, image: 'docker.io/library/nginx:1.27', imageId: 'sha256:' + 'f'.repeat(64), labels: { app: 'web' } },
    kubernetes: { namespace: 'shop', pod: `web-${i}-abc`, podUid: `uid-${i}`, container: 'nginx' },
  });

  test('findings arrive as log records with semantic-convention attributes, through UNAVAILABLE and an outage', { timeout: 90_000 }, async () => {
    let rx = await startOtlpReceiver();
    const endpoint = rx.endpoint;
    const port = Number(endpoint.split(':').pop());
    const exporter = new Exporter({ transport: new OtlpLogsTransport({ endpoint }), spoolDir: join(tmp, 'otlp-spool'), backoffBaseMs: 50, backoffMaxMs: 500 });
    try {
      const first = makeFindings(5, 'otlp-a').map(enrich);
      rx.failNext(1, grpc.status.UNAVAILABLE);
      for (const f of first) exporter.export(f);
      await until(() => rx.records.length === 5, 30_000, 'five log records');
      assert.ok(rx.requests >= 2, 'the UNAVAILABLE call was retried');
      const byId = new Map(rx.records.map((r) => [r.attributes['driftwatch.finding.id'], r]));
      assert.equal(byId.size, 5, 'each finding once');
      const f = first[0]!;
      const r = byId.get(f.id)!;
      assert.equal(r.resource['service.name'], 'driftwatch');
      assert.equal(r.scope, 'driftwatch');
      assert.equal(r.eventName, 'driftwatch.finding');
      assert.equal(r.severityText, 'CRITICAL');
      assert.equal(r.severityNumber, 21);
      assert.equal(BigInt(r.timeUnixNano), BigInt(Date.parse(f.time!)) * 1_000_000n);
      assert.match(String(r.body), /\/tmp\/x in web-0/);
      const a = r.attributes;
      assert.equal(a['container.id'], f.container!.id);
      assert.equal(a['container.name'], 'web-0');
      assert.equal(a['container.image.name'], 'docker.io/library/nginx:1.27');
      assert.equal(a['container.image.id'], 'sha256:' + 'f'.repeat(64));
      assert.equal(a['container.label.app'], 'web');
      assert.equal(a['k8s.namespace.name'], 'shop');
      assert.equal(a['k8s.pod.name'], 'web-0-abc');
      assert.equal(a['k8s.pod.uid'], 'uid-0');
      assert.equal(a['k8s.container.name'], 'nginx');
      assert.equal(a['process.executable.path'], f.process!.executable!.path);
      assert.equal(a['process.executable.name'], f.process!.executable!.path!.split('/').pop());
      assert.deepEqual(a['process.command_args'], f.process!.args);
      assert.equal(a['process.pid'], f.process!.hostPid);
      assert.equal(a['host.name'], 'test-node');
      assert.equal(a['driftwatch.signature.id'], 'drift.new_executable');
      assert.equal(a['driftwatch.executable.layer'], 'UPPER_NEW');

      await rx.close();
      const second = makeFindings(5, 'otlp-b').map(enrich);
      for (const x of second) exporter.export(x);
      await until(() => exporter.metrics.export_retries_total >= 1, 30_000, 'a retry while it is down');
      rx = await startOtlpReceiver(port);
      await until(() => rx.records.length === 5, 60_000, 'the five spooled during the outage');
      assert.deepEqual(new Set(rx.records.map((x) => x.attributes['driftwatch.finding.id'])), new Set(second.map((x) => x.id)));
    } finally {
      await exporter.shutdown(0);
      await rx.close();
    }
  });

  test('a bad endpoint is refused when the output is made', () => {
    assert.throws(() => new OtlpLogsTransport({ endpoint: 'http://a/b/c' }), /bad endpoint/);
  });
});
