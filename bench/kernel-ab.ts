// Kernel cost per image exec, this build against another build of the addon,
// attached at the same time: both programs run on exactly the same execs, so
// the machine's exec noise (other processes, ±50% exec rates) cancels out.
// Each round attaches them in the other order (the second one finds the
// kernel's data in cache), and the table has every round.
//
//   node dist/bench/kernel-ab.js <other ebpf_napi_loader.node> [execs] [rounds] [command]
//
// KERNEL_AB_THIS=<addon> puts another build in this build's place (two
// variants against each other, neither of them the checkout's).
//
// command defaults to a static image binary; '/bin/true-dyn' is a dynamic one
// (the loader and libc are looked up during its exec); 'drift' runs a binary
// copied into the container, so both builds build and submit the full record.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PACKAGE_MANAGERS } from '../src/enrich/package-windows.js';
import { execWatchPrefilterFor, setExecWatch } from '../src/native/loader.js';
import { interpreterWatchEntries } from '../src/pipeline/interpreters.js';
import { WatchKind } from '../src/pipeline/records.js';
import { MiniContainer } from '../test/helpers/minicontainer.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);

interface ProgStat {
  name: string;
  runTimeNs: number;
  runCount: number;
}
interface LoaderLike {
  load(): void;
  attach(): void;
  close(): void;
  programStats(): ProgStat[];
}

// The sensor's default names: interpreters and package managers, as in production.
const watch = [...interpreterWatchEntries(), ...DEFAULT_PACKAGE_MANAGERS.map((comm) => ({ comm, kinds: WatchKind.PACKAGE_MANAGER }))];

function open(addon: string): LoaderLike {
  const { Loader } = require(addon) as { Loader: new (o: object) => LoaderLike };
  // Builds before the first stage ignore watchPrefilter.
  const l = new Loader({ watchPrefilter: execWatchPrefilterFor(watch) });
  l.load();
  l.attach();
  try {
    setExecWatch(l as unknown as Parameters<typeof setExecWatch>[0], watch);
  } catch {
    /* an older build: no such map */
  }
  return l;
}

const execStats = (l: LoaderLike) => l.programStats().find((p) => p.name === 'sched_process_exec')!;

export async function kernelAb(other: string, execs = 500, rounds = 4, command = '/bin/busybox-img true'): Promise<Array<Record<string, string | number>>> {
  const statsPath = '/proc/sys/kernel/bpf_stats_enabled';
  const prevStats = readFileSync(statsPath, 'utf8').trim();
  writeFileSync(statsPath, '1');
  const ct = new MiniContainer();
  const ours = process.env.KERNEL_AB_THIS ? resolve(process.env.KERNEL_AB_THIS) : join(repoRoot, 'native', 'build', 'Release', 'ebpf_napi_loader.node');
  const rows: Array<Record<string, string | number>> = [];
  let prep = '';
  if (command === 'drift') {
    prep = 'cp /bin/busybox /tmp/busybox-drift;';
    command = '/tmp/busybox-drift true';
  }
  try {
    const diffs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [ours, other] : [other, ours];
      const loaders = order.map(open);
      const before = loaders.map(execStats);
      const r = ct.run(`${prep} i=0; while [ $i -lt ${execs} ]; do ${command}; i=$((i+1)); done`, { timeoutMs: 300_000 });
      if (r.status !== 0) throw new Error(`exec loop failed: ${r.stderr}`);
      const after = loaders.map(execStats);
      const ns = (i: number) => (after[i]!.runTimeNs - before[i]!.runTimeNs) / (after[i]!.runCount - before[i]!.runCount);
      const iOurs = order.indexOf(ours);
      const iOther = order.indexOf(other);
      rows.push({
        round,
        first: iOurs === 0 ? 'this build' : 'other',
        runs: after[iOurs]!.runCount - before[iOurs]!.runCount,
        'this build ns/exec': Math.round(ns(iOurs)),
        'other ns/exec': Math.round(ns(iOther)),
        difference: `${ns(iOurs) - ns(iOther) >= 0 ? '+' : ''}${Math.round(ns(iOurs) - ns(iOther))} ns`,
      });
      diffs.push(ns(iOurs) - ns(iOther));
      for (const l of loaders) l.close();
    }
    // Each pair of rounds has both attach orders: its mean cancels the
    // first-attached program's cold-cache penalty.
    const pairs: number[] = [];
    for (let i = 0; i + 1 < diffs.length; i += 2) pairs.push((diffs[i]! + diffs[i + 1]!) / 2);
    const summary = (name: string, xs: number[]) => {
      xs.sort((a, b) => a - b);
      const q = (p: number) => Math.round(xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!);
      rows.push({ round: name, first: '', runs: '', 'this build ns/exec': '', 'other ns/exec': '', difference: `${q(0.5) >= 0 ? '+' : ''}${q(0.5)} ns (quartiles ${q(0.25)} … ${q(0.75)})` });
    };
    summary('median', diffs);
    summary('median of pairs', pairs);
  } finally {
    ct.destroy();
    writeFileSync(statsPath, prevStats);
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const other = process.argv[2];
  if (!other) {
    console.error('usage: kernel-ab.js <other ebpf_napi_loader.node> [execs] [rounds] [command]');
    process.exit(2);
  }
  kernelAb(resolve(other), Number(process.argv[3] ?? 500), Number(process.argv[4] ?? 4), process.argv[5]).then((rows) => console.table(rows));
}
