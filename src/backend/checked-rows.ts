// A checked finding as the SQLite store writes it: its column values, what
// the fleet view needs, and its JSON body. The check thread sends a request's
// rows to the store thread as UTF-8 bytes (fields joined by NUL, which no
// checked finding contains), moved, not copied: a structured clone of 512
// decoded findings would be thousands of objects.
import type { FindingJson } from '#gen/finding-json.js';
import { COLUMNS, rowOf } from './columns.js';
import { bodyJson, fleetTail } from './validate.js';
import { fleetKey, type FleetFields, type FleetKey } from './fleet.js';

export interface StoreRow {
  /** In COLUMNS order. */
  values: Array<string | number>;
  /** Null when the finding has no sha256. */
  fleet: FleetKey | null;
  /** A dedup summary: the id of the finding it updates. */
  foldOf: string;
  /**
   * The body without `fleet` (the store appends it): as UTF-8 bytes from the
   * check's fast path (wire-row.ts), which stores copy as they are.
   */
  json: string | Buffer;
}

/** The body of a row as text. */
export const jsonText = (r: StoreRow): string => (typeof r.json === 'string' ? r.json : r.json.toString('utf8'));

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
  return fleet ? json.slice(0, -1) + fleetTail(fleet) : json;
}

/** The UTF-8 bytes bodyWithFleet of a row takes, at most. */
const bodyBytesMost = (r: StoreRow, tail: string) => (typeof r.json === 'string' ? r.json.length * 3 : r.json.length) + tail.length * 3;

/** Writes bodyWithFleet of a row as UTF-8 at `at` of `out` (room: bodyBytesMost); returns the bytes written. */
function writeBody(out: Buffer, at: number, r: StoreRow, tail: string): number {
  // with a tail, the body's closing brace gives way to it
  const body = typeof r.json === 'string' ? (tail ? r.json.slice(0, -1) : r.json) : tail ? r.json.subarray(0, -1) : r.json;
  const n = typeof body === 'string' ? out.write(body, at, 'utf8') : body.copy(out, at);
  return n + (tail ? out.write(tail, at + n, 'utf8') : 0);
}

const tailOf = (fleet: FleetFields | null | undefined) => (fleet ? fleetTail(fleet) : '');

/**
 * bodyWithFleet of a row, as text, or as UTF-8 bytes in `scratch` (valid
 * until its next use) when the row's body is bytes.
 */
export class BodyWriter {
  private scratch = Buffer.allocUnsafeSlow(64 << 10);

  body(r: StoreRow, fleet: FleetFields | null): string | Uint8Array {
    if (typeof r.json === 'string') return bodyWithFleet(r.json, fleet);
    if (!fleet) return r.json;
    const tail = fleetTail(fleet);
    const most = bodyBytesMost(r, tail);
    if (most > this.scratch.length) this.scratch = Buffer.allocUnsafeSlow(most);
    return this.scratch.subarray(0, writeBody(this.scratch, 0, r, tail));
  }
}

/**
 * The bodies of rows as stored (bodyWithFleet), joined by `separator` (a byte
 * no JSON text holds raw), as UTF-8 bytes in one buffer.
 */
export function bodiesWithFleet(rows: StoreRow[], fleet: Array<FleetFields | null>, separator: number): Buffer {
  const tails = rows.map((_, i) => tailOf(fleet[i]));
  const out = Buffer.allocUnsafe(rows.reduce((n, r, i) => n + 1 + bodyBytesMost(r, tails[i]!), 0));
  let at = 0;
  rows.forEach((r, i) => {
    if (i) out[at++] = separator;
    at += writeBody(out, at, r, tails[i]!);
  });
  return out.subarray(0, at);
}

const NC = COLUMNS.length;
// per row: its head (has-sha256, sha256, time, container, image, host, foldOf), the columns, json
const HEAD = 7;
const FIELDS = HEAD + NC + 1;
const NUMERIC = COLUMNS.map((c) => c.pgType === 'INTEGER');

/** Rows as UTF-8 bytes (ends[i] is where row i ends), to be moved to another thread without a copy. */
export interface PackedRows {
  bytes: Uint8Array;
  ends: Uint32Array;
}

/** A buffer is at least this large (a request of 512 findings packs to ~1.3 MB), so that most can be packed into again. */
const MIN_PACKED_BYTES = 1536 << 10;

/** A row's fields but its body, each followed by NUL. */
const rowHead = (r: StoreRow) => {
  const k = r.fleet;
  const head = k ? ['1', k.sha256, k.time, k.container, k.image, k.host] : ['', '', '', '', '', ''];
  return [...head, r.foldOf, ...r.values.map(String), ''].join('\u0000');
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
    const text = rowHead(r);
    // UTF-8 bytes: at most 3 of a UTF-16 code unit
    const most = text.length * 3 + (typeof r.json === 'string' ? r.json.length * 3 : r.json.length);
    if (this.at + most > this.scratch.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(this.scratch.length * 2, this.at + most));
      this.scratch.copy(bigger, 0, 0, this.at);
      this.scratch = bigger;
    }
    this.at += this.scratch.write(text, this.at, 'utf8');
    this.at += typeof r.json === 'string' ? this.scratch.write(r.json, this.at, 'utf8') : r.json.copy(this.scratch, this.at);
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

/** What the store needs of every row of a request before writing any: its fleet key and foldOf. */
export interface RowHead {
  fleet: FleetKey | null;
  foldOf: string;
}

/** Rows the store reads one at a time: the heads of all first, then each row as it is written. */
export interface RowSource {
  readonly length: number;
  head(i: number): RowHead;
  row(i: number): StoreRow;
}

export const rowSourceOf = (rows: StoreRow[]): RowSource => ({ length: rows.length, head: (i) => rows[i]!, row: (i) => rows[i]! });

/**
 * Packed rows, each decoded only when the store writes it (a head reads only
 * the row's first fields): the store thread holds one row's strings at a
 * time, which die in its small young generation, instead of a request's 512
 * rows (megabytes), which outlived it and were promoted to the old space.
 */
export class PackedRowReader implements RowSource {
  private readonly bytes: Buffer;
  private readonly ends: Uint32Array;

  constructor(packed: PackedRows) {
    this.bytes = Buffer.from(packed.bytes.buffer, packed.bytes.byteOffset, packed.bytes.byteLength);
    this.ends = packed.ends;
  }

  get length(): number {
    return this.ends.length;
  }

  private start(i: number): number {
    return i ? this.ends[i - 1]! : 0;
  }

  head(i: number): RowHead {
    const end = this.ends[i]!;
    let at = this.start(i);
    for (let f = 0; f < HEAD && at >= 0; f++) at = this.bytes.indexOf(0, at + (f ? 1 : 0));
    if (at < 0 || at > end) throw new Error(`packed row ${i}: no head`);
    return headOf(this.bytes.toString('utf8', this.start(i), at).split('\u0000'), i);
  }

  /** The row; its body is a view of the packed bytes, valid until they are handed back. */
  row(i: number): StoreRow {
    const start = this.start(i);
    const end = this.ends[i]!;
    const bodyAt = this.bytes.lastIndexOf(0, end - 1) + 1; // the body is last, and holds no NUL
    const p = bodyAt > start ? this.bytes.toString('utf8', start, bodyAt - 1).split('\u0000') : [];
    if (p.length !== FIELDS - 1) throw new Error(`packed row ${i}: ${p.length + 1} fields`);
    const values: Array<string | number> = p.slice(HEAD, HEAD + NC);
    for (let c = 0; c < NC; c++) if (NUMERIC[c]) values[c] = Number(values[c]);
    return { values, ...headOf(p, i), json: this.bytes.subarray(bodyAt, end) };
  }
}

function headOf(p: string[], i: number): RowHead {
  if (p.length < HEAD) throw new Error(`packed row ${i}: ${p.length} fields`);
  const fleet = p[0] ? { sha256: p[1]!, time: p[2]!, container: p[3]!, image: p[4]!, host: p[5]! } : null;
  return { fleet, foldOf: p[6]! };
}

export function unpackRows(packed: PackedRows): StoreRow[] {
  const reader = new PackedRowReader(packed);
  return Array.from({ length: reader.length }, (_, i) => reader.row(i));
}
