import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Spool } from '../../src/export/spool.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'dw-spool-'));
const rec = (i: number) => Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(100) }));
const nums = (rs: Buffer[]) => rs.map((r) => (JSON.parse(r.toString()) as { i: number }).i);

test('spool: records come back in order across segments; ack survives a restart', () => {
  const dir = tmp();
  try {
    const s = new Spool({ dir, segmentBytes: 1000 });
    for (let i = 0; i < 30; i++) s.append(rec(i));
    const first = s.peek(10);
    assert.deepEqual(nums(first.records), [...Array(10).keys()]);
    s.ack(first.token);
    s.close();
    const again = new Spool({ dir, segmentBytes: 1000 });
    const rest = again.peek(100);
    assert.deepEqual(nums(rest.records), [...Array(20).keys()].map((i) => i + 10));
    again.ack(rest.token);
    assert.equal(again.pending, false);
    assert.ok(readdirSync(dir).filter((f) => f.startsWith('seg-')).length <= 2, 'confirmed segments are deleted');
    again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('spool: over its size limit the oldest segment is dropped and its findings counted', () => {
  const dir = tmp();
  try {
    const s = new Spool({ dir, segmentBytes: 1000, maxBytes: 3000 });
    for (let i = 0; i < 100; i++) s.append(rec(i));
    assert.ok(s.stats.dropped > 0);
    const left = nums(s.peek(1000).records);
    assert.equal(left.length + s.stats.dropped, 100, 'every record is either kept or counted as dropped');
    assert.deepEqual(left, [...left].sort((a, b) => a - b));
    assert.equal(left.at(-1), 99, 'the newest are kept');
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('spool: a corrupt record is detected by its checksum, counted, and not returned', () => {
  const dir = tmp();
  try {
    const s = new Spool({ dir });
    for (let i = 0; i < 3; i++) s.append(rec(i));
    s.close();
    const seg = readdirSync(dir).find((f) => f.startsWith('seg-'))!;
    const data = readFileSync(join(dir, seg));
    data.writeUInt8(data.readUInt8(data.length - 5) ^ 0xff, data.length - 5); // flip a byte in the last record
    writeFileSync(join(dir, seg), data);
    const again = new Spool({ dir });
    assert.deepEqual(nums(again.peek(10).records), [0, 1]);
    assert.equal(again.stats.corrupt, 1);
    again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
