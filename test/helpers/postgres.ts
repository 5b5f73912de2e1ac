// A throwaway PostgreSQL server from Debian's packages, on a free loopback
// port, owned by the postgres user, in a temp dir removed afterwards.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function pgBin(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(base, v, 'bin')).find((d) => existsSync(join(d, 'pg_ctl')));
}

export function postgresSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'PostgreSQL tests need root (to run the server as the postgres user)';
  if (!pgBin()) return 'PostgreSQL server binaries are not installed (Debian package postgresql)';
  if (spawnSync('id', ['postgres']).status !== 0) return 'no postgres user';
  return null;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export interface PgServer {
  url: string;
  /** CPU time (user + system, in seconds) of the server's processes so far: the postmaster and its children. */
  cpuSeconds(): number;
  stop(): void;
}

/** utime + stime of a process, of its running children and of those it reaped (in clock ticks), from /proc. */
function treeTicks(root: number): number {
  let ticks = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ');
      if (Number(d) === root) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      else if (Number(f[1]) === root) ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* gone */
    }
  }
  return ticks;
}

/** `settings`: extra server settings (`-c name=value`), e.g. for a benchmark. */
export async function startPostgres(settings: Record<string, string> = {}): Promise<PgServer> {
  const bin = pgBin()!;
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-pg-'));
  const data = join(dir, 'data');
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  chownSync(dir, uid, gid);
  const setpriv = 'setpriv';
  const asPg = [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups'];
  const runAsPg = (cmd: string, args: string[]) =>
    execFileSync(setpriv, [...asPg, join(bin, cmd), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
      timeout: 60_000,
    });
  runAsPg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const port = await freePort();
  // The postmaster is our child with a parent-death signal (SIGQUIT: immediate
  // shutdown), not daemonized by pg_ctl: a test run that is killed takes its
  // server with it instead of leaving it running.
  const log = openSync(join(dir, 'log'), 'a');
  const postmaster: ChildProcess = spawn(
    setpriv,
    [...asPg, '--pdeathsig', 'SIGQUIT', join(bin, 'postgres'), '-D', data, '-p', String(port), '-k', dir,
      '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])],
    { stdio: ['ignore', log, log] },
  );
  closeSync(log);
  postmaster.unref();
  const exited = new Promise<number | null>((resolve) => postmaster.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ready = spawnSync(join(bin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port)]).status === 0;
    if (ready) break;
    const code = await Promise.race([exited, new Promise<'wait'>((r) => setTimeout(() => r('wait'), 100))]);
    if (code !== 'wait' || Date.now() > deadline) {
      postmaster.kill('SIGQUIT');
      const tail = readFileSync(join(dir, 'log'), 'utf8').split('\n').slice(-20).join('\n');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`PostgreSQL did not start (${code === 'wait' ? 'timeout' : `exit ${code}`}):\n${tail}`);
    }
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    // setpriv execs the postmaster, so the child's pid is the postmaster's
    cpuSeconds: () => treeTicks(postmaster.pid!) / 100,
    stop() {
      try {
        runAsPg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } catch {
        postmaster.kill('SIGKILL');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
