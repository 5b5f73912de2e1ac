import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import { consoleSink, jsonlSink, writeAll } from '../../src/pipeline/sinks.js';
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

test('falco-json sink: Falco\'s output shape with the fields falcosidekick reads', async () => {
  const { toFalco, falcoJsonSink } = await import('../../src/pipeline/falco-sink.js');
  const f = finding('a') as unknown as Record<string, any>;
  f['container'] = { id: 'c'.repeat(64), name: 'web', image: 'localhost/app:1' };
  f['kubernetes'] = { namespace: 'prod', pod: 'web-0' };
  f['signature'] = { ...f['signature'], severity: 'CRITICAL', mitre: { technique: 'T1105' } };
  const out = toFalco(f as unknown as Finding) as Record<string, any>;
  assert.deepEqual(Object.keys(out).filter((k) => ['output', 'priority', 'rule', 'time', 'output_fields'].includes(k)).sort(), ['output', 'output_fields', 'priority', 'rule', 'time']);
  assert.equal(out['priority'], 'Critical');
  assert.equal(out['rule'], 'X');
  assert.equal(out['time'], '2026-01-01T00:00:00.000Z');
  assert.ok((out['tags'] as string[]).includes('T1105'));
  const fields = out['output_fields'] as Record<string, unknown>;
  assert.equal(fields['container.id'], 'c'.repeat(12), 'Falco uses the 12-character id');
  assert.equal(fields['container.full_id'], 'c'.repeat(64));
  assert.equal(fields['proc.exepath'], '/p');
  assert.equal(fields['proc.is_exe_upper_layer'], true);
  assert.equal(fields['k8s.ns.name'], 'prod');
  assert.match(String(out['output']), /proc\.exepath=\/p .*container\.name=web/);
  // Severity maps onto Falco's priorities; an image file is not upper layer.
  const lower = toFalco({ ...f, signature: { ...f['signature'], severity: 'MEDIUM' }, process: { ...f['process'], executable: { path: '/bin/x', layer: 'LOWER' } } } as unknown as Finding) as Record<string, any>;
  assert.equal(lower['priority'], 'Warning');
  assert.equal((lower['output_fields'] as Record<string, unknown>)['proc.is_exe_upper_layer'], false);
  const dir = mkdtempSync(join(tmpdir(), 'dw-falco-'));
  try {
    const file = join(dir, 'falco.jsonl');
    const sink = falcoJsonSink(file);
    sink.write(f as unknown as Finding);
    sink.close();
    const line = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    assert.equal(line['uuid'], 'a');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a full non-blocking pipe is waited out: every line arrives whole (EAGAIN is not a lost finding)', async () => {
  // a child that starts reading only after the pipe has filled up
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => process.stdin.pipe(process.stdout), 300)'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const fd = (child.stdin as unknown as { _handle: { fd: number } })._handle.fd;
  let got = 0;
  child.stdout.on('data', (d: Buffer) => (got += d.length));
  const line = 'x'.repeat(4095) + '\n';
  for (let i = 0; i < 64; i++) writeAll(fd, line); // 256 KiB: four times a pipe's default capacity
  child.stdin.end();
  await new Promise((r) => child.on('exit', r));
  assert.equal(got, 64 * 4096);
});
