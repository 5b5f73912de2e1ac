// Where findings go. Sinks know only their output; they never filter.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Finding } from './finding.js';

export interface Sink {
  write(f: Finding): void;
  close(): void | Promise<void>;
}

/** One JSON object per line, written synchronously so a line is out the moment it exists. */
export function jsonlSink(target: string): Sink {
  const fd = target === '-' ? 1 : openSync(target, 'a');
  return {
    write(f) {
      writeSync(fd, JSON.stringify(f) + '\n');
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
