// Enrichment's side of the trust rule: why a hash is missing reaches the
// finding (JSON, proto, Falco) and the per-reason counters, and a lookup
// that never answers (a FUSE mount in the container) does not hold the event.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { driftwatch } from '#gen/finding.js';
import type { ExecutedFile, OverlayFacts, OverlayDirs } from '../../src/enrich/overlay-facts.js';
import type { HashResult } from '../../src/enrich/safe-open.js';
import { decodeExecRecord } from '../../src/pipeline/decode.js';
import { createEnricher } from '../../src/pipeline/enrich.js';
import { toFalco } from '../../src/pipeline/falco-sink.js';
import { BootClock, buildFinding } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { FileFlag as F } from '../../src/pipeline/records.js';
import { encodeExec } from '../../src/sdk/encode.js';
import newExecutable from '../../src/signatures/new-executable.js';
import type { DetectionEvent } from '../../src/sdk/signature.js';

const UPPER = F.OVERLAY | F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS | F.OVL_LAYOUT_FSDATA | F.FOREIGN_NS;
const HOST = { mnt: 1, pid: 2 };

/** OverlayFacts with canned answers; records what it was asked. */
function fakeOverlay(answer: () => Promise<HashResult>, image?: HashResult) {
  const asked: ExecutedFile[] = [];
  const dirs: OverlayDirs = { upper: '/u', lowers: ['/l'] };
  const o = {
    overlayOf: async () => dirs,
    knownHash: () => undefined,
    executedHash: (f: ExecutedFile) => {
      asked.push(f);
      return answer();
    },
    imageHash: async () => image ?? { reason: 'gone' },
    layerOf: async () => undefined,
  };
  return { overlay: o as unknown as OverlayFacts, asked };
}

async function enrich(overlay: OverlayFacts, metrics: Metrics, flags = UPPER, timeoutMs?: number): Promise<DetectionEvent> {
  const rec = decodeExecRecord(encodeExec({ fileFlags: flags, path: '/tmp/p', inode: 77n, dev: (0 << 20) | 52 }));
  return await createEnricher({ host: HOST, metrics, overlay, ...(timeoutMs ? { fileFactsTimeoutMs: timeoutMs } : {}) }).enrich(rec);
}

test('the record\'s identity and paths are what the hash lookup is asked for', async () => {
  const { overlay, asked } = fakeOverlay(async () => ({ sha256: 'a'.repeat(64) }));
  const ev = await enrich(overlay, new Metrics());
  assert.equal(ev.file?.sha256, 'a'.repeat(64));
  assert.equal(asked.length, 1);
  const a = asked[0]!;
  assert.equal(a.id.inode, 77n);
  assert.equal(a.id.dev, 52);
  assert.notEqual(a.id.ctimeSec, undefined, 'exec records carry ctime: it is part of the identity');
  assert.equal(a.path, '/tmp/p');
  assert.equal(a.exePid, 4242);
  assert.equal(a.upperNew, true);
  assert.ok(a.rootPids.includes(4242));
});

test('an unlinked file is never looked up by path (the path names another file, if any)', async () => {
  const { overlay, asked } = fakeOverlay(async () => ({ reason: 'gone' }));
  await enrich(overlay, new Metrics(), F.OVERLAY | F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS | F.OVL_LAYOUT_FSDATA | F.FOREIGN_NS | F.UNLINKED);
  assert.equal(asked[0]!.path, undefined);
});

test('a missing hash: the reason in the finding (JSON, proto round trip, Falco) and its counter', async () => {
  const metrics = new Metrics();
  const { overlay } = fakeOverlay(async () => ({ reason: 'not_regular' }));
  const ev = await enrich(overlay, metrics);
  assert.deepEqual(ev.file, { sha256Unavailable: 'not_regular' });
  assert.equal(metrics.get('file_hash_unavailable_total', { reason: 'not_regular' }), 1);
  assert.equal(metrics.get('file_hash_unavailable_total', { reason: 'replaced' }), 0);
  assert.ok(metrics.snapshot().some((m) => m.name === 'file_hash_unavailable_total' && m.labels['reason'] === 'timeout'), 'zero series for every reason');

  const f = buildFinding(newExecutable, ev, {}, 'node-1', new BootClock());
  assert.equal(f.process?.executable?.sha256, undefined);
  assert.equal(f.process?.executable?.sha256Unavailable, 'not_regular');
  const wire = driftwatch.v1.Finding.decode(driftwatch.v1.Finding.encode(driftwatch.v1.Finding.fromObject(f)).finish());
  assert.equal(wire.process?.executable?.sha256Unavailable, 'not_regular');
  const falco = toFalco(f) as { output_fields: Record<string, unknown> };
  assert.equal(falco.output_fields['proc.exe_sha256_unavailable'], 'not_regular');
  assert.equal(falco.output_fields['proc.exe_sha256'], null);
});

test('a copied-up file whose image copy cannot be read: no sameAsImage, the reason instead', async () => {
  const metrics = new Metrics();
  const { overlay } = fakeOverlay(async () => ({ sha256: 'b'.repeat(64) }), { reason: 'not_regular' });
  const ev = await enrich(overlay, metrics, UPPER | F.OVL_HAS_LOWER);
  assert.equal(ev.file?.sameAsImage, undefined);
  assert.equal(ev.file?.sameAsImageUnavailable, 'not_regular');
  assert.equal(metrics.get('same_as_image_unavailable_total', { reason: 'not_regular' }), 1);
  const f = buildFinding(newExecutable, ev, {}, 'node-1', new BootClock());
  assert.equal(f.process?.executable?.sameAsImageUnavailable, 'not_regular');
});

test('a lookup that never answers: the event goes on after the deadline, counted as timeout', async () => {
  const metrics = new Metrics();
  const { overlay } = fakeOverlay(() => new Promise<HashResult>(() => undefined));
  const ev = await enrich(overlay, metrics, UPPER, 50);
  assert.deepEqual(ev.file, { sha256Unavailable: 'timeout' });
  assert.equal(metrics.get('file_hash_unavailable_total', { reason: 'timeout' }), 1);
});
