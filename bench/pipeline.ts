// Row 3: pipeline replay. A recorded-style corpus (99% image binaries, 1%
// drift, all in containers) replayed through the real sensor pipeline:
// decode, enrich, all built-in signatures, policy and dedup. Events/s on one
// core, and the heap after all events.
import { createLogger } from '../src/log.js';
import { FileFlag } from '../src/pipeline/records.js';
import { startSensor } from '../src/pipeline/sensor.js';
import { replayLoader } from '../src/recording.js';
import { encodeExec, frame } from '../src/sdk/encode.js';

export interface PipelineResult {
  events: number;
  eventsPerSec: number;
  findings: number;
  heapMiB: number;
  heapGrowthMiB: number;
}

export function corpus(batchRecords = 1000): Buffer[] {
  const records: Buffer[] = [];
  for (let i = 0; i < batchRecords; i++) {
    const drift = i % 100 === 0;
    records.push(
      encodeExec({
        hostPid: 100_000 + i,
        fileFlags: drift ? FileFlag.OVERLAY | FileFlag.OVL_UPPER_DENTRY | FileFlag.OVL_UPPER_ALIAS : FileFlag.OVERLAY,
        path: drift ? `/tmp/dropped-${i}` : '/usr/bin/python3',
        args: ['python3', '-c', 'print(1)'],
        cgroup: `libpod-${(i % 50).toString(16).padStart(64, '0')}`,
        cgroupParent: 'libpod_parent',
        cgroupId: BigInt(1000 + (i % 50)),
        ktimeNs: BigInt(i),
      }),
    );
  }
  return [frame(records)];
}

export async function pipeline(total = 10_000_000): Promise<PipelineResult> {
  const one = corpus();
  const perBatch = 1000;
  const batches = Array.from({ length: Math.ceil(total / perBatch) }, () => one[0]!);
  const loader = replayLoader(batches);
  let findings = 0;
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const t0 = process.hrtime.bigint();
  const sensor = await startSensor({
    log: createLogger('error'),
    loader,
    hostNamespaces: { mnt: 1, pid: 2 },
    sinks: [{ write: () => void findings++, close() {} }],
    pollIntervalMs: 0,
    hostname: 'bench',
  });
  await loader.done;
  await sensor.stop();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  global.gc?.();
  const heapAfter = process.memoryUsage().heapUsed;
  const events = sensor.metrics.get('events_decoded_total');
  return {
    events,
    eventsPerSec: events / secs,
    findings,
    heapMiB: heapAfter / 2 ** 20,
    heapGrowthMiB: (heapAfter - heapBefore) / 2 ** 20,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) pipeline(Number(process.argv[2] ?? 1_000_000)).then((r) => console.log(r));
