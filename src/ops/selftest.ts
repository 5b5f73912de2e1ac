// Start-up self-test: proves on this node, through the running sensor, that
// every kind of drift is seen and classified. A static payload of ours
// (native/selftest/dw-selftest.c) builds a throwaway overlay in private
// mount and pid namespaces under the data dir and execs itself from the
// upper layer, a copied-up image file, a memfd, a tmpfs and as the
// interpreter of a #! script in the upper layer. The sensor hands every event
// of that process tree to claim() before anything else: none of them reaches
// signatures, findings, sinks or export. Events are matched by what the
// kernel recorded (the payload's host pid among the exec's ancestors), never
// by anything a container could write.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Layer } from '../pipeline/classify.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../pipeline/metrics.js';
import { FileFlag } from '../pipeline/records.js';
import type { DetectionEvent } from '../sdk/signature.js';

export const SELFTEST_CHECKS = ['upper', 'copied_up', 'memfd', 'tmpfs', 'script', 'hash'] as const;
export type SelfTestCheck = (typeof SELFTEST_CHECKS)[number];

/** What each probe's exec must be classified as (for the script: the script's own layer). */
const EXPECTED: Record<Exclude<SelfTestCheck, 'hash'>, Layer> = {
  upper: 'UPPER_NEW',
  copied_up: 'UPPER_COPIED_UP',
  memfd: 'MEMFD',
  tmpfs: 'TMPFS',
  script: 'UPPER_NEW',
};

export interface CheckResult {
  check: SelfTestCheck;
  ok: boolean;
  /** What the sensor saw (a layer, a hash); absent when nothing arrived. */
  seen?: string;
  expected: string;
  /** Why it failed, in words an operator can act on. */
  reason?: string;
  /** script: which path answered (the kernel: a bprm_check hook or the exec's deferred fput; or the overlay lookup). */
  source?: 'kernel' | 'overlay';
}

export interface SelfTestResult {
  ok: boolean;
  at: string;
  durationMs: number;
  checks: CheckResult[];
  /** The payload could not build its overlay; no check ran. */
  error?: string;
  /** The namespaces were made in a user namespace (no CAP_SYS_ADMIN). */
  userNamespace: boolean;
  /** overlayfs dentry layout as CO-RE resolved it, from the upper probe's flags. */
  overlayLayout?: 'd_fsdata flags (6.5+)' | 'ovl_entry (before 6.5)';
  /** The kernel read overlay by layout facts (no overlay BTF): the upper and copied-up checks are what proves them on this node. */
  overlayByLayoutFacts?: boolean;
}

export interface SelfTestOptions {
  dataDir: string;
  log: Logger;
  metrics: Metrics;
  /** Kernel counters, to explain a missing event (ring buffer full). */
  kernelStats?: () => Record<string, number>;
  payload?: string;
  /** How long to wait for the kernel's events after the payload ran. */
  timeoutMs?: number;
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const SELFTEST_PAYLOAD = join(repoRoot, 'native', 'build', 'dw-selftest');


interface Run {
  payloadPid: number;
  seen: Map<SelfTestCheck, DetectionEvent>;
  probePids: Set<number>;
  /** Wakes the run when all probes' events are in. */
  onEvent: () => void;
}

export class SelfTest {
  private current: Run | undefined;
  private running: Promise<SelfTestResult> | undefined;
  private lastResult: SelfTestResult | undefined;
  /**
   * Payload pids of runs under way. Only while the payload lives: its pid
   * cannot be reused then, so no other process's events can be taken for it.
   */
  private claimed = new Set<number>();
  private readonly payload: string;

  constructor(private readonly opts: SelfTestOptions) {
    this.payload = opts.payload ?? SELFTEST_PAYLOAD;
    for (const check of SELFTEST_CHECKS) opts.metrics.gauge('selftest', () => this.gaugeValue(check), { check });
    opts.metrics.inc('selftest_runs_total', {}, 0);
    opts.metrics.inc('selftest_events_total', {}, 0);
  }

  get last(): SelfTestResult | undefined {
    return this.lastResult;
  }

  get passed(): boolean {
    return this.lastResult?.ok === true;
  }

  /** 1 pass, 0 fail (and 0 until the first run has passed). */
  private gaugeValue(check: SelfTestCheck): number {
    return this.lastResult?.checks.find((r) => r.check === check)?.ok ? 1 : 0;
  }

  /**
   * The sensor's hook, called for every enriched event before anything else.
   * True: the event is the self-test's own and must go nowhere else.
   */
  claim(ev: DetectionEvent): boolean {
    if (this.claimed.size === 0) return false;
    const rec = ev.kind === 'exec' ? ev.exec : ev.mmap;
    const run = this.current;
    let ours = this.claimed.has(rec.hostPid) || this.claimed.has(rec.hostPpid) || (run?.probePids.has(rec.hostPid) ?? false);
    if (!ours && ev.kind === 'exec') ours = ev.exec.ancestors.some((a) => this.claimed.has(a.hostPid));
    if (!ours) return false;
    this.opts.metrics.inc('selftest_events_total');
    if (run && ev.kind === 'exec') {
      const check = ev.exec.args.at(-1) as SelfTestCheck;
      const isProbe = ev.exec.args.includes('--probe') && check in EXPECTED;
      if (isProbe && !run.seen.has(check) && ev.exec.ancestors.some((a) => a.hostPid === run.payloadPid)) {
        run.seen.set(check, ev);
        run.probePids.add(rec.hostPid);
        run.onEvent();
      }
    }
    return true;
  }

  /** Runs the self-test (a run already under way is joined, not repeated). */
  run(): Promise<SelfTestResult> {
    this.running ??= this.runOnce().finally(() => (this.running = undefined));
    return this.running;
  }

  private async runOnce(): Promise<SelfTestResult> {
    const t0 = Date.now();
    const { log, metrics } = this.opts;
    metrics.inc('selftest_runs_total');
    const result = await this.execute().catch((err: unknown): SelfTestResult => ({
      ok: false, at: new Date(t0).toISOString(), durationMs: 0, checks: [], userNamespace: false,
      error: err instanceof Error ? err.message : String(err),
    }));
    result.durationMs = Date.now() - t0;
    this.lastResult = result;
    if (result.ok) {
      const script = result.checks.find((c) => c.check === 'script');
      log.info(`self-test passed: drift from the upper layer, copied-up files, memfd, tmpfs and #! scripts is detected on this node (script layers from ${script?.source === 'kernel' ? 'the kernel' : 'the overlay lookup'}; ${result.durationMs} ms)`);
    } else {
      log.error(`self-test FAILED, drift detection is incomplete on this node: ${describeFailure(result)}`);
    }
    return result;
  }

  private async execute(): Promise<SelfTestResult> {
    const at = new Date().toISOString();
    if (!existsSync(this.payload)) throw new Error(`the self-test payload is missing (${this.payload}): rebuild with npm run build:native`);
    let dir: string;
    try {
      const parent = join(this.opts.dataDir, 'selftest');
      mkdirSync(parent, { recursive: true, mode: 0o700 });
      dir = mkdtempSync(join(parent, 'run-'));
    } catch (err) {
      throw new Error(`cannot make a directory under ${this.opts.dataDir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): the data dir must be writable`);
    }
    const expectedHash = createHash('sha256').update(readFileSync(this.payload)).digest('hex');
    const child = spawn(this.payload, [dir], { stdio: ['pipe', 'pipe', 'pipe'] });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`cannot start the self-test payload: ${await new Promise((r) => child.once('error', (e) => r(e.message)))}`);
    const run: Run = { payloadPid: pid, seen: new Map(), probePids: new Set(), onEvent: () => undefined };
    this.current = run;
    this.claimed.add(pid);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    const probesRan = new Promise<void>((r) => {
      const check = () => (/^done$/m.test(out) || /^error /m.test(out) ? r() : undefined);
      child.stdout.on('data', check);
      void exited.then(() => r());
    });
    const ringFullBefore = this.opts.kernelStats?.()['ringbuf_full'] ?? 0;
    try {
      await probesRan;
      const probes = [...out.matchAll(/^probe (\w+)$/gm)].map((m) => m[1] as SelfTestCheck);
      const setupError = /^error (.*)$/m.exec(out)?.[1];
      if (setupError && probes.length === 0) {
        return { ok: false, at, durationMs: 0, checks: [], userNamespace: /^userns$/m.test(out), error: explainSetupError(setupError) };
      }
      // The events follow the execs by one poll interval, plus enrichment.
      await new Promise<void>((r) => {
        const timer = setTimeout(r, this.opts.timeoutMs ?? 10_000);
        run.onEvent = () => {
          if (probes.every((p) => run.seen.has(p))) {
            clearTimeout(timer);
            r();
          }
        };
        run.onEvent();
      });
      const ringFull = (this.opts.kernelStats?.()['ringbuf_full'] ?? 0) > ringFullBefore;
      const checks = this.judge(run, out, expectedHash, ringFull);
      const upper = run.seen.get('upper');
      const flags = upper?.kind === 'exec' ? upper.exec.fileFlags : 0;
      const layout = flags & FileFlag.OVL_LAYOUT_FSDATA ? 'd_fsdata flags (6.5+)' : flags & FileFlag.OVL_LAYOUT_ENTRY ? 'ovl_entry (before 6.5)' : undefined;
      return {
        ok: checks.every((c) => c.ok), at, durationMs: 0, checks, userNamespace: /^userns$/m.test(out),
        ...(layout ? { overlayLayout: layout } : {}),
        ...(flags & FileFlag.OVL_LAYOUT_FACTS ? { overlayByLayoutFacts: true } : {}),
      };
    } finally {
      child.stdin.end(); // the namespace's init exits, and with it the mounts
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
      this.current = undefined;
      this.claimed.delete(pid);
    }
  }

  private judge(run: Run, out: string, expectedHash: string, ringFull: boolean): CheckResult[] {
    const results: CheckResult[] = [];
    for (const [check, expected] of Object.entries(EXPECTED) as Array<[Exclude<SelfTestCheck, 'hash'>, Layer]>) {
      const ev = run.seen.get(check);
      const execError = new RegExp(`^error exec ${check}: (.*)$`, 'm').exec(out)?.[1];
      if (!ev || ev.kind !== 'exec') {
        const reason = execError
          ? `the probe did not run (${execError})`
          : `no exec event arrived from the kernel within the wait${ringFull ? ' (the ring buffer was full: events were dropped)' : ''}` +
            (check === 'script' ? '; the interpreter of a #! script is only sent when the kernel marks the exec as a script in container namespaces' : '');
        results.push({ check, ok: false, expected, reason });
        continue;
      }
      if (check === 'script') {
        const layer = ev.script?.layer;
        const r: CheckResult = { check, ok: layer === expected, expected, ...(layer ? { seen: layer } : {}), ...(ev.script?.source ? { source: ev.script.source } : {}) };
        if (!layer) r.reason = 'the script\'s layer could not be determined: no bprm_check hook (BPF-LSM or fentry) loaded here, and the lookup in the container\'s overlay found nothing';
        else if (layer !== expected) r.reason = `the script was classified ${layer}`;
        results.push(r);
        continue;
      }
      const seen = ev.exec.layer;
      const r: CheckResult = { check, ok: seen === expected, seen, expected };
      if (seen !== expected) {
        r.reason = ev.exec.fileFlags & FileFlag.OVL_UNRESOLVED
          ? 'overlayfs types were unknown when the BPF object loaded (overlay was not loaded then): load overlay (modprobe overlay) and restart the sensor'
          : `the kernel classified it ${seen}`;
      }
      results.push(r);
    }
    const upper = run.seen.get('upper');
    const sha = upper?.kind === 'exec' ? upper.file?.sha256 : undefined;
    results.push({
      check: 'hash', ok: sha === expectedHash, expected: `sha256 ${expectedHash.slice(0, 16)}…`,
      ...(sha ? { seen: `sha256 ${sha.slice(0, 16)}…` } : {}),
      ...(sha === expectedHash ? {} : {
        reason: sha
          ? 'the hash of the upper-layer probe is wrong'
          : upper ? 'the executable could not be read to hash it: grant CAP_SYS_PTRACE (for /proc/<pid>/exe) and CAP_DAC_READ_SEARCH' : 'no upper-layer event to hash',
      }),
    });
    return results;
  }
}

function explainSetupError(err: string): string {
  if (/unshare/.test(err)) return `cannot make private namespaces for the throwaway overlay (${err}): grant CAP_SYS_ADMIN, or allow user namespaces (sysctl user.max_user_namespaces > 0)`;
  if (/mount overlay/.test(err)) return `cannot mount an overlay on the data dir's filesystem (${err}): is overlayfs available (modprobe overlay), and is the data dir on a disk (not itself on overlayfs)?`;
  if (/mount tmpfs/.test(err)) return `cannot mount a tmpfs in the throwaway overlay (${err})`;
  return err;
}

/** One line: what does not work on this node, and why. */
export function describeFailure(r: SelfTestResult): string {
  if (r.error) return r.error;
  return r.checks.filter((c) => !c.ok).map((c) => `${c.check}: ${c.reason ?? 'failed'}`).join('; ');
}
