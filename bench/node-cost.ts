// Row 7: what the sensor costs every other process on the node. A C loop of
// syscalls (null syscall, mmap+munmap, open+close, small pread) runs with
// no sensor, with `driftwatch run` (default hooks) and with
// `driftwatch run --mmap-tracepoint` (the opt-in), alternating in one run so
// drift of the machine hits every mode alike. Reported: median ns per call
// per mode (the best of the rounds: other load on the machine only adds),
// and the overhead of each sensor mode over no sensor.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliArgs } from '../test/helpers/sensor-process.js';

const LOOP_C = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char **argv) {
	long n = atol(argv[2]);
	const char *file = argv[1];
	char buf[64];
	double t0 = now();
	for (long i = 0; i < n; i++) syscall(SYS_getppid);
	double t1 = now();
	for (long i = 0; i < n / 10; i++) { void *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); munmap(p, 4096); }
	double t2 = now();
	for (long i = 0; i < n / 10; i++) close(open(file, O_RDONLY));
	double t3 = now();
	int fd = open(file, O_RDONLY);
	for (long i = 0; i < n; i++) if (pread(fd, buf, sizeof(buf), 0) < 0) return 1;
	double t4 = now();
	printf("{\"null\":%.1f,\"mmap\":%.1f,\"open\":%.1f,\"read\":%.1f}\n", (t1 - t0) / n, (t2 - t1) / (n / 10), (t3 - t2) / (n / 10), (t4 - t3) / n);
	return 0;
}
`;

export type Mode = 'off' | 'default' | 'mmap-tracepoint';
export type Op = 'null' | 'mmap' | 'open' | 'read';
export const OPS: Op[] = ['null', 'mmap', 'open', 'read'];

export interface NodeCost {
  /** Best-of-rounds ns per call, by mode and operation. */
  ns: Record<Mode, Record<Op, number>>;
  /** Overhead over no sensor, in percent. */
  overheadPct: Record<Exclude<Mode, 'off'>, Record<Op, number>>;
  rounds: number;
  /** Syscall tracepoint programs of other tools loaded during the run: they tax the baseline too. */
  foreignSyscallTracepoints: number;
}

const best = (xs: number[]) => Math.min(...xs);

async function startSensor(dataDir: string, extra: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, cliArgs('run', '--data-dir', dataDir, '--metrics-address', '127.0.0.1:0', '--log-level', 'info', ...extra), {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sensor did not attach in 30 s: ${err.slice(-500)}`)), 30_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d;
      if (/attached /.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sensor exited ${code}: ${err.slice(-500)}`));
    });
  });
  await new Promise((r) => setTimeout(r, 1000)); // start-up work (backend, first polls) settles
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

function syscallTracepointsOfOthers(): number {
  const r = spawnSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' });
  if (r.status !== 0) return NaN;
  const progs = JSON.parse(r.stdout) as Array<{ type: string; name?: string }>;
  return progs.filter((p) => p.type === 'tracepoint' && /sys_enter|sys_exit/.test(p.name ?? '')).length;
}

export async function nodeCost(rounds = 3, iterations = 1_000_000): Promise<NodeCost> {
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-nodecost-'));
  try {
    writeFileSync(join(dir, 'loop.c'), LOOP_C);
    writeFileSync(join(dir, 'small'), 'a small file\n');
    const cc = spawnSync('cc', ['-O2', '-o', join(dir, 'loop'), join(dir, 'loop.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`cc failed: ${cc.stderr}`);
    const loop = (): Record<Op, number> => {
      const r = spawnSync(join(dir, 'loop'), [join(dir, 'small'), String(iterations)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`syscall loop failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as Record<Op, number>;
    };
    const samples: Record<Mode, Array<Record<Op, number>>> = { off: [], default: [], 'mmap-tracepoint': [] };
    let foreign = 0;
    for (let i = 0; i < rounds; i++) {
      foreign = Math.max(foreign, syscallTracepointsOfOthers());
      samples.off.push(loop());
      for (const mode of ['default', 'mmap-tracepoint'] as const) {
        const data = join(dir, `data-${mode}-${i}`);
        const sensor = await startSensor(data, mode === 'default' ? [] : ['--mmap-tracepoint']);
        try {
          samples[mode].push(loop());
        } finally {
          await stop(sensor);
        }
      }
    }
    const med = (mode: Mode) => Object.fromEntries(OPS.map((op) => [op, best(samples[mode].map((s) => s[op]))])) as Record<Op, number>;
    const ns = { off: med('off'), default: med('default'), 'mmap-tracepoint': med('mmap-tracepoint') };
    const pct = (mode: Exclude<Mode, 'off'>) => Object.fromEntries(OPS.map((op) => [op, (ns[mode][op] / ns.off[op] - 1) * 100])) as Record<Op, number>;
    return { ns, overheadPct: { default: pct('default'), 'mmap-tracepoint': pct('mmap-tracepoint') }, rounds, foreignSyscallTracepoints: foreign };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) nodeCost(Number(process.argv[2] ?? 3)).then((r) => console.log(JSON.stringify(r, null, 2)));
