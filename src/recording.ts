// `driftwatch record` files: one JSON header line (format, host namespaces,
// hostname), then the drained batches exactly as the addon returned them,
// each prefixed by its u32 length. `driftwatch replay` serves them back
// through the loader interface, so offline runs use the same pipeline.
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { NativeLoader } from './native/loader.js';
import type { HostNamespaces } from './pipeline/container.js';

export interface RecordingHeader {
  format: 'driftwatch-recording';
  version: 1;
  hostname: string;
  host: HostNamespaces;
  recordedAt: string;
}

export class RecordingWriter {
  private fd: number;
  constructor(path: string, header: RecordingHeader) {
    this.fd = openSync(path, 'w');
    writeSync(this.fd, JSON.stringify(header) + '\n');
  }
  write(batch: Buffer, length: number): void {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(length);
    writeSync(this.fd, len);
    writeSync(this.fd, batch, 0, length);
  }
  close(): void {
    closeSync(this.fd);
  }
}

export function readRecording(path: string): { header: RecordingHeader; batches: Buffer[] } {
  const data = readFileSync(path);
  const nl = data.indexOf(0x0a);
  let header: RecordingHeader;
  try {
    header = JSON.parse(data.subarray(0, nl).toString('utf8')) as RecordingHeader;
  } catch {
    throw new Error(`${path}: not a driftwatch recording (no header line)`);
  }
  if (header.format !== 'driftwatch-recording') throw new Error(`${path}: not a driftwatch recording`);
  const batches: Buffer[] = [];
  let off = nl + 1;
  while (off + 4 <= data.length) {
    const len = data.readUInt32LE(off);
    if (off + 4 + len > data.length) throw new Error(`${path}: truncated at byte ${off}`);
    batches.push(data.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  return { header, batches };
}

/** Serves recorded batches through consume(); `done` resolves once all were taken. */
export function replayLoader(batches: Buffer[]): NativeLoader & { done: Promise<void> } {
  const queue = [...batches];
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  if (queue.length === 0) finish();
  return {
    done,
    load() {},
    attach: () => [],
    programs: () => [],
    attachProgram: (n) => n,
    consume(buf) {
      const b = queue.shift();
      if (!b) return 0;
      if (b.length > buf.length) throw new RangeError('recorded batch larger than the drain buffer');
      b.copy(buf);
      if (queue.length === 0) setImmediate(finish);
      return b.length;
    },
    stats: () => ({}),
    overlayPath: () => 'a recording (no kernel)',
    programStats: () => [],
    close() {},
  };
}
