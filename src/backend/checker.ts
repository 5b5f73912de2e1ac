/// <reference lib="es2024.arraybuffer" />
// The check stage of the SQLite ingest, on the event loop: decodes and checks
// each request (validate.ts) and moves its good findings, packed as bytes, to
// the store thread, so decoding runs beside SQLite's writes on the other core.
// (A thread of its own for this cost a third V8 heap, ~60 MiB of RSS.) One
// request per turn of the loop, so gRPC's own work gets in between; it checks
// ahead of the store by a bounded number of findings.
import type { MessagePort } from 'node:worker_threads';
import { checkAndPack, type IngestLimits, type PackedRequest } from './ingest.js';

/** Checked findings the store thread has not taken yet, at most. */
const MAX_AHEAD_ROWS = 8 << 10;

/** check stage → store thread */
export type Checked = { op: 'checked'; seq: number; packed: PackedRequest };
/**
 * store thread → check stage: rows it took into a transaction; `spare`: the
 * buffers of requests it is done with, moved back to be packed into again
 * (instead of a new megabyte per request, freed whenever the store thread's
 * garbage collector gets to it).
 */
export type Took = { op: 'took'; rows: number; spare?: ArrayBuffer[] };

/** Spare buffers kept, at most (a buffer is 1.5 MiB or more). */
const MAX_SPARE = 8;

export class Checker {
  private readonly queue: Array<{ seq: number; buf: Uint8Array }> = [];
  private ahead = 0;
  private readonly spare: ArrayBuffer[] = [];
  private scheduled = false;

  constructor(private readonly store: MessagePort, private readonly limits: IngestLimits) {
    store.on('message', (m: Took) => {
      this.ahead -= m.rows;
      for (const b of m.spare ?? []) {
        if (this.spare.length < MAX_SPARE) this.spare.push(b);
        else free(b);
      }
      this.schedule();
    });
  }

  push(seq: number, buf: Uint8Array): void {
    this.queue.push({ seq, buf });
    this.schedule();
  }

  close(): void {
    this.queue.length = 0;
    this.spare.length = 0;
    this.store.close();
  }

  private schedule(): void {
    if (this.scheduled || !this.queue.length || this.ahead >= MAX_AHEAD_ROWS) return;
    this.scheduled = true;
    setImmediate(() => this.checkOne());
  }

  private checkOne(): void {
    this.scheduled = false;
    if (!this.queue.length || this.ahead >= MAX_AHEAD_ROWS) return;
    const m = this.queue.shift()!;
    const packed = checkAndPack(m.buf, this.limits, this.spare);
    freeRequest(m.buf);
    if (packed.kind === 'rows') this.ahead += packed.count;
    const moved = packed.kind === 'rows' ? [packed.rows.bytes.buffer as ArrayBuffer, packed.rows.ends.buffer as ArrayBuffer] : [];
    this.store.postMessage({ op: 'checked', seq: m.seq, packed } satisfies Checked, moved);
    this.schedule();
  }
}

/**
 * Gives a buffer's memory back now (detaching it) instead of when the event
 * loop's garbage collector frees its object: a request waits in the queue
 * long enough for its object to reach the old space, which a full collection
 * frees every few hundred milliseconds, and meanwhile tens of megabytes of
 * request bytes were held (process RSS) that nothing would read again.
 */
const free = (b: ArrayBuffer) => void b.transfer(0);

/** gRPC's framing before the message in the buffer it assembled a request in. */
const GRPC_FRAME_HEADER = 5;

/** A request's bytes, if their buffer holds nothing else (gRPC assembles each large message in a buffer of its own). */
function freeRequest(buf: Uint8Array): void {
  const b = buf.buffer;
  if (b instanceof ArrayBuffer && !b.detached && b.byteLength - buf.byteLength <= GRPC_FRAME_HEADER) free(b);
}
