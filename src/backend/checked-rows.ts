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

// Bytes, not one string: a string of a whole request (over a megabyte) would
// live in V8's large-object space, which only a full GC frees; row by row the
// strings stay small and die young.
export function packRows(rows: StoreRow[]): PackedRows {
  const texts = rows.map((r) => {
    const k = r.fleet;
    const fleet = k ? ['1', k.sha256, k.container, k.image, k.host] : ['', '', '', '', ''];
    return [...r.values.map(String), ...fleet, r.foldOf, r.json].join('\u0000');
  });
  const ends = new Uint32Array(texts.length);
  let total = 0;
  texts.forEach((t, i) => (ends[i] = total += Buffer.byteLength(t)));
  const bytes = Buffer.allocUnsafeSlow(total);
  texts.forEach((t, i) => bytes.write(t, i ? ends[i - 1]! : 0, 'utf8'));
  return { bytes, ends };
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
