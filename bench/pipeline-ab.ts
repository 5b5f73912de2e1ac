// Row 3 as an A/B: this build's pipeline against another build's, in one
// process, runs interleaved, so a busy or throttled machine slows both alike.
// Reports events per wall second and per CPU second (user + system of this
// process), median and best of the rounds.
//
//   node --expose-gc dist/bench/pipeline-ab.js <other>/dist/src/pipeline/sensor.js [rounds] [events]
import { pathToFileURL } from 'node:url';
import { createLogger } from '../src/log.js';
import { startSensor as thisBuild } from '../src/pipeline/sensor.js';
import { replayLoader } from '../src/recording.js';
import { corpus } from './pipeline.js';

type Start = typeof thisBuild;

interface Run {
  wall: number;
  cpu: number;
  findings: number;
}

async function once(start: Start, batch: Buffer, events: number): Promise<Run> {
  const loader = replayLoader(Array.from({ length: Math.ceil(events / 1000) }, () => batch));
  let findings = 0;
  global.gc?.();
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const sensor = await start({
    log: createLogger('error'),
    loader,
    hostNamespaces: { mnt: 1, pid: 2 },
    sinks: [{ write: () => void findings++, close() {} }],
    pollIntervalMs: 0,
    hostname: 'bench',
  });
  await loader.done;
  await sensor.stop();
  const cpu = process.cpuUsage(c0);
  const decoded = sensor.metrics.get('events_decoded_total');
  return { wall: decoded / (Number(process.hrtime.bigint() - t0) / 1e9), cpu: decoded / ((cpu.user + cpu.system) / 1e6), findings };
}

export async function pipelineAB(otherSensorJs: string, rounds = 10, events = 1_000_000) {
  const other = ((await import(pathToFileURL(otherSensorJs).href)) as { startSensor: Start }).startSensor;
  const batch = corpus()[0]!;
  const runs: Record<'this' | 'other', Run[]> = { this: [], other: [] };
  for (let i = 0; i < rounds; i++) {
    // Alternate which goes first, so neither always runs on a warmer machine.
    const order: Array<['this' | 'other', Start]> = i % 2 ? [['other', other], ['this', thisBuild]] : [['this', thisBuild], ['other', other]];
    for (const [name, start] of order) runs[name].push(await once(start, batch, events));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const summary = (rs: Run[]) => ({
    wallMedian: median(rs.map((r) => r.wall)),
    wallBest: Math.max(...rs.map((r) => r.wall)),
    cpuMedian: median(rs.map((r) => r.cpu)),
    cpuBest: Math.max(...rs.map((r) => r.cpu)),
    findings: rs[0]!.findings,
  });
  return { this: summary(runs.this), other: summary(runs.other) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const other = process.argv[2];
  if (!other) {
    console.error('usage: node --expose-gc dist/bench/pipeline-ab.js <other build>/dist/src/pipeline/sensor.js [rounds] [events]');
    process.exit(2);
  }
  const r = await pipelineAB(other, Number(process.argv[3] ?? 10), Number(process.argv[4] ?? 1_000_000));
  const m = (n: number) => `${(n / 1e6).toFixed(2)} M`;
  for (const k of ['this', 'other'] as const) {
    console.log(`${k.padEnd(5)} wall ${m(r[k].wallMedian)} ev/s (best ${m(r[k].wallBest)}), per CPU second ${m(r[k].cpuMedian)} ev/s (best ${m(r[k].cpuBest)}), ${r[k].findings} findings`);
  }
}
