// WAL checkpoints of the backend's SQLite file, off the writing thread.
// SQLite's auto-checkpoint runs inside the COMMIT that crosses its threshold:
// the store thread copied hundreds of MiB into the database file (and synced
// it) while every request of the next group waited. Here the writer commits
// with auto-checkpoint off, and a thread of its own, with its own connection,
// copies each commit's pages into the database file (PASSIVE: it never blocks
// the writer) while the writer builds the next group.
//
// A WAL is only reused from its start when the writer begins a transaction
// with every frame copied; a checkpoint that runs beside a busy writer never
// catches up by itself, so once the WAL holds WAL_BOUND_BYTES the writer waits
// (see beforeWrite) for the checkpoint of the last commit before it begins the
// next one. The WAL file then stays under the bound plus one group's pages.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

/** The WAL's size, past which the writer lets the checkpoint catch up. */
export const WAL_BOUND_BYTES = 64 << 20;
/** The longest the writer waits for it. */
const CATCH_UP_MAX_MS = 1_000;

/** Slots of the state both threads share (an Int32Array over a SharedArrayBuffer). */
export const Slot = {
  /** Transactions the writer committed. */
  Commits: 0,
  /** Commits the last finished checkpoint covered (a reader's older snapshot can hold some of their pages back). */
  Passed: 1,
  /** Frames in the WAL at the last checkpoint. */
  Frames: 2,
  /** Set by stop(). */
  Stop: 3,
  /** The database's page size, from the checkpoint thread. */
  PageSize: 4,
} as const;

export class WalCheckpointer {
  private constructor(private readonly worker: Worker, private readonly state: Int32Array, private readonly boundBytes: number) {}

  /** The checkpoint thread for the database at `path` (its writer must run with wal_autocheckpoint = 0). */
  static async start(path: string, boundBytes = WAL_BOUND_BYTES): Promise<WalCheckpointer> {
    const state = new Int32Array(new SharedArrayBuffer(5 * 4));
    const worker = new Worker(new URL('./wal-checkpoint-thread.js', import.meta.url), {
      workerData: { path, state },
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 },
    });
    const [m] = (await Promise.race([once(worker, 'message'), once(worker, 'error').then(([err]) => Promise.reject(err))])) as [{ ready: boolean }];
    if (!m.ready) throw new Error('WAL checkpoint thread did not start');
    return new WalCheckpointer(worker, state, boundBytes);
  }

  /** After each COMMIT of the writer. */
  committed(): void {
    Atomics.add(this.state, Slot.Commits, 1);
    Atomics.notify(this.state, Slot.Commits);
  }

  /**
   * Before the writer's BEGIN: when the WAL has grown past the bound, waits
   * for the checkpoint of the last commit, so that this transaction writes
   * the WAL from its start again (unless a reader holds it).
   */
  beforeWrite(): void {
    const pageSize = Atomics.load(this.state, Slot.PageSize);
    if (Atomics.load(this.state, Slot.Frames) * pageSize < this.boundBytes) return;
    const commits = Atomics.load(this.state, Slot.Commits);
    const deadline = Date.now() + CATCH_UP_MAX_MS;
    for (let passed = Atomics.load(this.state, Slot.Passed); passed !== commits && Date.now() < deadline; passed = Atomics.load(this.state, Slot.Passed)) {
      Atomics.wait(this.state, Slot.Passed, passed, Math.max(1, deadline - Date.now()));
    }
  }

  /** Ends the thread after a last checkpoint that empties the WAL (the writer must not write any more). */
  async stop(): Promise<void> {
    Atomics.store(this.state, Slot.Stop, 1);
    Atomics.notify(this.state, Slot.Commits);
    if (this.worker.threadId >= 0) await once(this.worker, 'exit');
  }
}
