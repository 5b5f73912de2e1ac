// driftwatch command line.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createLogger, logFormatFromArgs, type Logger } from './log.js';
import { addonPath, type LoaderError } from './native/loader.js';
import { CliUsageError, DEFAULT_DATA_DIR, backendCommand, defaultDb, findingsCommand } from './backend/cli.js';
import { startBackend, type Backend } from './backend/server.js';
import { detectMetadataResolver } from './enrich/index.js';
import { Exporter } from './export/exporter.js';
import { startIntegrations } from './export/integrations.js';
import { hostname as osHostname } from 'node:os';
import { DEFAULT_POLICY, loadPolicy, parsePolicy, PolicyError, type Policy } from './policy/policy-file.js';
import { policyCommand } from './policy/suggest-command.js';
import { RecordingWriter, readRecording, replayLoader } from './recording.js';
import { readHostNamespaces } from './pipeline/container.js';
import { builtinSignatures } from './signatures/index.js';
import { DEFAULT_LIMITS, loadIsolatedSignatures, type IsolationLimits, type SensorSignature } from './signatures/isolated.js';
import { loadWithScriptHook } from './native/loader.js';
import { kernelBatches } from './pipeline/source.js';
import { checkSignatureLimits, ConfigError, configFlagOptions, flagsToConfig, resolveConfig, scriptHookCandidatesFor } from './config.js';
import { startOpsServer } from './ops/http.js';
import { falcoJsonSink } from './pipeline/falco-sink.js';
import { startSensor } from './pipeline/sensor.js';
import { Metrics } from './pipeline/metrics.js';
import { SelfTest, describeFailure } from './ops/selftest.js';
import { doctorTable, runDoctor } from './ops/doctor.js';
import { consoleSink, jsonlSink, type Sink } from './pipeline/sinks.js';
import { interpreterWatchEntries } from './pipeline/interpreters.js';
import { PreflightError, describeLoaderError, preflight } from './preflight.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

class UsageError extends Error {}

const HELP = `driftwatch: container drift detection

Usage:
  driftwatch run [--config <file>] [--jsonl <file>|-] [--output jsonl|falco-json] [--include-host] [--emit-all]
                 [--log-level debug|info|warn|error] [--log-format auto|json|pretty] [--metrics-address host:port]
                 [--backend <host:port> [--token T] [--tls-ca F] [--tls-cert F --tls-key F]] [--data-dir D]
  driftwatch config check <file>
  driftwatch doctor [--json] [--config <file>] [--data-dir D] [--backend host:port] [--cri-socket <path>]
  driftwatch backend [--listen <host:port>] [--db <file|postgres://...>] [--token T]
                     [--tls-cert F --tls-key F [--tls-client-ca F]] [--max-in-flight N]
                     [--max-queued-findings N] [--max-connections N] [--handshake-timeout-ms N] [--pool-size N]
  driftwatch findings [--db <file|postgres://...>] [--since 10m|<time>] [--until <time>] [--signature id]
                      [--container id|name] [--namespace N] [--image I] [--host H] [--sha256 S] [--glob]
                      [--action alert|prevented|would_prevent] [--summary sha256|image|namespace|host|signature|action] [--limit N] [--json]
  driftwatch policy suggest [--db <file|postgres://...>] [--since 7d|<time>] [--min-containers 2] [--min-executions 3]
  driftwatch record --out <file> [--emit-all] [--duration <seconds>]
  driftwatch replay <file> [--signatures <path>]... [--policy <file>] [--jsonl <file>|-]
  driftwatch --version | --help

Common to run and replay:
  --signatures <path> load custom signatures (.ts, .js, .mjs): a module file, or a directory
                      of them; repeat for more
  --strict            refuse to start when a custom signature cannot be loaded
  --signature-budget-ms  time one event may take in one custom signature before it is stopped
                      (default ${DEFAULT_LIMITS.eventBudgetMs})
  --signature-memory-mb  heap limit of each custom signature's worker (default ${DEFAULT_LIMITS.memoryMb})
  --policy <file>     exceptions, severity overrides, enable/disable, dedup (YAML or JSON)

run     load the BPF sensor and report drift findings until SIGINT/SIGTERM
  --config <file>    settings file (YAML/JSON; keys like includeHost, metricsAddress);
                     precedence: flags > DRIFTWATCH_<KEY> environment > file > defaults
  --jsonl <file>|-   write each finding as one JSON line to <file> or stdout (-)
  --output           jsonl (the finding contract) or falco-json (Falco's output shape)
  --metrics-address  Prometheus /metrics, /healthz, /readyz (default 127.0.0.1:9464)
  --include-host     also report host processes (default: containers only)
  --emit-all         send every exec to user space (debugging; findings unchanged)
  --mmap-tracepoint  watch exec mappings through the sys_enter_mmap tracepoint where neither
                     BPF-LSM nor fentry loads; every syscall on the node then costs more
  --log-level        default info
  --log-format       auto (default): readable lines on a terminal, JSON lines otherwise
  --selftest         prove detection on this node after attaching (default true; selftest: false
                     in the file or DRIFTWATCH_SELFTEST=false turns it off); SIGUSR1 reruns it
  --script-hook      auto (BPF-LSM, then fentry), lsm, fentry or none (#! scripts looked up in the overlay)
  --dedup-window     fold repeats of a (container, signature, executable path, file) within this window
                     into one finding with a count (default 60s, 0s to turn off)
  --backend          export findings over gRPC to this backend; without it an embedded
                     backend on loopback stores them in <data-dir>/findings.db
  --data-dir         default ${DEFAULT_DATA_DIR} (spool/ and the embedded backend's database)
  --falco-http-url   also POST each finding in Falco's JSON shape to this URL (Falcosidekick)
  --otlp-endpoint    also export findings as OTLP log records over gRPC (host:port, http://host:port)
  --cri-socket       CRI runtime socket for container metadata (default: the first of containerd's,
                     CRI-O's, k3s's that exists)
  --docker-socket    Docker Engine socket (default /var/run/docker.sock when it exists)

doctor    what this node gives the sensor and what detection follows: kernel, BTF, overlay,
          LSMs and hooks, tracepoints, cgroups, runtimes, capabilities, data dir, backend,
          and the self-test run through freshly loaded programs; ok / degraded / missing
          with what to change; exit 1 when something is missing

backend   the reference backend: validates, authenticates, dedupes and stores findings
findings  lists stored findings
policy suggest  prints exception rules (YAML) for findings that repeat across containers; review, then apply
`;

function version(): string {
  return (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

async function runCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: configFlagOptions(), strict: true, allowPositionals: false });
  const cfg = resolveConfig(flagsToConfig(values));
  const log = createLogger(cfg.logLevel, undefined, cfg.logFormat);

  const isolation = isolationLimits(cfg);
  const { signatures, policy } = await signaturesAndPolicy(cfg, log, isolation);
  preflight(log);
  const metrics = new Metrics({ processMetrics: true });
  const sinks: Sink[] = [];
  if (cfg.jsonl) sinks.push(cfg.output === 'falco-json' ? falcoJsonSink(cfg.jsonl) : jsonlSink(cfg.jsonl));
  if (!cfg.jsonl || cfg.jsonl !== '-') sinks.push(consoleSink());

  // Export: to the given backend, or to an embedded one on loopback (real gRPC either way).
  let embedded: Backend | undefined;
  let target = cfg.backend;
  if (!target) {
    embedded = await startBackend({ listen: '127.0.0.1:0', db: defaultDb(cfg.dataDir), inline: true, log: (m) => log.warn(m) });
    target = embedded.address;
    log.info(`embedded backend on ${target}, storing in ${defaultDb(cfg.dataDir)} (driftwatch findings --db ${defaultDb(cfg.dataDir)})`);
  }
  const tls = cfg.tlsCa || cfg.tlsCert
    ? { ...(cfg.tlsCa ? { ca: cfg.tlsCa } : {}), ...(cfg.tlsCert ? { cert: cfg.tlsCert, key: cfg.tlsKey } : {}) }
    : undefined;
  const exporter = new Exporter({
    backend: target,
    spoolDir: `${cfg.dataDir}/spool`,
    ...(cfg.token ? { token: cfg.token } : {}),
    ...(tls ? { tls } : {}),
    log: (m) => log.warn(m),
    observeLatency: (s) => metrics.observe('export_latency_seconds', s),
  });
  sinks.push({ write: (f) => exporter.export(f), close: () => exporter.shutdown() });
  // Integrations: each its own spool and retries, so one being down holds up no other.
  const integrations = await startIntegrations(cfg, log, metrics);
  for (const i of integrations) sinks.push({ write: (f) => i.exporter.export(f), close: () => i.exporter.shutdown() });

  const metadata = await detectMetadataResolver(log, {
    ...(cfg.criSocket ? { criSocket: cfg.criSocket } : {}),
    ...(cfg.dockerSocket ? { dockerSocket: cfg.dockerSocket } : {}),
  });
  let kernelStats: () => Record<string, number> = () => ({});
  const selftest = cfg.selftest ? new SelfTest({ dataDir: cfg.dataDir, log, metrics, kernelStats: () => kernelStats() }) : undefined;
  let sensor;
  try {
    sensor = await startSensor({
      log,
      metrics,
      ...(selftest ? { claim: (ev) => selftest.claim(ev) } : {}),
      ...(scriptHookCandidatesFor(cfg.scriptHook) ? { scriptHooks: scriptHookCandidatesFor(cfg.scriptHook)! } : {}),
      sinks,
      includeHost: cfg.includeHost,
      emitAll: cfg.emitAll,
      mmapTracepoint: cfg.mmapTracepoint,
      packageManagers: cfg.packageManagers,
      ...(cfg.interpreters ? { execWatch: interpreterWatchEntries(cfg.interpreters) } : {}),
      resolver: metadata.resolver,
      signatures,
      isolation,
      policy,
    });
    for (const name of Object.keys(exporter.metrics) as Array<keyof typeof exporter.metrics>) {
      sensor.metrics.counterFrom(name, () => exporter.metrics[name]);
    }
    sensor.metrics.gauge('export_spool_bytes', () => exporter.queuedBytes);
    for (const i of integrations) {
      for (const name of Object.keys(i.exporter.metrics) as Array<keyof typeof i.exporter.metrics>) {
        sensor.metrics.counterFrom(name.replace(/^export_/, `${i.name}_`), () => i.exporter.metrics[name]);
      }
      sensor.metrics.gauge(`${i.name}_spool_bytes`, () => i.exporter.queuedBytes);
    }
  } catch (err) {
    const e = err as LoaderError;
    if (e.libbpfLog) log.debug(`libbpf:\n${e.libbpfLog}`);
    metadata.close();
    await exporter.shutdown(0);
    for (const i of integrations) await i.exporter.shutdown(0);
    await embedded?.stop();
    if (e.libbpfLog === undefined) throw err; // not from the addon
    throw new PreflightError(describeLoaderError(e));
  }
  const running = sensor;
  kernelStats = () => running.loader.stats();
  let stopping = false;
  const ops = await startOpsServer({
    address: cfg.metricsAddress,
    metrics: running.metrics,
    // Attached is not enough: ready once this node has shown that it detects drift.
    ready: () => !stopping && running.attached.length > 0 && (!selftest || selftest.passed),
    notReadyReason: () => {
      if (stopping) return 'stopping';
      if (!selftest) return undefined;
      const last = selftest.last;
      return last ? `self-test failed: ${describeFailure(last)}` : 'self-test running';
    },
    ...(selftest ? { selftest } : {}),
  });
  log.info(`attached ${running.attached.join(', ')}; watching for drift${cfg.includeHost ? ' (including host processes)' : ''}; metrics on http://${cfg.metricsAddress.replace(/:0$/, ':' + ops.port)}/metrics`);

  // Counters carry the exact numbers; the log gets one summary a minute.
  const summary = setInterval(() => {
    const m = running.metrics;
    log.info(`last totals: events ${m.get('events_decoded_total')}, findings ${m.total('findings_total')}, excepted ${m.total('policy_excepted_total')}, decode errors ${m.get('decode_errors_total')}, signature errors ${m.total('signature_errors_total')}`);
  }, 60_000);
  summary.unref();

  if (selftest) {
    void selftest.run();
    // SIGUSR1 (or POST /selftest on the metrics address) runs it again.
    process.on('SIGUSR1', () => void selftest.run());
  }

  // SIGHUP: new policy and custom signatures, swapped in between two events.
  process.on('SIGHUP', () => {
    signaturesAndPolicy(cfg, log, isolation)
      .then(({ signatures: sigs, policy: pol }) => {
        running.reload({ signatures: sigs, ...(pol ? { policy: pol } : {}) });
        log.info(`reloaded: ${sigs.length} signature(s)${cfg.policy ? `, policy ${cfg.policy}` : ''}`);
      })
      .catch((err: unknown) => log.error(`reload failed, keeping the running configuration: ${(err as Error).message}`));
  });

  return new Promise<number>((resolvePromise) => {
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(summary);
      log.info(`${signal}: detaching and flushing`);
      running
        .stop()
        .then(async () => {
          metadata.close();
          await ops.close();
          await embedded?.stop();
          const m = running.metrics;
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

async function doctorCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      json: { type: 'boolean', default: false },
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      backend: { type: 'string' },
      'cri-socket': { type: 'string', multiple: true },
    },
    strict: true,
  });
  const cfg = resolveConfig({
    ...(values.config ? { config: values.config } : {}),
    ...(values['data-dir'] ? { dataDir: values['data-dir'] } : {}),
    ...(values.backend ? { backend: values.backend } : {}),
  });
  // A failed preflight is a row of the report, not the end of it.
  let preflightError: string | undefined;
  try {
    preflight(createLogger('error', () => undefined));
  } catch (err) {
    if (!(err instanceof PreflightError)) throw err;
    preflightError = err.message;
  }
  const report = await runDoctor({
    dataDir: cfg.dataDir,
    mmapTracepoint: cfg.mmapTracepoint,
    ...(preflightError ? { preflightError } : {}),
    ...(cfg.backend ? { backend: cfg.backend } : {}),
    ...(values['cri-socket'] ? { criSockets: values['cri-socket'] } : {}),
    ...(scriptHookCandidatesFor(cfg.scriptHook) ? { scriptHooks: scriptHookCandidatesFor(cfg.scriptHook)! } : {}),
  });
  process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : doctorTable(report));
  return report.rows.some((r) => r.status === 'missing') ? 1 : 0;
}

async function configCommand(argv: string[]): Promise<number> {
  const [sub, file] = argv;
  if (sub !== 'check' || !file) throw new UsageError('usage: driftwatch config check <file>');
  const cfg = resolveConfig({ config: file }, {});
  if (cfg.policy) loadPolicy(cfg.policy);
  process.stdout.write(JSON.stringify({ ...cfg, ...(cfg.token ? { token: '***' } : {}) }, null, 2) + '\n');
  process.stdout.write(`${file}: ok\n`);
  return 0;
}

/** The limits of the custom signatures' workers, as the settings ask. */
function isolationLimits(values: { signatureBudgetMs?: string | undefined; signatureMemoryMb?: string | undefined }): IsolationLimits {
  return {
    ...DEFAULT_LIMITS,
    ...(values.signatureBudgetMs ? { eventBudgetMs: Number(values.signatureBudgetMs) } : {}),
    ...(values.signatureMemoryMb ? { memoryMb: Number(values.signatureMemoryMb) } : {}),
  };
}

/** Built-in plus custom signatures, and the policy, as the flags ask. */
async function signaturesAndPolicy(
  values: { signatures?: string[] | undefined; strict?: boolean | undefined; policy?: string | undefined; dedupWindow?: string | undefined },
  log: Logger,
  limits: IsolationLimits,
): Promise<{ signatures: SensorSignature[]; policy?: Policy }> {
  const signatures: SensorSignature[] = [...builtinSignatures];
  if (values.signatures?.length) {
    const taken = new Set(signatures.map((s) => s.id));
    const custom = await loadIsolatedSignatures(values.signatures, taken, limits);
    for (const e of custom.errors) log.error(`custom signature ${e.file}: ${e.reason}`);
    if (custom.errors.length && values.strict) throw new PreflightError(`${custom.errors.length} custom signature(s) failed to load (--strict)`);
    signatures.push(...custom.signatures);
    log.info(`custom signatures: ${custom.signatures.map((s) => s.id).join(', ') || 'none'}`);
  }
  let policy = values.policy ? loadPolicy(values.policy) : undefined;
  if (values.dedupWindow !== undefined) {
    const window = parsePolicy(`dedup: { window: ${JSON.stringify(values.dedupWindow)} }`, '--dedup-window').dedupWindowMs;
    policy = { ...(policy ?? DEFAULT_POLICY), dedupWindowMs: window };
  }
  return { signatures, ...(policy ? { policy } : {}) };
}

async function recordCommand(argv: string[], log: Logger): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { out: { type: 'string' }, 'emit-all': { type: 'boolean', default: false }, duration: { type: 'string' } },
    strict: true,
  });
  if (!values.out) throw new UsageError('record needs --out <file>');
  preflight(log);
  const host = readHostNamespaces();
  let loader;
  try {
    loader = loadWithScriptHook({ emitAll: values['emit-all'], ignoreTgid: process.pid, hostMntNs: host.mnt, hostPidNs: host.pid }).loader;
  } catch (err) {
    throw new PreflightError(describeLoaderError(err as LoaderError));
  }
  try {
    loader.attach();
  } catch (err) {
    loader.close();
    throw new PreflightError(describeLoaderError(err as LoaderError));
  }
  const writer = new RecordingWriter(values.out, {
    format: 'driftwatch-recording',
    version: 1,
    hostname: osHostname(),
    host: { mnt: host.mnt, pid: host.pid },
    recordedAt: new Date().toISOString(),
  });
  let batches = 0;
  const sub = kernelBatches(loader).subscribe((b) => {
    writer.write(b.buf, b.length);
    batches++;
  });
  log.info(`recording to ${values.out}${values['emit-all'] ? ' (every exec)' : ''}; SIGINT to stop`);
  return new Promise((resolvePromise) => {
    const stop = () => {
      sub.unsubscribe();
      writer.close();
      loader.close();
      log.info(`recorded ${batches} batch(es)`);
      resolvePromise(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (values.duration) setTimeout(stop, Number(values.duration) * 1000);
  });
}

async function replayCommand(argv: string[], log: Logger): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      signatures: { type: 'string', multiple: true },
      strict: { type: 'boolean', default: false },
      'signature-budget-ms': { type: 'string' },
      'signature-memory-mb': { type: 'string' },
      policy: { type: 'string' },
      jsonl: { type: 'string' },
    },
    strict: true,
    allowPositionals: true,
  });
  const file = positionals[0];
  if (!file) throw new UsageError('replay needs a recording file');
  const limits = { signatureBudgetMs: values['signature-budget-ms'], signatureMemoryMb: values['signature-memory-mb'] };
  checkSignatureLimits(limits);
  const isolation = isolationLimits(limits);
  const { signatures, policy } = await signaturesAndPolicy(values, log, isolation);
  const { header, batches } = readRecording(file);
  const sinks: Sink[] = [values.jsonl ? jsonlSink(values.jsonl) : consoleSink((s) => process.stdout.write(s))];
  const loader = replayLoader(batches);
  const sensor = await startSensor({
    log, sinks, loader, signatures, isolation, hostNamespaces: header.host, hostname: header.hostname, pollIntervalMs: 1,
    ...(policy ? { policy } : {}),
  });
  await loader.done;
  await sensor.stop();
  log.info(`replayed ${batches.length} batch(es): ${sensor.metrics.get('events_decoded_total')} events, ${sensor.metrics.total('findings_total')} finding(s)`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const format = logFormatFromArgs(rest);
  const log: Logger = createLogger('info', undefined, format);
  try {
    switch (cmd) {
      case 'run':
        return await runCommand(rest);
      case 'backend':
        return await backendCommand(rest, log);
      case 'findings':
        return await findingsCommand(rest);
      case 'config':
        return await configCommand(rest);
      case 'policy':
        return await policyCommand(rest);
      case 'doctor':
        return await doctorCommand(rest);
      case 'record':
        return await recordCommand(rest, log);
      case 'replay':
        return await replayCommand(rest, log);
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
    if (err instanceof PreflightError || err instanceof PolicyError || err instanceof ConfigError) {
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
