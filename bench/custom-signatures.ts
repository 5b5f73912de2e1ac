// What a custom signature in a worker costs the thread that drains the
// kernel: the pipeline replay (row 3's corpus) with the built-ins alone (A)
// and with one custom per-event signature added (B), runs interleaved in one
// process. Reports events per wall second, the main thread's CPU per event
// (process.threadCpuUsage: the worker's own CPU is not in it), the custom
// signature's findings (before dedup folds the corpus's repeats) and the
// events dropped for a full worker backlog: the replay runs as fast as the
// main thread can, far above what reaches user space in production.
//
//   node --expose-gc dist/bench/custom-signatures.js [rounds] [events]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../src/log.js';
import { startSensor } from '../src/pipeline/sensor.js';
import { replayLoader } from '../src/recording.js';
import { builtinSignatures } from '../src/signatures/index.js';
import { loadIsolatedSignatures, type SensorSignature } from '../src/signatures/isolated.js';
import { corpus } from './pipeline.js';

interface Run {
  wall: number;
  mainNsPerEvent: number;
  customFindings: number;
  decoded: number;
  dropped: number;
}

async function once(signatures: SensorSignature[], batch: Buffer, events: number): Promise<Run> {
  const loader = replayLoader(Array.from({ length: Math.ceil(events / 1000) }, () => batch));
  global.gc?.();
  const t0 = process.hrtime.bigint();
  const c0 = process.threadCpuUsage();
  const sensor = await startSensor({
    log: createLogger(process.env['BENCH_LOG'] === 'warn' ? 'warn' : 'error'),
    loader,
    hostNamespaces: { mnt: 1, pid: 2 },
    signatures,
    sinks: [{ write: () => {}, close() {} }],
    pollIntervalMs: 0,
    hostname: 'bench',
  });
  await loader.done;
  await sensor.stop();
  const cpu = process.threadCpuUsage(c0);
  const decoded = sensor.metrics.get('events_decoded_total');
  return {
    wall: decoded / (Number(process.hrtime.bigint() - t0) / 1e9),
    mainNsPerEvent: ((cpu.user + cpu.system) * 1000) / decoded,
    customFindings: sensor.metrics.get('findings_total', { signature: 'bench.custom' }),
    decoded,
    dropped: sensor.metrics.total('signature_events_dropped_total'),
  };
}

export async function customSignatureCost(rounds = 10, events = 1_000_000) {
  const dir = mkdtempSync(join(tmpdir(), 'dw-bench-custom-'));
  try {
    writeFileSync(
      join(dir, 'custom.mjs'),
      `import { defineSignature } from 'driftwatch/sdk';
       export default defineSignature({ id: 'bench.custom', name: 'bench', version: '1', description: '', severity: 'LOW', events: ['exec'],
         onEvent(event, ctx) { if (event.exec.layer === 'UPPER_NEW' && event.container.inContainer) ctx.emit(); } });`,
    );
    const custom = await loadIsolatedSignatures(dir, new Set(builtinSignatures.map((s) => s.id)));
    if (custom.errors.length) throw new Error(custom.errors.map((e) => e.reason).join('; '));
    const batch = corpus()[0]!;
    const variants = { builtins: [...builtinSignatures], withCustom: [...builtinSignatures, ...custom.signatures] };
    const runs: Record<keyof typeof variants, Run[]> = { builtins: [], withCustom: [] };
    for (let i = 0; i < rounds; i++) {
      const order = (i % 2 ? ['withCustom', 'builtins'] : ['builtins', 'withCustom']) as Array<keyof typeof variants>;
      for (const name of order) runs[name].push(await once(variants[name], batch, events));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const summary = (rs: Run[]) => ({
      wallMedian: median(rs.map((r) => r.wall)),
      mainNsPerEventMedian: median(rs.map((r) => r.mainNsPerEvent)),
      customFindingsMin: Math.min(...rs.map((r) => r.customFindings)),
      droppedMedianShare: median(rs.map((r) => r.dropped / r.decoded)),
    });
    return { builtins: summary(runs.builtins), withCustom: summary(runs.withCustom) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [rounds, events] = process.argv.slice(2).map(Number);
  console.log(JSON.stringify(await customSignatureCost(rounds || 10, events || 1_000_000), null, 2));
}
