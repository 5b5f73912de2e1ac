// Destinations besides the driftwatch backend, each with its own spool under
// the data dir: Falco's http_output (Falcosidekick) and OTLP logs.
import type { SensorConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../pipeline/metrics.js';
import { Exporter } from './exporter.js';

export interface Integration {
  /** Metric prefix: falco_http_sent_total, otlp_sent_total, otlp_latency_seconds, ... */
  name: 'falco_http' | 'otlp';
  exporter: Exporter;
}

/** Each transport's module is loaded only when it is configured (OpenTelemetry's SDK is most of the sensor's code). */
export async function startIntegrations(cfg: Pick<SensorConfig, 'falcoHttpUrl' | 'otlpEndpoint' | 'dataDir'>, log: Logger, metrics?: Metrics): Promise<Integration[]> {
  const out: Integration[] = [];
  const latency = (name: Integration['name']) => (metrics ? { observeLatency: (s: number) => metrics.observe(`${name}_latency_seconds`, s) } : {});
  if (cfg.falcoHttpUrl) {
    const { FalcoHttpTransport } = await import('./falco-http-transport.js');
    // One finding a batch: Falco posts alerts one by one, and a retry then repeats none.
    const transport = new FalcoHttpTransport({ url: cfg.falcoHttpUrl });
    out.push({ name: 'falco_http', exporter: new Exporter({ transport, spoolDir: `${cfg.dataDir}/spool-falco-http`, maxBatch: 1, log: (m) => log.warn(`falco http output: ${m}`), ...latency('falco_http') }) });
    log.info(`falco http output: POST to ${cfg.falcoHttpUrl.replace(/\/\/[^@/]*@/, '//***@')}`);
  }
  if (cfg.otlpEndpoint) {
    const { OtlpLogsTransport } = await import('./otlp-logs-transport.js');
    const transport = new OtlpLogsTransport({ endpoint: cfg.otlpEndpoint });
    out.push({ name: 'otlp', exporter: new Exporter({ transport, spoolDir: `${cfg.dataDir}/spool-otlp`, log: (m) => log.warn(`otlp logs: ${m}`), ...latency('otlp') }) });
    log.info(`otlp logs: exporting to ${cfg.otlpEndpoint}`);
  }
  return out;
}
