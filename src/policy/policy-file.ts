// The policy file (YAML or JSON): what is noise in this cluster. Validated
// up front; every error names the key that is wrong.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { SEVERITIES, type Severity } from '../sdk/signature.js';

export interface ExceptionRule {
  signature?: string;
  image?: string;
  container?: string;
  namespace?: string;
  /** "key=value" glob matched against each of the container's labels. */
  label?: string;
  executable?: string;
  args?: string;
  /** Any ancestor, by command name or (the parent) by executable path. */
  ancestor?: string;
  /** The parent, by command name or executable path. */
  parent?: string;
  /** Exact content hashes (any of them). */
  sha256?: string[];
  /** The image id or digest (with or without "sha256:"). */
  imageId?: string;
  /** Every given label must be present and match its glob. */
  labels?: Record<string, string>;
  session?: 'init' | 'exec';
  /**
   * Package managers (globs of command names), any of them: the executable was
   * last changed while one of them ran in its container (process.executable.installedBy).
   */
  installedBy?: string[];
  reason?: string;
}

export interface SignatureSettings {
  enabled?: boolean;
  severity?: Severity;
  config?: Record<string, unknown>;
  /** prevent: the kernel stops the exec (src/prevent/); default alert. */
  action?: Action;
}

export type Action = 'alert' | 'prevent';

/** Which containers prevention applies to: all given criteria must match; any item of a list. */
export interface PreventionScope {
  namespaces?: string[];
  images?: string[];
  containers?: string[];
  labels?: Record<string, string>;
}

export interface PreventionSettings {
  /** The kill switch: false stops nothing, at once (findings say alert). */
  enabled: boolean;
  /** Decide and report would_prevent; stop nothing. */
  dryRun: boolean;
  scope: PreventionScope;
  /** Containers whose metadata is not known yet (see README, Prevention). */
  unknownContainers: Action;
  /**
   * drift.interpreted_script: how long an interpreter is held stopped while
   * its script is judged, and what happens when that takes longer (continue:
   * fail open, kill: fail closed). Counted either way.
   */
  scriptHold: { timeoutMs: number; onTimeout: 'continue' | 'kill' };
}

export interface Policy {
  signatures: Record<string, SignatureSettings>;
  exceptions: ExceptionRule[];
  /** Severity for findings whose executable has the image's content (chmod/touch copy-up). */
  sameAsImageSeverity?: Severity;
  dedupWindowMs: number;
  prevention?: PreventionSettings;
}

export class PolicyError extends Error {}

export const DEFAULT_POLICY: Policy = { signatures: {}, exceptions: [], dedupWindowMs: 60_000 };

const GLOB_KEYS = ['signature', 'image', 'container', 'namespace', 'label', 'executable', 'args', 'ancestor', 'parent', 'imageId'] as const;
const EXCEPTION_KEYS = [...GLOB_KEYS, 'sha256', 'labels', 'session', 'installedBy', 'reason'] as const;
const SHA256 = /^[0-9a-f]{64}$/;

function duration(v: unknown, key: string): number {
  if (typeof v === 'number' && v >= 0) return v * 1000;
  const m = typeof v === 'string' ? /^(\d+)(ms|s|m|h)$/.exec(v) : null;
  if (!m) throw new PolicyError(`${key}: expected a duration like 30s, 5m or 500ms (got ${JSON.stringify(v)})`);
  return Number(m[1]) * { ms: 1, s: 1e3, m: 6e4, h: 3.6e6 }[m[2] as 'ms'];
}

function severity(v: unknown, key: string): Severity {
  if (!SEVERITIES.includes(v as Severity)) throw new PolicyError(`${key}: invalid severity ${JSON.stringify(v)} (one of ${SEVERITIES.join(', ')})`);
  return v as Severity;
}

function object(v: unknown, key: string): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new PolicyError(`${key}: expected a mapping`);
  return v as Record<string, unknown>;
}

function unknownKeys(o: Record<string, unknown>, allowed: readonly string[], key: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new PolicyError(`${key}.${k}: unknown key (allowed: ${allowed.join(', ')})`);
}

export function parsePolicy(text: string, source = 'policy'): Policy {
  let raw: unknown;
  try {
    raw = source.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new PolicyError(`${source}: not valid ${source.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (raw === null || raw === undefined) return { ...DEFAULT_POLICY };
  const top = object(raw, source);
  unknownKeys(top, ['signatures', 'exceptions', 'sameAsImageSeverity', 'dedup', 'prevention'], source);
  const policy: Policy = { signatures: {}, exceptions: [], dedupWindowMs: DEFAULT_POLICY.dedupWindowMs };
  if (top['signatures'] !== undefined) {
    for (const [id, v] of Object.entries(object(top['signatures'], 'signatures'))) {
      const key = `signatures.${id}`;
      const s = object(v, key);
      unknownKeys(s, ['enabled', 'severity', 'config', 'action'], key);
      const settings: SignatureSettings = {};
      if (s['enabled'] !== undefined) {
        if (typeof s['enabled'] !== 'boolean') throw new PolicyError(`${key}.enabled: expected true or false`);
        settings.enabled = s['enabled'];
      }
      if (s['severity'] !== undefined) settings.severity = severity(s['severity'], `${key}.severity`);
      if (s['config'] !== undefined) settings.config = object(s['config'], `${key}.config`);
      if (s['action'] !== undefined) settings.action = action(s['action'], `${key}.action`);
      policy.signatures[id] = settings;
    }
  }
  if (top['exceptions'] !== undefined) {
    if (!Array.isArray(top['exceptions'])) throw new PolicyError('exceptions: expected a list');
    top['exceptions'].forEach((v, i) => {
      const key = `exceptions[${i}]`;
      const e = object(v, key);
      unknownKeys(e, EXCEPTION_KEYS, key);
      const rule: ExceptionRule = {};
      for (const k of GLOB_KEYS) {
        if (e[k] === undefined) continue;
        if (typeof e[k] !== 'string' || !e[k]) throw new PolicyError(`${key}.${k}: expected a non-empty string`);
        rule[k] = e[k] as string;
      }
      if (e['reason'] !== undefined) {
        if (typeof e['reason'] !== 'string') throw new PolicyError(`${key}.reason: expected a string`);
        rule.reason = e['reason'];
      }
      if (e['sha256'] !== undefined) {
        const list = typeof e['sha256'] === 'string' ? [e['sha256']] : e['sha256'];
        if (!Array.isArray(list) || !list.length) throw new PolicyError(`${key}.sha256: expected a list of SHA-256 hashes`);
        rule.sha256 = list.map((h, j) => {
          if (typeof h !== 'string' || !SHA256.test(h.toLowerCase())) throw new PolicyError(`${key}.sha256[${j}]: expected 64 hex digits (got ${JSON.stringify(h)})`);
          return h.toLowerCase();
        });
      }
      if (e['labels'] !== undefined) {
        const labels = object(e['labels'], `${key}.labels`);
        if (!Object.keys(labels).length) throw new PolicyError(`${key}.labels: expected at least one label`);
        rule.labels = {};
        for (const [name, glob] of Object.entries(labels)) {
          if (typeof glob !== 'string' || !glob) throw new PolicyError(`${key}.labels.${name}: expected a non-empty glob`);
          rule.labels[name] = glob;
        }
      }
      if (e['session'] !== undefined) {
        if (e['session'] !== 'init' && e['session'] !== 'exec') throw new PolicyError(`${key}.session: expected init or exec (got ${JSON.stringify(e['session'])})`);
        rule.session = e['session'];
      }
      if (e['installedBy'] !== undefined) rule.installedBy = globs(e['installedBy'], `${key}.installedBy`);
      if (!EXCEPTION_KEYS.some((k) => k !== 'reason' && rule[k] !== undefined)) {
        throw new PolicyError(`${key}: matches everything; give at least one of ${EXCEPTION_KEYS.filter((k) => k !== 'reason').join(', ')}`);
      }
      policy.exceptions.push(rule);
    });
  }
  if (top['sameAsImageSeverity'] !== undefined) policy.sameAsImageSeverity = severity(top['sameAsImageSeverity'], 'sameAsImageSeverity');
  if (top['dedup'] !== undefined) {
    const d = object(top['dedup'], 'dedup');
    unknownKeys(d, ['window'], 'dedup');
    if (d['window'] !== undefined) policy.dedupWindowMs = duration(d['window'], 'dedup.window');
  }
  if (top['prevention'] !== undefined) policy.prevention = prevention(top['prevention']);
  return policy;
}

function action(v: unknown, key: string): Action {
  if (v !== 'alert' && v !== 'prevent') throw new PolicyError(`${key}: expected alert or prevent (got ${JSON.stringify(v)})`);
  return v;
}

function boolean(v: unknown, key: string): boolean {
  if (typeof v !== 'boolean') throw new PolicyError(`${key}: expected true or false`);
  return v;
}

function globs(v: unknown, key: string): string[] {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || !list.every((g) => typeof g === 'string' && g)) {
    throw new PolicyError(`${key}: expected a non-empty list of patterns`);
  }
  return list as string[];
}

function prevention(v: unknown): PreventionSettings {
  const p = object(v, 'prevention');
  unknownKeys(p, ['enabled', 'dryRun', 'scope', 'unknownContainers', 'scriptHold'], 'prevention');
  const scriptHold: PreventionSettings['scriptHold'] = { timeoutMs: 2000, onTimeout: 'continue' };
  if (p['scriptHold'] !== undefined) {
    const h = object(p['scriptHold'], 'prevention.scriptHold');
    unknownKeys(h, ['timeout', 'onTimeout'], 'prevention.scriptHold');
    if (h['timeout'] !== undefined) scriptHold.timeoutMs = duration(h['timeout'], 'prevention.scriptHold.timeout');
    if (h['onTimeout'] !== undefined) {
      if (h['onTimeout'] !== 'continue' && h['onTimeout'] !== 'kill') throw new PolicyError(`prevention.scriptHold.onTimeout: must be continue or kill (got ${JSON.stringify(h['onTimeout'])})`);
      scriptHold.onTimeout = h['onTimeout'];
    }
  }
  const scope: PreventionScope = {};
  if (p['scope'] !== undefined) {
    const sc = object(p['scope'], 'prevention.scope');
    unknownKeys(sc, ['namespaces', 'images', 'containers', 'labels'], 'prevention.scope');
    for (const k of ['namespaces', 'images', 'containers'] as const) if (sc[k] !== undefined) scope[k] = globs(sc[k], `prevention.scope.${k}`);
    if (sc['labels'] !== undefined) {
      const labels = object(sc['labels'], 'prevention.scope.labels');
      for (const [k, val] of Object.entries(labels)) {
        if (typeof val !== 'string') throw new PolicyError(`prevention.scope.labels.${k}: expected a string pattern`);
      }
      scope.labels = labels as Record<string, string>;
    }
  }
  const scoped = Object.keys(scope).length > 0;
  return {
    enabled: p['enabled'] === undefined ? true : boolean(p['enabled'], 'prevention.enabled'),
    dryRun: p['dryRun'] === undefined ? false : boolean(p['dryRun'], 'prevention.dryRun'),
    scope,
    // Unscoped, every container is in scope, known or not. Scoped, an unknown
    // container may be outside it: alert until its metadata is known.
    unknownContainers: p['unknownContainers'] === undefined ? (scoped ? 'alert' : 'prevent') : action(p['unknownContainers'], 'prevention.unknownContainers'),
    scriptHold,
  };
}

export function loadPolicy(file: string): Policy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PolicyError(`${file}: ${(err as Error).message}`);
  }
  return parsePolicy(text, file);
}
