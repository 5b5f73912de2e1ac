// Runs the real CLI (`driftwatch run --jsonl -`) as a child process and
// collects its findings, so kernel tests exercise exactly what users run.
import type { FindingJson } from '#gen/finding-json.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bpfObjectsOf, type BpfObjects } from './minicontainer.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const cliPath = join(repoRoot, 'bin', 'driftwatch.js');

/** The Node flags on a launcher's `#!/usr/bin/env -S node ...` line (none for `#!/usr/bin/env node`). */
export function nodeFlagsOf(launcher: string): string[] {
  const shebang = readFileSync(launcher, 'utf8').split('\n', 1)[0]!;
  return (/^#!\S*env -S node((?: --\S+)*)\s*$/.exec(shebang)?.[1] ?? '').split(' ').filter(Boolean);
}

/** The Node flags users get (bin/driftwatch.js's). Tests and benchmarks run the CLI with this process's Node (the checkout's Node 24) and these. */
export const cliNodeFlags: readonly string[] = nodeFlagsOf(cliPath);

/** Arguments for spawn(process.execPath, ...): the CLI as users start it. */
export const cliArgs = (...args: string[]): string[] => [...cliNodeFlags, cliPath, ...args];

/**
 * For a benchmark that hosts the sensor in its own process: when this process
 * lacks the CLI's Node flags, runs the same script again with them (stdio
 * shared) and returns its exit code; undefined when they are already set.
 */
export function rerunWithCliNodeFlags(): number | undefined {
  const missing = cliNodeFlags.filter((f) => !process.execArgv.includes(f));
  if (!missing.length) return undefined;
  const r = spawnSync(process.execPath, [...process.execArgv, ...missing, ...process.argv.slice(1)], { stdio: 'inherit' });
  return r.status ?? 1;
}

/** Findings as parsed from JSONL: the proto3 JSON mapping with every field present. */
type Complete<T> = T extends Array<infer U> ? Array<Complete<U>> : T extends object ? { [K in keyof T]-?: Complete<T[K]> } : T;
export type Finding = Complete<FindingJson>;

export class SensorProcess {
  readonly findings: Finding[] = [];
  stderr = '';
  /** The BPF programs and links this sensor holds once attached: leak checks look for these ids. */
  bpf: BpfObjects = { progs: [], links: [] };
  private child: ChildProcess;
  private buffered = '';
  private waiters: Array<() => void> = [];

  private constructor(
    child: ChildProcess,
    /** The sensor's --data-dir: spool and the embedded backend's database. */
    readonly dataDir: string,
  ) {
    this.child = child;
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        if (line.trim()) this.findings.push(JSON.parse(line) as Finding);
      }
      this.notify();
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
      this.notify();
    });
    child.on('exit', () => this.notify());
  }

  static async start(extraArgs: string[] = [], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<SensorProcess> {
    const dataDir = mkdtempSync(join(tmpdir(), 'driftwatch-data-'));
    const child = spawn(process.execPath, cliArgs('run', '--jsonl', '-', '--data-dir', dataDir, '--dedup-window', '0s', '--metrics-address', '127.0.0.1:0', ...extraArgs), {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
    });
    const s = new SensorProcess(child, dataDir);
    await s.waitFor(() => /attached/i.test(s.stderr) || child.exitCode !== null, 30_000, 'sensor to attach');
    if (child.exitCode !== null) throw new Error(`sensor exited early (${child.exitCode}): ${s.stderr}`);
    s.bpf = bpfObjectsOf(child.pid!);
    return s;
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until pred() holds; rejects after timeoutMs with what it waited for. */
  async waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; stderr:\n${this.stderr.slice(-2000)}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  /** The first finding matching pred, waiting for it to arrive. */
  async finding(pred: (f: Finding) => boolean, what: string, timeoutMs = 15_000): Promise<Finding> {
    await this.waitFor(() => this.findings.some(pred), timeoutMs, what);
    return this.findings.find(pred)!;
  }

  matching(pred: (f: Finding) => boolean): Finding[] {
    return this.findings.filter(pred);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Sends a signal and resolves with the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    const exited = once(this.child, 'exit');
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
    return this.child.exitCode;
  }

  /** The port of /metrics, from the start-up log line. */
  get metricsPort(): number {
    const m = /metrics on http:\/\/[^:]+:(\d+)\/metrics/.exec(this.stderr);
    if (!m) throw new Error('no metrics address in the log');
    return Number(m[1]);
  }

  /** One unlabelled series from /metrics, without the driftwatch_ prefix (`name` may carry labels); NaN when absent. */
  async metric(name: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`)).text();
    const m = new RegExp(`^driftwatch_${name.replace(/[{}"]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  }

  /** Until the series reaches atLeast; fails naming what was awaited. */
  async waitForMetric(name: string, atLeast: number, what: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!((await this.metric(name)) >= atLeast)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${name} >= ${atLeast}); stderr:\n${this.stderr.slice(-1000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Removes the data dir (after any check of the stored findings). */
  cleanup(): void {
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Stream signatures correlate other findings (an exec session then drift, a burst): they repeat the drift's process. */
export const CORRELATION_SIGNATURES = new Set(['drift.interactive_intrusion', 'drift.burst']);

/** The finding for the exec whose args hold token (the exec's own signature, not a correlation of it). */
export const argsContain = (token: string) => (f: Finding) => f.process.args.includes(token) && !CORRELATION_SIGNATURES.has(f.signature.id);

/** Correlation findings (stream signatures) about the exec whose args hold token. */
export const correlatedWith = (token: string) => (f: Finding) => f.process.args.includes(token) && CORRELATION_SIGNATURES.has(f.signature.id);
