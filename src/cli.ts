// driftwatch command line.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createLogger, isLogLevel, type Logger, type LogLevel } from './log.js';
import { addonPath, type LoaderError } from './native/loader.js';
import { CliUsageError, DEFAULT_DATA_DIR, backendCommand, defaultDb, findingsCommand } from './backend/cli.js';
import { startBackend, type Backend } from './backend/server.js';
import { detectMetadataResolver } from './enrich/index.js';
import { Exporter } from './export/exporter.js';
import { startSensor } from './pipeline/sensor.js';
import { consoleSink, jsonlSink, type Sink } from './pipeline/sinks.js';
import { PreflightError, describeLoaderError, preflight } from './preflight.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

class UsageError extends Error {}

const HELP = `driftwatch: container drift detection

Usage:
  driftwatch run [--jsonl <file>|-] [--include-host] [--emit-all] [--log-level debug|info|warn|error]
                 [--backend <host:port> [--token T] [--tls-ca F] [--tls-cert F --tls-key F]] [--data-dir D]
  driftwatch backend [--listen <host:port>] [--db <file|postgres://...>] [--token T]
                     [--tls-cert F --tls-key F [--tls-client-ca F]]
  driftwatch findings [--db <file|postgres://...>] [--since 10m|<time>] [--signature id] [--container id|name] [--json]
  driftwatch --version | --help

run     load the BPF sensor and report drift findings until SIGINT/SIGTERM
  --jsonl <file>|-   write each finding as one JSON line to <file> or stdout (-)
  --include-host     also report host processes (default: containers only)
  --emit-all         send every exec to user space (debugging; findings unchanged)
  --log-level        default info
  --backend          export findings over gRPC to this backend; without it an embedded
                     backend on loopback stores them in <data-dir>/findings.db
  --data-dir         default ${DEFAULT_DATA_DIR} (spool/ and the embedded backend's database)

backend   the reference backend: validates, authenticates, dedupes and stores findings
findings  lists stored findings
`;

function version(): string {
  return (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

async function runCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      jsonl: { type: 'string' },
      'include-host': { type: 'boolean', default: false },
      'emit-all': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
      backend: { type: 'string' },
      token: { type: 'string' },
      'tls-ca': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'data-dir': { type: 'string', default: DEFAULT_DATA_DIR },
    },
    strict: true,
    allowPositionals: false,
  });
  const level = values['log-level'];
  if (!isLogLevel(level)) throw new UsageError(`--log-level must be one of debug, info, warn, error (got ${level})`);
  const log = createLogger(level as LogLevel);

  preflight(log);
  const sinks: Sink[] = [];
  if (values.jsonl) sinks.push(jsonlSink(values.jsonl));
  if (!values.jsonl || values.jsonl !== '-') sinks.push(consoleSink());

  // Export: to the given backend, or to an embedded one on loopback (real gRPC either way).
  const dataDir = values['data-dir'];
  let embedded: Backend | undefined;
  let target = values.backend;
  if (!target) {
    embedded = await startBackend({ listen: '127.0.0.1:0', db: defaultDb(dataDir), log: (m) => log.warn(m) });
    target = embedded.address;
    log.info(`embedded backend on ${target}, storing in ${defaultDb(dataDir)} (driftwatch findings --db ${defaultDb(dataDir)})`);
  }
  const token = values.token ?? process.env['DRIFTWATCH_TOKEN'];
  const tls = values['tls-ca'] || values['tls-cert']
    ? { ...(values['tls-ca'] ? { ca: values['tls-ca'] } : {}), ...(values['tls-cert'] ? { cert: values['tls-cert'], key: values['tls-key'] } : {}) }
    : undefined;
  const exporter = new Exporter({
    backend: target,
    spoolDir: `${dataDir}/spool`,
    ...(token ? { token } : {}),
    ...(tls ? { tls } : {}),
    log: (m) => log.warn(m),
  });
  sinks.push({ write: (f) => exporter.export(f), close: () => exporter.shutdown() });

  const metadata = await detectMetadataResolver(log);
  let sensor;
  try {
    sensor = await startSensor({
      log,
      sinks,
      includeHost: values['include-host'],
      emitAll: values['emit-all'],
      resolver: metadata.resolver,
    });
    for (const [name, _v] of Object.entries(exporter.metrics)) {
      sensor.metrics.gauge(name, () => exporter.metrics[name as keyof typeof exporter.metrics]);
    }
    sensor.metrics.gauge('export_spool_bytes', () => exporter.queuedBytes);
  } catch (err) {
    const e = err as LoaderError;
    if (e.libbpfLog) log.debug(`libbpf:\n${e.libbpfLog}`);
    metadata.close();
    await exporter.shutdown(0);
    await embedded?.stop();
    if (e.libbpfLog === undefined) throw err; // not from the addon
    throw new PreflightError(describeLoaderError(e));
  }
  log.info(`attached ${sensor.attached.join(', ')}; watching for drift${values['include-host'] ? ' (including host processes)' : ''}`);

  return new Promise<number>((resolvePromise) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`${signal}: detaching and flushing`);
      sensor
        .stop()
        .then(async () => {
          metadata.close();
          await embedded?.stop();
          const m = sensor.metrics;
          log.info(
            `stopped; events ${m.get('events_decoded_total')}, findings ${m.total('findings_total')}, ` +
              `decode errors ${m.get('decode_errors_total')}, signature errors ${m.total('signature_errors_total')}, ` +
              `exported ${exporter.metrics.export_sent_total}, left in spool ${exporter.queuedBytes} bytes`,
          );
          resolvePromise(0);
        })
        .catch((err: unknown) => {
          log.error(`shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
          resolvePromise(1);
        });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const log: Logger = createLogger('info');
  try {
    switch (cmd) {
      case 'run':
        return await runCommand(rest);
      case 'backend':
        return await backendCommand(rest, log);
      case 'findings':
        return await findingsCommand(rest);
      case '--version':
      case 'version':
        process.stdout.write(`${version()}\n`);
        return 0;
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        process.stdout.write(HELP);
        return 0;
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof CliUsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`driftwatch: ${(err as Error).message}\n${HELP}`);
      return 2;
    }
    if (err instanceof PreflightError) {
      log.error(err.message);
      return 1;
    }
    if ((err as Error).message?.includes('native addon not built')) {
      log.error(`native addon not built (${addonPath}): run scripts/setup.sh`);
      return 1;
    }
    log.error(`unexpected error: ${(err as Error).stack ?? String(err)}`);
    return 1;
  }
}

// Rx or a signature must never take the process down; count and go on.
process.on('unhandledRejection', (reason) => {
  process.stderr.write(`driftwatch: unhandled rejection: ${reason instanceof Error ? reason.message : String(reason)}\n`);
});
