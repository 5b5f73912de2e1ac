// BPF programs held by one process (its bpf-prog and bpf-link fds name
// their program's id in fdinfo): leak checks that count only what this
// test's sensor loaded, never the programs of other sensors running on the
// same machine.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

interface ProgInfo {
  id: number;
  name?: string;
}

function programs(): ProgInfo[] {
  const r = spawnSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' });
  return r.status === 0 ? (JSON.parse(r.stdout) as ProgInfo[]) : [];
}

/** Ids of the programs that process pid holds. */
export function programIdsOf(pid: number): number[] {
  const ids = new Set<number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (!/^anon_inode:bpf[-_](prog|link)/.test(readlinkSync(`/proc/${pid}/fd/${fd}`))) continue;
      const m = /^prog_id:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.add(Number(m[1]));
    } catch {
      /* closed meanwhile */
    }
  }
  return [...ids];
}

/** Which of ids are still loaded after up to timeoutMs (the kernel frees programs after an RCU grace period). */
export async function programsStillLoaded(ids: number[], timeoutMs = 5_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const live = new Set(programs().map((p) => p.id));
    const left = ids.filter((id) => live.has(id));
    if (!left.length || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}
