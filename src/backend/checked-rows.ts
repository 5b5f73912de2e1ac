// A checked finding as the SQLite store writes it: its column values, what
// the fleet view needs, and its JSON body. The check thread sends a request's
// rows to the store thread as UTF-8 bytes (fields joined by NUL, which no
// checked finding contains), moved, not copied: a structured clone of 512
// decoded findings would be thousands of objects.
import type { FindingJson } from '#gen/finding-json.js';
import { COLUMNS, rowOf } from './columns.js';
import { bodyJson } from './validate.js';
import { fleetKey, type FleetFields, type FleetKey } from './fleet.js';

export interface StoreRow {
  /** In COLUMNS order. */
  values: Array<string | number>;
  /** Null when the finding has no sha256. */
  fleet: FleetKey | null;
  /** A dedup summary: the id of the finding it updates. */
  foldOf: string;
  /** The body without `fleet` (the store appends it). */
  json: string;
}

/** The row of a checked finding (see validate.ts). */
export function storeRowOf(f: FindingJson): StoreRow {
  let json: string;
  if (f.fleet) {
    // not from the check (which drops a sender's fleet): the store sets it
    const { fleet: _, ...rest } = f;
    json = JSON.stringify(rest);
  } else json = bodyJson(f);
  return { values: rowOf(f), fleet: fleetKey(f), foldOf: f.foldOf ?? '', json };
}

/** The body as stored: the finding's JSON with the backend's `fleet` last (where JSON.stringify puts a key set last). */
export function bodyWithFleet(json: string, fleet: FleetFields | null): string {
  return fleet ? `${json.slice(0, -1)},"fleet":${JSON.stringify(fleet)}}` : json;
}

const NC = COLUMNS.length;
// per row: the columns, has-sha256, sha256, container, image, host, foldOf, json
const FIELDS = NC + 7;
const NUMERIC = COLUMNS.map((c) => c.pgType === 'INTEGER');

/** Rows as UTF-8 bytes (ends[i] is where row i ends), to be moved to another thread without a copy. */
export interface PackedRows {
  bytes: Uint8Array;
  ends: Uint32Array;
}

/** A buffer is at least this large (a request of 512 findings packs to ~1.3 MB), so that most can be packed into again. */
const MIN_PACKED_BYTES = 1536 << 10;

const rowText = (r: StoreRow) => {
  const k = r.fleet;
  const fleet = k ? ['1', k.sha256, k.container, k.image, k.host] : ['', '', '', '', ''];
  return [...r.values.map(String), ...fleet, r.foldOf, r.json].join('\u0000');
};

/**
 * Packs rows one at a time, as each finding is checked, into a scratch buffer
 * that is reused: a decoded finding dies young, and what a request's rows
 * hold until the store thread takes them is bytes outside the JS heap.
 * Bytes, not one string: a string of a whole request (over a megabyte) would
 * live in V8's large-object space, which only a full GC frees; holding the
 * decoded findings of a request until it is packed kept the event loop's
 * young generation growing (every scavenge found them alive).
 */
export class RowPacker {
  private scratch = Buffer.allocUnsafeSlow(1 << 20);
  private at = 0;
  private ends: number[] = [];

  add(r: StoreRow): void {
    const text = rowText(r);
    const most = text.length * 3; // UTF-8 bytes of a UTF-16 code unit
    if (this.at + most > this.scratch.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(this.scratch.length * 2, this.at + most));
      this.scratch.copy(bigger, 0, 0, this.at);
      this.scratch = bigger;
    }
    this.at += this.scratch.write(text, this.at, 'utf8');
    this.ends.push(this.at);
  }

  get count(): number {
    return this.ends.length;
  }

  /**
   * The rows added since the last take, in a buffer of their own (to be moved
   * to another thread): one from `spare` that is large enough, if any.
   */
  take(spare: ArrayBuffer[] = []): PackedRows {
    const i = spare.findIndex((b) => b.byteLength >= this.at);
    const bytes = i >= 0 ? new Uint8Array(spare.splice(i, 1)[0]!, 0, this.at) : new Uint8Array(new ArrayBuffer(Math.max(this.at, MIN_PACKED_BYTES)), 0, this.at);
    this.scratch.copy(bytes, 0, 0, this.at);
    const out = { bytes, ends: Uint32Array.from(this.ends) };
    this.at = 0;
    this.ends = [];
    return out;
  }
}

export function packRows(rows: StoreRow[]): PackedRows {
  const packer = new RowPacker();
  for (const r of rows) packer.add(r);
  return packer.take();
}

export function unpackRows(packed: PackedRows): StoreRow[] {
  const { ends } = packed;
  const bytes = Buffer.from(packed.bytes.buffer, packed.bytes.byteOffset, packed.bytes.byteLength);
  const timeAt = COLUMNS.findIndex((c) => c.name === 'time');
  const rows: StoreRow[] = new Array(ends.length);
  for (let r = 0; r < ends.length; r++) {
    const p = bytes.toString('utf8', r ? ends[r - 1] : 0, ends[r]).split('\u0000');
    if (p.length !== FIELDS) throw new Error(`packed row ${r}: ${p.length} fields`);
    const values: Array<string | number> = p.slice(0, NC);
    for (let i = 0; i < NC; i++) if (NUMERIC[i]) values[i] = Number(values[i]);
    const fleet = p[NC] ? { sha256: p[NC + 1]!, time: values[timeAt] as string, container: p[NC + 2]!, image: p[NC + 3]!, host: p[NC + 4]! } : null;
    rows[r] = { values, fleet, foldOf: p[NC + 5]!, json: p[NC + 6]! };
  }
  return rows;
}
