import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { consoleSink, jsonlSink } from '../../src/pipeline/sinks.js';
import type { Finding } from '../../src/pipeline/finding.js';

const finding = (id: string) =>
  ({
    id, time: '2026-01-01T00:00:00.000Z',
    signature: { id: 'drift.x', name: 'X', severity: 'HIGH', version: '1', description: '' },
    process: { pid: 1, ppid: 0, uid: 0, comm: 'c', args: ['a b', 'c'], hostPid: 10, executable: { path: '/p', layer: 'UPPER_NEW', inode: '1', device: '0:1' } },
    container: { id: null, mntNs: 5 }, host: { hostname: 'h' },
  }) as unknown as Finding;

test('jsonl sink: one parseable line per finding, readable before close', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dw-sink-'));
  try {
    const file = join(dir, 'f.jsonl');
    const sink = jsonlSink(file);
    sink.write(finding('a'));
    sink.write(finding('b'));
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    assert.deepEqual(lines.map((l) => JSON.parse(l).id), ['a', 'b']);
    sink.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('console sink: one line with the essentials', () => {
  const out: string[] = [];
  consoleSink((s) => out.push(s)).write(finding('a'));
  assert.equal(out.length, 1);
  assert.match(out[0]!, /HIGH drift\.x container=mntns:5 pid=10 exe=\/p layer=UPPER_NEW args=\["a b","c"\]\n$/);
});
