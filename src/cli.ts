// driftwatch command line.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createLogger, isLogLevel, type Logger, type LogLevel } from './log.js';
import { addonPath, type LoaderError } from './native/loader.js';
import { detectMetadataResolver } from './enrich/index.js';
import { startSensor } from './pipeline/sensor.js';
import { consoleSink, jsonlSink, type Sink } from './pipeline/sinks.js';
import { PreflightError, describeLoaderError, preflight } from './preflight.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

class UsageError extends Error {}

const HELP = `driftwatch: container drift detection

Usage:
  driftwatch run [--jsonl <file>|-] [--include-host] [--emit-all] [--log-level debug|info|warn|error]
  driftwatch --version | --help

run     load the BPF sensor and report drift findings until SIGINT/SIGTERM
  --jsonl <file>|-   write each finding as one JSON line to <file> or stdout (-)
  --include-host     also report host processes (default: containers only)
  --emit-all         send every exec to user space (debugging; findings unchanged)
  --log-level        default info
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
  } catch (err) {
    const e = err as LoaderError;
    if (e.libbpfLog) log.debug(`libbpf:\n${e.libbpfLog}`);
    metadata.close();
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
        .then(() => {
          metadata.close();
          const m = sensor.metrics;
          log.info(
            `stopped; events ${m.get('events_decoded_total')}, findings ${m.total('findings_total')}, ` +
              `decode errors ${m.get('decode_errors_total')}, signature errors ${m.total('signature_errors_total')}`,
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
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
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
