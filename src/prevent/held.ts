// Interpreters the kernel held stopped (DW_EXEC_WATCH_HELD: SIGSTOP before
// their first instruction, in containers that prevent interpreted scripts):
// each gets exactly one verdict, kill or continue, sent through a pidfd
// opened while it is still stopped, so a reused pid is never signalled.
//
// What a container can do against it: a sibling process with the same uid
// can SIGCONT the held interpreter before the verdict; it then runs, and is
// still killed when its script is drift (late: the script may have started).
// That is counted (held_continued_early_total) and documented; closing it
// needs a kernel-side hold that signals cannot lift (BPF-LSM).
import { closeSync, readFileSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { userDev } from '../enrich/safe-open.js';
import { loadAddon } from '../native/loader.js';
import { BootClock, buildFinding } from '../pipeline/finding.js';
import { Metrics } from '../pipeline/metrics.js';
import type { Policy } from '../policy/policy-file.js';
import { PolicyStage } from '../policy/policy.js';
import interpretedScript from '../signatures/interpreted-script.js';
import type { DetectionEvent, HoldOutcome } from '../sdk/signature.js';

export type HoldVerdict = HoldOutcome;
export const HOLD_VERDICTS: readonly HoldVerdict[] = ['killed', 'continued', 'timeout_killed', 'timeout_continued', 'gone'];

export interface HoldSettings {
  timeoutMs: number;
  onTimeout: 'continue' | 'kill';
}

interface Signaller {
  pidfdOpen(pid: number): number;
  pidfdSendSignal(fd: number, signal: number): void;
}

/** /proc/<pid>/stat's state letter (T: stopped). */
function procState(procRoot: string, pid: number): string | undefined {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/**
 * Holds one stopped interpreter: opens its pidfd now (the process is the
 * record's: same executable inode, and stopped), and sends the verdict once.
 */
export class HeldExec {
  private fd: number | undefined;
  private decided: HoldVerdict | undefined;

  constructor(
    private readonly pid: number,
    exe: { dev: number; inode: bigint },
    private readonly metrics: Metrics,
    private readonly procRoot = '/proc',
    private readonly sig: Signaller = loadAddon(),
  ) {
    try {
      const fd = this.sig.pidfdOpen(pid);
      const st = statSync(`${procRoot}/${pid}/exe`, { bigint: true });
      if (st.ino === exe.inode && st.dev === userDev(exe.dev)) this.fd = fd;
      else closeSync(fd);
    } catch {
      this.fd = undefined;
    }
  }

  get verdict(): HoldVerdict | undefined {
    return this.decided;
  }

  /** Sends the verdict (once); kill when the script is drift, else continue. */
  decide(kill: boolean, timedOut = false): HoldVerdict {
    if (this.decided) return this.decided;
    let v: HoldVerdict = timedOut ? (kill ? 'timeout_killed' : 'timeout_continued') : kill ? 'killed' : 'continued';
    if (this.fd === undefined) v = 'gone';
    else {
      try {
        if (kill && procState(this.procRoot, this.pid) !== 'T') this.metrics.inc('held_continued_early_total');
        this.sig.pidfdSendSignal(this.fd, kill ? constants.signals.SIGKILL : constants.signals.SIGCONT);
      } catch {
        v = 'gone'; // it died meanwhile (killed by someone else)
      } finally {
        closeSync(this.fd);
        this.fd = undefined;
      }
    }
    this.decided = v;
    this.metrics.inc('held_execs_total', { verdict: v });
    return v;
  }
}

const clock = new BootClock();

/**
 * Would the policy's exceptions drop this event's drift.interpreted_script
 * finding? The same matching as the policy stage, on the finding the
 * signature would make (script path and hash included).
 */
export function scriptExcepted(policy: Policy, ev: DetectionEvent): boolean {
  if (!policy.exceptions.length) return false;
  let kept = false;
  new PolicyStage({ ...policy, signatures: {} }, new Metrics(), () => (kept = true)).apply(buildFinding(interpretedScript, ev, {}, '', clock));
  return !kept;
}
