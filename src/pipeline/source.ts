// The kernel as an RxJS source. The BPF side never wakes user space per
// event, so we poll: every intervalMs, drain the ring buffer into one reused
// buffer and emit it. A full buffer means more is waiting: drain again at
// once. Subscribers must finish with a batch synchronously (decode copies
// what it keeps), because the buffer is refilled on the next drain.
import { Observable } from 'rxjs';
import type { NativeLoader } from '../native/loader.js';

export interface Batch {
  buf: Buffer;
  length: number;
}

export interface SourceOptions {
  intervalMs?: number;
  bufferBytes?: number;
}

export function kernelBatches(loader: NativeLoader, opts: SourceOptions = {}): Observable<Batch> {
  const intervalMs = opts.intervalMs ?? 10;
  const buf = Buffer.alloc(opts.bufferBytes ?? 4 << 20);
  return new Observable<Batch>((subscriber) => {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const drain = (): void => {
      if (stopped) return;
      let length: number;
      try {
        length = loader.consume(buf);
      } catch (err) {
        subscriber.error(err);
        return;
      }
      if (length > 0) subscriber.next({ buf, length });
      // A nearly full buffer: the ring likely holds more. Go again now.
      if (length > buf.length - 64 * 1024 || intervalMs <= 0) setImmediate(drain);
      else timer = setTimeout(drain, intervalMs);
    };
    timer = setTimeout(drain, 0);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  });
}

/** One final synchronous drain (shutdown): everything the kernel still holds. */
export function drainOnce(loader: NativeLoader, onBatch: (b: Batch) => void, bufferBytes = 4 << 20): void {
  const buf = Buffer.alloc(bufferBytes);
  for (let i = 0; i < 64; i++) {
    const length = loader.consume(buf);
    if (length === 0) return;
    onBatch({ buf, length });
  }
}
