// Prometheus /metrics and /healthz, /readyz for probes. /metrics is the
// sensor's own prom-client registry; what is kept elsewhere (kernel counters,
// BPF program run time, the export spool) is read when scraped.
import { createServer, type Server } from 'node:http';
import type { Metrics } from '../pipeline/metrics.js';

export interface OpsServerOptions {
  address: string; // host:port
  metrics: Metrics;
  ready: () => boolean;
  /** Why /readyz says 503, when there is more to say than "not ready". */
  notReadyReason?: () => string | undefined;
  /** GET /selftest: the last result; POST /selftest: run it again and answer with the result. */
  selftest?: { run(): Promise<unknown>; readonly last: unknown };
}

export async function startOpsServer(opts: OpsServerOptions): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/metrics') {
      opts.metrics.text().then(
        (text) => res.writeHead(200, { 'content-type': opts.metrics.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(`metrics failed: ${String(err)}\n`),
      );
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
