// The prevention maps' byte layout (struct dw_prevent_* in
// bpf/tracee/prevent.bpf.h) and their writer. Exception sets are shared:
// containers with the same exceptions point at the same LPM entries.
import type { NativeLoader } from '../native/loader.js';
import type { ContainerPlan, PathException } from './plan.js';

export const PATH_MAX = 248;
const EXC_KEY_SIZE = 8 + PATH_MAX;

export function configValue(c: { enabled: boolean; dryRun: boolean; unknownKinds: number; unknownExcSet: number }): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(c.enabled ? 1 : 0, 0);
  b.writeUInt32LE(c.dryRun ? 1 : 0, 4);
  b.writeUInt32LE(c.unknownKinds >>> 0, 8);
  b.writeUInt32LE(c.unknownExcSet >>> 0, 12);
  return b;
}

export function containerKey(cgroupId: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(cgroupId);
  return b;
}

export function containerValue(kinds: number, excSet: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(kinds >>> 0, 0);
  b.writeUInt32LE(excSet >>> 0, 4);
  return b;
}

/** LPM key: an exact path is stored with its NUL (so only it matches), a directory prefix without. */
export function exceptionKey(set: number, e: Pick<PathException, 'path' | 'prefix'>): Buffer {
  const b = Buffer.alloc(EXC_KEY_SIZE);
  const n = b.write(e.path, 8, PATH_MAX - 1, 'utf8');
  b.writeUInt32LE(32 + 8 * (e.prefix ? n : n + 1), 0);
  b.writeUInt32LE(set, 4);
  return b;
}

export type MapWriter = Required<Pick<NativeLoader, 'mapUpdate' | 'mapDelete' | 'mapClear'>>;

export class PreventionMaps {
  private sets = new Map<string, number>();

  constructor(private readonly w: MapWriter) {}

  /** Starts over: a reload rewrites everything. */
  clear(): void {
    this.w.mapClear('prevent_containers');
    this.w.mapClear('prevent_exceptions');
    this.sets.clear();
  }

  config(c: { enabled: boolean; dryRun: boolean; unknown: ContainerPlan }): void {
    const unknownExcSet = this.exceptionSet(c.unknown.exceptions);
    this.w.mapUpdate('prevent_config', Buffer.alloc(4), configValue({ enabled: c.enabled, dryRun: c.dryRun, unknownKinds: c.unknown.kinds, unknownExcSet }));
  }

  container(cgroupId: bigint, plan: ContainerPlan): void {
    this.w.mapUpdate('prevent_containers', containerKey(cgroupId), containerValue(plan.kinds, this.exceptionSet(plan.exceptions)));
  }

  forget(cgroupId: bigint): void {
    this.w.mapDelete('prevent_containers', containerKey(cgroupId));
  }

  private exceptionSet(list: PathException[]): number {
    if (!list.length) return 0;
    const id = list.map((e) => `${e.rule}`).join(',');
    let set = this.sets.get(id);
    if (set) return set;
    set = this.sets.size + 1;
    // The trie answers with the longest match only: an entry also carries
    // the kinds of every shorter directory that covers it, and an exact path
    // and a directory with the same name merge.
    const byKey = new Map<string, { key: Buffer; kinds: number }>();
    for (const e of list) {
      let kinds = e.kinds;
      for (const f of list) if (f.prefix && f !== e && e.path.startsWith(f.path)) kinds |= f.kinds;
      const key = exceptionKey(set, e);
      const k = key.toString('hex');
      byKey.set(k, { key, kinds: (byKey.get(k)?.kinds ?? 0) | kinds });
    }
    for (const { key, kinds } of byKey.values()) {
      const v = Buffer.alloc(4);
      v.writeUInt32LE(kinds >>> 0);
      this.w.mapUpdate('prevent_exceptions', key, v);
    }
    this.sets.set(id, set);
    return set;
  }
}
