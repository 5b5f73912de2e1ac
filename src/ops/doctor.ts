// `driftwatch doctor`: what this node gives the sensor, and what detection
// follows from it. Every row is ok, degraded or missing, with what to change.
// The BPF rows come from loading and attaching the real programs, and the last
// row from running the self-test through them: nothing is inferred from a
// kernel version.
import { mkdtempSync, readFileSync, rmSync, existsSync, statfsSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { release } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CRI_SOCKETS } from '../enrich/cri-socket.js';
import { DEFAULT_OCI_STATE_ROOTS } from '../enrich/oci-state.js';
import { PodmanStore } from '../enrich/podman-store.js';
import { createLogger } from '../log.js';
import { bpfLsmActive, type LoaderError, type ScriptHook } from '../native/loader.js';
import { Metrics } from '../pipeline/metrics.js';
import { startSensor, type Sensor } from '../pipeline/sensor.js';
import { describeLoaderError } from '../preflight.js';
import { SelfTest, describeFailure, type SelfTestResult } from './selftest.js';

export type RowStatus = 'ok' | 'degraded' | 'missing';

export interface DoctorRow {
  check: string;
  status: RowStatus;
  /** What this node has. */
  detail: string;
  /** What detection follows, or what to change; empty when ok. */
  fix?: string;
}

export interface DoctorOptions {
  dataDir: string;
  backend?: string;
  criSockets?: string[];
  podmanStorage?: string;
  sysRoot?: string;
  scriptHooks?: ScriptHook[];
  /** The sys_enter_mmap tracepoint where LSM and fentry are refused, as `run --mmap-tracepoint`. */
  mmapTracepoint?: boolean;
  /** Why the programs must not even be tried (no Linux, no BPF capability, no BTF). */
  preflightError?: string;
}

export interface DoctorReport {
  node: string;
  rows: DoctorRow[];
  selftest?: SelfTestResult;
}

const CAPS: Array<[string, bigint]> = [
  ['SYS_ADMIN', 21n], ['BPF', 39n], ['PERFMON', 38n], ['SYS_RESOURCE', 24n], ['SYS_PTRACE', 19n], ['DAC_READ_SEARCH', 2n],
];

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function capabilities(status = read('/proc/self/status') ?? ''): Set<string> {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  const eff = m ? BigInt(`0x${m[1]}`) : 0n;
  return new Set(CAPS.filter(([, bit]) => (eff & (1n << bit)) !== 0n).map(([n]) => n));
}

function kernelRows(sys: string): DoctorRow[] {
  const rows: DoctorRow[] = [];
  const btf = existsSync(`${sys}/kernel/btf/vmlinux`);
  rows.push(btf
    ? { check: 'kernel', status: 'ok', detail: `Linux ${release()}, BTF at /sys/kernel/btf/vmlinux` }
    : { check: 'kernel', status: 'missing', detail: `Linux ${release()}, no BTF`, fix: 'a kernel built with CONFIG_DEBUG_INFO_BTF=y (CO-RE needs it); nothing can be detected' });
  const fsLoaded = (read('/proc/filesystems') ?? '').includes('\toverlay\n');
  const moduleBtf = existsSync(`${sys}/kernel/btf/overlay`);
  if (!fsLoaded) {
    rows.push({ check: 'overlay BTF', status: 'missing', detail: 'overlayfs is not loaded', fix: 'modprobe overlay before the sensor starts (or mount /lib/modules so it can): until then container layers cannot be told apart' });
  } else {
    rows.push({ check: 'overlay BTF', status: 'ok', detail: moduleBtf ? 'overlay is a module; its BTF at /sys/kernel/btf/overlay (merged with vmlinux for CO-RE)' : 'overlay is built in; its types are in vmlinux' });
  }
  return rows;
}

function cgroupRow(sys: string): DoctorRow {
  let version: string;
  try {
    // cgroup2 superblock magic at /sys/fs/cgroup: unified; a v2 tree beside v1 controllers: hybrid.
    const unified = statfsSync(`${sys}/fs/cgroup`).type === 0x63677270;
    const v1 = ['memory', 'pids', 'cpu', 'systemd'].some((c) => existsSync(`${sys}/fs/cgroup/${c}`));
    const v2 = existsSync(`${sys}/fs/cgroup/unified/cgroup.controllers`);
    if (!unified && !v1 && !v2) throw new Error('no cgroup hierarchy mounted');
    version = unified ? 'v2 (unified)' : v2 ? 'hybrid (v1 controllers, v2 at /sys/fs/cgroup/unified)' : 'v1';
  } catch {
    return { check: 'cgroups', status: 'degraded', detail: 'no cgroup hierarchy mounted at /sys/fs/cgroup', fix: 'containers are told by namespaces only: no container ids' };
  }
  const driver = existsSync('/run/systemd/system') ? 'systemd' : 'cgroupfs (init is not systemd)';
  return { check: 'cgroups', status: 'ok', detail: `${version}; driver ${driver}` };
}

/** Connects to a unix socket: undefined when it answers, else the error code. */
function reach(path: string, timeoutMs = 1_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (r: string | undefined) => {
      s.destroy();
      resolve(r);
    };
    s.setTimeout(timeoutMs, () => done('ETIMEDOUT'));
    s.once('connect', () => done(undefined));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

async function runtimeRow(opts: DoctorOptions): Promise<DoctorRow> {
  const found: string[] = [];
  const unreachable: string[] = [];
  for (const sock of opts.criSockets ?? DEFAULT_CRI_SOCKETS) {
    if (!existsSync(sock)) continue;
    const err = await reach(sock);
    if (err) unreachable.push(`${sock} (${err})`);
    else found.push(`CRI ${sock}`);
  }
  if (await new PodmanStore(opts.podmanStorage).available()) found.push('podman storage');
  const oci = DEFAULT_OCI_STATE_ROOTS.filter((r) => existsSync(r));
  if (oci.length) found.push(`OCI state (${oci.join(', ')})`);
  const detail = [found.length ? found.join('; ') : 'no runtime or metadata source', ...(unreachable.length ? [`not reachable: ${unreachable.join('; ')}`] : [])].join('; ');
  if (unreachable.length) {
    return { check: 'container runtimes', status: 'degraded', detail, fix: 'mount the runtime socket\'s directory into the sensor and check its permissions: without it findings lack names, images and pods' };
  }
  if (found.length === 0) return { check: 'container runtimes', status: 'degraded', detail, fix: 'findings carry container ids only: mount /run/containerd, /run/crio or /var/lib/containers/storage' };
  return { check: 'container runtimes', status: 'ok', detail };
}

function capabilityRow(caps: Set<string>): DoctorRow {
  const held = [...caps].join(', ') || 'none';
  const canLoad = caps.has('SYS_ADMIN') || (caps.has('BPF') && caps.has('PERFMON'));
  if (!canLoad) return { check: 'capabilities', status: 'missing', detail: `held: ${held}`, fix: 'add CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN before Linux 5.8): the programs cannot load' };
  const lacking = ['SYS_PTRACE', 'DAC_READ_SEARCH'].filter((c) => !caps.has(c));
  if (lacking.length) return { check: 'capabilities', status: 'degraded', detail: `held: ${held}`, fix: `add CAP_${lacking.join(' and CAP_')}: findings lack executable hashes` };
  return { check: 'capabilities', status: 'ok', detail: `held: ${held}` };
}

function dataDirRow(dir: string): DoctorRow {
  try {
    const t = mkdtempSync(join(dir, '.doctor-'));
    writeFileSync(join(t, 'probe'), 'x');
    rmSync(t, { recursive: true, force: true });
    return { check: 'data dir', status: 'ok', detail: `${dir} is writable` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return { check: 'data dir', status: 'missing', detail: `${dir}: ${code}`, fix: `mount a writable directory at ${dir} (the DaemonSet's hostPath): no spool, no self-test` };
  }
}

async function backendRow(backend: string | undefined): Promise<DoctorRow> {
  if (!backend) return { check: 'backend', status: 'ok', detail: 'none configured: an embedded backend stores findings in the data dir' };
  const idx = backend.lastIndexOf(':');
  const host = backend.slice(0, idx).replace(/^\[|\]$/g, '');
  const port = Number(backend.slice(idx + 1));
  const err = await new Promise<string | undefined>((resolve) => {
    const s = connect({ host, port });
    const done = (r: string | undefined) => {
      s.destroy();
      resolve(r);
    };
    s.setTimeout(2_000, () => done('ETIMEDOUT'));
    s.once('connect', () => done(undefined));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
  return err
    ? { check: 'backend', status: 'degraded', detail: `${backend}: ${err}`, fix: 'findings are spooled in the data dir and sent once it answers: check the address and the network policy' }
    : { check: 'backend', status: 'ok', detail: `${backend} accepts connections` };
}

function hookRows(sensor: Sensor | undefined, loadError: string | undefined, lsmFile: string): DoctorRow[] {
  const lsms = (read(lsmFile) ?? '').trim() || 'unknown (securityfs not mounted)';
  const lsmActive = bpfLsmActive(lsmFile);
  if (!sensor) {
    const why = loadError ?? 'not loaded';
    return [
      { check: 'BPF programs', status: 'missing', detail: why, fix: 'nothing is detected on this node' },
      { check: 'LSM / bprm_check', status: 'missing', detail: `active LSMs: ${lsms}; programs not loaded` },
      { check: 'syscall tracepoints', status: 'missing', detail: 'programs not loaded' },
    ];
  }
  const rows: DoctorRow[] = [{ check: 'BPF programs', status: 'ok', detail: `attached ${sensor.attached.join(', ')}` }];
  const { scriptHook, refused, unattached } = sensor.hooks;
  const refusedText = refused.map((r) => `${r.hook} ${r.reason}`).join(', ');
  if (scriptHook === 'lsm' || scriptHook === 'fentry') {
    rows.push({ check: 'LSM / bprm_check', status: 'ok', detail: `active LSMs: ${lsms}; #! scripts seen by the kernel (${scriptHook === 'lsm' ? 'BPF-LSM' : 'fentry'} on bprm_check)${refusedText ? `; refused: ${refusedText}` : ''}` });
  } else {
    rows.push({
      check: 'LSM / bprm_check', status: 'degraded',
      detail: `active LSMs: ${lsms}; bpf ${lsmActive ? 'active' : 'not active'}; ${refusedText ? `refused: ${refusedText}` : 'no hook tried (scriptHook: none)'}`,
      fix: `script layers come from the exec's deferred fput in the kernel where it is found, else from a lookup in the container's overlay (a script that deletes itself with its whole process tree gone is missed there; kernel_script_unseen counts those execs): ${
        refused.length === 0 ? 'set scriptHook: auto'
          : lsmActive ? 'allow fentry/BPF-LSM programs (kernel lockdown or a sandbox refuses them)'
            : 'boot with lsm=...,bpf, or allow fentry programs (lockdown refuses them)'}`,
    });
  }
  const mmap = unattached.find((u) => u.program.includes('mmap'));
  const mmapHook = sensor.hooks.mmapHook;
  rows.push(mmap
    ? { check: 'syscall tracepoints', status: 'degraded', detail: `${mmap.program}: ${mmap.reason}`, fix: 'drift.exec_mapping is off: mount tracefs at /sys/kernel/tracing and grant CAP_PERFMON' }
    : mmapHook === 'none'
      ? { check: 'syscall tracepoints', status: 'degraded', detail: 'none loaded: neither BPF-LSM nor fentry mmap_file loads here, and the sys_enter_mmap tracepoint is opt-in (it costs every syscall on the node)', fix: 'drift.exec_mapping is off: allow fentry/BPF-LSM programs, or set mmapTracepoint: true' }
      : { check: 'syscall tracepoints', status: 'ok', detail: mmapHook === 'tracepoint' ? 'sys_enter_mmap attached (mmapTracepoint; drift.exec_mapping on)' : `no syscall tracepoint: ${mmapHook ?? 'the'} mmap_file hook sees exec mappings (drift.exec_mapping on)` });
  return rows;
}

function overlayLayoutRow(st: SelfTestResult | undefined): DoctorRow {
  if (st?.overlayLayout && st.overlayByLayoutFacts) {
    return { check: 'overlay layout', status: 'ok', detail: `${st.overlayLayout}, read by layout facts (no overlay BTF on this kernel) and checked by the self-test's upper-layer exec` };
  }
  if (st?.overlayLayout) return { check: 'overlay layout', status: 'ok', detail: `${st.overlayLayout}, as CO-RE resolved it for the self-test's upper-layer exec` };
  return { check: 'overlay layout', status: 'missing', detail: 'not resolved: no upper-layer exec was classified', fix: 'see the self-test row' };
}

function selftestRow(st: SelfTestResult | undefined, why: string | undefined): DoctorRow {
  if (!st) return { check: 'self-test', status: 'missing', detail: `not run: ${why ?? 'BPF programs not loaded'}` };
  const passed = st.checks.filter((c) => c.ok).map((c) => c.check);
  if (st.ok) {
    const script = st.checks.find((c) => c.check === 'script');
    return { check: 'self-test', status: 'ok', detail: `passed: ${passed.join(', ')} (scripts via ${script?.source ?? '?'}${st.userNamespace ? ', in a user namespace' : ''}; ${st.durationMs} ms)` };
  }
  const detectedAny = st.checks.some((c) => c.ok && c.check !== 'hash');
  return { check: 'self-test', status: detectedAny ? 'degraded' : 'missing', detail: `${passed.length ? `passed: ${passed.join(', ')}; ` : ''}failed: ${describeFailure(st)}` };
}

/** Loads the sensor (no sinks: nothing it sees is reported), runs the self-test, fills every row. */
export async function runDoctor(opts: DoctorOptions): Promise<DoctorReport> {
  const sys = opts.sysRoot ?? '/sys';
  const rows: DoctorRow[] = [...kernelRows(sys)];
  const metrics = new Metrics();
  const quiet = createLogger('error', () => undefined);
  let sensor: Sensor | undefined;
  let loadError: string | undefined;
  let selftest: SelfTestResult | undefined;
  const st = new SelfTest({ dataDir: opts.dataDir, log: quiet, metrics, kernelStats: () => sensor?.loader.stats() ?? {} });
  try {
    if (opts.preflightError) loadError = opts.preflightError;
    else sensor = await startSensor({ log: quiet, sinks: [], metrics, claim: (ev) => st.claim(ev), mmapTracepoint: opts.mmapTracepoint ?? false, ...(opts.scriptHooks ? { scriptHooks: opts.scriptHooks } : {}) });
  } catch (err) {
    const e = err as LoaderError;
    loadError = e.libbpfLog !== undefined || e.code ? describeLoaderError(e) : e.message;
  }
  try {
    if (sensor) selftest = await st.run();
    rows.push(overlayLayoutRow(selftest));
    rows.push(...hookRows(sensor, loadError, `${sys}/kernel/security/lsm`));
  } finally {
    await sensor?.stop();
  }
  rows.push(cgroupRow(sys));
  rows.push(await runtimeRow(opts));
  rows.push(capabilityRow(capabilities()));
  rows.push(dataDirRow(opts.dataDir));
  rows.push(await backendRow(opts.backend));
  rows.push(selftestRow(selftest, loadError));
  return { node: release(), rows, ...(selftest ? { selftest } : {}) };
}

/** The table an operator reads. */
export function doctorTable(report: DoctorReport): string {
  const w = Math.max(...report.rows.map((r) => r.check.length));
  const lines = report.rows.map((r) => {
    const head = `${r.check.padEnd(w)}  ${r.status.padEnd(8)}  ${r.detail}`;
    return r.fix ? `${head}\n${' '.repeat(w + 12)}→ ${r.fix}` : head;
  });
  const worst = report.rows.some((r) => r.status === 'missing') ? 'missing' : report.rows.some((r) => r.status === 'degraded') ? 'degraded' : 'ok';
  const verdict = worst === 'ok' ? 'drift detection works on this node' : worst === 'degraded' ? 'drift detection works on this node, with the gaps above' : 'drift detection does NOT fully work on this node';
  return `${lines.join('\n')}\n\n${verdict}\n`;
}
