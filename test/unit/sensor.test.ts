// The whole JS pipeline with the kernel replaced by recorded batches served
// through the addon's interface.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { createLogger } from '../../src/log.js';
import type { NativeLoader } from '../../src/native/loader.js';
import type { Finding } from '../../src/pipeline/finding.js';
import { startSensor } from '../../src/pipeline/sensor.js';
import { defineSignature } from '../../src/sdk/signature.js';
import { builtinSignatures } from '../../src/signatures/index.js';
import { encodeExec, frame } from '../../src/sdk/encode.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const recorded = (name: string) => readFileSync(join(root, 'test', 'fixtures', 'records', name));

/** Serves queued batches through consume(), like the ring buffer would. */
function replayLoader(batches: Buffer[]): NativeLoader & { closed: boolean } {
  const queue = [...batches];
  return {
    closed: false,
    load() {},
    attach: () => ['replay'],
    programs: () => [],
    attachProgram: (n: string) => n,
    consume(buf) {
      const b = queue.shift();
      if (!b) return 0;
      b.copy(buf);
      return b.length;
    },
    stats: () => ({}),
    overlayPath: () => 'module BTF',
    programStats: () => [],
    close() {
      this.closed = true;
    },
  };
}

const quiet = createLogger('error', () => {});
const until = async (pred: () => boolean) => {
  for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
};

test('sensor: recorded container batches become findings; host events are dropped and counted', async () => {
  const found: Finding[] = [];
  const hostExec = encodeExec({ fileFlags: 0b111, mntNs: 1, pidNs: 2, args: ['host'] }); // upper, but a host process
  const loader = replayLoader([recorded('minicontainer-drift.bin'), recorded('podman-run-and-exec.bin'), frame([hostExec])]);
  const sensor = await startSensor({
    log: quiet, loader, hostNamespaces: { mnt: 1, pid: 2 }, pollIntervalMs: 1,
    sinks: [{ write: (f) => found.push(f), close() {} }],
  });
  await until(() => sensor.metrics.get('events_decoded_total') === 8);
  await sensor.stop();
  assert.equal(sensor.metrics.get('host_events_dropped_total'), 1);
  // 5 scenarios (unlinked gives two) + 2 podman + the podman exec session's drift as an intrusion
  assert.equal(found.length, 9);
  const intrusion = found.filter((f) => f.signature!.id === 'drift.interactive_intrusion');
  assert.equal(intrusion.length, 1);
  assert.equal(intrusion[0]!.process!.execSession, true);
  const podman = found.filter((f) => f.container!.id && f.signature!.id !== 'drift.interactive_intrusion');
  assert.equal(podman.length, 2);
  assert.equal(podman[0]!.container!.runtime, 'podman');
  assert.deepEqual(podman.map((f) => f.process!.execSession).sort(), [false, true]);
  assert.equal(loader.closed, false, 'an injected loader is the caller\'s to close');
});

test('sensor: a throwing custom signature neither stops the stream nor the built-ins', async () => {
  const found: Finding[] = [];
  const bad = defineSignature({
    id: 'custom.bad', name: 'bad', version: '1', description: '', severity: 'LOW', events: ['exec'],
    onEvent: () => { throw new Error('bad signature'); },
  });
  const loader = replayLoader([recorded('minicontainer-drift.bin'), recorded('minicontainer-drift.bin')]);
  const sensor = await startSensor({
    log: quiet, loader, hostNamespaces: { mnt: 1, pid: 2 }, pollIntervalMs: 1,
    signatures: [bad, ...builtinSignatures], sinks: [{ write: (f) => found.push(f), close() {} }],
  });
  await until(() => sensor.metrics.get('events_decoded_total') === 10);
  await sensor.stop();
  assert.equal(found.length, 12);
  assert.equal(sensor.metrics.get('signature_errors_total', { signature: 'custom.bad' }), 10);
});

test('sensor: malformed records are counted and skipped', async () => {
  const found: Finding[] = [];
  const batch = frame([encodeExec({ kind: 9 }), encodeExec({ fileFlags: 0b111, args: ['ok'] })]);
  const sensor = await startSensor({
    log: quiet, loader: replayLoader([batch]), hostNamespaces: { mnt: 1, pid: 2 }, pollIntervalMs: 1,
    sinks: [{ write: (f) => found.push(f), close() {} }],
  });
  await until(() => found.length === 1);
  await sensor.stop();
  assert.equal(sensor.metrics.get('decode_errors_total'), 1);
  assert.deepEqual(found.map((f) => f.process!.args), [['ok']]);
});

test('sensor: overlay execs the kernel could not classify are reported once in the log, without restart advice', async () => {
  const lines: string[] = [];
  const loader = { ...replayLoader([]), stats: () => ({ ovl_unresolved: 3 }) };
  const sensor = await startSensor({
    log: createLogger('warn', (l) => lines.push(l)), loader, hostNamespaces: { mnt: 1, pid: 2 }, pollIntervalMs: 1, kernelCheckMs: 5,
    sinks: [],
  });
  await until(() => lines.length > 0);
  await new Promise((r) => setTimeout(r, 50));
  await sensor.stop();
  assert.equal(lines.length, 1, lines.join(''));
  assert.match(lines[0]!, /3 exec\(s\) from overlayfs could not be told apart .*layer UNKNOWN/);
  assert.doesNotMatch(lines[0]!, /restart/);
  assert.equal(sensor.metrics.snapshot().find((m) => m.name === 'kernel_ovl_unresolved_total')?.value, 3);
});

test('sensor: nested-overlay execs the kernel could not follow are said once in the log and counted', async () => {
  const lines: string[] = [];
  const loader = { ...replayLoader([]), stats: () => ({ ovl_nested: 5, ovl_unfollowed: 2 }) };
  const sensor = await startSensor({
    log: createLogger('warn', (l) => lines.push(l)), loader, hostNamespaces: { mnt: 1, pid: 2 }, pollIntervalMs: 1, kernelCheckMs: 5,
    sinks: [],
  });
  await until(() => lines.length > 0);
  await new Promise((r) => setTimeout(r, 50));
  await sensor.stop();
  assert.equal(lines.length, 1, lines.join(''));
  assert.match(lines[0]!, /2 exec\(s\) through an overlay mounted inside a container could not be followed .* UNKNOWN/);
  assert.doesNotMatch(lines[0]!, /restart/);
  assert.equal(sensor.metrics.snapshot().find((m) => m.name === 'kernel_ovl_unfollowed_total')?.value, 2);
  assert.equal(sensor.metrics.snapshot().find((m) => m.name === 'kernel_ovl_nested_total')?.value, 5);
});
