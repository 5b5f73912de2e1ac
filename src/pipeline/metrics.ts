// Counters for everything the sensor sees, drops and produces. Every place
// that drops an event or a finding increments one of these. Each Metrics owns
// its own prom-client Registry (never the global one), so two sensors in one
// process, and the tests, do not share series. An increment adds to a number
// cached per series; prom-client collects the numbers when scraped.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { helpFor } from './metrics-help.js';

export type Labels = Record<string, string>;

/** Prometheus names are the sensor's names with this prefix. */
export const METRIC_PREFIX = 'driftwatch_';

/** Latencies in seconds: the pipeline answers in milliseconds, a slow lookup or backend in seconds. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const NO_LABELS: Labels = Object.freeze({}) as Labels;

export interface MetricsOptions {
  /** prom-client's process and Node.js metrics (CPU, memory, fds, event-loop lag, GC), unprefixed as usual. */
  processMetrics?: boolean;
}

interface CounterSeries {
  labels: Labels;
  value: number;
}

interface CounterFamily {
  labelNames: string[];
  series: Map<string, CounterSeries>;
}

interface HistogramFamily {
  metric: Histogram<string>;
  labelNames: string[];
  series: Map<string, { labels: Labels; count: number; sum: number }>;
}

/** A value kept elsewhere (a kernel map, the exporter, a cache), read at scrape. */
interface ReadSeries {
  labels: Labels;
  read: () => number;
}

interface ReadFamily {
  type: 'counter' | 'gauge';
  labelNames: string[];
  series: Map<string, ReadSeries>;
}

export type SnapshotEntry = { name: string; labels: Labels; value: number; type: 'counter' | 'gauge' | 'histogram' };

// One key per label set; label values cannot contain \0 in practice, and a
// collision would only merge two series of one family.
function seriesKey(labelNames: string[], labels: Labels): string {
  if (labelNames.length === 1) return labels[labelNames[0]!] ?? '';
  let key = '';
  for (const n of labelNames) key += (labels[n] ?? '') + '\0';
  return key;
}

/** Every series of a name has the label names of its first; a mix is a programming error. */
function checkLabelNames(name: string, family: string[], labels: Labels): void {
  const keys = Object.keys(labels);
  if (keys.length === family.length && keys.every((k) => family.includes(k))) return;
  throw new Error(`metric ${name}: labels ${keys.join(',') || '(none)'} differ from ${family.join(',') || '(none)'}`);
}

export class Metrics {
  readonly registry = new Registry();
  private readonly counters = new Map<string, CounterFamily>();
  private readonly histograms = new Map<string, HistogramFamily>();
  private readonly reads = new Map<string, ReadFamily>();

  constructor(opts: MetricsOptions = {}) {
    // Event-loop delay sampled every 100 ms (a timer): every stall of 100 ms or more shows in full,
    // and an idle sensor is woken 10 times a second instead of prom-client's default 100.
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
  }

  /** Adds to a counter kept here; `by` 0 creates the series, so rate() and absent() work before the first event. */
  inc(name: string, labels: Labels = NO_LABELS, by = 1): void {
    if (!(by >= 0 && by !== Infinity)) throw new RangeError(`metric ${name}: a counter cannot change by ${by}`);
    const family = this.counters.get(name) ?? this.counterFamily(name, labels);
    const key = family.labelNames.length ? seriesKey(family.labelNames, labels) : '';
    const s = family.series.get(key) ?? this.counterSeries(name, family, key, labels);
    s.value += by;
  }

  /** Records one observation (seconds) in a histogram with LATENCY_BUCKETS. */
  observe(name: string, seconds: number, labels: Labels = NO_LABELS): void {
    if (!(seconds >= 0)) return; // a clock that went back, or no timestamp: not a latency
    let family = this.histograms.get(name);
    if (!family) {
      const labelNames = Object.keys(labels);
      family = {
        metric: new Histogram({ name: METRIC_PREFIX + name, help: helpFor(name), labelNames, buckets: LATENCY_BUCKETS, registers: [this.registry] }),
        labelNames,
        series: new Map(),
      };
      this.histograms.set(name, family);
    }
    const key = seriesKey(family.labelNames, labels);
    let s = family.series.get(key);
    if (!s) {
      checkLabelNames(name, family.labelNames, labels);
      family.series.set(key, (s = { labels: { ...labels }, count: 0, sum: 0 }));
    }
    s.count++;
    s.sum += seconds;
    if (family.labelNames.length) family.metric.observe(s.labels, seconds);
    else family.metric.observe(seconds);
  }

  /** A value read when metrics are collected (queue depths, cache sizes). */
  gauge(name: string, read: () => number, labels: Labels = NO_LABELS): void {
    this.readAtScrape('gauge', name, read, labels);
  }

  /** A count kept elsewhere (kernel map, exporter), read when metrics are collected; exposed as a counter. */
  counterFrom(name: string, read: () => number, labels: Labels = NO_LABELS): void {
    this.readAtScrape('counter', name, read, labels);
  }

  /** A counter's value: kept here, or read now from where it is kept. */
  get(name: string, labels: Labels = NO_LABELS): number {
    const family = this.counters.get(name);
    if (family) return family.series.get(seriesKey(family.labelNames, labels))?.value ?? 0;
    const read = this.reads.get(name);
    if (read?.type === 'counter') return safeRead(read.series.get(seriesKey(read.labelNames, labels))?.read);
    return 0;
  }

  /** Sum over all label sets of a counter kept here. */
  total(name: string): number {
    let t = 0;
    for (const s of this.counters.get(name)?.series.values() ?? []) t += s.value;
    return t;
  }

  /** Every series as numbers; histograms as their `_count` and `_sum`. */
  snapshot(): SnapshotEntry[] {
    const out: SnapshotEntry[] = [];
    for (const [name, f] of this.counters) for (const s of f.series.values()) out.push({ name, labels: s.labels, value: s.value, type: 'counter' });
    for (const [name, f] of this.histograms) {
      for (const s of f.series.values()) {
        out.push({ name: `${name}_count`, labels: s.labels, value: s.count, type: 'histogram' });
        out.push({ name: `${name}_sum`, labels: s.labels, value: s.sum, type: 'histogram' });
      }
    }
    for (const [name, f] of this.reads) for (const s of f.series.values()) out.push({ name, labels: s.labels, value: safeRead(s.read), type: f.type });
    return out;
  }

  /** The Prometheus text exposition of this registry. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private counterFamily(name: string, labels: Labels): CounterFamily {
    const labelNames = Object.keys(labels);
    const series = new Map<string, CounterSeries>();
    // The hot path only adds to a number held here; prom-client gets the values when scraped.
    new Counter({
      name: METRIC_PREFIX + name,
      help: helpFor(name),
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const s of series.values()) this.inc(s.labels, s.value);
      },
    });
    const family: CounterFamily = { labelNames, series };
    this.counters.set(name, family);
    return family;
  }

  private counterSeries(name: string, family: CounterFamily, key: string, labels: Labels): CounterSeries {
    checkLabelNames(name, family.labelNames, labels);
    const s = { labels: Object.freeze({ ...labels }) as Labels, value: 0 };
    family.series.set(key, s);
    return s;
  }

  private readAtScrape(type: 'counter' | 'gauge', name: string, read: () => number, labels: Labels): void {
    let family = this.reads.get(name);
    if (!family) {
      const labelNames = Object.keys(labels);
      const f: ReadFamily = { type, labelNames, series: new Map() };
      family = f;
      this.reads.set(name, f);
      const config = { name: METRIC_PREFIX + name, help: helpFor(name), labelNames, registers: [this.registry] };
      if (type === 'gauge') {
        new Gauge({
          ...config,
          collect() {
            this.reset();
            // A gauge that cannot be read is reported as NaN.
            for (const s of f.series.values()) this.set(s.labels, safeRead(s.read));
          },
        });
      } else {
        new Counter({
          ...config,
          collect() {
            this.reset();
            for (const s of f.series.values()) {
              const v = safeRead(s.read);
              // Unreadable (a closed loader): the series is absent rather than a made-up 0.
              if (v >= 0) this.inc(s.labels, v);
              else this.remove(s.labels);
            }
          },
        });
      }
    } else if (family.type !== type) {
      throw new Error(`metric ${name} is a ${family.type}, not a ${type}`);
    }
    checkLabelNames(name, family.labelNames, labels);
    family.series.set(seriesKey(family.labelNames, labels), { labels: { ...labels }, read });
  }
}

function safeRead(read: (() => number) | undefined): number {
  if (!read) return 0;
  try {
    return read();
  } catch {
    return NaN;
  }
}
