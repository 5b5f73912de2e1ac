// Sensor configuration: one YAML (or JSON) file, environment variables and
// flags. Precedence: flags > environment (DRIFTWATCH_<KEY>) > file > defaults.
// Every error names the key.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { ScriptHook } from './native/loader.js';
import { DEFAULT_PACKAGE_MANAGERS } from './enrich/package-windows.js';
import { parseInterpreters } from './pipeline/interpreters.js';
import { isLogFormat, isLogLevel, type LogFormat, type LogLevel } from './log.js';

export interface SensorConfig {
  jsonl?: string;
  output: 'jsonl' | 'falco-json';
  includeHost: boolean;
  emitAll: boolean;
  logLevel: LogLevel;
  /** auto: readable lines on a terminal, JSON otherwise. */
  logFormat: LogFormat;
  backend?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  dataDir: string;
  /** Files or directories of custom signature modules. */
  signatures?: string[];
  strict: boolean;
  /** How long one event may take in one custom signature before its worker is stopped (ms). */
  signatureBudgetMs?: string;
  /** Heap limit of each custom signature's worker (MB). */
  signatureMemoryMb?: string;
  policy?: string;
  dedupWindow?: string;
  metricsAddress: string;
  /** Falco http_output: POST each finding in Falco's JSON shape here (Falcosidekick). */
  falcoHttpUrl?: string;
  /** OTLP logs over gRPC: host:port, or http://host:port (plaintext) / https://host:port. */
  otlpEndpoint?: string;
  /** Run the self-test after attaching (and on SIGUSR1); /readyz waits for it. */
  selftest: boolean;
  /** Which bprm_check hook to try for #! scripts: auto (BPF-LSM, then fentry), one of them, or none (overlay lookup). */
  scriptHook: 'auto' | 'lsm' | 'fentry' | 'none';
  criSocket?: string;
  dockerSocket?: string;
  /** Exec mappings through the sys_enter_mmap tracepoint where neither BPF-LSM nor fentry loads: costs every syscall on the node. */
  mmapTracepoint: boolean;
  /** Command names of package managers: their execs open a window, and files they write get installedBy. */
  packageManagers: string[];
  /** Interpreters whose script operand is checked (drift.interpreted_script): `name`, `name:<inline option>`, `{a..b}` ranges. Default: DEFAULT_INTERPRETERS. */
  interpreters?: string[];
}

export class ConfigError extends Error {}

export const CONFIG_DEFAULTS: SensorConfig = {
  output: 'jsonl',
  includeHost: false,
  emitAll: false,
  logLevel: 'info',
  logFormat: 'auto',
  dataDir: '/var/lib/driftwatch',
  strict: false,
  metricsAddress: '127.0.0.1:9464',
  selftest: true,
  scriptHook: 'auto',
  mmapTracepoint: false,
  packageManagers: [...DEFAULT_PACKAGE_MANAGERS],
};

/** A list is repeated as a flag, a YAML sequence (or one string) in the file, and `:`-separated in the environment, like PATH. */
type Kind = 'string' | 'boolean' | 'list';
const KEYS: Record<keyof SensorConfig, Kind> = {
  jsonl: 'string',
  output: 'string',
  includeHost: 'boolean',
  emitAll: 'boolean',
  logLevel: 'string',
  logFormat: 'string',
  backend: 'string',
  token: 'string',
  tlsCa: 'string',
  tlsCert: 'string',
  tlsKey: 'string',
  dataDir: 'string',
  signatures: 'list',
  strict: 'boolean',
  signatureBudgetMs: 'string',
  signatureMemoryMb: 'string',
  policy: 'string',
  dedupWindow: 'string',
  metricsAddress: 'string',
  falcoHttpUrl: 'string',
  otlpEndpoint: 'string',
  selftest: 'boolean',
  scriptHook: 'string',
  criSocket: 'string',
  dockerSocket: 'string',
  mmapTracepoint: 'boolean',
  packageManagers: 'list',
  interpreters: 'list',
};

/** --include-host ⇄ includeHost ⇄ DRIFTWATCH_INCLUDE_HOST */
export const flagName = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
export const envName = (k: string) => `DRIFTWATCH_${k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

function coerce(key: string, v: unknown, where: string, fromEnv = false): string | boolean | string[] {
  const kind = KEYS[key as keyof SensorConfig];
  if (kind === 'list') {
    const items = typeof v === 'string' ? (fromEnv ? v.split(':') : [v]) : v;
    if (!Array.isArray(items) || items.length === 0 || !items.every((i) => typeof i === 'string' && i !== '')) {
      throw new ConfigError(`${where}${key}: expected a non-empty string or a list of them (got ${JSON.stringify(v)})`);
    }
    return items as string[];
  }
  if (kind === 'boolean') {
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === '1') return true;
    if (v === 'false' || v === '0') return false;
    throw new ConfigError(`${where}${key}: expected true or false (got ${JSON.stringify(v)})`);
  }
  if (typeof v === 'number') return String(v);
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${where}${key}: expected a non-empty string (got ${JSON.stringify(v)})`);
  return v;
}

export function parseConfigFile(text: string, source: string): Partial<SensorConfig> {
  let raw: unknown;
  try {
    raw = source.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${source}: not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${source}: expected a mapping of settings`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!(k in KEYS)) throw new ConfigError(`${source}: ${k}: unknown key (known: ${Object.keys(KEYS).join(', ')})`);
    out[k] = coerce(k, v, `${source}: `);
  }
  return out as Partial<SensorConfig>;
}

function fromEnv(env: NodeJS.ProcessEnv): Partial<SensorConfig> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(KEYS)) {
    const v = env[envName(k)];
    if (v !== undefined) out[k] = coerce(k, v, `${envName(k)} → `, true);
  }
  return out as Partial<SensorConfig>;
}

/** The custom signatures' limits, when given, are whole numbers in range. */
export function checkSignatureLimits(c: { signatureBudgetMs?: string | undefined; signatureMemoryMb?: string | undefined }): void {
  const whole = (key: 'signatureBudgetMs' | 'signatureMemoryMb', min: number, max: number): void => {
    const v = c[key];
    if (v !== undefined && !(/^\d+$/.test(v) && Number(v) >= min && Number(v) <= max)) throw new ConfigError(`${key}: expected a whole number from ${min} to ${max} (got ${v})`);
  };
  whole('signatureBudgetMs', 10, 60_000);
  whole('signatureMemoryMb', 16, 4_096);
}

function validate(c: SensorConfig): SensorConfig {
  if (c.output !== 'jsonl' && c.output !== 'falco-json') throw new ConfigError(`output: must be jsonl or falco-json (got ${c.output})`);
  if (!isLogLevel(c.logLevel)) throw new ConfigError(`logLevel: must be one of debug, info, warn, error (got ${c.logLevel})`);
  if (!['auto', 'lsm', 'fentry', 'none'].includes(c.scriptHook)) throw new ConfigError(`scriptHook: must be one of auto, lsm, fentry, none (got ${c.scriptHook})`);
  if (!isLogFormat(c.logFormat)) throw new ConfigError(`logFormat: must be one of auto, json, pretty (got ${c.logFormat})`);
  if (!/^(\[[0-9a-f:]+\]|[^:\s]+):\d{1,5}$/i.test(c.metricsAddress)) throw new ConfigError(`metricsAddress: expected host:port (got ${c.metricsAddress})`);
  if (c.backend && !/^[^\s]+:\d{1,5}$/.test(c.backend)) throw new ConfigError(`backend: expected host:port (got ${c.backend})`);
  if (c.falcoHttpUrl && !/^https?:\/\/[^\s/]+/.test(c.falcoHttpUrl)) throw new ConfigError(`falcoHttpUrl: expected an http:// or https:// URL (got ${c.falcoHttpUrl})`);
  if (c.otlpEndpoint && !/^(https?:\/\/)?[^\s/:]+:\d{1,5}\/?$/.test(c.otlpEndpoint)) throw new ConfigError(`otlpEndpoint: expected host:port or http(s)://host:port (got ${c.otlpEndpoint})`);
  checkSignatureLimits(c);
  for (const m of c.packageManagers) if (!/^[^/\s]{1,15}$/.test(m)) throw new ConfigError(`packageManagers: ${JSON.stringify(m)} is not a command name (at most 15 characters, no / or space)`);
  if (c.interpreters) {
    try {
      parseInterpreters(c.interpreters);
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
  }
  if (!!c.tlsCert !== !!c.tlsKey) throw new ConfigError('tlsCert and tlsKey: give both or neither');
  return c;
}

/** Merges file, environment and flags (already parsed, undefined when absent). */
export function resolveConfig(flags: Partial<SensorConfig> & { config?: string }, env: NodeJS.ProcessEnv = process.env): SensorConfig {
  const file = flags.config ?? env['DRIFTWATCH_CONFIG'];
  let fromFile: Partial<SensorConfig> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`${file}: ${(err as Error).message}`);
    }
    fromFile = parseConfigFile(text, file);
  }
  const defined = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined && k in KEYS));
  return validate({ ...CONFIG_DEFAULTS, ...defined(fromFile), ...defined(fromEnv(env)), ...defined(flags) } as SensorConfig);
}

/** parseArgs options for every config key (no defaults: absent means "not given"). */
export function configFlagOptions(): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const opts: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { config: { type: 'string' } };
  for (const [k, kind] of Object.entries(KEYS)) opts[flagName(k)] = kind === 'list' ? { type: 'string', multiple: true } : { type: kind };
  return opts;
}

/** parseArgs values (kebab-case) → config keys. */
export function flagsToConfig(values: Record<string, unknown>): Partial<SensorConfig> & { config?: string } {
  const out: Record<string, unknown> = {};
  for (const k of [...Object.keys(KEYS), 'config']) {
    const v = values[flagName(k)];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** The bprm_check hooks to try, best first, for a scriptHook setting (undefined: the loader's own order). */
export function scriptHookCandidatesFor(setting: SensorConfig['scriptHook']): ScriptHook[] | undefined {
  return setting === 'auto' ? undefined : setting === 'none' ? ['none'] : [setting, 'none'];
}
