// Where findings go. Sinks know only their output; they never filter.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Finding } from './finding.js';

export interface Sink {
  write(f: Finding): void;
  close(): void | Promise<void>;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of buf. stdout may be a non-blocking pipe whose reader is
 * slower than a burst of findings: a full pipe (EAGAIN) is waited out in
 * 1 ms steps for up to 10 s, and a short write continues where it stopped.
 */
export function writeFully(fd: number, buf: Buffer, maxWaitMs = 10_000): void {
  let off = 0;
  let waited = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || waited >= maxWaitMs) throw err;
      Atomics.wait(pause, 0, 0, 1);
      waited++;
    }
  }
}

/** One JSON object per line, written synchronously so a line is out the moment it exists. */
export function jsonlSink(target: string): Sink {
  const fd = target === '-' ? 1 : openSync(target, 'a');
  return {
    write(f) {
      writeFully(fd, Buffer.from(JSON.stringify(f) + '\n'));
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
