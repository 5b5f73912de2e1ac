// driftwatch/sdk: everything a custom signature needs.
export { containerKey, defineSignature, defineStreamSignature, isDrift, SEVERITIES, recordOf } from './signature.js';
export type {
  AnySignature,
  DetectionEvent,
  DetectionOf,
  EmitOptions,
  EventKindName,
  ExecDetection,
  FileFacts,
  MmapDetection,
  ScriptFacts,
  Severity,
  SignatureContext,
  SignatureDefinition,
  StreamContext,
  StreamFinding,
  StreamSignatureDefinition,
} from './signature.js';
export type { ExecEvent, MmapEvent, ProcessFileRecord, Ancestor } from '../pipeline/decode.js';
export type { ContainerInfo } from '../pipeline/container.js';
export type { Layer } from '../pipeline/classify.js';
export type { Finding } from '../pipeline/finding.js';
export { FileFlag } from '../pipeline/records.js';
