// The check's fast path (wire-row.ts) against the full check (decode,
// toObject, checkFinding, storeRowOf): for every finding it takes, the row
// must be the full check's, byte for byte; whatever it does not take must be
// something the full check rejects, cuts, or decodes in a way of its own.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import protobuf from 'protobufjs';
import { driftwatch } from '#gen/finding.js';
import type { FindingJson } from '#gen/finding-json.js';
import { wireRow } from '../../src/backend/wire-row.js';
import { jsonText, storeRowOf, type StoreRow } from '../../src/backend/checked-rows.js';
import { checkEncodedFinding } from '../../src/backend/validate.js';
import { realisticFinding } from '../helpers/load.js';

const { Finding } = driftwatch.v1;
const encode = (f: FindingJson) => Buffer.from(Finding.encode(Finding.fromObject(f)).finish());

/** What the full check makes of the bytes: the row, or why there is none. */
function fullCheck(buf: Uint8Array): { row: StoreRow } | { not: string } {
  const c = checkEncodedFinding(buf, 0);
  if (!c.ok) return { not: `rejected: ${c.rejection.field}: ${c.rejection.reason}` };
  if (c.truncated) return { not: 'truncated' };
  return { row: storeRowOf(c.finding) };
}

/** The fast path's row, when it takes the finding, equals the full check's. Returns whether it took it. */
function agrees(buf: Uint8Array, what: string): boolean {
  const fast = wireRow(buf);
  if (!fast) return false;
  const full = fullCheck(buf);
  assert.ok('row' in full, `${what}: the fast path took a finding that the full check does not store as it is (${'not' in full ? full.not : ''})`);
  assert.ok(Buffer.isBuffer(fast.json), `${what}: the body is not bytes`);
  assert.equal(jsonText(fast), full.row.json, `${what}: body`);
  assert.deepEqual({ ...fast, json: '' }, { ...full.row, json: '' }, what);
  return true;
}

function variant(edit: (f: FindingJson) => void, i = 7): FindingJson {
  const f = realisticFinding(i, `variant-${i}`);
  edit(f);
  return f;
}

// Findings the fast path must take, each exercising a part of the walk
const TAKEN: Array<[string, FindingJson]> = [
  ['realistic', realisticFinding(1)],
  ['no container, kubernetes or sha256 (a host process)', variant((f) => {
    delete f.container;
    delete f.kubernetes;
    delete f.process!.executable!.sha256;
  })],
  ['quotes, backslashes and every control character JSON escapes', variant((f) => {
    f.process!.args = ['a"b', 'c\\d', '\b\t\n\f\r', '\u0001\u001f\u007f', 'end'];
  })],
  ['non-ASCII: accents, CJK, emoji, U+2028, a BOM', variant((f) => {
    f.container!.name = 'café-日本-🚀';
    f.process!.args = ['\u2028\u2029', '\ufeffbom', '𝄞'];
    f.container!.labels = { 'ключ': 'значение', '': '', 'e\u0301': 'ü' };
  })],
  ['a time with an offset, and first and last seen', variant((f) => {
    f.time = '2026-11-01T12:00:00.5+02:00';
    f.firstSeen = '2026-11-01T09:00:00Z';
    f.lastSeen = '2026-11-01T11:00:00.123456Z';
  })],
  ['a fold summary with distinct args, omitted args and an action', variant((f) => {
    f.foldOf = 'first-of-window';
    f.count = 42;
    f.distinctArgs = [{ args: ['a', 'b'], count: 40 }, { args: [], count: 2 }, {}];
    f.argsOmitted = 3;
    f.action = 'prevented';
  })],
  ['a script, installed-by, signature data, large numbers', variant((f) => {
    f.process!.script = { path: '/tmp/x.sh', layer: 'UPPER_NEW', inode: String(2 ** 53 - 1), installedBy: { manager: 'apt', hostPid: 7, managers: ['apt', 'dpkg'] } };
    f.process!.executable!.installedBy = { manager: 'pip', windowStart: '2026-11-01T00:00:00Z' };
    f.signature!.data = { why: 'because', n: '1x' };
    f.container!.mntNs = 4294967295;
    f.process!.executable!.sameAsImage = true;
    f.process!.executable!.pathTruncated = true;
  })],
  ['empty messages and optional zeros', variant((f) => {
    f.process!.ppid = 0;
    f.process!.gid = 0;
    f.process!.hostPpid = 0;
    f.process!.parent = {};
    f.process!.ancestry = [{}, { hostPid: 1 }];
    f.signature!.mitre = {};
    f.kubernetes = {};
  })],
  ['a column of exactly the longest kept length', variant((f) => {
    f.container!.image = 'i'.repeat(512);
  })],
];

test('the fast path takes every well-formed finding and makes the full check\'s row of it, byte for byte', () => {
  for (const [what, f] of TAKEN) assert.equal(agrees(encode(f), what), true, `${what}: not taken`);
  for (let i = 0; i < 2000; i++) assert.equal(agrees(encode(realisticFinding(i * 31)), `realistic ${i}`), true);
});

// Findings the fast path must leave to the full check
const LEFT: Array<[string, FindingJson | (() => Buffer)]> = [
  ['no id', variant((f) => delete f.id)],
  ['an id over 128 characters', variant((f) => (f.id = 'x'.repeat(129)))],
  ['no time', variant((f) => delete f.time)],
  ['a time Date.parse takes', variant((f) => (f.time = 'March 7, 2024'))],
  ['a canonical-looking time that is not a date', variant((f) => (f.time = '2024-02-30T00:00:00.000Z'))],
  ['a bad lastSeen', variant((f) => (f.lastSeen = '2024'))],
  ['no signature id', variant((f) => delete f.signature!.id)],
  ['no severity', variant((f) => delete f.signature!.severity)],
  ['no signature', variant((f) => delete f.signature)],
  ['no process', variant((f) => delete f.process)],
  ['no hostname', variant((f) => (f.host = {}))],
  ['a NUL in a label value', variant((f) => (f.container!.labels!['x'] = 'a\u0000b'))],
  ['a NUL in a label key', variant((f) => (f.container!.labels!['x\u0000'] = 'v'))],
  ['a numeric label key (an object puts it first)', variant((f) => (f.container!.labels!['42'] = 'v'))],
  ['a column longer than is kept', variant((f) => (f.container!.image = 'i'.repeat(513)))],
  ['over 64 KiB (the check cuts args)', variant((f) => (f.process!.args = Array.from({ length: 2000 }, () => 'a'.repeat(40))))],
  ['a fleet sent by the sensor', variant((f) => (f.fleet = { isNew: true, containers: 3 }))],
  ['an unknown field', () => Buffer.concat([encode(realisticFinding(3)), Buffer.from([0xa8, 0x01, 0x05])])],
  ['a field sent twice', () => Buffer.concat([encode(realisticFinding(3)), new protobuf.Writer().uint32(0x0a).string('again').finish()])],
  ['an explicit zero count', () => Buffer.concat([encode(realisticFinding(3)), new protobuf.Writer().uint32(0x40).uint32(0).finish()])],
  ['an unknown enum value', () => {
    const buf = encode(variant((f) => (f.signature!.severity = 'CRITICAL')));
    const sig = encode({ signature: { severity: 'CRITICAL' } } as FindingJson); // 1a 02 18 05
    const at = buf.indexOf(Buffer.from([0x18, 0x05]), buf.indexOf(sig.subarray(0, 1)));
    buf[at + 1] = 0x09;
    return buf;
  }],
  ['invalid UTF-8', () => {
    const buf = encode(variant((f) => (f.container!.name = 'abXXcd')));
    buf[buf.indexOf('XX')] = 0xc3;
    return buf;
  }],
  ['an encoded surrogate (not UTF-8)', () => {
    const buf = encode(variant((f) => (f.container!.name = 'abXXXcd')));
    buf.set([0xed, 0xa0, 0x80], buf.indexOf('XXX'));
    return buf;
  }],
];

test('the fast path leaves to the full check what it rejects, cuts or decodes its own way', () => {
  for (const [what, make] of LEFT) {
    const buf = typeof make === 'function' ? make() : encode(make);
    assert.equal(wireRow(buf), null, what);
  }
});

test('fuzz: mutated findings are either left to the full check or given its row', () => {
  let seed = 0x2545f491;
  const rand = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const base = [realisticFinding(5), TAKEN[3]![1], TAKEN[5]![1], TAKEN[6]![1]].map(encode);
  let taken = 0;
  const runs = 20_000;
  for (let i = 0; i < runs; i++) {
    const buf = Buffer.from(base[rand(base.length)]!);
    const edits = 1 + rand(2);
    let out: Buffer = buf;
    for (let e = 0; e < edits; e++) {
      const at = rand(out.length);
      const how = rand(20);
      if (how < 9) out[at] = rand(256);
      else if (how < 18) out[at] = [0x00, 0x0a, 0x22, 0x5c, 0x80, 0xc3, 0xed, 0xf4, 0xff, 0x01][rand(10)]!;
      else if (how < 19) out = out.subarray(0, at);
      else out = Buffer.concat([out.subarray(0, at), Buffer.from([rand(256)]), out.subarray(at)]);
    }
    if (agrees(out, `mutation ${i}`)) taken++;
  }
  // most mutations land in strings, which the fast path keeps taking
  assert.ok(taken > runs / 5, `only ${taken} of ${runs} mutated findings were taken: the comparison would prove little`);
});
