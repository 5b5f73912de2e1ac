// A load generator for the backend: N "sensors", each a gRPC channel of its
// own sending one batch at a time (as the exporter does), with realistic
// findings of about 1.3 KB. Batches are encoded once; each send patches fresh
// ids into a copy, so every finding sent is new to the backend, and (unless
// asked for fixed times) the time of sending, as a live fleet's findings carry
// the time of their exec: stores see times that grow, not the same 512 again.
import * as grpc from '@grpc/grpc-js';
import { driftwatch } from '#gen/finding.js';
import type { FindingJson } from '#gen/finding-json.js';

const { Finding, ExportRequest, ExportResponse } = driftwatch.v1;
const ID_PLACEHOLDER = 'ffffffffffffffff';
// as long as every ISO time from 1970 to 9999, so a send can overwrite it in place
const TIME_PLACEHOLDER = '1999-09-09T09:09:09.999Z';

/** `live`: each send carries the current time; `fixed`: finding i always has the same time (the rows before 2026-12-02). */
export type LoadTimes = 'live' | 'fixed';

/** One realistic drift finding; `i` picks its container, image, host and binary from fixed pools. */
export function realisticFinding(i: number, id = `${ID_PLACEHOLDER}${String(i).padStart(8, '0')}`): FindingJson {
  const container = (i * 7919) % 2000;
  const image = container % 50;
  const host = container % 100;
  const binary = (i * 104729) % 1000;
  const hex = (n: number, len: number) => n.toString(16).padStart(8, '0').repeat(Math.ceil(len / 8)).slice(0, len);
  return {
    id,
    time: new Date(Date.UTC(2026, 10, 1) + i * 1000).toISOString(),
    signature: {
      id: 'drift.new_executable', name: 'New executable in container', severity: 'CRITICAL', version: '1.0.0',
      description: 'A file created in the container (upper layer, no lower copy) was executed.',
      mitre: { technique: 'T1059', tactic: 'execution' }, tags: ['drift', 'container'],
    },
    process: {
      pid: 40 + (i % 100), ppid: 1, uid: 0, gid: 0, comm: 'payload', args: ['/tmp/payload', '--connect', `10.0.${i % 255}.7:4444`],
      filename: '/tmp/payload', hostPid: 20_000 + i, hostPpid: 19_000, startTime: '2026-11-01T00:00:00.000Z', execSession: i % 3 === 0,
      session: i % 3 === 0 ? 'exec' : 'init', ancestry: [{ hostPid: 19_000, comm: 'sh' }, { hostPid: 18_000, comm: 'containerd-shim' }],
      parent: { hostPid: 19_000, comm: 'sh', executable: '/bin/busybox' },
      executable: {
        path: '/tmp/payload', layer: 'UPPER_NEW', inode: String(1000 + i), device: '0:52', mode: 0o100755, nlink: 1,
        ctime: '2026-11-01T00:00:00.000Z', fsMagic: '0x794c7630', sha256: hex(binary + 1, 64),
      },
    },
    container: {
      id: hex(container + 1, 64), runtime: 'containerd', name: `web-${container}`, image: `registry.example.com/team/app-${image}:1.${image}`,
      imageId: `sha256:${hex(image + 1, 64)}`, labels: { 'app.kubernetes.io/name': `app-${image}`, 'pod-template-hash': hex(container, 10) },
      mntNs: 4026532000 + container, pidNs: 4026533000 + container, cgroupId: String(9000 + container),
      cgroup: `/kubepods/besteffort/pod${hex(container, 8)}-0000-0000-0000-000000000000/${hex(container + 1, 64)}`,
    },
    kubernetes: { namespace: `team-${image % 20}`, pod: `web-${container}-7d4b9c`, podUid: `${hex(container, 8)}-0000-0000-0000-000000000000`, container: 'web' },
    host: { hostname: `node-${host}` },
    count: 1,
  };
}

export function encodeRequest(findings: FindingJson[]): Buffer {
  return Buffer.from(ExportRequest.encode({ findings: findings.map((f) => Finding.fromObject(f)) }).finish());
}

/** An encoded batch whose ids are rewritten on each send. */
export class BatchTemplate {
  private readonly buf: Buffer;
  private readonly offsets: number[] = [];
  private readonly timeOffsets: number[] = [];
  private next = 0;

  constructor(size: number, private readonly runId = Math.floor(Math.random() * 0xffffff), times: LoadTimes = 'live') {
    const findings = Array.from({ length: size }, (_, i) => realisticFinding(i));
    if (times === 'live') for (const f of findings) f.time = TIME_PLACEHOLDER;
    this.buf = encodeRequest(findings);
    const find = (text: string, out: number[]) => {
      const needle = Buffer.from(text);
      for (let at = this.buf.indexOf(needle); at >= 0; at = this.buf.indexOf(needle, at + needle.length)) out.push(at);
    };
    find(ID_PLACEHOLDER, this.offsets);
    if (this.offsets.length !== size) throw new Error(`found ${this.offsets.length} ids in a batch of ${size}`);
    if (times === 'live') find(TIME_PLACEHOLDER, this.timeOffsets);
    if (times === 'live' && this.timeOffsets.length !== size) throw new Error(`found ${this.timeOffsets.length} times in a batch of ${size}`);
  }

  get bytes(): number {
    return this.buf.length;
  }

  /** A copy with new, unique ids (and the current time, for live times). */
  fresh(): Buffer {
    const b = Buffer.from(this.buf);
    for (const off of this.offsets) b.write((this.runId * 0x100000000 + this.next++).toString(16).padStart(16, '0'), off, 'latin1');
    if (this.timeOffsets.length) {
      const now = new Date().toISOString();
      for (const off of this.timeOffsets) b.write(now, off, 'latin1');
    }
    return b;
  }
}

export interface ExportReply {
  error?: grpc.ServiceError;
  stored?: number;
  duplicates?: number;
  rejected?: number;
  rejectReason?: string;
}

/** One raw Export call with the given bytes. */
export function exportRaw(client: grpc.Client, body: Buffer, opts: { token?: string; deadlineMs?: number } = {}): Promise<ExportReply> {
  const md = new grpc.Metadata();
  if (opts.token) md.set('authorization', `Bearer ${opts.token}`);
  return new Promise((resolve) =>
    client.makeUnaryRequest(
      '/driftwatch.v1.FindingService/Export',
      (b: Buffer) => b,
      (b: Buffer) => ExportResponse.toObject(ExportResponse.decode(b)),
      body,
      md,
      { deadline: Date.now() + (opts.deadlineMs ?? 30_000) },
      (err, res?: { stored?: number; duplicates?: number; partialSuccess?: { rejectedFindings?: number; errorMessage?: string } }) =>
        resolve(
          err
            ? { error: err }
            : {
                stored: res?.stored ?? 0,
                duplicates: res?.duplicates ?? 0,
                rejected: res?.partialSuccess?.rejectedFindings ?? 0,
                ...(res?.partialSuccess?.errorMessage ? { rejectReason: res.partialSuccess.errorMessage } : {}),
              },
        ),
    ),
  );
}

export interface LoadResult {
  sensors: number;
  seconds: number;
  stored: number;
  findingsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /**
   * The mean latency the rate alone implies (Little's law: sensors × batch
   * findings are always in flight, so they wait sensors × batch / rate on
   * average): no scheduling can bring the mean, let alone p99, under it.
   */
  littleMs: number;
  errors: Record<string, number>;
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Closed loop: every sensor sends its next batch when the last one was answered. */
export async function runLoad(address: string, sensors: number, seconds: number, batch = 512, token?: string, times: LoadTimes = 'live'): Promise<LoadResult> {
  const template = new BatchTemplate(batch, undefined, times);
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let stored = 0;
  const end = Date.now() + seconds * 1000;
  const start = Date.now();
  await Promise.all(
    Array.from({ length: sensors }, async (_, s) => {
      // a channel per sensor: its own connection, as from its own node
      const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_send_message_length': 64 << 20, 'grpc.channel_id': s } as grpc.ClientOptions);
      try {
        while (Date.now() < end) {
          const body = template.fresh();
          const t0 = performance.now();
          const r = await exportRaw(client, body, token ? { token } : {});
          latencies.push(performance.now() - t0);
          if (r.error) {
            const k = grpc.status[r.error.code] ?? String(r.error.code);
            errors[k] = (errors[k] ?? 0) + 1;
            await new Promise((res) => setTimeout(res, 50));
          } else stored += r.stored!;
        }
      } finally {
        client.close();
      }
    }),
  );
  const secs = (Date.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const findingsPerSec = stored / secs;
  return {
    sensors, seconds: secs, stored, findingsPerSec, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99),
    meanMs: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length), littleMs: ((sensors * batch) / Math.max(1, findingsPerSec)) * 1000, errors,
  };
}
