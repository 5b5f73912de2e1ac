// Rows 4 and 5: the real CLI (`driftwatch run`, embedded backend), measured
// from outside. Footprint: RSS and CPU while idle. Latency: exec of a dropped
// binary in a container -> finding stored by the backend (received_at - time).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { randomBytes } from 'node:crypto';
import { MiniContainer } from '../test/helpers/minicontainer.js';
import { cliPath } from '../test/helpers/sensor-process.js';

export interface FootprintLatency {
  idleRssMiB: number;
  idleCpuPercent: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  samples: number;
}

const CLK_TCK = 100;
const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
};
const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function footprintLatency(idleSeconds = 10, execs = 40): Promise<FootprintLatency> {
  const data = mkdtempSync(join(tmpdir(), 'driftwatch-bench-'));
  const child = spawn(process.execPath, [cliPath, 'run', '--data-dir', data, '--dedup-window', '0s', '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ct = new MiniContainer();
  try {
    // Attached once the kernel counts execs; give start-up 3 s to settle.
    await sleep(4000);
    if (child.exitCode !== null) throw new Error('sensor exited');
    const pid = child.pid!;
    const t0 = cpuTicks(pid);
    await sleep(idleSeconds * 1000);
    const idleCpuPercent = ((cpuTicks(pid) - t0) / CLK_TCK / idleSeconds) * 100;
    const idleRssMiB = rssKiB(pid) / 1024;

    const nonces: string[] = [];
    for (let i = 0; i < execs; i++) {
      const n = randomBytes(4).toString('hex');
      nonces.push(n);
      ct.run(`cp /bin/busybox /tmp/busybox-l; /tmp/busybox-l true ${n}`);
    }
    await sleep(2000);
    const db = new DatabaseSync(join(data, 'findings.db'), { readOnly: true });
    const rows = db.prepare("SELECT time, received_at, body FROM findings WHERE signature_id = 'drift.new_executable'").all() as Array<{ time: string; received_at: string; body: string }>;
    db.close();
    const lat = rows
      .filter((r) => nonces.some((n) => r.body.includes(n)))
      .map((r) => Date.parse(r.received_at) - Date.parse(r.time))
      .sort((a, b) => a - b);
    const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? NaN;
    return { idleRssMiB, idleCpuPercent, latencyP50Ms: pct(50), latencyP99Ms: pct(99), samples: lat.length };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    ct.destroy();
    rmSync(data, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) footprintLatency().then((r) => console.log(r));
