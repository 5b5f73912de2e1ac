// driftwatch/sdk/testing: run a signature over hand-built or recorded events
// and look at its findings, without a kernel. Events carry a time (`at`, in
// ms) on a virtual clock, so stream signatures' windows are tested without
// waiting.
import { deepStrictEqual } from 'node:assert';
import { readFileSync } from 'node:fs';
import { TestScheduler } from 'rxjs/testing';
import { containerOf, type ContainerInfo, type HostNamespaces } from '../pipeline/container.js';
import { decodeBatch, decodeRecord, type DecodedEvent } from '../pipeline/decode.js';
import { SignatureEngine } from '../pipeline/engine.js';
import { BootClock, type Finding } from '../pipeline/finding.js';
import { Metrics } from '../pipeline/metrics.js';
import type { AnySignature, DetectionEvent, FileFacts, ScriptFacts } from './signature.js';
import { encodeExec, type RecordSpec } from './encode.js';

export { encodeExec, type RecordSpec } from './encode.js';
export { FileFlag } from '../pipeline/records.js';

/** Host namespaces used when none are given: anything else counts as a container. */
export const TEST_HOST: HostNamespaces = { mnt: 4026531840, pid: 4026531836 };

export interface TestEvent {
  record: RecordSpec | DecodedEvent;
  container?: Partial<ContainerInfo>;
  file?: FileFacts;
  script?: ScriptFacts;
  /** When the event arrives, in virtual ms from the start (default 0; equal times keep their order). */
  at?: number;
}

function toDetection(t: TestEvent, host: HostNamespaces): DetectionEvent {
  const rec = 'raw' in t.record ? (t.record as DecodedEvent) : decodeRecord(encodeExec(t.record as RecordSpec));
  const container = { ...containerOf(rec, host), ...t.container };
  if (rec.kind === 'mmap_exec') return { kind: 'mmap_exec', mmap: rec, container, ...(t.file ? { file: t.file } : {}) };
  return { kind: 'exec', exec: rec, container, ...(t.file ? { file: t.file } : {}), ...(t.script ? { script: t.script } : {}) };
}

export interface RunResult {
  findings: Finding[];
  errors: number;
}

/**
 * Feeds events to the signatures through the real engine, each at its time
 * on RxJS's virtual clock; the stream ends after the last event (open
 * windows flush). Returns every finding, per-event and stream, in order.
 */
export function runSignatures(signatures: AnySignature[], events: TestEvent[], host = TEST_HOST): RunResult {
  const metrics = new Metrics();
  const findings: Finding[] = [];
  const scheduler = new TestScheduler((actual, expected) => deepStrictEqual(actual, expected));
  scheduler.run(() => {
    const engine = new SignatureEngine(signatures, { hostname: 'test-host', clock: new BootClock(), metrics });
    engine.streamFindings.subscribe((f) => findings.push(f));
    let end = 0;
    for (const e of events) {
      end = Math.max(end, e.at ?? 0);
      scheduler.schedule(() => void findings.push(...engine.dispatch(toDetection(e, host))), e.at ?? 0);
    }
    scheduler.schedule(() => engine.close(), end);
  });
  return { findings, errors: metrics.total('signature_errors_total') };
}

/** Events from a `driftwatch record` file or a raw framed batch file. */
export function recordedEvents(file: string): DecodedEvent[] {
  const data = readFileSync(file);
  const nl = data.indexOf(0x0a);
  const isRecording = data[0] === 0x7b && nl > 0; // a JSON header line, then chunks
  if (!isRecording) return decodeBatch(data).events;
  const out: DecodedEvent[] = [];
  let off = nl + 1;
  while (off + 4 <= data.length) {
    const len = data.readUInt32LE(off);
    out.push(...decodeBatch(data.subarray(off + 4, off + 4 + len)).events);
    off += 4 + len;
  }
  return out;
}
