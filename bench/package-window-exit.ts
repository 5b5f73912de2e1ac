// Row 10: how late a package-manager window closes. A child prints the wall
// clock and exits; the addon's thread stamps the exit when its pidfd becomes
// readable. stamp − printed is an upper bound on the slack a window has after
// the manager's exit (it includes the child's own exit). Alternated with the
// JS thread busy for 50 ms across the exit, as when a batch is being judged:
// the stamp must not wait for the event loop (JS learns it only afterwards).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { pidfdExits } from '../src/enrich/package-windows.js';
import { processExitAddon } from '../src/native/process-exit.js';

export interface ExitSlack {
  idle: { p50Us: number; p99Us: number; maxUs: number };
  busy: { p50Us: number; p99Us: number; maxUs: number; jsP50Us: number };
  runs: number;
}

function startTimeNs(pid: number): bigint {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const ticks = BigInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!);
  const c = processExitAddon().clocks();
  return ticks * (1_000_000_000n / BigInt(c.clkTck)) - (c.boottimeNs - c.monotonicNs);
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;

async function once1(exits: ReturnType<typeof pidfdExits>, busyMs: number): Promise<{ slackUs: number; jsUs: number }> {
  const child = spawn('/bin/sh', ['-c', 'read x; date +%s%N'], { stdio: ['pipe', 'pipe', 'inherit'] });
  await once(child, 'spawn');
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  let stamp: bigint | undefined;
  let jsAt: bigint | undefined;
  const done = new Promise<void>((resolve) => {
    const w = exits.watch(child.pid!, startTimeNs(child.pid!), (ns) => {
      stamp = ns;
      jsAt = BigInt(Date.now()) * 1_000_000n;
      resolve();
    });
    if (!w) throw new Error('child not watched');
  });
  child.stdin!.end('go\n');
  if (busyMs) {
    const until = Date.now() + busyMs;
    while (Date.now() < until) {
      /* the JS thread is busy across the exit */
    }
  }
  await Promise.all([done, once(child, 'close')]);
  const printed = BigInt(out.trim());
  return { slackUs: Number(stamp! - printed) / 1e3, jsUs: Number(jsAt! - printed) / 1e3 };
}

export async function exitSlack(runs = 100): Promise<ExitSlack> {
  const exits = pidfdExits();
  const idle: number[] = [];
  const busy: number[] = [];
  const busyJs: number[] = [];
  const alive = setInterval(() => undefined, 1_000); // the exit watcher does not hold the process open by itself
  try {
    for (let i = 0; i < runs; i++) {
      idle.push((await once1(exits, 0)).slackUs);
      const b = await once1(exits, 50);
      busy.push(b.slackUs);
      busyJs.push(b.jsUs);
    }
  } finally {
    clearInterval(alive);
    exits.close();
  }
  return {
    runs,
    idle: { p50Us: pct(idle, 50), p99Us: pct(idle, 99), maxUs: Math.max(...idle) },
    busy: { p50Us: pct(busy, 50), p99Us: pct(busy, 99), maxUs: Math.max(...busy), jsP50Us: pct(busyJs, 50) },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await exitSlack(Number(process.argv[2] ?? 100));
  const f = (n: number) => `${Math.round(n).toLocaleString('en')} µs`;
  console.log(`package-window exit slack, ${r.runs} runs each (stamp − the child's last printed time):`);
  console.log(`  JS idle:           p50 ${f(r.idle.p50Us)}, p99 ${f(r.idle.p99Us)}, max ${f(r.idle.maxUs)}`);
  console.log(`  JS busy for 50 ms: p50 ${f(r.busy.p50Us)}, p99 ${f(r.busy.p99Us)}, max ${f(r.busy.maxUs)} (JS itself learnt it after p50 ${f(r.busy.jsP50Us)})`);
}
