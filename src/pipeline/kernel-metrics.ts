// The kernel side's counters, read when metrics are collected: the stats map
// (one counter per enum dw_stat entry, named by the addon) and each BPF
// program's run count and run time.
import { readFileSync } from 'node:fs';
import type { NativeLoader, ProgramStats } from '../native/loader.js';
import type { Metrics } from './metrics.js';

/** Stats that are levels, not counts. */
const KERNEL_GAUGES = new Set(['records_pending']);

/**
 * One read serves a whole scrape: every series of the map is read from one
 * copy. prom-client calls every collector in one synchronous loop, so the
 * copy is kept until the event loop turns, never into a later scrape.
 */
function cached<T>(read: () => T): () => T {
  let fresh = false;
  let value: T;
  return () => {
    if (!fresh) {
      value = read();
      fresh = true;
      setImmediate(() => (fresh = false)).unref();
    }
    return value;
  };
}

function bpfStatsEnabled(): number {
  try {
    return readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1' ? 1 : 0;
  } catch {
    return 0;
  }
}

export function registerKernelMetrics(metrics: Metrics, kernel: NativeLoader): void {
  const stats = cached(() => kernel.stats());
  for (const name of Object.keys(kernel.stats())) {
    const read = () => stats()[name] ?? 0;
    if (KERNEL_GAUGES.has(name)) {
      metrics.gauge(`kernel_${name}`, read);
      continue;
    }
    metrics.counterFrom(`kernel_${name}_total`, read);
    // The names before these were typed as counters; the README listed them.
    metrics.gauge(`kernel_${name}`, read);
  }
  // run_time_ns only advances while kernel.bpf_stats_enabled=1 (off by default: it costs a clock read per run).
  metrics.gauge('bpf_stats_enabled', bpfStatsEnabled);
  const programs = cached((): ProgramStats[] => kernel.programStats());
  let names: string[] = [];
  try {
    names = programs().map((p) => p.name);
  } catch {
    /* a loader without program stats (replays) */
  }
  for (const program of names) {
    const of = () => programs().find((p) => p.name === program);
    metrics.counterFrom('bpf_program_run_time_ns_total', () => of()?.runTimeNs ?? NaN, { program });
    metrics.counterFrom('bpf_program_runs_total', () => of()?.runCount ?? NaN, { program });
  }
}
