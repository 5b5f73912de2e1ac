// What a signature author writes against: a definition (id, name, severity,
// MITRE, the event kinds it wants) and onEvent, which calls ctx.emit() for
// each finding. Copy any file next to this one to start a new signature.
import type { ExecEvent } from '../pipeline/decode.js';
import type { ContainerInfo } from '../pipeline/container.js';

export type Severity = 'CRITICAL' | 'HIGH' | 'MEDIUM' | 'LOW' | 'INFO';
export const SEVERITIES: readonly Severity[] = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW', 'INFO'];

export type EventKindName = 'exec';

/** One event as signatures see it: the kernel record plus what enrichment added. */
export interface DetectionEvent {
  kind: 'exec';
  exec: ExecEvent;
  container: ContainerInfo;
  /** The parent's executable as /proc showed it at enrichment time, when it was still there. */
  parentExecutable?: string;
}

export interface EmitOptions {
  /** Overrides the definition's severity for this finding. */
  severity?: Severity;
  /** Extra, signature-specific facts (kept under finding.signature.data). */
  data?: Record<string, string>;
}

export interface SignatureContext {
  emit(opts?: EmitOptions): void;
}

export interface SignatureDefinition {
  id: string;
  name: string;
  version: string;
  description: string;
  severity: Severity;
  mitre?: { technique: string; tactic: string };
  tags?: string[];
  events: EventKindName[];
  onEvent(event: DetectionEvent, ctx: SignatureContext): void;
}

export function defineSignature(def: SignatureDefinition): SignatureDefinition {
  return def;
}
