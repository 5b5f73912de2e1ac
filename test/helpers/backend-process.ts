// `driftwatch backend` as a child process, so its memory and its exit can be
// measured from outside while a test floods it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { freePort } from './postgres.js';
import { cliArgs } from './sensor-process.js';

export interface BackendProcess {
  proc: ChildProcess;
  address: string;
  port: number;
  output(): string;
  rssMiB(): number;
  /** Highest RSS seen by the sampler since start (sampled every 50 ms). */
  peakRssMiB(): number;
  /** SIGTERM, and the time until the process exited (ms); SIGKILL after killAfterMs. */
  terminate(killAfterMs?: number): Promise<{ ms: number; code: number | null; killed: boolean }>;
}

export async function startBackendProcess(db: string, extra: string[] = []): Promise<BackendProcess> {
  const port = await freePort();
  const proc = spawn(process.execPath, cliArgs('backend', '--listen', `127.0.0.1:${port}`, '--db', db, ...extra), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const rss = () => {
    try {
      return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    } catch {
      return 0;
    }
  };
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 50);
  proc.once('exit', () => clearInterval(sampler));
  const deadline = Date.now() + 30_000;
  while (!/listening/.test(out)) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      clearInterval(sampler);
      proc.kill('SIGKILL');
      throw new Error(`backend did not start: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc,
    port,
    address: `127.0.0.1:${port}`,
    output: () => out,
    rssMiB: rss,
    peakRssMiB: () => Math.max(peak, rss()),
    async terminate(killAfterMs = 15_000) {
      if (proc.exitCode !== null) return { ms: 0, code: proc.exitCode, killed: false };
      const t0 = Date.now();
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
      const code = await exited;
      clearTimeout(timer);
      return { ms: Date.now() - t0, code, killed: code === null };
    },
  };
}
