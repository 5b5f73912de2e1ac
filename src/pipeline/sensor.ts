// The sensor: opens the kernel side, then runs one RxJS pipeline over it:
// kernel batches → decode → enrich → signatures → policy → report → sinks. Each stage
// is an operator in its own module; the pipe in startSensor is the data flow.
import { hostname as osHostname } from 'node:os';
import { tap } from 'rxjs';
import type { MetadataResolver } from '../enrich/metadata.js';
import { DEFAULT_PACKAGE_MANAGERS, PackageWindows, type ProcessExits } from '../enrich/package-windows.js';
import type { Logger } from '../log.js';
import { execWatchPrefilterFor, loadAddon, loadWithScriptHook, setExecWatch, type ExecWatchEntry, type MmapHook, type NativeLoader, type ScriptHook } from '../native/loader.js';
import { interpreterWatchEntries } from './interpreters.js';
import { scriptExcepted } from '../prevent/held.js';
import { PreventionController } from '../prevent/controller.js';
import type { MapWriter } from '../prevent/maps.js';
import { builtinSignatures } from '../signatures/index.js';
import type { IsolationLimits, SensorSignature } from '../signatures/isolated.js';
import type { DetectionEvent } from '../sdk/signature.js';
import { DEFAULT_POLICY, type Policy } from '../policy/policy-file.js';
import { readHostNamespaces, type HostNamespaces } from './container.js';
import { decodeRecords } from './decode-stage.js';
import { SignatureEngine } from './engine.js';
import { createEnricher } from './enrich.js';
import { enrichEvents } from './enrich-stage.js';
import { HeapKeeper, type HeapKeeperOptions } from './heap-keeper.js';
import { BootClock } from './finding.js';
import { registerKernelMetrics } from './kernel-metrics.js';
import { Metrics } from './metrics.js';
import { WatchKind } from './records.js';
import { applyPolicy } from './policy-stage.js';
import { reportFindings } from './report-stage.js';
import { detect } from './signature-stage.js';
import { writeToSinks } from './sink-stage.js';
import type { Sink } from './sinks.js';
import { kernelBatches, restartAfterDrainErrors } from './source.js';

export interface SensorOptions {
  log: Logger;
  sinks: Sink[];
  includeHost?: boolean;
  emitAll?: boolean;
  /** Exec mappings through the sys_enter_mmap tracepoint where LSM and fentry are refused (costs every syscall). */
  mmapTracepoint?: boolean;
  /** Built-in and custom signatures (custom ones run in worker threads, within `isolation`). */
  signatures?: SensorSignature[];
  isolation?: IsolationLimits;
  policy?: Policy;
  /** Injected in tests; by default the real addon is opened, loaded and attached here. */
  loader?: NativeLoader;
  hostNamespaces?: HostNamespaces;
  resolver?: MetadataResolver;
  hostname?: string;
  pollIntervalMs?: number;
  metrics?: Metrics;
  /** bprm_check hooks to try, best first (default: BPF-LSM where active, fentry, none). */
  scriptHooks?: ScriptHook[];
  /**
   * Sees every enriched event first; true keeps it from signatures, findings
   * and sinks (the self-test's own execs).
   */
  claim?: (ev: DetectionEvent) => boolean;
  /** How often kernel counters are checked for conditions worth a log line. */
  kernelCheckMs?: number;
  /**
   * Image execs the kernel still sends (exec_watch) for interpreters (default:
   * interpreterWatchEntries()); the package managers below are added to them.
   */
  execWatch?: ExecWatchEntry[];
  /** Command names of package managers whose execs open a window (process.executable.installedBy). */
  packageManagers?: readonly string[];
  /** How package managers' exits are learnt; pidfds by default. With an injected loader (replays), windows need this. */
  processExits?: ProcessExits;
  /** Bounds on what the V8 heap keeps resident after and during bursts (src/pipeline/heap-keeper.ts); false: V8 alone. */
  heap?: HeapKeeperOptions | false;
}

/** What the kernel accepted at start: for doctor and the logs. */
export interface SensorHooks {
  /** Which bprm_check program sees #! scripts (none: the overlay lookup); undefined with an injected loader. */
  scriptHook?: ScriptHook;
  refused: Array<{ hook: ScriptHook; reason: string }>;
  /** Which program sees executable mappings (none: drift.exec_mapping is off); undefined with an injected loader. */
  mmapHook?: MmapHook;
  /** Optional programs that did not attach, and why. */
  unattached: Array<{ program: string; reason: string }>;
}

export interface Sensor {
  attached: string[];
  hooks: SensorHooks;
  readonly signatures: SensorSignature[];
  /** Swaps signatures and/or policy between two events; nothing in flight is lost. */
  reload(next: { signatures?: SensorSignature[]; policy?: Policy }): void;
  metrics: Metrics;
  loader: NativeLoader;
  stop(): Promise<void>;
}

/** The exec hook is required; the others degrade detection, loudly, when they cannot attach. */
const REQUIRED_PROGRAMS = new Set(['sched_process_exec']);

function attachPrograms(loader: NativeLoader, log: Logger, metrics: Metrics, hooks: SensorHooks): string[] {
  const attached: string[] = [];
  for (const name of loader.programs()) {
    try {
      attached.push(loader.attachProgram(name));
    } catch (err) {
      if (REQUIRED_PROGRAMS.has(name)) throw err;
      metrics.inc('hooks_unavailable_total', { program: name });
      hooks.unattached.push({ program: name, reason: (err as Error).message });
      log.warn(`optional hook ${name} not attached (${(err as Error).message}); its detections are off`);
    }
  }
  return attached;
}

export async function startSensor(opts: SensorOptions): Promise<Sensor> {
  const metrics = opts.metrics ?? new Metrics();
  const log = opts.log;
  const hostname = opts.hostname ?? osHostname();
  let host = opts.hostNamespaces;
  if (!host) {
    const read = readHostNamespaces();
    if (read.source === 'self') log.info('PID 1 cannot be inspected; using this process\'s namespaces as the host\'s');
    host = read;
  }
  let currentPolicy = opts.policy ?? DEFAULT_POLICY;
  const policy = applyPolicy(currentPolicy, metrics, log);
  const report = reportFindings(currentPolicy.dedupWindowMs, metrics, log);
  const clock = new BootClock();
  const makeEngine = (sigs: SensorSignature[], pol: Policy) =>
    new SignatureEngine(
      sigs.filter((s) => pol.signatures[s.id]?.enabled !== false),
      { hostname, clock, metrics, log: (m) => log.warn(m), config: (id) => pol.signatures[id]?.config ?? {}, ...(opts.isolation ? { limits: opts.isolation } : {}) },
    );
  let engine = makeEngine(opts.signatures ?? builtinSignatures, currentPolicy);
  // Zero-valued series exist from the start, so rate() and absent() alerts work before the first drop.
  for (const name of ['events_decoded_total', 'decode_errors_total', 'host_events_dropped_total', 'pipeline_errors_total', 'sink_errors_total', 'reloads_total']) {
    metrics.inc(name, {}, 0);
  }
  for (const kind of ['exec', 'mmap_exec']) metrics.inc('events_total', { kind }, 0);
  for (const s of engine.signatures) metrics.inc('findings_total', { signature: s.id }, 0);
  for (const s of engine.customSignatures) metrics.inc('signature_events_dropped_total', { signature: s.id }, 0);
  const packageManagers = opts.packageManagers ?? DEFAULT_PACKAGE_MANAGERS;
  // The live kernel's processes only: a replay's pids are not this machine's.
  const packageWindows = !opts.loader || opts.processExits
    ? new PackageWindows({ metrics, managers: packageManagers, ...(opts.processExits ? { exits: opts.processExits } : {}) })
    : undefined;
  const enricher = createEnricher({
    host,
    metrics,
    ...(opts.resolver ? { resolver: opts.resolver } : {}),
    ...(packageWindows ? { packageWindows } : {}),
    hold: () => ({
      settings: currentPolicy.prevention?.scriptHold ?? { timeoutMs: 2000, onTimeout: 'continue' },
      excepted: (ev) => scriptExcepted(currentPolicy, ev),
    }),
  });

  // Package managers' image execs open the windows (src/enrich/package-windows.ts).
  const managers = packageWindows ? packageManagers.map((comm) => ({ comm, kinds: WatchKind.PACKAGE_MANAGER })) : [];
  const execWatch = [...(opts.execWatch ?? interpreterWatchEntries()), ...managers];
  let watchPrefilter: Buffer | undefined;
  let loader = opts.loader;
  let attached: string[] = [];
  const hooks: SensorHooks = { refused: [], unattached: [] };
  if (!loader) {
    watchPrefilter = execWatchPrefilterFor(execWatch);
    // 2 MiB holds ~6,000 full records: 60 ms of a 100k exec/s burst between 10 ms polls.
    const loaded = loadWithScriptHook(
      { emitAll: opts.emitAll ?? false, ignoreTgid: process.pid, hostMntNs: host.mnt, hostPidNs: host.pid, ringBufferBytes: 2 << 20, mmapFallback: opts.mmapTracepoint ? 'tracepoint' : 'none', watchPrefilter },
      ...(opts.scriptHooks ? [opts.scriptHooks] : []),
    );
    loader = loaded.loader;
    hooks.scriptHook = loaded.scriptHook;
    hooks.mmapHook = loaded.mmapHook;
    hooks.refused = loaded.refused;
    for (const r of loaded.refused) metrics.inc('hooks_unavailable_total', { program: `${r.hook}_bprm_check` });
    log.info(
      loaded.scriptHook === 'none'
        ? `script layers: from the kernel at exec (the deferred fput of the script; no bprm_check hook here: ${loaded.refused.map((r) => `${r.hook} ${r.reason}`).join(', ')})`
        : `script layers: from the kernel (${loaded.scriptHook} bprm_check)`,
    );
    if (loaded.mmapHook === 'none') {
      metrics.inc('hooks_unavailable_total', { program: 'mmap_file' });
      log.warn('exec mappings (LD_PRELOAD of a dropped library, ld.so on a dropped file) are not watched: neither BPF-LSM nor fentry loads here; --mmap-tracepoint turns them on at a cost to every syscall on the node');
    } else log.info(`exec mappings: ${loaded.mmapHook === 'tracepoint' ? 'sys_enter_mmap tracepoint (opt-in; every syscall pays for it)' : `${loaded.mmapHook} mmap_file`}`);
    try {
      attached = attachPrograms(loader, log, metrics, hooks);
    } catch (err) {
      loader.close();
      throw err;
    }
  }
  const kernel = loader;
  // Prevention: the kernel decides from maps kept here (src/prevent/).
  let prevention: PreventionController | undefined;
  if (kernel.mapUpdate && kernel.mapDelete && kernel.mapClear) {
    prevention = new PreventionController({ writer: kernel as MapWriter, log, metrics, ...(opts.resolver ? { resolver: opts.resolver } : {}) });
    try {
      prevention.apply(currentPolicy, engine.signatures.map((s) => s.id));
    } catch (err) {
      if (!opts.loader) kernel.close();
      throw err;
    }
    if (prevention.active) log.info(`prevention on${currentPolicy.prevention?.dryRun ? ' (dry run: nothing is stopped)' : ''}`);
  }
  if (kernel.mapUpdate && kernel.mapClear) {
    try {
      const n = setExecWatch(kernel, execWatch, watchPrefilter);
      log.debug(`exec watch: ${n} names`);
    } catch (err) {
      if (!opts.loader) kernel.close();
      throw err;
    }
  }
  // The addon names the counters (enum dw_stat order); the contract test holds its list against the object's BTF.
  registerKernelMetrics(metrics, kernel);
  log.info(`overlay layers: read through ${kernel.overlayPath()}`);
  // Overlay files the kernel could read neither by BTF nor by layout facts
  // that checked out: their layer is UNKNOWN. Say so once; the counter keeps the number.
  // Likewise once for execs through an overlay mounted inside a container
  // that the kernel could not follow to the file behind it (layer UNKNOWN).
  let unresolvedSaid = false;
  let unfollowedSaid = false;
  const unresolvedCheck = setInterval(() => {
    let stats: Record<string, number>;
    try {
      stats = kernel.stats();
    } catch {
      return; // closed
    }
    const n = stats['ovl_unresolved'] ?? 0;
    if (n > 0 && !unresolvedSaid) {
      unresolvedSaid = true;
      log.warn(`${n} exec(s) from overlayfs could not be told apart (image or container layer): overlay's layout on this kernel did not match what the sensor checks, so they are reported with layer UNKNOWN (kernel_ovl_unresolved_total)`);
    }
    const u = stats['ovl_unfollowed'] ?? 0;
    if (u > 0 && !unfollowedSaid) {
      unfollowedSaid = true;
      log.warn(`${u} exec(s) through an overlay mounted inside a container could not be followed to the file behind it on this kernel: reported with layer UNKNOWN (kernel_ovl_unfollowed_total)`);
    }
    if (unresolvedSaid && unfollowedSaid) clearInterval(unresolvedCheck);
  }, opts.kernelCheckMs ?? 5_000);
  unresolvedCheck.unref();
  const resolver = opts.resolver;
  if (resolver) {
    for (const name of Object.keys(resolver.metrics) as Array<keyof typeof resolver.metrics>) {
      metrics.counterFrom(`enrichment_${name}_total`, () => resolver.metrics[name]);
    }
    // The names the README listed before these were typed as counters.
    for (const name of ['cache_hits', 'wait_timeouts'] as const) metrics.gauge(`enrichment_${name}`, () => resolver.metrics[name]);
    metrics.gauge('enrichment_cache_entries', () => resolver.size);
  }

  // The data flow. Batches are the unit up to the signatures, where per-event
  // overhead matters; findings are few and flow one by one after the policy.
  // With the kernel's loader the addon is loaded, and its malloc_trim frees the C heap too.
  const trimNative = opts.loader ? undefined : () => void loadAddon().mallocTrim();
  const keeper = opts.heap === false ? undefined : new HeapKeeper({ metrics, ...(trimNative ? { trimNative } : {}), ...opts.heap });
  keeper?.activity(); // start-up is the first burst
  const stopping = new AbortController();
  const finished = new Promise<void>((done) => {
    kernelBatches(kernel, { intervalMs: opts.pollIntervalMs ?? 10, signal: stopping.signal })
      .pipe(
        restartAfterDrainErrors(stopping.signal, metrics, log),
        tap(() => keeper?.activity()),
        decodeRecords(metrics, log),
        enrichEvents(enricher, { metrics, log, includeHost: opts.includeHost ?? false, ...(opts.claim ? { claim: opts.claim } : {}) }),
        // A container's first event describes it for prevention, if the cgroup scan has not yet.
        tap((batch) => {
          if (prevention) for (const ev of batch) if (ev.kind === 'exec') prevention.observe(ev.exec.cgroupId, ev.container);
        }),
        detect(() => engine, metrics, log),
        policy,
        // Stream signatures and prevention go here: they must see every
        // finding, and dedup (report) only shapes what is reported.
        report,
        writeToSinks(opts.sinks, metrics, log, clock),
      )
      .subscribe({ complete: done, error: (err: unknown) => (log.error(`pipeline stopped: ${String(err)}`), done()) });
  });

  let stopped = false;
  return {
    attached,
    hooks,
    get signatures() {
      return engine.signatures;
    },
    reload(next) {
      const pol = next.policy ?? currentPolicy;
      const old = engine;
      const sigs = next.signatures ?? old.signatures;
      prevention?.apply(pol, sigs.map((s) => s.id)); // throws, with nothing changed, when it cannot be enforced
      currentPolicy = pol;
      engine = makeEngine(sigs, pol);
      policy.stage.replace(pol);
      report.dedup.setWindow(pol.dedupWindowMs);
      old.close();
      metrics.inc('reloads_total');
    },
    metrics,
    loader: kernel,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(unresolvedCheck);
      keeper?.close();
      prevention?.close();
      // The source drains what the kernel still holds and completes; every
      // stage finishes its work (lookups, folds) before completing the next.
      stopping.abort();
      await finished;
      engine.close();
      packageWindows?.close();
      for (const s of opts.sinks) await s.close();
      if (!opts.loader) kernel.close();
    },
  };
}
