// The kernel as an RxJS source. The BPF side wakes user space only for the
// first record after the ring buffer was empty; the ring is then drained at
// once (a lone exec is not kept waiting for a batch) into one reused buffer
// and emitted, and drained again every intervalMs while records keep coming
// (batching). Once a drain finds it empty, nothing runs until the next
// wakeup: an idle sensor does not poll.
// A full buffer means more is waiting: drain again at once. Loaders that
// cannot watch (replays) are polled every intervalMs. Subscribers must
// finish with a batch synchronously (decode copies what it keeps), because
// the buffer is refilled on the next drain.
//
// With a `signal`, aborting it ends the stream cleanly: one last drain of
// everything the kernel still holds, then complete, so every stage after it
// can finish its work (in-flight lookups, pending folds) before shutdown.
import { EMPTY, Observable, retry, timer, type MonoTypeOperatorFunction } from 'rxjs';
import type { Logger } from '../log.js';
import type { NativeLoader } from '../native/loader.js';
import type { Metrics } from './metrics.js';

export interface Batch {
  buf: Buffer;
  length: number;
}

export interface SourceOptions {
  intervalMs?: number;
  bufferBytes?: number;
  /** Abort to drain what is left and complete. */
  signal?: AbortSignal;
}

/** Drains in the final round stop after this many full buffers (a producer that never stops). */
const FINAL_DRAINS = 64;

export function kernelBatches(loader: NativeLoader, opts: SourceOptions = {}): Observable<Batch> {
  const intervalMs = opts.intervalMs ?? 10;
  // Not zero-filled: an idle sensor's buffer stays untouched (not resident);
  // only bytes a drain wrote are ever read.
  const buf = Buffer.allocUnsafeSlow(opts.bufferBytes ?? 4 << 20);
  const signal = opts.signal;
  return new Observable<Batch>((subscriber) => {
    let timer: NodeJS.Timeout | undefined;
    let immediate: NodeJS.Immediate | undefined;
    let stopped = false;
    let emitting = false;
    let finishRequested = false;

    const drain = (): void => {
      timer = immediate = undefined;
      if (stopped) return;
      let length: number;
      try {
        length = loader.consume(buf);
      } catch (err) {
        stopped = true;
        subscriber.error(err);
        return;
      }
      if (length > 0) emit(length);
      if (stopped) return;
      if (finishRequested) return finish();
      // A nearly full buffer: the ring likely holds more. Go again now.
      if (length > buf.length - 64 * 1024 || intervalMs <= 0) immediate = setImmediate(drain);
      else if (length === 0 && watching) loader.arm!();
      else timer = setTimeout(drain, intervalMs);
    };

    const onReadable = (): void => {
      if (!stopped && !timer && !immediate) immediate = setImmediate(drain);
    };
    let watching = false;
    if (loader.watch && loader.arm && intervalMs > 0) {
      try {
        loader.watch(onReadable);
        watching = true;
      } catch {
        // no watcher thread (e.g. no epoll here): poll instead
      }
    }

    const emit = (length: number): void => {
      emitting = true;
      try {
        subscriber.next({ buf, length });
      } finally {
        emitting = false;
      }
    };

    const finish = (): void => {
      if (stopped) return;
      // An abort from inside a subscriber (the batch is still being read): finish after it.
      if (emitting) {
        finishRequested = true;
        return;
      }
      stopped = true;
      clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
      if (watching) loader.unwatch?.();
      try {
        for (let i = 0; i < FINAL_DRAINS; i++) {
          const length = loader.consume(buf);
          if (length === 0) break;
          emit(length);
        }
      } catch (err) {
        subscriber.error(err);
        return;
      }
      subscriber.complete();
    };

    if (signal?.aborted) {
      finish();
      return;
    }
    signal?.addEventListener('abort', finish, { once: true });
    timer = setTimeout(drain, 0);
    return () => {
      stopped = true;
      clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
      if (watching) {
        try {
          loader.unwatch?.();
        } catch {
          // closed already
        }
      }
      signal?.removeEventListener('abort', finish);
    };
  });
}

/**
 * A failed drain is counted and logged, and the source is subscribed again
 * after a pause. Once `signal` is aborted a failure ends the stream instead.
 */
export function restartAfterDrainErrors(signal: AbortSignal, metrics: Metrics, log: Logger, pauseMs = 100): MonoTypeOperatorFunction<Batch> {
  return retry({
    delay: (err: unknown) => {
      metrics.inc('pipeline_errors_total');
      const why = err instanceof Error ? err.message : String(err);
      if (signal.aborted) {
        log.warn(`final drain failed: ${why}`);
        return EMPTY;
      }
      log.error(`pipeline error, restarting the stream: ${why}`);
      return timer(pauseMs);
    },
  });
}
