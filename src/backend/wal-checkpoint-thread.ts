// The checkpoint thread (see wal-checkpointer.ts): waits for the writer's
// commits and copies them into the database file. It blocks in Atomics.wait
// and needs no event loop.
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';
import { PASS_INTERVAL_MS, Slot } from './wal-checkpointer.js';

const { path, state } = workerData as { path: string; state: Int32Array };
const db = new DatabaseSync(path);
db.exec('PRAGMA busy_timeout = 5000');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
Atomics.store(state, Slot.PageSize, Number((db.prepare('PRAGMA page_size').get() as { page_size: number }).page_size));
parentPort!.postMessage({ ready: true });

let seen = 0;
let lastPass = 0;
while (!Atomics.load(state, Slot.Stop)) {
  Atomics.wait(state, Slot.Commits, seen);
  const early = lastPass + PASS_INTERVAL_MS - Date.now();
  if (early > 0) Atomics.wait(state, Slot.Urgent, 0, early);
  Atomics.store(state, Slot.Urgent, 0);
  const commits = Atomics.load(state, Slot.Commits);
  if (commits === seen || Atomics.load(state, Slot.Stop)) continue;
  seen = commits;
  lastPass = Date.now();
  try {
    // frames committed up to here are copied; a reader's older snapshot can hold some back
    checkpoint.get();
  } catch {
    // busy (another connection's checkpoint): the next commit tries again
  }
  Atomics.store(state, Slot.Passed, commits);
  Atomics.notify(state, Slot.Passed);
}
// The writer has stopped: everything into the database file, and the WAL
// emptied, even when another connection (the server's reader) outlives the
// writer's and keeps the last close from removing it. A reader in the middle
// of a query holds it back: then the WAL stays, to be used on the next start.
try {
  db.exec('PRAGMA busy_timeout = 200; PRAGMA wal_checkpoint(TRUNCATE)');
} catch {
  // busy: see above
} finally {
  db.close();
}
