// Where findings go. Sinks know only their output; they never filter.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Finding } from './finding.js';

export interface Sink {
  write(f: Finding): void;
  close(): void | Promise<void>;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * All of it, in order. stdout may be a non-blocking pipe: when its reader
 * is slow, writeSync fails with EAGAIN or writes part of the line; wait a
 * moment and go on rather than lose the finding.
 */
export function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text);
  for (let off = 0; off < buf.length; ) {
    try {
      off += writeSync(fd, buf, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 2);
    }
  }
}

/** One JSON object per line, written synchronously so a line is out the moment it exists. */
export function jsonlSink(target: string): Sink {
  const fd = target === '-' ? 1 : openSync(target, 'a');
  return {
    write(f) {
      writeAll(fd, JSON.stringify(f) + '\n');
    },
    close() {
      if (fd !== 1) closeSync(fd);
    },
  };
}

/** A short human line per finding, on stderr. */
export function consoleSink(write: (s: string) => void = (s) => process.stderr.write(s)): Sink {
  return {
    write(f) {
      const c = f.container ?? {};
      const p = f.process ?? {};
      const where = c.name || c.id?.slice(0, 12) || `mntns:${c.mntNs}`;
      write(
        `${f.time} ${f.signature?.severity} ${f.signature?.id} container=${where} pid=${p.hostPid} ` +
          `exe=${p.executable?.path} layer=${p.executable?.layer} args=${JSON.stringify(p.args ?? [])}\n`,
      );
    },
    close() {},
  };
}
