// Per-finding validation, the bearer check and filter patterns, without a server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { driftwatch } from '#gen/finding.js';
import { isStoreUnavailable } from '../../src/backend/bisect.js';
import { likePattern } from '../../src/backend/columns.js';
import { bearerMatches } from '../../src/backend/server.js';
import { bodyJson, checkEncodedFinding, checkFinding, LABELS_TRUNCATED, MAX_FINDING_BYTES, parseRfc3339, splitRequest } from '../../src/backend/validate.js';
import { encodeRequest, realisticFinding } from '../helpers/load.js';

test('RFC 3339: strict date-times pass and normalise to UTC; what Date.parse or SQLite would take loosely does not', () => {
  assert.equal(parseRfc3339('2024-03-07T10:00:00Z'), '2024-03-07T10:00:00.000Z');
  assert.equal(parseRfc3339('2024-03-07T10:00:00.123456789+02:00'), '2024-03-07T08:00:00.123Z');
  assert.equal(parseRfc3339('2024-02-29t23:59:59z'), '2024-02-29T23:59:59.000Z');
  assert.equal(parseRfc3339('2024-02-29T23:59:59.999Z'), '2024-02-29T23:59:59.999Z');
  for (const bad of ['1', '2024', '2024-03-07', 'March 7, 2024', '2024-02-30T00:00:00Z', '2023-02-29T00:00:00Z', '2024-13-01T00:00:00Z',
    '2024-03-07 10:00:00Z', '2024-03-07T24:00:00Z', '2024-03-07T10:00:60Z', '2024-03-07T10:00:00', '2024-03-07T10:00:00+2400', '0000-01-01T00:00:00Z',
    // canonical in form (what sensors send), not in fact
    '2024-02-30T00:00:00.000Z', '2023-02-29T00:00:00.000Z', '2024-03-07T24:00:00.000Z', '2024-03-07T10:60:00.000Z', '0000-01-01T00:00:00.000Z']) {
    assert.equal(parseRfc3339(bad), null, bad);
  }
});

test('a request is split into findings before decoding: one with invalid UTF-8 is named by id and field, the others decode', () => {
  const good = realisticFinding(1, 'good-1');
  const bad = realisticFinding(2, 'bad-utf8');
  bad.container!.labels!['team'] = 'XXXX';
  const buf = encodeRequest([good, bad]);
  buf[buf.indexOf('XXXX') + 1] = 0xc3; // a lead byte followed by 'X': not UTF-8
  const parts = splitRequest(buf);
  assert.equal(parts.length, 2);
  const a = checkEncodedFinding(parts[0]!, 0);
  const b = checkEncodedFinding(parts[1]!, 1);
  assert.equal(a.ok, true);
  assert.equal(b.ok, false);
  assert.deepEqual(!b.ok && { id: b.rejection.id, field: b.rejection.field, reason: b.rejection.reason }, {
    id: 'bad-utf8', field: 'container.labels.value', reason: 'not valid UTF-8',
  });
});

test('NUL anywhere is rejected with its field; a sender cannot set the fleet fields', () => {
  const f = realisticFinding(3, 'nul');
  f.container!.labels!['x'] = 'a\u0000b';
  const r = checkFinding(f, 0);
  assert.equal(!r.ok && r.rejection.field, 'container.labels.x');
  const g = realisticFinding(4, 'arg-nul');
  g.process!.args![1] = '\u0000';
  assert.equal((r => !r.ok && r.rejection.field)(checkFinding(g, 0)), 'process.args[1]');
  const forged = { ...realisticFinding(5, 'forged'), fleet: { isNew: false, containers: 300 } };
  const c = checkFinding(forged, 0);
  assert.equal(c.ok && c.finding.fleet, undefined);
});

test('an oversized finding has args and labels cut and marked to fit 64 KiB; what cannot fit is rejected', () => {
  const f = realisticFinding(6, 'big');
  f.process!.args = ['/tmp/payload', ...Array.from({ length: 200 }, (_, i) => `${i}:` + 'A'.repeat(1000))];
  f.container!.labels!['huge'] = 'L'.repeat(20_000);
  const r = checkFinding(f, 0);
  assert.equal(r.ok, true);
  assert.ok(r.ok && r.truncated);
  const out = r.ok ? r.finding : {};
  assert.ok(Buffer.byteLength(JSON.stringify(out)) <= MAX_FINDING_BYTES);
  assert.equal(out.process?.argsTruncated, true);
  assert.match(out.process!.args!.at(-1)!, /…\[truncated\]$/);
  assert.equal(out.process!.args![0], '/tmp/payload');
  assert.equal(out.container!.labels![LABELS_TRUNCATED], 'values');
  assert.equal(out.container!.labels!['huge']!.length, 1024 + '…[truncated]'.length);

  const g = realisticFinding(7, 'too-big');
  g.process!.executable!.path = '/' + 'p'.repeat(70_000);
  const s = checkFinding(g, 0);
  assert.equal(!s.ok && s.rejection.field, 'finding');
});

test('the stored body is the JSON of the finding as checked, with the fleet fields the store set, also after truncation', () => {
  const f = realisticFinding(9, 'body');
  const c = checkFinding(f, 0);
  assert.ok(c.ok);
  assert.equal(bodyJson(c.finding), JSON.stringify(c.finding));
  c.finding.fleet = { firstSeen: '2026-11-01T00:00:00.000Z', isNew: true, containers: 3, images: 1, hosts: 2 };
  assert.equal(bodyJson(c.finding), JSON.stringify(c.finding));
  assert.deepEqual(JSON.parse(bodyJson(c.finding)).fleet, c.finding.fleet);
  c.finding.fleet = { firstSeen: '2026-11-01T00:00:00.000Z', isNew: false, containers: 4, images: 1, hosts: 2 };
  assert.equal(bodyJson(c.finding), JSON.stringify(c.finding), 'a second insert (bisect) carries the new counters');
  const big = realisticFinding(10, 'body-big');
  big.process!.args = Array.from({ length: 200 }, () => 'a'.repeat(1000));
  const b = checkFinding(big, 0);
  assert.ok(b.ok && b.truncated);
  assert.equal(bodyJson(b.finding), JSON.stringify(b.finding));
});

test('a finding that is not a protobuf message is rejected on its own', () => {
  const buf = Buffer.concat([encodeRequest([realisticFinding(8, 'ok')]), Buffer.from([0x0a, 0x03, 0xff, 0xff, 0xff])]);
  const parts = splitRequest(buf);
  assert.equal(parts.length, 2);
  assert.equal(checkEncodedFinding(parts[0]!, 0).ok, true);
  const bad = checkEncodedFinding(parts[1]!, 1);
  assert.equal(bad.ok, false);
  assert.throws(() => splitRequest(Buffer.from([0x0a, 0x10, 0x01])), /runs past the end/);
  // the generated codec still reads what we split
  assert.equal(driftwatch.v1.Finding.decode(parts[0]!).id, 'ok');
});

test('bearer token: scheme case-insensitive (RFC 6750), token exact', () => {
  assert.equal(bearerMatches('Bearer s3cret', 's3cret'), true);
  assert.equal(bearerMatches('bearer s3cret', 's3cret'), true);
  assert.equal(bearerMatches('BEARER s3cret', 's3cret'), true);
  assert.equal(bearerMatches('Bearer S3cret', 's3cret'), false);
  assert.equal(bearerMatches('Basic s3cret', 's3cret'), false);
  assert.equal(bearerMatches('Bearer s3cret2', 's3cret'), false);
  assert.equal(bearerMatches(undefined, 's3cret'), false);
});

test('filters: % and _ are literal, * and ? are wildcards only when asked', () => {
  assert.equal(likePattern('web_1%', false), 'web\\_1\\%');
  assert.equal(likePattern('web-*', true), 'web-%');
  assert.equal(likePattern('a?c_', true), 'a_c\\_');
  assert.equal(likePattern('abc', false, true), 'abc%');
});

test('store errors: connection and disk errors fail the batch, data errors are bisected', () => {
  assert.equal(isStoreUnavailable(Object.assign(new Error('x'), { code: '08006' })), true);
  assert.equal(isStoreUnavailable(Object.assign(new Error('x'), { code: '57P01' })), true);
  assert.equal(isStoreUnavailable(Object.assign(new Error('x'), { code: '22P05' })), false);
  assert.equal(isStoreUnavailable(Object.assign(new Error('x'), { code: 'P0001' })), false);
  assert.equal(isStoreUnavailable(Object.assign(new Error('x'), { errcode: 13 })), true);
  assert.equal(isStoreUnavailable(Object.assign(new Error('x'), { errcode: 19 })), false);
  assert.equal(isStoreUnavailable(new Error('ECONNREFUSED')), true);
});
