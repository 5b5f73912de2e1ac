// What prevention asks of the kernel, from the policy: which drift kinds are
// stopped in a container, and which exceptions the kernel must honour there.
// Pure functions; src/prevent/maps.ts writes the result into the maps.
import type { ContainerInfo } from '../pipeline/container.js';
import { PolicyError, type ExceptionRule, type Policy, type PreventionScope } from '../policy/policy-file.js';
import { globToRegExp } from '../policy/glob.js';
import { Kind, PREVENTABLE } from './kinds.js';

/** A path the kernel matches: exact, or everything under a directory. */
export interface PathException {
  rule: number;
  path: string;
  prefix: boolean;
  kinds: number;
}

export interface ContainerPlan {
  /** Drift kinds stopped; 0: out of scope. */
  kinds: number;
  exceptions: PathException[];
}

export interface PreventionPlan {
  enabled: boolean;
  dryRun: boolean;
  /** A container the sensor has not described yet. */
  unknown: ContainerPlan;
  /** Every kind some signature prevents (before scope). */
  kinds: number;
  forContainer(c: ContainerInfo): ContainerPlan;
}

const matches = (pattern: string | undefined, value: string | undefined): boolean => pattern === undefined || globToRegExp(pattern).test(value ?? '');
const anyMatches = (patterns: string[] | undefined, value: string | undefined): boolean => !patterns || patterns.some((p) => matches(p, value));

function withoutVolumes(p: ContainerPlan): ContainerPlan {
  const kinds = p.kinds & ~Kind.VOLUME;
  return { kinds, exceptions: kinds ? p.exceptions : [] };
}

export function inScope(scope: PreventionScope, c: ContainerInfo): boolean {
  if (!anyMatches(scope.namespaces, c.kubernetes?.namespace)) return false;
  if (!anyMatches(scope.images, c.image)) return false;
  if (!anyMatches(scope.containers, c.name || c.id || undefined)) return false;
  for (const [k, v] of Object.entries(scope.labels ?? {})) if (!matches(v, c.labels?.[k])) return false;
  return true;
}

/** Exception rule → the kernel's form of its executable; throws when it has none. */
function kernelPath(rule: ExceptionRule, index: number): { path: string; prefix: boolean } | null {
  const key = `exceptions[${index}]`;
  if (rule.args) throw new PolicyError(`${key}.args: arguments cannot be matched in the kernel; this rule applies to a signature with action: prevent (narrow its signature, or drop args)`);
  const x = rule.executable;
  if (x === undefined) return null;
  const prefix = x.endsWith('/**');
  const path = prefix ? x.slice(0, -2) : x;
  if (!path.startsWith('/') || /[*?]/.test(path)) {
    throw new PolicyError(`${key}.executable: with action: prevent the kernel matches only an exact path or a directory ending in /** (got ${x})`);
  }
  if (Buffer.byteLength(path) >= 247) throw new PolicyError(`${key}.executable: longer than the kernel's 246 bytes`);
  return { path, prefix };
}

/**
 * Checks the policy's prevention settings against the signatures loaded and
 * compiles them. Errors name the key; nothing is half applied.
 */
export function planPrevention(policy: Policy, signatureIds: string[]): PreventionPlan {
  let kinds = 0;
  const prevented: string[] = [];
  for (const [id, s] of Object.entries(policy.signatures)) {
    if (s.action !== 'prevent' || s.enabled === false) continue;
    const k = PREVENTABLE[id];
    if (k === undefined) {
      const why = signatureIds.includes(id) ? 'the kernel cannot decide it (only built-in exec signatures can prevent)' : 'no such signature';
      throw new PolicyError(`signatures.${id}.action: prevent is not possible: ${why}; preventable: ${Object.keys(PREVENTABLE).join(', ')}`);
    }
    kinds |= k;
    prevented.push(id);
  }
  const p = policy.prevention ?? { enabled: true, dryRun: false, scope: {}, unknownContainers: 'prevent' as const };
  // Each exception, compiled once: the prevented kinds it covers and how the kernel matches it.
  const rules = policy.exceptions.map((rule, index) => {
    const covered = prevented.filter((id) => matches(rule.signature, id)).reduce((m, id) => m | PREVENTABLE[id]!, 0);
    return { rule, covered, path: covered ? kernelPath(rule, index) : null, index };
  });
  const containerLevel = (r: ExceptionRule) => r.image !== undefined || r.container !== undefined || r.namespace !== undefined;
  const apply = (applies: (r: ExceptionRule) => boolean): ContainerPlan => {
    let k = kinds;
    const exceptions: PathException[] = [];
    for (const r of rules) {
      if (!r.covered || !applies(r.rule)) continue;
      if (r.path) exceptions.push({ rule: r.index, ...r.path, kinds: r.covered });
      else k &= ~r.covered; // the whole container is excepted for these signatures
    }
    return { kinds: k, exceptions: k ? exceptions : [] };
  };
  return {
    enabled: p.enabled,
    dryRun: p.dryRun,
    kinds,
    // Rules that name images, containers or namespaces need metadata and
    // cannot apply to an unknown container; the others can.
    // Volume execs are never stopped there: host tools in private namespaces
    // (unshare, sandboxes) run host binaries from writable disks.
    unknown: p.unknownContainers === 'prevent' ? withoutVolumes(apply((r) => !containerLevel(r))) : { kinds: 0, exceptions: [] },
    forContainer(c) {
      if (!kinds || !inScope(p.scope, c)) return { kinds: 0, exceptions: [] };
      return apply((r) => matches(r.image, c.image) && matches(r.container, c.name || c.id || undefined) && matches(r.namespace, c.kubernetes?.namespace));
    },
  };
}
