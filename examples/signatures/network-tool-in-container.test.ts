// Table-driven test of the example signature with the SDK's harness: each
// row is a kernel record built by hand, and the findings it must give.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSignatures, type RecordSpec } from 'driftwatch/sdk/testing';
import signature from './network-tool-in-container.js';

const CONTAINER = { cgroup: 'libpod-' + 'a'.repeat(64), cgroupParent: 'libpod_parent' };
const SESSION_EXEC = 2;
const SESSION_INIT = 1;

const rows: Array<[string, RecordSpec[], number]> = [
  ['curl from an exec session', [{ ...CONTAINER, path: '/usr/bin/curl', session: SESSION_EXEC }], 1],
  ['curl from the application itself', [{ ...CONTAINER, path: '/usr/bin/curl', session: SESSION_INIT }], 0],
  ['ls from an exec session', [{ ...CONTAINER, path: '/bin/ls', session: SESSION_EXEC }], 0],
  ['curl twice in one container is reported once', [{ ...CONTAINER, path: '/usr/bin/curl', session: SESSION_EXEC }, { ...CONTAINER, path: '/usr/bin/curl', session: SESSION_EXEC }], 1],
  ['a host process', [{ path: '/usr/bin/curl', session: SESSION_EXEC, mntNs: 4026531840, pidNs: 4026531836 }], 0],
];

for (const [name, records, expected] of rows) {
  test(`example signature: ${name}`, () => {
    const { findings, errors } = runSignatures([signature], records.map((record) => ({ record })));
    assert.equal(errors, 0);
    assert.equal(findings.length, expected);
    for (const f of findings) assert.equal(f.signature?.data?.['tool'], 'curl');
  });
}
