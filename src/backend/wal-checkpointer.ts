// WAL checkpoints of the backend's SQLite file, off the writing thread.
// SQLite's auto-checkpoint runs inside the COMMIT that crosses its threshold:
// the store thread copied hundreds of MiB into the database file (and synced
// it) while every request of the next group waited. Here the writer commits
// with auto-checkpoint off, and a thread of its own, with its own connection,
// copies the commits' pages into the database file (PASSIVE: it never blocks
// the writer) while the writer builds the next groups, at most every
// PASS_INTERVAL_MS: a page that several commits rewrote (the right edges of
// the indexes, one per origin) is copied once.
//
// A WAL is only reused from its start when the writer begins a transaction
// with every frame copied; a checkpoint that runs beside a busy writer never
// catches up by itself, so once the WAL holds WAL_BOUND_BYTES the writer waits
// (see beforeWrite) for a checkpoint of its last commit before it begins the
// next one. The WAL file then stays under the bound plus one group's pages.
import { once } from 'node:events';
import { closeSync, openSync, readSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

/** The WAL's size, past which the writer lets the checkpoint catch up. */
export const WAL_BOUND_BYTES = 64 << 20;
/** Checkpoints start at most this often, unless the writer waits for one. */
export const PASS_INTERVAL_MS = 250;
/** The longest the writer waits for it. */
const CATCH_UP_MAX_MS = 1_000;

/** Slots of the state both threads share (an Int32Array over a SharedArrayBuffer). */
export const Slot = {
  /** Transactions the writer committed. */
  Commits: 0,
  /** Commits the last finished checkpoint covered (a reader's older snapshot can hold some of their pages back). */
  Passed: 1,
  /** Set by stop(). */
  Stop: 2,
  /** The database's page size, from the checkpoint thread. */
  PageSize: 3,
  /** Set by a writer that waits for a checkpoint: it runs now. */
  Urgent: 4,
} as const;

/**
 * Where the wal-index (the -shm file) keeps mxFrame, the number of frames in
 * the WAL, in the machine's byte order (https://sqlite.org/walformat.html,
 * 2.1); SQLite's own writers and readers read it there.
 */
const MX_FRAME_AT = 16;

export class WalCheckpointer {
  private readonly mxFrame = new Uint32Array(1);
  private shm?: number;

  private constructor(private readonly worker: Worker, private readonly state: Int32Array, private readonly path: string, private readonly boundBytes: number) {}

  /** The checkpoint thread for the database at `path` (its writer must run with wal_autocheckpoint = 0). */
  static async start(path: string, boundBytes = WAL_BOUND_BYTES): Promise<WalCheckpointer> {
    const state = new Int32Array(new SharedArrayBuffer(5 * 4));
    const worker = new Worker(new URL('./wal-checkpoint-thread.js', import.meta.url), {
      workerData: { path, state },
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 },
    });
    const [m] = (await Promise.race([once(worker, 'message'), once(worker, 'error').then(([err]) => Promise.reject(err))])) as [{ ready: boolean }];
    if (!m.ready) throw new Error('WAL checkpoint thread did not start');
    return new WalCheckpointer(worker, state, path, boundBytes);
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
    if (this.walFrames() * Atomics.load(this.state, Slot.PageSize) < this.boundBytes) return;
    const commits = Atomics.load(this.state, Slot.Commits);
    Atomics.store(this.state, Slot.Urgent, 1);
    Atomics.notify(this.state, Slot.Urgent);
    const deadline = Date.now() + CATCH_UP_MAX_MS;
    for (let passed = Atomics.load(this.state, Slot.Passed); passed !== commits && Date.now() < deadline; passed = Atomics.load(this.state, Slot.Passed)) {
      Atomics.wait(this.state, Slot.Passed, passed, Math.max(1, deadline - Date.now()));
    }
  }

  private walFrames(): number {
    this.shm ??= openSync(`${this.path}-shm`, 'r');
    readSync(this.shm, this.mxFrame, 0, 4, MX_FRAME_AT);
    return this.mxFrame[0]!;
  }

  /** Ends the thread after a last checkpoint that empties the WAL (the writer must not write any more). */
  async stop(): Promise<void> {
    Atomics.store(this.state, Slot.Stop, 1);
    Atomics.notify(this.state, Slot.Commits);
    Atomics.notify(this.state, Slot.Urgent);
    if (this.worker.threadId >= 0) await once(this.worker, 'exit');
    if (this.shm !== undefined) closeSync(this.shm);
  }
}
