// Table-driven test of the example stream signature: each row is a timeline
// (`at` in ms on the harness's virtual clock) and the findings it must give.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSignatures, type TestEvent } from 'driftwatch/sdk/testing';
import signature from './repeated-exec-sessions.js';

const C1 = { cgroup: 'libpod-' + 'a'.repeat(64), cgroupParent: 'libpod_parent' };
const C2 = { cgroup: 'libpod-' + 'b'.repeat(64), cgroupParent: 'libpod_parent' };
const SESSION_EXEC = 2;
const SESSION_INIT = 1;
const MIN = 60_000;
const exec = (at: number, leader: number, container = C1, session = SESSION_EXEC): TestEvent => ({
  at,
  record: { ...container, path: '/bin/sh', session, sessionHostPid: leader },
});

const rows: Array<[string, TestEvent[], number]> = [
  ['three sessions in three minutes', [exec(0, 10), exec(MIN, 20), exec(2 * MIN, 30)], 1],
  ['one session running many commands', [exec(0, 10), exec(1000, 10), exec(2000, 10), exec(3000, 10)], 0],
  ['three sessions over twenty minutes', [exec(0, 10), exec(10 * MIN, 20), exec(20 * MIN, 30)], 0],
  ['sessions spread over two containers', [exec(0, 10, C1), exec(MIN, 20, C2), exec(2 * MIN, 30, C1)], 0],
  ['the application itself, not exec sessions', [exec(0, 10, C1, SESSION_INIT), exec(1000, 20, C1, SESSION_INIT), exec(2000, 30, C1, SESSION_INIT)], 0],
];

for (const [name, events, expected] of rows) {
  test(`example stream signature: ${name}`, () => {
    const { findings, errors } = runSignatures([signature], events);
    assert.equal(errors, 0);
    assert.equal(findings.length, expected);
    for (const f of findings) assert.equal(f.signature?.data?.['sessions'], '3');
  });
}
