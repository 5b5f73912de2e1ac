// Counters for everything the sensor sees, drops and produces. Every place
// that drops an event or a finding increments one of these.

export type Labels = Record<string, string>;

export class Metrics {
  private counters = new Map<string, { name: string; labels: Labels; value: number }>();
  private gauges = new Map<string, { name: string; labels: Labels; read: () => number }>();

  inc(name: string, labels: Labels = {}, by = 1): void {
    const key = name + JSON.stringify(labels);
    const c = this.counters.get(key);
    if (c) c.value += by;
    else this.counters.set(key, { name, labels, value: by });
  }

  /** A value read when metrics are collected (queue depths, kernel counters). */
  gauge(name: string, read: () => number, labels: Labels = {}): void {
    this.gauges.set(name + JSON.stringify(labels), { name, labels, read });
  }

  get(name: string, labels: Labels = {}): number {
    return this.counters.get(name + JSON.stringify(labels))?.value ?? 0;
  }

  /** Sum over all label sets of a counter. */
  total(name: string): number {
    let t = 0;
    for (const c of this.counters.values()) if (c.name === name) t += c.value;
    return t;
  }

  snapshot(): Array<{ name: string; labels: Labels; value: number; type: 'counter' | 'gauge' }> {
    const out: Array<{ name: string; labels: Labels; value: number; type: 'counter' | 'gauge' }> = [];
    for (const c of this.counters.values()) out.push({ ...c, type: 'counter' });
    for (const { name, labels, read } of this.gauges.values()) {
      let value = NaN;
      try {
        value = read();
      } catch {
        /* a gauge that cannot be read is reported as NaN */
      }
      out.push({ name, labels, value, type: 'gauge' });
    }
    return out;
  }
}
