// Metrics.inc() as the pipeline calls it (no label, one label, two labels):
// this build against another build's metrics.js, alternated in one process.
//
//   node dist/bench/metrics-ab.js <other>/dist/src/pipeline/metrics.js [rounds]
import { pathToFileURL } from 'node:url';
import { Metrics } from '../src/pipeline/metrics.js';

type Ctor = new () => Pick<Metrics, 'inc'>;
const CALLS = 3_000_000;

function nsPerCall(f: () => void): number {
  for (let i = 0; i < 100_000; i++) f();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) f();
  return Number(process.hrtime.bigint() - t0) / CALLS;
}

function round(M: Ctor): [number, number, number] {
  const m = new M();
  return [
    nsPerCall(() => m.inc('events_decoded_total', {}, 1000)),
    nsPerCall(() => m.inc('findings_total', { signature: 'drift.new_executable' })),
    nsPerCall(() => m.inc('policy_excepted_total', { signature: 'drift.new_executable', rule: '3' })),
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const otherPath = process.argv[2];
  if (!otherPath) {
    console.error('usage: node dist/bench/metrics-ab.js <other build>/dist/src/pipeline/metrics.js [rounds]');
    process.exit(2);
  }
  const other = ((await import(pathToFileURL(otherPath).href)) as { Metrics: Ctor }).Metrics;
  const rounds = Number(process.argv[3] ?? 6);
  const runs: Record<'this' | 'other', Array<[number, number, number]>> = { this: [], other: [] };
  for (let i = 0; i < rounds; i++) {
    const order: Array<['this' | 'other', Ctor]> = i % 2 ? [['other', other], ['this', Metrics]] : [['this', Metrics], ['other', other]];
    for (const [name, M] of order) runs[name].push(round(M));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const k of ['this', 'other'] as const) {
    const col = (i: number) => median(runs[k].map((r) => r[i]!)).toFixed(0);
    console.log(`${k.padEnd(5)} ns per inc(), median of ${rounds}: no label ${col(0)}, one label ${col(1)}, two labels ${col(2)}`);
  }
}
