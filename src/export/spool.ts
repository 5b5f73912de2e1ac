// A write-ahead spool on disk: every finding is appended here before it is
// sent, so neither a backend outage nor a SIGKILL of the sensor loses it.
// Append-only segment files of [u32 length][u32 crc32][json] records; a
// cursor file (replaced atomically) says how far the backend has confirmed.
// When the spool exceeds maxBytes the oldest segment is dropped, and the
// findings in it are counted as dropped.
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

export interface SpoolOptions {
  dir: string;
  segmentBytes?: number;
  maxBytes?: number;
}

interface Cursor {
  segment: number;
  offset: number;
}

export interface SpoolStats {
  appended: number;
  dropped: number;
  corrupt: number;
}

const HEADER = 8;
const segName = (n: number) => `seg-${String(n).padStart(10, '0')}.log`;

export class Spool {
  readonly stats: SpoolStats = { appended: 0, dropped: 0, corrupt: 0 };
  private readonly segmentBytes: number;
  private readonly maxBytes: number;
  private segments: number[] = [];
  private writeFd = -1;
  private writeSeg = 0;
  private writeSize = 0;
  private cursor: Cursor;

  constructor(private readonly opts: SpoolOptions) {
    this.segmentBytes = opts.segmentBytes ?? 8 << 20;
    this.maxBytes = opts.maxBytes ?? 256 << 20;
    mkdirSync(opts.dir, { recursive: true });
    this.segments = readdirSync(opts.dir)
      .map((f) => /^seg-(\d+)\.log$/.exec(f))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    this.cursor = this.readCursor();
    if (!this.segments.length || this.cursor.segment > this.segments.at(-1)!) this.segments.push(Math.max(this.cursor.segment, 1));
    this.openForAppend(this.segments.at(-1)!);
  }

  private path(seg: number): string {
    return join(this.opts.dir, segName(seg));
  }

  private readCursor(): Cursor {
    try {
      const c = JSON.parse(readFileSync(join(this.opts.dir, 'cursor.json'), 'utf8')) as Cursor;
      if (Number.isInteger(c.segment) && Number.isInteger(c.offset)) return c;
    } catch {
      /* no cursor yet: start at the oldest segment */
    }
    return { segment: this.segments[0] ?? 1, offset: 0 };
  }

  private writeCursor(): void {
    const tmp = join(this.opts.dir, 'cursor.json.tmp');
    writeFileSync(tmp, JSON.stringify(this.cursor));
    renameSync(tmp, join(this.opts.dir, 'cursor.json'));
  }

  private openForAppend(seg: number): void {
    if (this.writeFd >= 0) closeSync(this.writeFd);
    this.writeSeg = seg;
    this.writeFd = openSync(this.path(seg), 'a');
    this.writeSize = existsSync(this.path(seg)) ? statSync(this.path(seg)).size : 0;
  }

  /** Bytes on disk not yet confirmed (approximate: whole segments). */
  get bytes(): number {
    let total = 0;
    for (const s of this.segments) total += existsSync(this.path(s)) ? statSync(this.path(s)).size : 0;
    return Math.max(0, total - (this.segments[0] === this.cursor.segment ? this.cursor.offset : 0));
  }

  append(payload: Buffer): void {
    if (this.writeSize >= this.segmentBytes) {
      this.segments.push(this.writeSeg + 1);
      this.openForAppend(this.writeSeg + 1);
    }
    const rec = Buffer.alloc(HEADER + payload.length);
    rec.writeUInt32LE(payload.length, 0);
    rec.writeUInt32LE(crc32(payload), 4);
    payload.copy(rec, HEADER);
    writeSync(this.writeFd, rec);
    this.writeSize += rec.length;
    this.stats.appended++;
    this.enforceLimit();
  }

  private enforceLimit(): void {
    while (this.segments.length > 1 && this.bytes > this.maxBytes) {
      const oldest = this.segments.shift()!;
      const from = this.cursor.segment === oldest ? this.cursor.offset : 0;
      this.stats.dropped += this.scan(oldest, from, Infinity).records.length;
      unlinkSync(this.path(oldest));
      this.cursor = { segment: this.segments[0]!, offset: 0 };
      this.writeCursor();
    }
  }

  private scan(seg: number, offset: number, max: number): { records: Buffer[]; end: number; corrupt: boolean } {
    const records: Buffer[] = [];
    let data: Buffer;
    try {
      data = this.readFrom(seg, offset);
    } catch {
      return { records, end: offset, corrupt: false };
    }
    let off = 0;
    while (records.length < max && off + HEADER <= data.length) {
      const len = data.readUInt32LE(off);
      const sum = data.readUInt32LE(off + 4);
      if (off + HEADER + len > data.length) break; // a record still being written
      const payload = data.subarray(off + HEADER, off + HEADER + len);
      if (crc32(payload) !== sum) return { records, end: offset + off, corrupt: true };
      records.push(Buffer.from(payload));
      off += HEADER + len;
    }
    return { records, end: offset + off, corrupt: false };
  }

  /** The segment's bytes from offset on: what is not confirmed yet, not the whole segment (up to 8 MiB) per send. */
  private readFrom(seg: number, offset: number): Buffer {
    const fd = openSync(this.path(seg), 'r');
    try {
      const len = Math.max(0, fstatSync(fd).size - offset);
      const buf = Buffer.allocUnsafe(len);
      let got = 0;
      while (got < len) {
        const n = readSync(fd, buf, got, len - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Up to max unconfirmed records, oldest first, and a token to confirm them
   * with ack(). A corrupt tail of a segment is skipped (counted).
   */
  peek(max: number): { records: Buffer[]; token: Cursor } {
    let cur = { ...this.cursor };
    const out: Buffer[] = [];
    while (out.length < max) {
      const r = this.scan(cur.segment, cur.offset, max - out.length);
      out.push(...r.records);
      cur = { segment: cur.segment, offset: r.end };
      const isLast = cur.segment === this.writeSeg;
      if (r.corrupt) {
        this.stats.corrupt++;
        if (isLast) break;
      } else if (out.length >= max || isLast) break;
      const next = this.segments.find((s) => s > cur.segment);
      if (next === undefined) break;
      cur = { segment: next, offset: 0 };
    }
    return { records: out, token: cur };
  }

  /** Confirms everything before token: those records will not be sent again. */
  ack(token: Cursor): void {
    this.cursor = token;
    this.writeCursor();
    while (this.segments.length > 1 && this.segments[0]! < token.segment) {
      const done = this.segments.shift()!;
      try {
        unlinkSync(this.path(done));
      } catch {
        /* already gone */
      }
    }
  }

  get pending(): boolean {
    // Everything appended is confirmed: nothing to read.
    if (this.cursor.segment === this.writeSeg && this.cursor.offset >= this.writeSize) return false;
    return this.peek(1).records.length > 0;
  }

  close(): void {
    if (this.writeFd >= 0) {
      fsyncSync(this.writeFd);
      closeSync(this.writeFd);
    }
    this.writeFd = -1;
  }
}
