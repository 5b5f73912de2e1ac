// Fleet view of executables: for every sha256, the first time any finding
// carried it and the distinct containers, images and hosts it ran in. Both
// stores keep it as two tables, updated in the transaction that stores the
// findings: sightings (sha256, kind, value) with a primary key, so a retried
// or twice-sent finding counts nothing twice, and per-sha256 counters that
// only grow by the sightings that were new.
import type { FindingJson } from '#gen/finding-json.js';
import { canonicalTime } from './validate.js';

export type SightingKind = 'c' | 'i' | 'h';

export interface Sighting {
  sha256: string;
  kind: SightingKind;
  value: string;
}

export interface FleetInput {
  /** per sha256, the earliest time (canonical UTC) in the batch; sorted by sha256 */
  binaries: Array<{ sha256: string; firstSeen: string }>;
  /** distinct, sorted (a fixed lock order, so concurrent replicas do not deadlock) */
  sightings: Sighting[];
  /** the fleetTupleKey of each finding whose sightings are in `sightings` (none known before), distinct */
  tuples: string[];
}

export interface FleetState {
  firstSeen: string;
  containers: number;
  images: number;
  hosts: number;
  /** the row for this sha256 was created by this batch */
  created: boolean;
}

/** What the fleet view reads of a finding that has a sha256. */
export interface FleetKey {
  sha256: string;
  /** canonical UTC */
  time: string;
  container: string;
  /** image id, else the image name */
  image: string;
  host: string;
}

export function fleetKey(f: FindingJson): FleetKey | null {
  const sha256 = f.process?.executable?.sha256;
  if (!sha256) return null;
  return { sha256, time: canonicalTime(f), container: f.container?.id ?? '', image: f.container?.imageId || f.container?.image || '', host: f.host?.hostname ?? '' };
}

export function fleetInput(findings: FindingJson[]): FleetInput {
  return fleetInputOf(findings.map(fleetKey));
}

/**
 * `known`: findings (as fleetTupleKey) whose three sightings are all stored,
 * left out of `sightings` (one lookup per finding).
 */
export function fleetInputOf(keys: Array<FleetKey | null>, known?: { has(tuple: string): boolean }): FleetInput {
  const first = new Map<string, string>();
  const seen = new Set<string>();
  const sightings: Sighting[] = [];
  const tuples = new Set<string>();
  const add = (sha256: string, kind: SightingKind, value: string) => {
    if (!value) return;
    const key = sightingKey({ sha256, kind, value });
    if (seen.has(key)) return;
    seen.add(key);
    sightings.push({ sha256, kind, value });
  };
  for (const k of keys) {
    if (!k) continue;
    const prev = first.get(k.sha256);
    if (!prev || k.time < prev) first.set(k.sha256, k.time);
    const tuple = fleetTupleKey(k);
    if (known?.has(tuple) || tuples.has(tuple)) continue;
    tuples.add(tuple);
    add(k.sha256, 'c', k.container);
    add(k.sha256, 'i', k.image);
    add(k.sha256, 'h', k.host);
  }
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  sightings.sort((a, b) => cmp(a.sha256, b.sha256) || cmp(a.kind, b.kind) || cmp(a.value, b.value));
  const binaries = [...first].map(([sha256, firstSeen]) => ({ sha256, firstSeen })).sort((a, b) => cmp(a.sha256, b.sha256));
  return { binaries, sightings, tuples: [...tuples] };
}

/** What a finding's three sightings are, as one key. */
export const fleetTupleKey = (k: FleetKey) => `${k.sha256}\u0000${k.container}\u0000${k.image}\u0000${k.host}`;

/** One sighting as one key (for sets of sightings already stored or written). */
export const sightingKey = (s: Sighting) => `${s.sha256}\u0000${s.kind}\u0000${s.value}`;

/** New sightings per sha256 and kind, from the sightings a store says it inserted. */
export function countNew(inserted: Array<{ sha256: string; kind: string }>): Map<string, { c: number; i: number; h: number }> {
  const out = new Map<string, { c: number; i: number; h: number }>();
  for (const s of inserted) {
    let n = out.get(s.sha256);
    if (!n) out.set(s.sha256, (n = { c: 0, i: 0, h: 0 }));
    n[s.kind as SightingKind]++;
  }
  return out;
}

/** The fleet fields a finding carries. */
export type FleetFields = NonNullable<FindingJson['fleet']>;

/**
 * Sets `fleet` on each finding that has a sha256. `isNew` goes to the earliest
 * finding of a sha256 the fleet had never seen.
 */
export function applyFleet(findings: FindingJson[], state: Map<string, FleetState>): void {
  const fields = fleetFieldsOf(findings.map(fleetKey), state);
  findings.forEach((f, i) => {
    const x = fields[i];
    if (x) f.fleet = x;
  });
}

/** The fleet fields of each key (null without a sha256), in order; `isNew` as in applyFleet. */
export function fleetFieldsOf(keys: Array<FleetKey | null>, state: Map<string, FleetState>): Array<FleetFields | null> {
  const out: Array<FleetFields | null> = new Array(keys.length).fill(null);
  const firstOf = new Map<string, number>();
  keys.forEach((k, i) => {
    const s = k ? state.get(k.sha256) : undefined;
    if (!k || !s) return;
    out[i] = { firstSeen: s.firstSeen, isNew: false, containers: s.containers, images: s.images, hosts: s.hosts };
    const prev = firstOf.get(k.sha256);
    if (s.created && (prev === undefined || k.time < keys[prev]!.time)) firstOf.set(k.sha256, i);
  });
  for (const i of firstOf.values()) out[i]!.isNew = true;
  return out;
}
