import assert from 'node:assert/strict';
import { test } from 'node:test';
import { containerOf } from '../../src/pipeline/container.js';
import { decodeExecRecord } from '../../src/pipeline/decode.js';
import { SignatureEngine } from '../../src/pipeline/engine.js';
import { BootClock } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { defineSignature } from '../../src/sdk/signature.js';
import { encodeExec } from '../../src/sdk/encode.js';

const always = defineSignature({
  id: 'test.always', name: 'always', version: '1', description: 'd', severity: 'LOW', events: ['exec'],
  onEvent: (_e, ctx) => ctx.emit(),
});
const throwing = defineSignature({
  id: 'test.throws', name: 'throws', version: '1', description: 'd', severity: 'LOW', events: ['exec'],
  onEvent: () => {
    throw new Error('boom');
  },
});

const exec = decodeExecRecord(encodeExec({}));
const ev = { kind: 'exec' as const, exec, container: containerOf(exec, { mnt: 1, pid: 2 }) };

test('engine: a throwing signature is counted and the others still emit', () => {
  const metrics = new Metrics();
  const engine = new SignatureEngine([throwing, always], { hostname: 'h', clock: new BootClock(), metrics });
  const out = engine.dispatch(ev);
  assert.deepEqual(out.map((f) => f.signature!.id), ['test.always']);
  assert.equal(metrics.get('signature_errors_total', { signature: 'test.throws' }), 1);
  assert.equal(metrics.get('findings_total', { signature: 'test.always' }), 1);
});

test('engine: a signature that keeps throwing is disabled once, with one log line', () => {
  const metrics = new Metrics();
  const logs: string[] = [];
  const engine = new SignatureEngine([throwing, always], {
    hostname: 'h', clock: new BootClock(), metrics, maxConsecutiveErrors: 3, log: (m) => logs.push(m),
  });
  for (let i = 0; i < 10; i++) assert.equal(engine.dispatch(ev).length, 1);
  assert.equal(metrics.get('signature_errors_total', { signature: 'test.throws' }), 3);
  assert.equal(metrics.get('signatures_disabled_total', { signature: 'test.throws' }), 1);
  assert.equal(logs.length, 1);
  assert.match(logs[0]!, /test\.throws disabled .* boom/);
});

test('engine: signatures only see the event kinds they asked for', () => {
  let calls = 0;
  const other = defineSignature({
    id: 'test.other', name: 'o', version: '1', description: 'd', severity: 'LOW', events: [],
    onEvent: () => {
      calls++;
    },
  });
  new SignatureEngine([other], { hostname: 'h', clock: new BootClock(), metrics: new Metrics() }).dispatch(ev);
  assert.equal(calls, 0);
});
