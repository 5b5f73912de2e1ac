// Row 1 of the benchmark table: kernel cost per exec, measured by the kernel
// itself (kernel.bpf_stats_enabled=1: run_time_ns / run_cnt per program).
// Ours is measured on image-binary execs (filtered in the kernel) and on
// drift candidates (full record); bpftrace and libbpf-tools execsnoop are
// measured on the same image-binary loop in the same run.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PACKAGE_MANAGERS } from '../src/enrich/package-windows.js';
import { execWatchPrefilterFor, setExecWatch } from '../src/native/loader.js';
import { WatchKind } from '../src/pipeline/records.js';
import { interpreterWatchEntries } from '../src/pipeline/interpreters.js';
import { MiniContainer } from '../test/helpers/minicontainer.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);

export interface CostRow {
  tool: string;
  workload: string;
  execs: number;
  nsPerRun: number | null;
  note?: string;
}

interface ProgInfo {
  id: number;
  name?: string;
  run_time_ns?: number;
  run_cnt?: number;
}

function progs(): ProgInfo[] {
  const r = spawnSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' });
  return r.status === 0 ? (JSON.parse(r.stdout) as ProgInfo[]) : [];
}

function loop(ct: MiniContainer, n: number, cmd: string, prep = ''): void {
  const r = ct.run(`${prep} i=0; while [ $i -lt ${n} ]; do ${cmd}; i=$((i+1)); done`, { timeoutMs: 300_000 });
  if (r.status !== 0) throw new Error(`exec loop failed: ${r.stderr}`);
}

/**
 * Run time summed over the programs that appeared after `before`, and the
 * exec count: the busiest program runs once per exec (execsnoop has two
 * programs per exec, so dividing by their summed counts would halve it).
 */
function costOf(before: Set<number>): { ns: number; cnt: number } {
  let ns = 0;
  let cnt = 0;
  for (const p of progs()) {
    if (before.has(p.id)) continue;
    ns += p.run_time_ns ?? 0;
    cnt = Math.max(cnt, p.run_cnt ?? 0);
  }
  return { ns, cnt };
}

async function peer(tool: string, argv: string[], ct: MiniContainer, execs: number): Promise<CostRow> {
  const before = new Set(progs().map((p) => p.id));
  let child: ChildProcess;
  try {
    child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    return { tool, workload: 'image binary', execs: 0, nsPerRun: null, note: String(e) };
  }
  // Wait until its programs are loaded.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && costOf(before).cnt === 0 && progs().every((p) => before.has(p.id))) {
    await new Promise((r) => setTimeout(r, 200));
  }
  await new Promise((r) => setTimeout(r, 500));
  const start = costOf(before);
  loop(ct, execs, '/bin/busybox-img true');
  const end = costOf(before);
  child.kill('SIGINT');
  await new Promise((r) => setTimeout(r, 300));
  child.kill('SIGKILL');
  const cnt = end.cnt - start.cnt;
  return { tool, workload: 'image binary', execs: cnt, nsPerRun: cnt ? (end.ns - start.ns) / cnt : null };
}

export async function kernelCost(execs = 500): Promise<CostRow[]> {
  const statsPath = '/proc/sys/kernel/bpf_stats_enabled';
  const prevStats = readFileSync(statsPath, 'utf8').trim();
  writeFileSync(statsPath, '1');
  const ct = new MiniContainer();
  const rows: CostRow[] = [];
  try {
    // DRIFTWATCH_BENCH_ADDON: another build of the addon (e.g. the previous commit's) for before/after rows.
    const { Loader } = require(process.env['DRIFTWATCH_BENCH_ADDON'] ?? join(repoRoot, 'native', 'build', 'Release', 'ebpf_napi_loader.node'));
    // The sensor's default names: interpreters and package managers (builds before the first stage ignore watchPrefilter).
    const watch = [...interpreterWatchEntries(), ...DEFAULT_PACKAGE_MANAGERS.map((comm) => ({ comm, kinds: WatchKind.PACKAGE_MANAGER }))];
    const loader = new Loader({ watchPrefilter: execWatchPrefilterFor(watch) });
    loader.load();
    loader.attach();
    let watching = true;
    try {
      setExecWatch(loader, watch);
    } catch {
      watching = false; // an older build: no exec_watch
    }
    const drain = Buffer.alloc(4 << 20);
    const ours = () => loader.programStats().find((p: { name: string }) => p.name === 'sched_process_exec');
    let a = ours();
    loop(ct, execs, '/bin/busybox-img true');
    let b = ours();
    rows.push({ tool: 'driftwatch', workload: 'image binary', execs: b.runCount - a.runCount, nsPerRun: (b.runTimeNs - a.runTimeNs) / (b.runCount - a.runCount) });
    a = ours();
    loop(ct, Math.ceil(execs / 2), '/tmp/busybox-drift true', 'cp /bin/busybox /tmp/busybox-drift;');
    b = ours();
    while (loader.consume(drain) > 0);
    rows.push({ tool: 'driftwatch', workload: 'drift candidate (full record)', execs: b.runCount - a.runCount, nsPerRun: (b.runTimeNs - a.runTimeNs) / (b.runCount - a.runCount), note: 'count includes the loop shell and cp (image binaries)' });
    // #! scripts: the script's own file is looked up at exec time (deferred-fput walk) where no
    // bprm_check hook loads; an image script is then dropped in the kernel, a dropped one recorded.
    writeFileSync(join(ct.lower, 'bin', 'img-script.sh'), '#!/bin/sh\n', { mode: 0o755 });
    a = ours();
    loop(ct, execs, '/bin/img-script.sh');
    b = ours();
    while (loader.consume(drain) > 0);
    rows.push({ tool: 'driftwatch', workload: '#! image script', execs: b.runCount - a.runCount, nsPerRun: (b.runTimeNs - a.runTimeNs) / (b.runCount - a.runCount) });
    a = ours();
    loop(ct, execs, '/tmp/dropped.sh', "printf '#!/bin/sh\\n' > /tmp/dropped.sh; chmod 0755 /tmp/dropped.sh;");
    b = ours();
    while (loader.consume(drain) > 0);
    rows.push({ tool: 'driftwatch', workload: '#! dropped script (full record)', execs: b.runCount - a.runCount, nsPerRun: (b.runTimeNs - a.runTimeNs) / (b.runCount - a.runCount), note: 'the shell, printf and chmod before the loop are image binaries' });
    if (watching) {
      // Interpreters (exec_watch): an image interpreter with a script operand is sent in full
      // (user space classifies the script); with inline code it is dropped after the argv scan.
      writeFileSync(join(ct.lower, 'bin', 'img-plain.sh'), ':\n');
      a = ours();
      loop(ct, execs, 'sh /bin/img-plain.sh');
      b = ours();
      while (loader.consume(drain) > 0);
      rows.push({ tool: 'driftwatch', workload: 'interpreter + script operand (full record)', execs: b.runCount - a.runCount, nsPerRun: (b.runTimeNs - a.runTimeNs) / (b.runCount - a.runCount), note: 'sh /bin/img-plain.sh: busybox re-exec, comm exe' });
      a = ours();
      loop(ct, execs, 'sh -c :');
      b = ours();
      while (loader.consume(drain) > 0);
      rows.push({ tool: 'driftwatch', workload: 'interpreter + inline code (dropped)', execs: b.runCount - a.runCount, nsPerRun: (b.runTimeNs - a.runTimeNs) / (b.runCount - a.runCount), note: 'sh -c : (argv scanned, counted, dropped)' });
    }
    loader.close();

    rows.push(await peer('bpftrace', ['bpftrace', '-e', 'tracepoint:sched:sched_process_exec { printf("%d %s\\n", pid, comm); }'], ct, execs));
    rows.push(await peer('execsnoop (libbpf-tools)', ['execsnoop'], ct, execs));
  } finally {
    ct.destroy();
    writeFileSync(statsPath, prevStats);
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  kernelCost(Number(process.argv[2] ?? 500)).then((rows) => console.table(rows));
}
