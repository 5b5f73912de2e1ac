// Row 11: a drift storm. A minimal overlay container drops K binaries into
// its upper layer and runs each (they stay alive); the real exec hook records
// those execs, and the BPF test-run generator then writes copies of exactly
// these records (fresh timestamps) into the sensor's ring buffer at a fixed
// rate. The sensor, in this process with the CLI's stages (decode,
// enrichment against the live processes and real files, hashing, all
// built-in signatures, policy and dedup, spool, gRPC export to an embedded
// backend), works through them as it would through real execs.
// Reported per rate: records written, dropped in the kernel (counted) and
// lost (written, never decoded: must be 0); latency from the record's kernel
// timestamp to the end of enrichment (the expensive stage; signatures,
// policy and sinks run synchronously after it); the sensor's CPU (this
// process minus the generator's own test-run calls) and its peak RSS; file
// reads for hashing (one per binary, however many execs).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBackend } from '../src/backend/server.js';
import { detectMetadataResolver } from '../src/enrich/index.js';
import { Exporter } from '../src/export/exporter.js';
import { createLogger } from '../src/log.js';
import { createLoader, type NativeLoader } from '../src/native/loader.js';
import { readHostNamespaces } from '../src/pipeline/container.js';
import { decodeExecRecord } from '../src/pipeline/decode.js';
import { Metrics } from '../src/pipeline/metrics.js';
import { EXEC, EventKind, FRAME_HEADER, HDR } from '../src/pipeline/records.js';
import { startSensor } from '../src/pipeline/sensor.js';
import { MiniContainer } from '../test/helpers/minicontainer.js';
import { rerunWithCliNodeFlags } from '../test/helpers/sensor-process.js';

export interface StormResult {
  rate: number;
  seconds: number;
  written: number;
  /** Reserve failures in the generator: the ring was full (kernel_ringbuf_full counts them). */
  kernelDropped: number;
  /** Written but never decoded: must be 0. */
  lost: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Sensor CPU over the window, percent of one core. */
  cpuPercent: number;
  peakRssMiB: number;
  /** Findings the backend stored over all rates (dedup folds repeats into counts). */
  findingsStored: number;
  /** Held: nothing dropped or lost, and the backlog was gone within 1 s of the window's end. */
  held: boolean;
}

export interface DriftStorm {
  binaries: number;
  hashReads: number;
  rows: StormResult[];
}

const childPids = (pid: number): number[] => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
const kill = (pid: number) => {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** The exec records of the container's dropped binaries, as the kernel wrote them. */
async function captureRecords(loader: NativeLoader, binaries: number, deadlineMs = 20_000): Promise<Buffer[]> {
  const buf = Buffer.allocUnsafeSlow(4 << 20); // not zero-filled: only what consume() wrote is read
  const found = new Map<string, Buffer>();
  const end = Date.now() + deadlineMs;
  while (found.size < binaries && Date.now() < end) {
    const n = loader.consume(buf);
    if (n === 0) {
      await sleep(20);
      continue;
    }
    for (let off = 0; off + FRAME_HEADER <= n; ) {
      const len = buf.readUInt32LE(off);
      const raw = Buffer.from(buf.subarray(off + FRAME_HEADER, off + FRAME_HEADER + len));
      off += (FRAME_HEADER + len + 7) & ~7;
      if (raw.readUInt16LE(HDR.kind) !== EventKind.EXEC) continue;
      const ev = decodeExecRecord(raw);
      if (/^\/tmp\/storm-\d+\/sleep$/.test(ev.path) && ev.layer === 'UPPER_NEW') found.set(ev.path, raw);
    }
  }
  if (found.size < binaries) throw new Error(`captured ${found.size} of ${binaries} exec records of the dropped binaries`);
  return [...found.values()];
}

export async function driftStorm(rates = [1_000, 10_000, 50_000], seconds = 30, binaries = 16): Promise<DriftStorm> {
  const data = mkdtempSync(join(tmpdir(), 'driftwatch-storm-'));
  const log = createLogger('error');
  const host = readHostNamespaces();
  const ct = new MiniContainer();
  const loader = createLoader({ benchGenerator: true, ignoreTgid: process.pid, hostMntNs: host.mnt, hostPidNs: host.pid, ringBufferBytes: 2 << 20 });
  const cleanups: Array<() => Promise<void> | void> = [];
  try {
    loader.load();
    for (const p of loader.programs()) {
      try {
        loader.attachProgram(p);
      } catch {
        // optional hooks (script, mmap) this kernel refuses: not needed here
      }
    }
    // K dropped binaries (busybox copies, each with its own content), each running `sleep`.
    const ids = Array.from({ length: binaries }, (_, i) => i + 1);
    const script = [
      ...ids.map((i) => `mkdir -p /tmp/storm-${i}; cp /bin/busybox /tmp/storm-${i}/sleep; echo ${i} >> /tmp/storm-${i}/sleep`),
      "touch /dev/null", // the image has no /dev: ash opens it for background jobs
      ...ids.map((i) => `/tmp/storm-${i}/sleep 3600 &`),
      'wait',
    ].join('\n');
    const before = new Set(childPids(process.pid));
    const running = ct.start(script, { timeoutMs: 3_600_000 });
    cleanups.push(async () => {
      // The container's pid namespace ends with its init (the shell unshare forked): kill that.
      for (const unshare of childPids(process.pid).filter((p) => !before.has(p))) {
        for (const init of childPids(unshare)) kill(init);
      }
      await running.done;
    });
    const templates = await captureRecords(loader, binaries).catch((err: Error) => {
      throw new Error(`${err.message}; the container said: ${running.output().slice(-500)}`);
    });
    for (const [i, rec] of templates.entries()) {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(i);
      const value = Buffer.alloc(8 + 4096);
      value.writeUInt32LE(rec.length, 0);
      rec.copy(value, 8);
      loader.mapUpdate!('bench_tmpl', key, value);
    }
    // The container's mount namespace tells its records from every other exec on the host.
    const ourMntNs = templates[0]!.readUInt32LE(EXEC.mntNs);
    // Boot-time ns of "now": one generated record, read back at once.
    const calib = Buffer.allocUnsafeSlow(1 << 20);
    while (loader.consume(calib) > 0);
    loader.benchGenerate!(1, 1);
    const hr0 = process.hrtime.bigint();
    loader.consume(calib);
    const bootOffset = calib.readBigUInt64LE(FRAME_HEADER + 8) - hr0;
    const bootNow = () => process.hrtime.bigint() + bootOffset;

    // Our records as the sensor drains them (the generator's and nothing else).
    let delivered = 0;
    const counting = new Proxy(loader, {
      get(target, prop) {
        if (prop === 'consume') {
          return (b: Buffer) => {
            const n = target.consume(b);
            let off = 0;
            while (off + FRAME_HEADER <= n) {
              const len = b.readUInt32LE(off);
              if (len >= EXEC.data && b.readUInt16LE(off + FRAME_HEADER + HDR.kind) === EventKind.EXEC && b.readUInt32LE(off + FRAME_HEADER + EXEC.mntNs) === ourMntNs) delivered++;
              off += (FRAME_HEADER + len + 7) & ~7;
            }
            return n;
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });

    const backend = await startBackend({ listen: '127.0.0.1:0', db: join(data, 'findings.db'), inline: true, log: () => {} });
    cleanups.push(() => backend.stop());
    const exporter = new Exporter({ backend: backend.address, spoolDir: join(data, 'spool'), log: () => {} });
    const metadata = await detectMetadataResolver(log);
    cleanups.push(() => metadata.close());
    const metrics = new Metrics();
    let latencies: number[] = [];
    let sample = 0;
    const sensor = await startSensor({
      log,
      metrics,
      loader: counting,
      hostNamespaces: host,
      resolver: metadata.resolver,
      sinks: [{ write: (f) => exporter.export(f), close: () => exporter.shutdown() }],
      // Sees every enriched event: the end of the expensive stage. One in 16 is timed.
      claim: (ev) => {
        if (ev.kind === 'exec' && ev.exec.mntNs === ourMntNs && (sample++ & 15) === 0) latencies.push(Number(bootNow() - ev.exec.ktimeNs) / 1e6);
        return false;
      },
    });
    cleanups.push(() => sensor.stop());
    await sleep(1000);

    const rows: StormResult[] = [];
    for (const rate of rates) {
      latencies = [];
      sample = 0;
      const d0 = delivered;
      let written = 0;
      let dropped = 0;
      let generatorNs = 0n;
      let peak = rssKiB();
      const rssTimer = setInterval(() => (peak = Math.max(peak, rssKiB())), 100);
      const c0 = cpuUs();
      const t0 = process.hrtime.bigint();
      const end = t0 + BigInt(seconds) * 1_000_000_000n;
      // Every 10 ms, what the rate owes so far: a late tick (a busy event loop) writes more, as execs would not wait.
      for (let now = t0; now < end; now = process.hrtime.bigint()) {
        const due = Math.min(Math.floor((Number(now - t0) / 1e9) * rate) - written - dropped, 20_000);
        if (due > 0) {
          const g0 = process.hrtime.bigint();
          const r = loader.benchGenerate!(due, templates.length);
          generatorNs += process.hrtime.bigint() - g0;
          written += r.written;
          dropped += r.dropped;
        }
        await sleep(10);
      }
      const windowNs = process.hrtime.bigint() - t0;
      const cpu = cpuUs() - c0 - Number(generatorNs / 1000n);
      // The backlog: drained within 1 s counts as held.
      const drainStart = Date.now();
      while (delivered - d0 < written && Date.now() - drainStart < 30_000) await sleep(20);
      while (Number(metrics.snapshot().find((m) => m.name === 'enrichment_inflight')?.value ?? 0) > 0 && Date.now() - drainStart < 30_000) await sleep(20);
      const drainMs = Date.now() - drainStart;
      clearInterval(rssTimer);
      peak = Math.max(peak, rssKiB());
      latencies.sort((a, b) => a - b);
      const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
      const lost = written - (delivered - d0);
      rows.push({
        rate,
        seconds,
        written,
        kernelDropped: dropped,
        lost,
        latencyP50Ms: pct(50),
        latencyP99Ms: pct(99),
        cpuPercent: (cpu / 1e6 / (Number(windowNs) / 1e9)) * 100,
        peakRssMiB: peak / 1024,
        findingsStored: 0,
        held: dropped === 0 && lost === 0 && drainMs <= 1000,
      });
      await sleep(1000);
    }
    await sensor.stop(); // flushes the exporter into the backend
    cleanups.pop();
    const stored = await backend.store.count();
    for (const r of rows) r.findingsStored = stored;
    return { binaries: templates.length, hashReads: metrics.get('file_hash_reads_total'), rows };
  } finally {
    // Each step on its own: one that fails leaves no daemon, container or directory behind.
    const steps: Array<() => Promise<void> | void> = [...cleanups.reverse(), () => loader.close(), () => ct.destroy(), () => rmSync(data, { recursive: true, force: true })];
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        console.error(`drift storm cleanup: ${(err as Error).message}`);
      }
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // The sensor runs in this process: with the Node flags the CLI runs with.
  const code = rerunWithCliNodeFlags();
  if (code !== undefined) process.exit(code);
  const rates = process.argv[2] ? process.argv[2].split(',').map(Number) : undefined;
  const secs = process.argv[3] ? Number(process.argv[3]) : undefined;
  driftStorm(rates, secs).then((r) => console.log(JSON.stringify(r, null, 2)));
}
