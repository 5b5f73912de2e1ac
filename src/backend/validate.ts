// Per-finding validation. A request is split into its findings before any of
// them is decoded, so one bad finding (invalid UTF-8, a NUL, a time that a
// store would refuse, too large) is named and rejected on its own and the
// others are stored. Nothing a store could refuse gets past this file.
import { isUtf8 } from 'node:buffer';
import protobuf from 'protobufjs';
import { driftwatch } from '#gen/finding.js';
import descriptor from '#gen/finding-descriptor.js';
import type { FindingJson } from '#gen/finding-json.js';

const { Finding } = driftwatch.v1;
const TO_JSON = { longs: String, enums: String, arrays: true } as const;

/** Largest finding accepted, as JSON; larger ones are truncated first. */
export const MAX_FINDING_BYTES = 64 << 10;
/** Longest value kept in an indexed column (btree entries have a size limit). */
export const MAX_COLUMN_CHARS = 512;
/** A finding's id, at most (characters). */
export const MAX_ID_CHARS = 128;
const MAX_LABEL_VALUE = 1024;
const TRUNCATED_MARK = '…[truncated]';
/** The label that says labels were cut to fit (their values or their number). */
export const LABELS_TRUNCATED = 'driftwatch.io/labels-truncated';

export interface Rejection {
  /** Position of the finding in the request. */
  index: number;
  id: string;
  field: string;
  reason: string;
}

export type Checked = { ok: true; finding: FindingJson; truncated: boolean } | { ok: false; rejection: Rejection };

// RFC 3339 date-time, as PostgreSQL and every other consumer read it: full
// date, 'T', full time, optional fraction, 'Z' or a numeric offset.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|([+-])(\d{2}):(\d{2}))$/;

// What sensors send: already canonical UTC, which only needs its fields in range.
const CANONICAL = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const digits = (s: string, at: number, n: number) => {
  let v = 0;
  for (let i = at; i < at + n; i++) v = v * 10 + s.charCodeAt(i) - 48;
  return v;
};

/** The instant as canonical UTC (`2024-03-07T10:00:00.000Z`), or null when it is not strict RFC 3339. */
export function parseRfc3339(s: string): string | null {
  if (CANONICAL.test(s)) {
    const year = digits(s, 0, 4);
    const month = digits(s, 5, 2);
    const day = digits(s, 8, 2);
    const valid = year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month) && digits(s, 11, 2) <= 23 && digits(s, 14, 2) <= 59 && digits(s, 17, 2) <= 59;
    return valid ? s : null;
  }
  const m = RFC3339.exec(s);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (year < 1 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return null;
  if (day < 1 || day > daysInMonth(year, month)) return null;
  if (m[9] && (Number(m[10]) > 23 || Number(m[11]) > 59)) return null;
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const daysInMonth = (year: number, month: number) => DAYS_IN_MONTH[month - 1]! + (month === 2 && isLeap(year) ? 1 : 0);

/** Splits an encoded ExportRequest into its encoded findings (field 1), without decoding them. */
export function splitRequest(buf: Uint8Array): Uint8Array[] {
  const r = protobuf.Reader.create(buf);
  const out: Uint8Array[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 2) {
      const len = r.uint32();
      if (r.pos + len > r.len) throw new RangeError(`finding ${out.length} runs past the end of the message`);
      out.push(buf.subarray(r.pos, r.pos + len));
      r.pos += len;
    } else r.skipType(tag & 7);
  }
  return out;
}

const root = protobuf.Root.fromJSON(descriptor);
const FindingType = root.lookupType('driftwatch.v1.Finding');

/** The dotted path of the first string field that is not valid UTF-8, walking the wire format by the schema. */
export function badUtf8Field(type: protobuf.Type, buf: Uint8Array, prefix = ''): string | null {
  const r = protobuf.Reader.create(buf);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = type.fieldsById[tag >>> 3];
    if ((tag & 7) !== 2 || !field) {
      r.skipType(tag & 7);
      continue;
    }
    const len = r.uint32();
    const body = buf.subarray(r.pos, r.pos + len);
    r.pos += len;
    const path = prefix + field.name;
    field.resolve();
    if (field.map) {
      // a map entry is a message: key = 1, value = 2
      const entry = new protobuf.Type('Entry').add(new protobuf.Field('key', 1, field instanceof protobuf.MapField ? field.keyType : 'string'));
      entry.add(new protobuf.Field('value', 2, field.type));
      if (field.resolvedType) (entry.fieldsById[2] as protobuf.Field).resolvedType = field.resolvedType;
      const bad = badUtf8Field(entry, body, `${path}.`);
      if (bad) return bad;
    } else if (field.type === 'string') {
      if (!isUtf8(body)) return path;
    } else if (field.resolvedType instanceof protobuf.Type) {
      const bad = badUtf8Field(field.resolvedType, body, `${path}.`);
      if (bad) return bad;
    }
  }
  return null;
}

/** The id of an undecodable finding, when its id field itself is readable. */
function rawId(buf: Uint8Array): string {
  try {
    const r = protobuf.Reader.create(buf);
    while (r.pos < r.len) {
      const tag = r.uint32();
      if (tag === ((1 << 3) | 2)) {
        const len = r.uint32();
        const b = buf.subarray(r.pos, r.pos + len);
        return isUtf8(b) ? Buffer.from(b).toString('utf8').slice(0, 128) : '';
      }
      r.skipType(tag & 7);
    }
  } catch {
    /* no readable id */
  }
  return '';
}

// The canonical UTC time of each checked finding, so the stores do not parse it again.
const canonicalTimes = new WeakMap<FindingJson, string>();

// The JSON of each checked finding that was not cut, serialised by the check.
const checkedJson = new WeakMap<FindingJson, string>();

/**
 * The JSON a store keeps for a checked finding: the check's serialisation
 * with the backend's `fleet` appended (where JSON.stringify would put it, as
 * it is set after the check), or a fresh one.
 */
export function bodyJson(f: FindingJson): string {
  const json = checkedJson.get(f);
  if (json === undefined) return JSON.stringify(f);
  return f.fleet ? json.slice(0, -1) + fleetTail(f.fleet) : json;
}

/** What replaces a body's closing brace to set the backend's `fleet` last, where JSON.stringify puts a key set last. */
export const fleetTail = (fleet: NonNullable<FindingJson['fleet']>): string => `,"fleet":${JSON.stringify(fleet)}}`;

/** Notes the canonical UTC of a finding checked elsewhere (wire-row.ts). */
export function rememberCanonicalTime(f: FindingJson, time: string): void {
  canonicalTimes.set(f, time);
}

/** `time` of a checked finding as canonical UTC. */
export function canonicalTime(f: FindingJson): string {
  return canonicalTimes.get(f) ?? parseRfc3339(f.time!)!;
}

/** Decodes one encoded finding and checks it; never throws. */
export function checkEncodedFinding(buf: Uint8Array, index: number): Checked {
  let finding: FindingJson;
  try {
    finding = Finding.toObject(Finding.decode(buf), TO_JSON) as FindingJson;
  } catch (err) {
    const field = safe(() => badUtf8Field(FindingType, buf)) ?? '';
    const reason = field ? 'not valid UTF-8' : `malformed: ${(err as Error).message}`;
    return { ok: false, rejection: { index, id: rawId(buf), field: field || 'finding', reason } };
  }
  return checkFinding(finding, index);
}

function safe<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

/** Checks and normalises a decoded finding (truncating what can be truncated); never throws. */
export function checkFinding(f: FindingJson, index: number): Checked {
  const reject = (field: string, reason: string): Checked => ({ ok: false, rejection: { index, id: (f.id ?? '').slice(0, MAX_ID_CHARS), field, reason } });
  if (!f.id) return reject('id', 'missing');
  if (f.id.length > MAX_ID_CHARS) return reject('id', `longer than ${MAX_ID_CHARS} characters`);
  if (!f.time) return reject('time', 'missing');
  const time = parseRfc3339(f.time);
  if (!time) return reject('time', `not an RFC 3339 date-time: ${JSON.stringify(f.time.slice(0, 40))}`);
  for (const field of ['firstSeen', 'lastSeen'] as const) {
    const v = f[field];
    if (v && !parseRfc3339(v)) return reject(field, `not an RFC 3339 date-time: ${JSON.stringify(v.slice(0, 40))}`);
  }
  if (!f.signature?.id) return reject('signature.id', 'missing');
  if (!f.signature.severity || f.signature.severity === 'SEVERITY_UNSPECIFIED') return reject('signature.severity', 'missing');
  if (!f.process) return reject('process', 'missing');
  if (!f.host?.hostname) return reject('host.hostname', 'missing');
  if (f.fleet) delete f.fleet; // the backend's to set, not the sender's
  // one serialisation answers both "any NUL?" and "how large?"; the walk that
  // names the field runs only for a finding that has one
  const json = JSON.stringify(f);
  if (json.includes('\\u0000')) {
    const nul = nulField(f, ''); // or only the text "\u0000", which is fine
    if (nul) return reject(nul, 'contains U+0000 (NUL)');
  }
  canonicalTimes.set(f, time);
  let truncated = false;
  // a UTF-16 code unit is at most 3 UTF-8 bytes: most findings need no count
  if (json.length * 3 > MAX_FINDING_BYTES && Buffer.byteLength(json) > MAX_FINDING_BYTES) {
    truncated = truncateToFit(f);
    if (jsonBytes(f) > MAX_FINDING_BYTES) return reject('finding', `larger than ${MAX_FINDING_BYTES} bytes after truncating args and labels`);
  } else checkedJson.set(f, json);
  return { ok: true, finding: f, truncated };
}

function jsonBytes(f: FindingJson): number {
  return Buffer.byteLength(JSON.stringify(f));
}

function nulField(v: unknown, path: string): string | null {
  if (typeof v === 'string') return v.includes('\u0000') ? path : null;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const bad = nulField(v[i], `${path}[${i}]`);
      if (bad) return bad;
    }
    return null;
  }
  if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k.includes('\u0000')) return `${path}${path ? '.' : ''}${k.replace(/\u0000/g, '\\0')}`;
      const bad = nulField(x, `${path}${path ? '.' : ''}${k}`);
      if (bad) return bad;
    }
  }
  return null;
}

/**
 * Cuts args and labels until the finding fits, and marks what was cut:
 * `process.argsTruncated`, and the label `driftwatch.io/labels-truncated`
 * with how many labels were dropped. Returns whether anything was cut.
 */
function truncateToFit(f: FindingJson): boolean {
  let cut = false;
  const labels = f.container?.labels;
  if (labels) {
    for (const [k, v] of Object.entries(labels)) {
      if (v.length > MAX_LABEL_VALUE) {
        labels[k] = v.slice(0, MAX_LABEL_VALUE) + TRUNCATED_MARK;
        labels[LABELS_TRUNCATED] = 'values';
        cut = true;
      }
    }
  }
  const args = f.process?.args;
  if (args && jsonBytes(f) > MAX_FINDING_BYTES) {
    const budget = MAX_FINDING_BYTES / 2;
    let used = 0;
    let keep = 0;
    for (; keep < args.length; keep++) {
      const n = Buffer.byteLength(JSON.stringify(args[keep])) + 1;
      if (used + n > budget) break;
      used += n;
    }
    if (keep < args.length) {
      const partial = args[keep]!.slice(0, Math.max(0, budget - used - 64));
      args.length = keep;
      if (partial) args.push(partial + TRUNCATED_MARK);
      f.process!.argsTruncated = true;
      cut = true;
    }
  }
  if (labels && jsonBytes(f) > MAX_FINDING_BYTES) {
    const keys = Object.keys(labels).filter((k) => k !== LABELS_TRUNCATED);
    let dropped = 0;
    while (keys.length && jsonBytes(f) > MAX_FINDING_BYTES) {
      delete labels[keys.pop()!];
      dropped++;
    }
    labels[LABELS_TRUNCATED] = `${dropped} dropped`;
    cut = true;
  }
  return cut;
}

/** The error text for a partial success: how many were rejected, and the first few by id and field. */
export function describeRejections(rejected: Rejection[], max = 10): string {
  const shown = rejected
    .slice(0, max)
    .map((r) => `finding ${r.id ? JSON.stringify(r.id) : `#${r.index}`}: ${r.field}: ${r.reason}`)
    .join('; ');
  return rejected.length > max ? `${shown}; and ${rejected.length - max} more` : shown;
}
