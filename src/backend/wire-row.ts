// The check's fast path: one encoded Finding straight to its StoreRow, by a
// walk over the protobuf wire format that writes the JSON body as it goes,
// without the decoded message, its toObject copy and JSON.stringify, and
// their garbage.
//
// It takes only what it can turn into exactly the row that the full check
// (validate.ts, then storeRowOf) makes of the same bytes, byte for byte: a
// well-formed finding that the check accepts without cutting anything. Any
// other finding — a field sent twice, an unknown field or enum value, a NUL,
// invalid UTF-8, one that the check would reject or truncate — returns null
// and takes the full check, which names what is wrong with it. A test
// compares both paths on crafted and randomly mutated findings.
import protobuf from 'protobufjs';
import descriptor from '#gen/finding-descriptor.js';
import type { FindingJson } from '#gen/finding-json.js';
import { MAX_COLUMN_CHARS, MAX_FINDING_BYTES, MAX_ID_CHARS, parseRfc3339, rememberCanonicalTime } from './validate.js';
import { rowOf } from './columns.js';
import { fleetKey } from './fleet.js';
import type { StoreRow } from './checked-rows.js';

const enum Kind {
  String,
  Uint32,
  OptionalUint32,
  Uint64,
  Bool,
  Enum,
  Message,
  Map,
  Unsupported,
}

interface FieldSpec {
  id: number;
  /** `"name":` as bytes */
  key: Uint8Array;
  kind: Kind;
  repeated: boolean;
  /** Enum: the name of each value other than 0, and as JSON bytes. */
  names?: Array<string | undefined>;
  quoted?: Array<Uint8Array | undefined>;
  type?: TypeSpec;
  /** Where a captured string goes (see Capture), else -1. */
  capture: number;
}

/**
 * One message at one place in the Finding (Executable twice: process.executable
 * and process.script), with room for one parse of it: a type never contains
 * itself, so a parse is never overwritten while its message is being written.
 */
interface TypeSpec {
  byId: Array<FieldSpec | undefined>;
  /** As toObject writes them: repeated fields first (with `arrays`), then the rest, in declaration order. */
  order: FieldSpec[];
  /** `gen` where the field was sent in the current parse */
  present: Int32Array;
  gen: number;
  /** fields with items in the current parse */
  withItems: number[];
  start: Int32Array;
  end: Int32Array;
  value: Float64Array;
  /** start, end of each element of a repeated field (or map entry) */
  items: number[][];
}

// Strings the row needs (see rowOf and fleetKey), by their place in the Finding.
const CAPTURED = [
  'id',
  'time',
  'signature.id',
  'process.executable.sha256',
  'container.id',
  'container.name',
  'container.image',
  'container.imageId',
  'kubernetes.namespace',
  'host.hostname',
  'firstSeen',
  'lastSeen',
  'foldOf',
  'action',
] as const;
const enum Capture {
  Id,
  Time,
  SignatureId,
  Sha256,
  ContainerId,
  ContainerName,
  Image,
  ImageId,
  Namespace,
  Hostname,
  FirstSeen,
  LastSeen,
  FoldOf,
  Action,
}

const ascii = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));

function kindOf(f: protobuf.Field): Kind {
  if (f.map) return (f as unknown as protobuf.MapField).keyType === 'string' && f.type === 'string' ? Kind.Map : Kind.Unsupported;
  if (f.resolvedType instanceof protobuf.Type) return Kind.Message;
  if (f.resolvedType instanceof protobuf.Enum) return Kind.Enum;
  switch (f.type) {
    case 'string':
      return Kind.String;
    case 'uint32':
      return f.options?.proto3_optional ? Kind.OptionalUint32 : Kind.Uint32;
    case 'uint64':
      return Kind.Uint64;
    case 'bool':
      return Kind.Bool;
    default:
      return Kind.Unsupported;
  }
}

function specOf(type: protobuf.Type, path: string): TypeSpec {
  const fields = type.fieldsArray.map((f): FieldSpec => {
    f.resolve();
    const kind = kindOf(f);
    const at = path + f.name;
    const spec: FieldSpec = { id: f.id, key: ascii(`${JSON.stringify(f.name)}:`), kind, repeated: f.repeated && !f.map, capture: (CAPTURED as readonly string[]).indexOf(at) };
    if (kind === Kind.Enum) {
      const values = (f.resolvedType as protobuf.Enum).values;
      spec.names = [];
      spec.quoted = [];
      for (const [name, n] of Object.entries(values)) {
        if (n <= 0 || n >= 128) continue;
        spec.names[n] = name;
        spec.quoted[n] = ascii(JSON.stringify(name));
      }
    }
    if (kind === Kind.Message) spec.type = specOf(f.resolvedType as protobuf.Type, `${at}.`);
    return spec;
  });
  const maxId = Math.max(0, ...fields.map((f) => f.id));
  const byId: Array<FieldSpec | undefined> = new Array(maxId + 1).fill(undefined);
  for (const f of fields) byId[f.id] = f;
  return {
    byId,
    order: [...fields.filter((f) => f.repeated), ...fields.filter((f) => !f.repeated)],
    present: new Int32Array(maxId + 1),
    gen: 0,
    withItems: [],
    start: new Int32Array(maxId + 1),
    end: new Int32Array(maxId + 1),
    value: new Float64Array(maxId + 1),
    items: Array.from({ length: maxId + 1 }, () => []),
  };
}

const FINDING = specOf(protobuf.Root.fromJSON(descriptor).lookupType('driftwatch.v1.Finding'), '');
/** Finding.fleet: the backend's to set; a finding that carries one takes the full check. */
const FLEET_FIELD = 32;
const PROCESS_FIELD = 4;
const SIGNATURE_FIELD = 3;
const SEVERITY_FIELD = 3;

// JSON.stringify's escapes for the control characters it does not write as \u00XX
const SHORT_ESCAPE = new Uint8Array(32);
SHORT_ESCAPE[8] = 0x62; // \b
SHORT_ESCAPE[9] = 0x74; // \t
SHORT_ESCAPE[10] = 0x6e; // \n
SHORT_ESCAPE[12] = 0x66; // \f
SHORT_ESCAPE[13] = 0x72; // \r
const HEX = ascii('0123456789abcdef');
/** Bytes that JSON.stringify writes as they are, and that need no UTF-8 check. */
const PRINTABLE = new Uint8Array(256);
for (let b = 0x20; b < 0x7f; b++) PRINTABLE[b] = b === 0x22 || b === 0x5c ? 0 : 1;

/** Larger than any body accepted, with room for the escapes of one more string. */
const OUT_BYTES = 4 * MAX_FINDING_BYTES;

/** Whether the field was sent in the last parse of its message. */
const sent = (t: TypeSpec, id: number) => t.present[id] === t.gen;

/**
 * Whether toObject writes the field: a repeated one always (`arrays`), a map
 * with entries, a message or proto3 \`optional\` field when sent, any other
 * field when sent with a value other than its zero (which the decoder drops).
 */
function hasValue(t: TypeSpec, f: FieldSpec): boolean {
  const id = f.id;
  if (f.repeated) return true;
  switch (f.kind) {
    case Kind.Map:
      return t.items[id]!.length > 0;
    case Kind.Message:
    case Kind.OptionalUint32:
      return t.present[id] === t.gen;
    case Kind.String:
      return t.present[id] === t.gen && t.end[id]! > t.start[id]!;
    default:
      return t.present[id] === t.gen && t.value[id] !== 0;
  }
}

/** A walk over one finding: its input, its output and what it captured. Not re-entrant; one per thread. */
class Walk {
  src: Buffer = Buffer.alloc(0);
  out = Buffer.allocUnsafeSlow(OUT_BYTES);
  at = 0;
  readonly capStart = new Int32Array(CAPTURED.length);
  readonly capEnd = new Int32Array(CAPTURED.length);
  readonly capAscii = new Uint8Array(CAPTURED.length);
  // varint reader state
  pos = 0;

  /** A varint of at most 32 bits (more, protobufjs would cut to 32), or -1. */
  varint32(end: number): number {
    return this.varint(end, 5, 2 ** 32);
  }

  /** A varint that is exact as a double (below 2^53), or -1. */
  varint53(end: number): number {
    return this.varint(end, 8, 2 ** 53);
  }

  private varint(end: number, maxBytes: number, limit: number): number {
    const src = this.src;
    let v = 0;
    let scale = 1;
    for (let i = 0; i < maxBytes; i++) {
      if (this.pos >= end) return -1;
      const b = src[this.pos++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) return v < limit ? v : -1;
      scale *= 128;
    }
    return -1;
  }

  /** Reads one message's fields into its spec; false for anything the fast path does not take. */
  parse(t: TypeSpec, from: number, end: number): boolean {
    const gen = ++t.gen;
    for (const id of t.withItems) t.items[id]!.length = 0;
    t.withItems.length = 0;
    this.pos = from;
    while (this.pos < end) {
      const tag = this.varint32(end);
      if (tag < 0) return false;
      const f = t.byId[tag >>> 3];
      if (!f || f.kind === Kind.Unsupported) return false;
      const wire = tag & 7;
      const delimited = f.kind === Kind.String || f.kind === Kind.Message || f.kind === Kind.Map;
      if (wire !== (delimited ? 2 : 0)) return false;
      if (delimited) {
        const len = this.varint32(end);
        if (len < 0 || this.pos + len > end) return false;
        if (f.repeated || f.kind === Kind.Map) {
          const items = t.items[f.id]!;
          if (!items.length) t.withItems.push(f.id);
          items.push(this.pos, this.pos + len);
        } else {
          if (t.present[f.id] === gen) return false; // sent twice: protobufjs merges or replaces
          t.present[f.id] = gen;
          t.start[f.id] = this.pos;
          t.end[f.id] = this.pos + len;
        }
        this.pos += len;
      } else {
        const v = f.kind === Kind.Uint64 ? this.varint53(end) : this.varint32(end);
        if (v < 0 || t.present[f.id] === gen) return false;
        if (f.kind === Kind.Enum && !f.names![v] && v !== 0) return false;
        if (f.kind === Kind.Bool && v > 1) return false;
        t.present[f.id] = gen;
        t.value[f.id] = v;
      }
    }
    return this.pos === end;
  }

  private put(bytes: Uint8Array): void {
    const out = this.out;
    let at = this.at;
    for (let i = 0; i < bytes.length; i++) out[at++] = bytes[i]!;
    this.at = at;
  }

  private byte(b: number): void {
    this.out[this.at++] = b;
  }

  /** A non-negative integer below 2^53, in decimal. */
  private number(v: number): void {
    const out = this.out;
    let digits = 1;
    for (let x = v; x >= 10; x = Math.floor(x / 10)) digits++;
    let at = this.at + digits;
    this.at = at;
    do {
      const q = Math.floor(v / 10);
      out[--at] = 0x30 + (v - q * 10);
      v = q;
    } while (v > 0);
  }

  /**
   * Writes src[from, end) as a JSON string, as JSON.stringify writes the
   * decoded string; false for a NUL, invalid UTF-8 or a body that would
   * be too large (the full check names or cuts them).
   */
  string(from: number, end: number, capture = -1): boolean {
    if (this.at + (end - from) * 6 + 64 > this.out.length) return false;
    const src = this.src;
    const out = this.out;
    let at = this.at;
    let plain = true;
    out[at++] = 0x22;
    // most strings are printable ASCII without quotes or backslashes: copied as they are
    let i = from;
    while (i < end && PRINTABLE[src[i]!]) i++;
    if (i - from > 24) at += src.copy(out, at, from, i);
    else for (let k = from; k < i; k++) out[at++] = src[k]!;
    while (i < end) {
      const b = src[i]!;
      if (b < 0x80) {
        i++;
        if (b >= 0x20) {
          if (b === 0x22 || b === 0x5c) out[at++] = 0x5c;
          out[at++] = b;
        } else if (b === 0) return false;
        else {
          out[at++] = 0x5c;
          const short = SHORT_ESCAPE[b]!;
          if (short) out[at++] = short;
          else {
            out[at++] = 0x75; // u00XX
            out[at++] = 0x30;
            out[at++] = 0x30;
            out[at++] = HEX[b >> 4]!;
            out[at++] = HEX[b & 15]!;
          }
        }
        continue;
      }
      plain = false;
      // strict UTF-8, as the decoder's fatal TextDecoder: no overlongs, surrogates or code points past U+10FFFF
      let n: number;
      if (b >= 0xc2 && b <= 0xdf) n = 2;
      else if (b >= 0xe0 && b <= 0xef) n = 3;
      else if (b >= 0xf0 && b <= 0xf4) n = 4;
      else return false;
      if (i + n > end) return false;
      const b1 = src[i + 1]!;
      if ((b1 & 0xc0) !== 0x80) return false;
      if ((b === 0xe0 && b1 < 0xa0) || (b === 0xed && b1 > 0x9f) || (b === 0xf0 && b1 < 0x90) || (b === 0xf4 && b1 > 0x8f)) return false;
      for (let k = 2; k < n; k++) if ((src[i + k]! & 0xc0) !== 0x80) return false;
      for (let k = 0; k < n; k++) out[at++] = src[i + k]!;
      i += n;
    }
    out[at++] = 0x22;
    this.at = at;
    if (capture >= 0) {
      this.capStart[capture] = from;
      this.capEnd[capture] = end;
      this.capAscii[capture] = plain ? 1 : 0;
    }
    return true;
  }

  /** Writes one message as toObject + JSON.stringify would; false where the fast path gives up. */
  message(t: TypeSpec, from: number, end: number): boolean {
    if (!this.parse(t, from, end)) return false;
    this.byte(0x7b);
    let first = true;
    for (const f of t.order) {
      if (!hasValue(t, f)) continue;
      if (!first) this.byte(0x2c);
      first = false;
      this.put(f.key);
      if (!this.field(t, f)) return false;
    }
    this.byte(0x7d);
    return true;
  }

  private field(t: TypeSpec, f: FieldSpec): boolean {
    const id = f.id;
    if (f.repeated) {
      const items = t.items[id]!;
      this.byte(0x5b);
      for (let i = 0; i < items.length; i += 2) {
        if (i) this.byte(0x2c);
        const ok = f.kind === Kind.Message ? this.message(f.type!, items[i]!, items[i + 1]!) : this.string(items[i]!, items[i + 1]!);
        if (!ok) return false;
      }
      this.byte(0x5d);
      return true;
    }
    const v = t.value[id]!;
    switch (f.kind) {
      case Kind.String:
        return this.string(t.start[id]!, t.end[id]!, f.capture);
      case Kind.Message:
        return this.message(f.type!, t.start[id]!, t.end[id]!);
      case Kind.Map:
        return this.map(t.items[id]!);
      case Kind.Uint64:
        this.byte(0x22);
        this.number(v);
        this.byte(0x22);
        return true;
      case Kind.Uint32:
      case Kind.OptionalUint32:
        this.number(v);
        return true;
      case Kind.Bool:
        this.put(TRUE);
        return true;
      case Kind.Enum:
        this.put(f.quoted![v]!);
        return true;
      default:
        return false;
    }
  }

  private readonly keys = new Set<string>();

  /** map<string, string>: entries in the order sent; the full check takes duplicate, numeric or prototype keys (an object orders or drops them). */
  private map(items: number[]): boolean {
    const keys = this.keys;
    keys.clear();
    this.byte(0x7b);
    for (let i = 0; i < items.length; i += 2) {
      let keyFrom = 0;
      let keyEnd = 0;
      let valueFrom = 0;
      let valueEnd = 0;
      let haveKey = false;
      let haveValue = false;
      const end = items[i + 1]!;
      this.pos = items[i]!;
      while (this.pos < end) {
        const tag = this.varint32(end);
        if (tag !== 0x0a && tag !== 0x12) return false;
        const len = this.varint32(end);
        if (len < 0 || this.pos + len > end) return false;
        if (tag === 0x0a) {
          if (haveKey) return false;
          haveKey = true;
          keyFrom = this.pos;
          keyEnd = this.pos + len;
        } else {
          if (haveValue) return false;
          haveValue = true;
          valueFrom = this.pos;
          valueEnd = this.pos + len;
        }
        this.pos += len;
      }
      const key = this.src.toString('latin1', keyFrom, keyEnd);
      if (keys.has(key) || /^\d+$/.test(key) || key === '__proto__') return false;
      keys.add(key);
      if (i) this.byte(0x2c);
      if (!this.string(keyFrom, keyEnd)) return false;
      this.byte(0x3a);
      if (!this.string(valueFrom, valueEnd)) return false;
    }
    this.byte(0x7d);
    return true;
  }

  captured(c: Capture): string | undefined {
    const from = this.capStart[c]!;
    if (from < 0) return undefined;
    return this.src.toString(this.capAscii[c] ? 'latin1' : 'utf8', from, this.capEnd[c]);
  }
}

const TRUE = ascii('true');
const walk = new Walk();
const SIGNATURE = FINDING.byId[SIGNATURE_FIELD]!;

/**
 * The row of one encoded finding, or null when it must take the full check
 * (checkEncodedFinding): anything but a well-formed finding the check
 * accepts as it is.
 */
export function wireRow(buf: Uint8Array): StoreRow | null {
  const w = walk;
  w.src = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  w.at = 0;
  w.capStart.fill(-1);
  if (!w.message(FINDING, 0, buf.byteLength) || w.at > MAX_FINDING_BYTES) return null;
  if (sent(FINDING, FLEET_FIELD) || !sent(FINDING, PROCESS_FIELD) || !sent(FINDING, SIGNATURE_FIELD)) return null;
  // a column longer than is kept is cut by the check (rowOf); its bytes bound its length
  for (let c = 0; c < CAPTURED.length; c++) if (w.capStart[c]! >= 0 && w.capEnd[c]! - w.capStart[c]! > MAX_COLUMN_CHARS) return null;
  const id = w.captured(Capture.Id);
  const timeText = w.captured(Capture.Time);
  const signatureId = w.captured(Capture.SignatureId);
  const hostname = w.captured(Capture.Hostname);
  const severity = severityOf();
  if (!id || id.length > MAX_ID_CHARS || !timeText || !signatureId || !severity || !hostname) return null;
  const time = parseRfc3339(timeText);
  if (!time) return null;
  for (const c of [Capture.FirstSeen, Capture.LastSeen]) {
    const v = w.captured(c);
    if (v !== undefined && !parseRfc3339(v)) return null;
  }
  const f: FindingJson = {
    id,
    time,
    signature: { id: signatureId, severity: severity as NonNullable<FindingJson['signature']>['severity'] },
    process: { executable: { sha256: w.captured(Capture.Sha256) } },
    container: { id: w.captured(Capture.ContainerId), name: w.captured(Capture.ContainerName), image: w.captured(Capture.Image), imageId: w.captured(Capture.ImageId) },
    kubernetes: { namespace: w.captured(Capture.Namespace) },
    host: { hostname },
    foldOf: w.captured(Capture.FoldOf),
    action: w.captured(Capture.Action),
  };
  rememberCanonicalTime(f, time);
  return { values: rowOf(f), fleet: fleetKey(f), foldOf: f.foldOf ?? '', json: Buffer.from(w.out.subarray(0, w.at)) };
}

/** signature.severity by name, when the finding's signature (already walked) has one. */
function severityOf(): string | undefined {
  const sig = SIGNATURE.type!;
  const field = sig.byId[SEVERITY_FIELD]!;
  return sent(sig, SEVERITY_FIELD) ? field.names![sig.value[SEVERITY_FIELD]!] : undefined;
}
