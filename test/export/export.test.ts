// Export to the reference backend over real gRPC on loopback, against a real
// SQLite file and a real PostgreSQL server: no finding lost, none stored twice.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { startBackend, type Backend } from '../../src/backend/server.js';
import { openStore } from '../../src/backend/open-store.js';
import type { FindingStore } from '../../src/backend/store.js';
import { Exporter } from '../../src/export/exporter.js';
import { GrpcTransport } from '../../src/export/grpc-transport.js';
import { makeCerts, type TestCerts } from '../helpers/certs.js';
import { makeFindings } from '../helpers/findings.js';
import { freePort, postgresSkipReason, startPostgres, type PgServer } from '../helpers/postgres.js';
import { cliPath } from '../helpers/sensor-process.js';

const here = dirname(fileURLToPath(import.meta.url));
const OUTAGE_S = Number(process.env['DRIFTWATCH_OUTAGE_SECONDS'] ?? 30);

async function until(pred: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function child(args: string[]): { proc: ChildProcess; out: () => string } {
  let out = '';
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  return { proc, out: () => out };
}

async function ids(store: FindingStore): Promise<string[]> {
  return (await store.query({ limit: 100000 })).map((f) => f.id!).sort();
}

const pgSkip = postgresSkipReason();
if (pgSkip) console.log(`# PostgreSQL variants skipped: ${pgSkip}`);

for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`export and backend (${kind})`, { skip: kind === 'postgres' && pgSkip ? pgSkip : false }, () => {
    let tmp: string;
    let pgServer: PgServer | undefined;
    let dbUrl: string;
    let certs: TestCerts;
    let dbCounter = 0;

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), 'driftwatch-export-'));
      certs = makeCerts();
      if (kind === 'postgres') pgServer = await startPostgres();
    });
    after(() => {
      pgServer?.stop();
      certs?.cleanup();
      rmSync(tmp, { recursive: true, force: true });
    });

    /** A fresh, empty database for one test. */
    async function freshDb(): Promise<string> {
      dbCounter++;
      if (kind === 'sqlite') return (dbUrl = join(tmp, `db-${dbCounter}.sqlite`));
      const store = await openStore(pgServer!.url);
      await store.close();
      const { default: pg } = await import('pg');
      const c = new pg.Client({ connectionString: pgServer!.url });
      await c.connect();
      await c.query(`CREATE DATABASE t${dbCounter}`);
      await c.end();
      return (dbUrl = pgServer!.url.replace(/\/postgres$/, `/t${dbCounter}`));
    }

    test('stores a batch, and a retried batch is stored once (dedup by finding id)', async () => {
      const backend = await startBackend({ listen: '127.0.0.1:0', db: await freshDb() });
      const t = new GrpcTransport({ backend: backend.address });
      try {
        const batch = makeFindings(20, 'dedup');
        assert.deepEqual(await t.export(batch), { kind: 'ok', stored: 20, duplicates: 0, rejected: 0 });
        assert.deepEqual(await t.export(batch), { kind: 'ok', stored: 0, duplicates: 20, rejected: 0 });
        assert.deepEqual(await ids(backend.store), batch.map((f) => f.id!).sort());
        const back = await backend.store.query({ signature: 'drift.new_executable', limit: 1 });
        assert.equal(back[0]?.process?.executable?.layer, 'UPPER_NEW');
      } finally {
        t.close();
        await backend.stop();
      }
    });

    test('a dedup summary sent over gRPC updates the finding it stands for, once', async () => {
      const backend = await startBackend({ listen: '127.0.0.1:0', db: await freshDb() });
      const t = new GrpcTransport({ backend: backend.address });
      try {
        const [first, other] = makeFindings(2, 'fold');
        const summary = {
          ...first!,
          id: '5a5a5a5a-0000-4000-8000-000000000001',
          count: 1000,
          lastSeen: '2030-01-01T00:00:00.000Z',
          foldOf: first!.id!,
          distinctArgs: [{ args: ['/tmp/x', 'a'], count: 990 }],
          argsOmitted: 10,
        };
        assert.deepEqual(await t.export([first!, other!]), { kind: 'ok', stored: 2, duplicates: 0, rejected: 0 });
        assert.deepEqual(await t.export([summary]), { kind: 'ok', stored: 1, duplicates: 0, rejected: 0 });
        assert.deepEqual(await t.export([summary]), { kind: 'ok', stored: 0, duplicates: 1, rejected: 0 }, 'a retried summary changes nothing');
        const rows = await backend.store.query({ limit: 10 });
        assert.equal(rows.length, 2);
        const row = rows.find((f) => f.id === first!.id)!;
        assert.equal(row.count, 1000);
        assert.equal(row.lastSeen, '2030-01-01T00:00:00.000Z');
        assert.deepEqual(row.distinctArgs, [{ args: ['/tmp/x', 'a'], count: 990 }]);
        assert.equal(row.argsOmitted, 10);
        assert.equal(rows.find((f) => f.id === other!.id)!.count ?? 1, 1);
      } finally {
        t.close();
        await backend.stop();
      }
    });

    test('invalid findings: partial success for a mixed batch, INVALID_ARGUMENT when none is valid', async () => {
      const backend = await startBackend({ listen: '127.0.0.1:0', db: await freshDb() });
      const t = new GrpcTransport({ backend: backend.address });
      try {
        const good = makeFindings(3, 'valid');
        const bad = makeFindings(2, 'invalid').map((f) => ({ ...f, host: {} }));
        const mixed = await t.export([...good, ...bad]);
        assert.equal(mixed.kind, 'ok');
        assert.equal(mixed.kind === 'ok' && mixed.stored, 3);
        assert.equal(mixed.kind === 'ok' && mixed.rejected, 2);
        assert.match(mixed.kind === 'ok' ? mixed.rejectReason ?? '' : '', /host\.hostname/);
        const none = await t.export(bad);
        assert.equal(none.kind, 'final');
        assert.equal(none.kind === 'final' && none.code, grpc.status.INVALID_ARGUMENT);
        assert.equal(await backend.store.count(), 3);
      } finally {
        t.close();
        await backend.stop();
      }
    });

    test('a malformed message gets INVALID_ARGUMENT and stores nothing', async () => {
      const backend = await startBackend({ listen: '127.0.0.1:0', db: await freshDb() });
      const client = new grpc.Client(backend.address, grpc.credentials.createInsecure());
      try {
        const err = await new Promise<grpc.ServiceError | null>((resolve) =>
          client.makeUnaryRequest('/driftwatch.v1.FindingService/Export', (b: Buffer) => b, (b: Buffer) => b,
            Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]), new grpc.Metadata(), {}, (e) => resolve(e)),
        );
        assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
        assert.equal(await backend.store.count(), 0);
      } finally {
        client.close();
        await backend.stop();
      }
    });

    test('bearer token: wrong or missing token is UNAUTHENTICATED and nothing is stored', async () => {
      const backend = await startBackend({ listen: '127.0.0.1:0', db: await freshDb(), token: 's3cret' });
      const wrong = new GrpcTransport({ backend: backend.address, token: 'nope' });
      const none = new GrpcTransport({ backend: backend.address });
      const right = new GrpcTransport({ backend: backend.address, token: 's3cret' });
      try {
        for (const t of [wrong, none]) {
          const r = await t.export(makeFindings(2, 'auth'));
          assert.equal(r.kind !== 'ok' && r.code, grpc.status.UNAUTHENTICATED);
        }
        assert.equal(await backend.store.count(), 0);
        assert.equal((await right.export(makeFindings(2, 'auth'))).kind, 'ok');
        assert.equal(await backend.store.count(), 2);
      } finally {
        for (const t of [wrong, none, right]) t.close();
        await backend.stop();
      }
    });

    test('TLS, and mTLS: no client certificate or an untrusted CA is rejected, nothing stored', async () => {
      const tlsBackend = await startBackend({ listen: '127.0.0.1:0', db: await freshDb(), tls: { cert: certs.serverCert, key: certs.serverKey } });
      const tlsClient = new GrpcTransport({ backend: tlsBackend.address, tls: { ca: certs.ca }, deadlineMs: 3000 });
      const untrusting = new GrpcTransport({ backend: tlsBackend.address, tls: { ca: certs.otherCa }, deadlineMs: 3000 });
      try {
        assert.equal((await tlsClient.export(makeFindings(1, 'tls'))).kind, 'ok');
        assert.notEqual((await untrusting.export(makeFindings(1, 'tls'))).kind, 'ok', 'server cert from an unknown CA');
        assert.equal(await tlsBackend.store.count(), 1);
      } finally {
        tlsClient.close();
        untrusting.close();
        await tlsBackend.stop();
      }
      const mtls = await startBackend({
        listen: '127.0.0.1:0', db: await freshDb(),
        tls: { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca },
      });
      const noCert = new GrpcTransport({ backend: mtls.address, tls: { ca: certs.ca }, deadlineMs: 3000 });
      const withCert = new GrpcTransport({ backend: mtls.address, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } });
      try {
        assert.notEqual((await noCert.export(makeFindings(2, 'mtls'))).kind, 'ok');
        assert.equal(await mtls.store.count(), 0);
        assert.equal((await withCert.export(makeFindings(2, 'mtls'))).kind, 'ok');
        assert.equal(await mtls.store.count(), 2);
      } finally {
        noCert.close();
        withCert.close();
        await mtls.stop();
      }
    });

    test(`backend down for ${OUTAGE_S} s while findings flow: every finding stored exactly once after it returns`, { timeout: (OUTAGE_S + 60) * 1000 }, async () => {
      const port = await freePort();
      const db = await freshDb();
      const exporter = new Exporter({ backend: `127.0.0.1:${port}`, spoolDir: join(tmp, `spool-outage-${kind}`), backoffMaxMs: 2000 });
      const sent: string[] = [];
      const start = Date.now();
      while (Date.now() - start < OUTAGE_S * 1000) {
        for (const f of makeFindings(5, 'outage')) {
          exporter.export(f);
          sent.push(f.id!);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(exporter.metrics.export_retries_total > 0, 'the exporter retried during the outage');
      const backend = await startBackend({ listen: `127.0.0.1:${port}`, db });
      try {
        assert.equal(await exporter.flush(30_000), true, 'spool drained after the backend returned');
        assert.deepEqual(await ids(backend.store), [...sent].sort());
        assert.equal(exporter.metrics.export_dropped_total, 0);
      } finally {
        await exporter.shutdown(0);
        await backend.stop();
      }
    });

    test('backend killed in the middle of a batch: no loss, no duplicate rows', { timeout: 90_000 }, async () => {
      const port = await freePort();
      const db = await freshDb();
      const store = await openStore(db);
      const backendArgs = [cliPath, 'backend', '--listen', `127.0.0.1:${port}`, '--db', db];
      // This backend commits, then waits 3 s before answering: killed in that window, the
      // exporter never hears that the batch was stored.
      let b = child([...backendArgs, '--ack-delay-ms', '3000']);
      await until(() => /listening/.test(b.out()), 20_000, 'backend to listen');
      const exporter = new Exporter({ backend: `127.0.0.1:${port}`, spoolDir: join(tmp, `spool-kill-${kind}`), backoffMaxMs: 500 });
      const batch = makeFindings(50, 'killed');
      try {
        for (const f of batch) exporter.export(f);
        await until(async () => (await store.count()) === 50, 20_000, 'the batch to be committed');
        b.proc.kill('SIGKILL');
        await once(b.proc, 'exit');
        b = child(backendArgs);
        await until(() => /listening/.test(b.out()), 20_000, 'backend to come back');
        assert.equal(await exporter.flush(30_000), true);
        assert.ok(exporter.metrics.export_duplicates_total >= 50, 'the unacknowledged batch was sent again and deduplicated');
        assert.deepEqual(await ids(store), batch.map((f) => f.id!).sort());
        assert.equal(await store.count(), 50);
      } finally {
        await exporter.shutdown(0);
        b.proc.kill('SIGTERM');
        await store.close();
      }
    });

    test('sensor SIGKILLed with findings in the spool: delivered after restart', { timeout: 90_000 }, async () => {
      const port = await freePort();
      const spool = join(tmp, `spool-sigkill-${kind}`);
      const fixture = join(here, 'fixtures-exporter-child.js');
      const writer = child([fixture, 'spool', `127.0.0.1:${port}`, spool, '40', 'sigkill']);
      await until(() => /spooled 40/.test(writer.out()), 20_000, 'findings to be spooled');
      writer.proc.kill('SIGKILL');
      await once(writer.proc, 'exit');
      const backend: Backend = await startBackend({ listen: `127.0.0.1:${port}`, db: await freshDb() });
      try {
        const drain = child([fixture, 'drain', `127.0.0.1:${port}`, spool]);
        const [code] = (await once(drain.proc, 'exit')) as [number];
        assert.equal(code, 0, drain.out());
        assert.equal(await backend.store.count(), 40);
        const stored = await backend.store.query({ limit: 100 });
        assert.ok(stored.every((f) => f.process?.args?.[1] === 'sigkill'));
      } finally {
        await backend.stop();
      }
    });
  });
}
