// Rows 1c-1e: what prevention costs in the kernel, by the kernel's own
// accounting (bpf_stats). Image-binary execs are measured with prevention on
// and off in the same run, in alternating rounds (off-on, on-off) so the
// VM's drift hits both alike; then a dropped binary that is stopped (SIGKILL) on every exec, and
// the same dropped binary with prevention off (the full record only).
import { readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MiniContainer, containerCgroup } from '../test/helpers/minicontainer.js';
import { unifiedCgroupRoot } from '../src/prevent/controller.js';
import { configValue, containerKey, containerValue } from '../src/prevent/maps.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);

export interface PreventionCost {
  imageOffNs: number;
  imageOnNs: number;
  imageExecs: number;
  droppedOffNs: number;
  preventedNs: number;
  prevented: number;
  droppedExecs: number;
}

interface Prog {
  name: string;
  runTimeNs: number;
  runCount: number;
}

const nsInode = (n: string) => Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/self/ns/${n}`))![1]);

export async function preventionCost(execs = 500, rounds = 4): Promise<PreventionCost> {
  const statsPath = '/proc/sys/kernel/bpf_stats_enabled';
  const prevStats = readFileSync(statsPath, 'utf8').trim();
  writeFileSync(statsPath, '1');
  const ct = new MiniContainer();
  // Prevention only in this benchmark's own container: other work on the
  // machine (unknown containers) is never stopped.
  const root = unifiedCgroupRoot();
  if (!root) throw new Error('prevention bench needs the unified (v2) cgroup hierarchy');
  const cg = containerCgroup(root);
  const { Loader } = require(join(repoRoot, 'native', 'build', 'Release', 'ebpf_napi_loader.node'));
  const loader = new Loader({ hostMntNs: nsInode('mnt'), hostPidNs: nsInode('pid') });
  try {
    loader.load();
    loader.attachProgram('sched_process_exec');
    const drain = Buffer.alloc(4 << 20);
    const exec = (): Prog => loader.programStats().find((p: Prog) => p.name === 'sched_process_exec');
    loader.mapUpdate('prevent_containers', containerKey(statSync(cg.path, { bigint: true }).ino), containerValue(0x3f, 0));
    const prevention = (enabled: boolean) =>
      loader.mapUpdate('prevent_config', Buffer.alloc(4), configValue({ enabled, dryRun: false, unknownKinds: 0, unknownExcSet: 0 }));
    const measure = (script: string): { ns: number; n: number } => {
      const a = exec();
      const r = ct.run(script, { timeoutMs: 300_000, cgroup: cg.path });
      if (r.status !== 0) throw new Error(`exec loop failed: ${r.stderr}`);
      const b = exec();
      while (loader.consume(drain) > 0);
      return { ns: b.runTimeNs - a.runTimeNs, n: b.runCount - a.runCount };
    };
    const loop = (n: number, cmd: string, prep = '') => `${prep} i=0; while [ $i -lt ${n} ]; do ${cmd}; i=$((i+1)); done`;
    const off = { ns: 0, n: 0 };
    const on = { ns: 0, n: 0 };
    for (let r = 0; r < rounds; r++) {
      // off-on, then on-off: neither side always runs second
      const order = r % 2 === 0 ? ([[false, off], [true, on]] as const) : ([[true, on], [false, off]] as const);
      for (const [enabled, acc] of order) {
        prevention(enabled);
        const m = measure(loop(Math.ceil(execs / rounds), '/bin/busybox-img true'));
        acc.ns += m.ns;
        acc.n += m.n;
      }
    }
    // Dropped binary: with prevention off every exec runs and is recorded; on,
    // every one is also stopped. The loop shell and cp are image execs in the
    // count on both sides alike.
    const dropped = Math.ceil(execs / 2);
    prevention(false);
    const droppedOff = measure(loop(dropped, '/tmp/busybox-drift true', 'cp /bin/busybox /tmp/busybox-drift;'));
    prevention(true);
    const killedBefore = loader.stats().prevented as number;
    const droppedOn = measure(loop(dropped, '/tmp/busybox-drift true', 'cp /bin/busybox /tmp/busybox-drift;'));
    const prevented = (loader.stats().prevented as number) - killedBefore;
    return {
      imageOffNs: off.ns / off.n,
      imageOnNs: on.ns / on.n,
      imageExecs: on.n + off.n,
      droppedOffNs: droppedOff.ns / droppedOff.n,
      preventedNs: droppedOn.ns / droppedOn.n,
      prevented,
      droppedExecs: droppedOn.n,
    };
  } finally {
    loader.close();
    ct.destroy();
    cg.remove();
    writeFileSync(statsPath, prevStats);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  preventionCost(Number(process.argv[2] ?? 500)).then((r) => console.table(r));
}
