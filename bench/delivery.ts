// Row 2: native delivery. A BPF syscall program (run with BPF test-run)
// writes synthetic records into the real ring buffer; the addon drains them
// into a reused buffer and JS walks the frames. Measures events/s at
// saturation, then loss at a sustained rate.
import { createLoader } from '../src/native/loader.js';
import { FRAME_HEADER } from '../src/pipeline/records.js';

export interface DeliveryResult {
  saturationEventsPerSec: number;
  sustainedRate: number;
  sustainedSeconds: number;
  sustainedDelivered: number;
  sustainedLost: number;
}

function walk(buf: Buffer, n: number): number {
  let off = 0;
  let count = 0;
  while (off + FRAME_HEADER <= n) {
    const len = buf.readUInt32LE(off);
    off += (FRAME_HEADER + len + 7) & ~7;
    count++;
  }
  return count;
}

export async function delivery(sustainedRate = 500_000, seconds = 10): Promise<DeliveryResult> {
  const loader = createLoader({ benchGenerator: true, ringBufferBytes: 16 << 20 });
  loader.load();
  const buf = Buffer.alloc(4 << 20);
  try {
    // Saturation: generate in chunks the ring can hold, drain everything.
    let delivered = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 200; i++) {
      loader.benchGenerate!(20_000);
      let n;
      while ((n = loader.consume(buf)) > 0) delivered += walk(buf, n);
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const saturation = delivered / secs;

    // Sustained: every 10 ms the kernel side writes rate/100 records, and the
    // reader polls on the sensor's own 10 ms interval.
    const perTick = Math.round(sustainedRate / 100);
    let written = 0;
    let dropped = 0;
    let got = 0;
    const end = Date.now() + seconds * 1000;
    let next = Date.now();
    while (Date.now() < end) {
      const r = loader.benchGenerate!(perTick);
      written += r.written;
      dropped += r.dropped;
      let n;
      while ((n = loader.consume(buf)) > 0) got += walk(buf, n);
      next += 10;
      const wait = next - Date.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
    }
    let n;
    while ((n = loader.consume(buf)) > 0) got += walk(buf, n);
    return {
      saturationEventsPerSec: saturation,
      sustainedRate,
      sustainedSeconds: seconds,
      sustainedDelivered: got,
      sustainedLost: dropped + (written - got),
    };
  } finally {
    loader.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) delivery().then((r) => console.log(r));
