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
}

export interface FleetState {
  firstSeen: string;
  containers: number;
  images: number;
  hosts: number;
  /** the row for this sha256 was created by this batch */
  created: boolean;
}

export function fleetInput(findings: FindingJson[]): FleetInput {
  const first = new Map<string, string>();
  const seen = new Set<string>();
  const sightings: Sighting[] = [];
  const add = (sha256: string, kind: SightingKind, value: string | undefined) => {
    if (!value) return;
    const key = `${sha256}\u0000${kind}\u0000${value}`;
    if (seen.has(key)) return;
    seen.add(key);
    sightings.push({ sha256, kind, value });
  };
  for (const f of findings) {
    const sha = f.process?.executable?.sha256;
    if (!sha) continue;
    const t = canonicalTime(f);
    const prev = first.get(sha);
    if (!prev || t < prev) first.set(sha, t);
    add(sha, 'c', f.container?.id);
    add(sha, 'i', f.container?.imageId || f.container?.image);
    add(sha, 'h', f.host?.hostname);
  }
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  sightings.sort((a, b) => cmp(a.sha256, b.sha256) || cmp(a.kind, b.kind) || cmp(a.value, b.value));
  const binaries = [...first].map(([sha256, firstSeen]) => ({ sha256, firstSeen })).sort((a, b) => cmp(a.sha256, b.sha256));
  return { binaries, sightings };
}

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

/**
 * Sets `fleet` on each finding that has a sha256. `isNew` goes to the earliest
 * finding of a sha256 the fleet had never seen.
 */
export function applyFleet(findings: FindingJson[], state: Map<string, FleetState>): void {
  const firstOf = new Map<string, FindingJson>();
  for (const f of findings) {
    const sha = f.process?.executable?.sha256;
    const s = sha ? state.get(sha) : undefined;
    if (!sha || !s) continue;
    f.fleet = { firstSeen: s.firstSeen, isNew: false, containers: s.containers, images: s.images, hosts: s.hosts };
    const prev = firstOf.get(sha);
    if (s.created && (!prev || canonicalTime(f) < canonicalTime(prev))) firstOf.set(sha, f);
  }
  for (const f of firstOf.values()) f.fleet!.isNew = true;
}
