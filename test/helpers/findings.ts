// Valid findings for export tests, built by the real signature engine from
// encoded kernel records (so they have the production shape).
import { containerOf } from '../../src/pipeline/container.js';
import { decodeExecRecord } from '../../src/pipeline/decode.js';
import { SignatureEngine } from '../../src/pipeline/engine.js';
import { BootClock, type Finding } from '../../src/pipeline/finding.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { FileFlag } from '../../src/pipeline/records.js';
import { builtinSignatures } from '../../src/signatures/index.js';
import { encodeExec } from '../../src/sdk/encode.js';

const engine = new SignatureEngine(builtinSignatures, { hostname: 'test-node', clock: new BootClock(), metrics: new Metrics() });

/** n distinct drift findings (distinct ids) tagged with the given label in args. */
export function makeFindings(n: number, tag: string): Finding[] {
  const out: Finding[] = [];
  const base = BigInt(Math.floor(Math.random() * 1e15));
  for (let i = 0; i < n; i++) {
    const exec = decodeExecRecord(
      encodeExec({
        fileFlags: FileFlag.OVERLAY | FileFlag.OVL_UPPER_DENTRY | FileFlag.OVL_UPPER_ALIAS,
        ktimeNs: base + BigInt(i),
        hostPid: 10_000 + i,
        args: ['/tmp/dropped', tag, String(i)],
        cgroup: 'libpod-' + 'e'.repeat(64),
      }),
    );
    out.push(...engine.dispatch({ kind: 'exec', exec, container: containerOf(exec, { mnt: 1, pid: 2 }) }));
  }
  return out;
}
