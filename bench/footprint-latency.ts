// Rows 4 and 5: the real CLI (`driftwatch run`, embedded backend), measured
// from outside. Footprint: RSS and CPU while idle, from 20 s after the start
// (attach, self-test, and the heap settling 5 s after the last batch; see
// src/pipeline/heap-keeper.ts). Latency: exec of a dropped binary in a
// container -> finding stored by the backend (received_at - time), one exec
// after another, enough of them that p99 is not simply the slowest.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { randomBytes } from 'node:crypto';
import { MiniContainer } from '../test/helpers/minicontainer.js';
import { cliArgs } from '../test/helpers/sensor-process.js';

export interface FootprintLatency {
  idleRssMiB: number;
  /** Of which private (anonymous) memory; the rest is file pages, mostly the Node binary's own. */
  idleRssAnonMiB: number;
  idleCpuPercent: number;
  latencyP50Ms: number;
  latencyP90Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  samples: number;
  /** 1-minute load average at the start and the end. */
  load: [number, number];
}

const CLK_TCK = 100;
const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
};
const statusKiB = (pid: number, field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
const load1 = () => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function footprintLatency(idleSeconds = 10, execs = 200, settleSeconds = 20): Promise<FootprintLatency> {
  const loadStart = load1();
  const data = mkdtempSync(join(tmpdir(), 'driftwatch-bench-'));
  const child = spawn(process.execPath, cliArgs('run', '--data-dir', data, '--dedup-window', '0s', '--log-level', 'warn', '--metrics-address', '127.0.0.1:0'), {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // Read, or a full pipe leaves the sensor's writes queued and keeps it from exiting.
  let stderrTail = '';
  child.stderr!.on('data', (d: Buffer) => (stderrTail = (stderrTail + d.toString()).slice(-2000)));
  const ct = new MiniContainer();
  try {
    await sleep(settleSeconds * 1000);
    if (child.exitCode !== null) throw new Error(`sensor exited: ${stderrTail}`);
    const pid = child.pid!;
    const t0 = cpuTicks(pid);
    await sleep(idleSeconds * 1000);
    const idleCpuPercent = ((cpuTicks(pid) - t0) / CLK_TCK / idleSeconds) * 100;
    const idleRssMiB = statusKiB(pid, 'VmRSS') / 1024;
    const idleRssAnonMiB = statusKiB(pid, 'RssAnon') / 1024;

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
    return {
      idleRssMiB,
      idleRssAnonMiB,
      idleCpuPercent,
      latencyP50Ms: pct(50),
      latencyP90Ms: pct(90),
      latencyP99Ms: pct(99),
      latencyMaxMs: lat.at(-1) ?? NaN,
      samples: lat.length,
      load: [loadStart, load1()],
    };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    ct.destroy();
    rmSync(data, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const execs = process.argv[2] ? Number(process.argv[2]) : undefined;
  footprintLatency(undefined, execs).then((r) => console.log(r));
}
