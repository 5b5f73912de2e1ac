// Prometheus /metrics and /healthz, /readyz for probes. Counters come from
// the sensor's Metrics; kernel counters and BPF program run time are read
// when scraped.
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { ProgramStats } from '../native/loader.js';
import type { Metrics } from '../pipeline/metrics.js';

export interface OpsServerOptions {
  address: string; // host:port
  metrics: Metrics;
  programStats?: () => ProgramStats[];
  ready: () => boolean;
  /** Why /readyz says 503, when there is more to say than "not ready". */
  notReadyReason?: () => string | undefined;
  /** GET /selftest: the last result; POST /selftest: run it again and answer with the result. */
  selftest?: { run(): Promise<unknown>; readonly last: unknown };
}

const sanitize = (name: string) => `driftwatch_${name.replace(/[^a-zA-Z0-9_]/g, '_')}`;
const labelText = (labels: Record<string, string>) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};

function bpfStatsEnabled(): number {
  try {
    return readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1' ? 1 : 0;
  } catch {
    return 0;
  }
}

export function prometheusText(metrics: Metrics, programStats?: () => ProgramStats[]): string {
  const byName = new Map<string, { type: string; lines: string[] }>();
  for (const m of metrics.snapshot()) {
    const name = sanitize(m.name);
    const entry = byName.get(name) ?? { type: m.type, lines: [] };
    entry.lines.push(`${name}${labelText(m.labels)} ${Number.isFinite(m.value) ? m.value : 'NaN'}`);
    byName.set(name, entry);
  }
  let out = '';
  for (const [name, { type, lines }] of byName) out += `# TYPE ${name} ${type}\n${lines.join('\n')}\n`;
  // run_time_ns only advances while kernel.bpf_stats_enabled=1 (off by default: it costs a clock read per run).
  out += `# TYPE driftwatch_bpf_stats_enabled gauge\ndriftwatch_bpf_stats_enabled ${bpfStatsEnabled()}\n`;
  try {
    const progs = programStats?.() ?? [];
    if (progs.length) {
      out += '# TYPE driftwatch_bpf_program_run_time_ns_total counter\n';
      for (const p of progs) out += `driftwatch_bpf_program_run_time_ns_total{program="${p.name}"} ${p.runTimeNs}\n`;
      out += '# TYPE driftwatch_bpf_program_runs_total counter\n';
      for (const p of progs) out += `driftwatch_bpf_program_runs_total{program="${p.name}"} ${p.runCount}\n`;
    }
  } catch {
    /* loader closed */
  }
  return out;
}

export async function startOpsServer(opts: OpsServerOptions): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(prometheusText(opts.metrics, opts.programStats));
    } else if (url === '/healthz') {
      res.writeHead(200).end('ok\n');
    } else if (url === '/readyz') {
      const ready = opts.ready();
      const why = ready ? undefined : opts.notReadyReason?.();
      res.writeHead(ready ? 200 : 503).end(ready ? 'ready\n' : `not ready${why ? `: ${why}` : ''}\n`);
    } else if (url === '/selftest' && opts.selftest) {
      const json = (code: number, body: unknown) => res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n');
      if (req.method === 'POST') {
        opts.selftest.run().then((r) => json(200, r), (err: unknown) => json(500, { error: String(err) }));
      } else if (opts.selftest.last) json(200, opts.selftest.last);
      else json(404, { error: 'the self-test has not finished yet' });
    } else {
      res.writeHead(404).end('not found\n');
    }
  });
  const idx = opts.address.lastIndexOf(':');
  const host = opts.address.slice(0, idx).replace(/^\[|\]$/g, '');
  const port = Number(opts.address.slice(idx + 1));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return {
    server,
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
