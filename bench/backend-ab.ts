// Row 7 against another build, when the machine is too busy for wall time
// to compare across runs: both backends (this checkout's and another's
// bin/driftwatch.js, each with the Node flags on its #! line) take the same load in alternation, on fresh databases,
// and the CPU time each spends per stored finding is reported beside the
// wall-clock rates. Usage:
//   node dist/bench/backend-ab.js <other checkout> [seconds] [rounds] [sensors] [live|fixed] [sqlite,postgres]
// (live: findings carry the time of sending; fixed: the same 512 times on every batch; the
// last argument picks the stores). On PostgreSQL the server's own CPU per finding is reported too.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runLoad, type LoadTimes } from '../test/helpers/load.js';
import { freePort, postgresSkipReason, startPostgres } from '../test/helpers/postgres.js';
import { cliPath, nodeFlagsOf } from '../test/helpers/sensor-process.js';

const ticks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
};
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

async function once(cli: string, db: string, seconds: number, sensors: number, times: LoadTimes, serverCpu?: () => number) {
  const port = await freePort();
  const proc = spawn(process.execPath, [...nodeFlagsOf(cli), cli, 'backend', '--listen', `127.0.0.1:${port}`, '--db', db], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  while (!/listening/.test(err)) {
    if (proc.exitCode !== null) throw new Error(err);
    await new Promise((r) => setTimeout(r, 50));
  }
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(proc.pid!))), 200);
  const t0 = ticks(proc.pid!);
  const s0 = serverCpu?.();
  const r = await runLoad(`127.0.0.1:${port}`, sensors, seconds, 512, undefined, times);
  const cpuUs = ((ticks(proc.pid!) - t0) / 100) * 1e6;
  const serverUs = s0 === undefined ? undefined : (serverCpu!() - s0) * 1e6;
  clearInterval(sampler);
  proc.kill('SIGTERM');
  await new Promise((r2) => proc.once('exit', r2));
  return {
    perSec: r.findingsPerSec, p50: r.p50Ms, p99: r.p99Ms, mean: r.meanMs, little: r.littleMs, cpuUsPerFinding: cpuUs / Math.max(1, r.stored),
    ...(serverUs === undefined ? {} : { serverCpuUsPerFinding: serverUs / Math.max(1, r.stored) }), peakRss: peak, errors: r.errors,
  };
}

async function main() {
  const other = resolve(process.argv[2] ?? '', 'bin', 'driftwatch.js');
  const seconds = Number(process.argv[3] ?? 10);
  const rounds = Number(process.argv[4] ?? 2);
  const sensors = Number(process.argv[5] ?? 4);
  const times = (process.argv[6] ?? 'live') as LoadTimes;
  const wanted = (process.argv[7] ?? 'sqlite,postgres').split(',');
  const tmp = mkdtempSync(join(tmpdir(), 'driftwatch-bench-ab-'));
  const pg = postgresSkipReason() || !wanted.includes('postgres') ? undefined : await startPostgres();
  let n = 0;
  const freshPg = async () => {
    const { default: pgmod } = await import('pg');
    const c = new pgmod.Client({ connectionString: pg!.url });
    await c.connect();
    await c.query(`CREATE DATABASE ab${++n}`);
    await c.end();
    return pg!.url.replace(/\/postgres$/, `/ab${n}`);
  };
  try {
    for (const store of ['sqlite', 'postgres'].filter((s) => wanted.includes(s) && (s === 'sqlite' || pg))) {
      for (let round = 0; round < rounds; round++) {
        for (const [name, cli] of [['this', cliPath], ['other', other]] as const) {
          const db = store === 'sqlite' ? join(tmp, `ab-${++n}.db`) : await freshPg();
          const r = await once(cli, db, seconds, sensors, times, store === 'postgres' ? pg!.cpuSeconds : undefined);
          console.log(JSON.stringify({ store, round, build: name, sensors, times, ...r }));
        }
      }
    }
  } finally {
    pg?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
