// What a signature author writes against: a definition (id, name, severity,
// MITRE, the event kinds it wants) and either onEvent, which calls ctx.emit()
// for each finding (defineSignature), or detect, an RxJS operator over the
// events of its kinds that reasons over time (defineStreamSignature). Copy any
// file next to this one to start a new signature.
import type { Observable } from 'rxjs';
import type { Layer } from '../pipeline/classify.js';
import type { ExecEvent, MmapEvent } from '../pipeline/decode.js';
import type { ContainerInfo } from '../pipeline/container.js';
import type { UnreadableReason } from '../enrich/safe-open.js';
import type { InstalledBy } from '../enrich/package-windows.js';
import type { ScriptFileFacts } from '../enrich/script-file.js';

export type Severity = 'CRITICAL' | 'HIGH' | 'MEDIUM' | 'LOW' | 'INFO';
export const SEVERITIES: readonly Severity[] = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW', 'INFO'];

export type EventKindName = 'exec' | 'mmap_exec';

/**
 * Why a file fact is missing: safe-open's reasons, container_gone (no live
 * process of the container and no runtime storage left to look in), or no
 * answer within the enrichment deadline.
 */
export type FileFactReason = UnreadableReason | 'container_gone' | 'timeout';

/**
 * Where a file's content was read: process (/proc/<pid>/exe), container_process
 * (another live process of the container, in the exec's mount namespace),
 * runtime_storage (the upper directory its runtime keeps).
 */
export type FactsSource = 'process' | 'container_process' | 'runtime_storage';

/**
 * What enrichment learnt about the executed (or mapped) file. Only ever read
 * from the file the kernel saw (device, inode, ctime); when it could not be,
 * the *Unavailable field says why.
 */
export interface FileFacts {
  sha256?: string;
  sha256Unavailable?: FileFactReason;
  /** The same path exists in the image's lower layers with identical content (chmod/touch copy-up). */
  sameAsImage?: boolean;
  sameAsImageUnavailable?: FileFactReason;
  /** Where the content was read, when it was. */
  source?: FactsSource;
}

/** For a #! script: the script file (the exec record's file is its interpreter). */
export interface ScriptFacts {
  path: string;
  /** Layer of the script itself; undefined when it could not be determined (it vanished). */
  layer?: Layer;
  /** Who said so: the kernel's bprm_check hook, or a lookup in the container's overlay. */
  source?: 'kernel' | 'overlay';
}

/** What became of an interpreter the kernel held stopped (src/prevent/held.ts). */
export type HoldOutcome = 'killed' | 'continued' | 'timeout_killed' | 'timeout_continued' | 'gone';

/**
 * An image interpreter run with an operand (exec_watch): what its argv
 * holds and, for a script file, what enrichment learnt about that file.
 */
export interface InterpretedScript {
  /** The interpreter family whose option rules were used (shell, python, ...). */
  family: string;
  /** file: a script file operand; inline (-c, -e), module (python -m), stdin, none: nothing to check. */
  operand: 'file' | 'inline' | 'module' | 'stdin' | 'none';
  /** Inline code, recorded as data (never judged). */
  code?: string;
  file?: ScriptFileFacts;
}

/** An exec, as signatures see it: the kernel record plus what enrichment added. */
export interface ExecDetection {
  kind: 'exec';
  exec: ExecEvent;
  container: ContainerInfo;
  /** The parent's executable as /proc showed it at enrichment time, when it was still there. */
  parentExecutable?: string;
  file?: FileFacts;
  script?: ScriptFacts;
  /** The executed file was last changed while a package manager of its container ran (its ctime, as the kernel recorded it). */
  installedBy?: InstalledBy;
  /** Only for execs the kernel sent as a watched interpreter. */
  interpreted?: InterpretedScript;
  /** A held interpreter's verdict (prevention of interpreted scripts). */
  held?: HoldOutcome;
}

/** A drifted file mapped executable. */
export interface MmapDetection {
  kind: 'mmap_exec';
  mmap: MmapEvent;
  container: ContainerInfo;
  file?: FileFacts;
  installedBy?: InstalledBy;
}

export type DetectionEvent = ExecDetection | MmapDetection;
export type DetectionOf<K extends EventKindName> = K extends 'exec' ? ExecDetection : MmapDetection;

export interface EmitOptions {
  /** Overrides the definition's severity for this finding. */
  severity?: Severity;
  /** Extra, signature-specific facts (kept under finding.signature.data). */
  data?: Record<string, string>;
}

export interface SignatureContext {
  emit(opts?: EmitOptions): void;
  /** Rate-limited log line attributed to the signature. */
  log(msg: string): void;
  /** The signature's settings from the policy file (signatures.<id>.config). */
  readonly config: Readonly<Record<string, unknown>>;
  /**
   * State kept per container (by container id, else mount namespace), in a
   * bounded LRU shared by the signature: the oldest containers' state goes first.
   */
  containerState<T>(event: DetectionEvent, init: () => T): T;
}

/** The context init() and close() get: everything but emit. */
export type SetupContext = Omit<SignatureContext, 'emit' | 'containerState'>;

export interface SignatureDefinition<K extends EventKindName = EventKindName> {
  id: string;
  name: string;
  version: string;
  description: string;
  severity: Severity;
  mitre?: { technique: string; tactic: string };
  tags?: string[];
  events: K[];
  init?(ctx: SetupContext): void;
  onEvent(event: DetectionOf<K>, ctx: SignatureContext): void;
  close?(): void;
}

/** A finding a stream signature makes: the event it is about, plus what emit() takes. */
export interface StreamFinding extends EmitOptions {
  event: DetectionEvent;
}

/** What detect() gets: settings and a log line; state lives in the operators. */
export type StreamContext = SetupContext;

/**
 * A signature over time: detect() turns the stream of its kinds' events into
 * findings with RxJS operators (groupBy per container, windows, scan).
 * Events it keeps past the call are its own copies (the engine detaches them).
 * Time operators use RxJS's default scheduler, so tests run on virtual time.
 */
export interface StreamSignatureDefinition<K extends EventKindName = EventKindName> extends Omit<SignatureDefinition<K>, 'onEvent' | 'init' | 'close'> {
  detect(events: Observable<DetectionOf<K>>, ctx: StreamContext): Observable<StreamFinding>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type EventSignature = SignatureDefinition<any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type StreamSignature = StreamSignatureDefinition<any>;
export type AnySignature = EventSignature | StreamSignature;

export function defineSignature<K extends EventKindName>(def: SignatureDefinition<K>): SignatureDefinition<K> {
  return def;
}

export function defineStreamSignature<K extends EventKindName>(def: StreamSignatureDefinition<K>): StreamSignatureDefinition<K> {
  return def;
}

export const isStreamSignature = (sig: AnySignature): sig is StreamSignature => typeof (sig as StreamSignature).detect === 'function';

/** The container an event belongs to: its id, else its mount namespace. */
export function containerKey(ev: DetectionEvent): string {
  return ev.container.id || `mntns:${recordOf(ev).mntNs}`;
}

/**
 * The event ran or mapped code that is not the image's: a file new in the
 * upper layer, an image file changed there, or a memfd. mmap_exec records
 * are only made for such files.
 */
export function isDrift(ev: DetectionEvent): boolean {
  if (ev.kind === 'mmap_exec') return true;
  if (isDriftedScript(ev.interpreted?.file)) return true;
  const layer = ev.exec.layer;
  if (layer === 'UPPER_NEW' || layer === 'MEMFD') return true;
  return layer === 'UPPER_COPIED_UP' && ev.file?.sameAsImage !== true;
}

/** The process and file record behind any detection. */
export function recordOf(ev: DetectionEvent): ExecEvent | MmapEvent {
  return ev.kind === 'exec' ? ev.exec : ev.mmap;
}

/**
 * An interpreter's script file that is not the image's: created or changed
 * in the container (unless a copy-up kept the image's content), in memory
 * (tmpfs, memfd), or on a writable volume.
 */
export function isDriftedScript(f: ScriptFileFacts | undefined): boolean {
  switch (f?.layer) {
    case 'UPPER_NEW':
    case 'TMPFS':
    case 'MEMFD':
      return true;
    case 'UPPER_COPIED_UP':
      return f.sameAsImage !== true;
    case 'OTHER':
      return f.volume === 'writable';
    default:
      return false;
  }
}
