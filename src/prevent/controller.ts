// Keeps the kernel's prevention maps in step with the policy and the
// containers on the node. Containers are described when their cgroup
// appears (a scan of the cgroup tree) or when the first event from them
// arrives, whichever is first; until then the kernel applies the policy's
// choice for unknown containers. A reload rewrites every map between two
// execs; the kill switch is one write.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { MetadataResolver } from '../enrich/metadata.js';
import { containerFromCgroup } from '../enrich/cgroup-container.js';
import type { Logger } from '../log.js';
import type { ContainerInfo } from '../pipeline/container.js';
import type { Metrics } from '../pipeline/metrics.js';
import type { Policy } from '../policy/policy-file.js';
import { PreventionMaps, type MapWriter } from './maps.js';
import { planPrevention, type PreventionPlan } from './plan.js';

export interface PreventionOptions {
  writer: MapWriter;
  log: Logger;
  metrics: Metrics;
  resolver?: MetadataResolver;
  /** Root of the unified (v2) cgroup tree; found when not given. */
  cgroupRoot?: string | null;
  scanIntervalMs?: number;
}

/** Where the v2 hierarchy is mounted: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid). */
export function unifiedCgroupRoot(base = '/sys/fs/cgroup'): string | null {
  for (const dir of [base, join(base, 'unified')]) {
    try {
      statSync(join(dir, 'cgroup.procs'));
      if (dir === base) statSync(join(dir, 'cgroup.controllers')); // v1 roots have cgroup.procs too
      return dir;
    } catch {
      /* next */
    }
  }
  return null;
}

/** Container cgroups under root (a few levels down), by cgroup id: the directory's inode. */
export function scanContainerCgroups(root: string, maxDepth = 6): Map<bigint, ContainerInfo> {
  const out = new Map<bigint, ContainerInfo>();
  const walk = (dir: string, name: string, parent: string, depth: number): void => {
    const c = depth > 0 ? containerFromCgroup(name, parent) : null;
    if (c) {
      try {
        const info: ContainerInfo = { inContainer: true, id: c.id, runtime: c.runtime };
        if (c.podUid) info.podUid = c.podUid;
        out.set(statSync(dir, { bigint: true }).ino, info);
      } catch {
        /* gone meanwhile */
      }
      return; // a container's sub-cgroups are its own business
    }
    if (depth >= maxDepth) return;
    let entries: string[];
    try {
      entries = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch {
      return;
    }
    for (const e of entries) walk(join(dir, e), e, name, depth + 1);
  };
  walk(root, '', '', 0);
  return out;
}

export class PreventionController {
  private plan: PreventionPlan | undefined;
  private readonly maps: PreventionMaps;
  /** Described containers by cgroup id, with what was last written for them. */
  private known = new Map<bigint, ContainerInfo>();
  private written = new Map<bigint, string>();
  private pending = new Set<bigint>();
  private timer: NodeJS.Timeout | undefined;
  private readonly cgroupRoot: string | null;

  constructor(private readonly opts: PreventionOptions) {
    this.maps = new PreventionMaps(opts.writer);
    this.cgroupRoot = opts.cgroupRoot === undefined ? unifiedCgroupRoot() : opts.cgroupRoot;
    opts.metrics.gauge('prevention_containers', () => this.known.size);
    opts.metrics.gauge('prevention_containers_in_scope', () => [...this.written.values()].filter((w) => !w.startsWith('0:')).length);
    opts.metrics.inc('prevention_map_errors_total', {}, 0);
  }

  get active(): boolean {
    return !!this.plan && this.plan.enabled && this.plan.kinds !== 0;
  }

  /**
   * Compiles the policy (throws PolicyError, with nothing changed, when it
   * cannot be enforced) and rewrites the maps.
   */
  apply(policy: Policy, signatureIds: string[]): void {
    const plan = planPrevention(policy, signatureIds);
    this.plan = plan;
    // Nothing to prevent: the kernel is told off, so candidates skip the decision entirely.
    const config = () => this.maps.config({ enabled: plan.enabled && plan.kinds !== 0, dryRun: plan.dryRun, unknown: plan.unknown });
    // Switching off takes effect before anything else is rewritten; switching
    // on, once every container is described.
    if (!plan.enabled || !plan.kinds) config();
    this.maps.clear();
    this.written.clear();
    for (const [cgid, info] of this.known) this.write(cgid, info);
    config();
    if (this.active) {
      this.scan();
      if (!this.timer && this.cgroupRoot) {
        this.timer = setInterval(() => this.scan(), this.opts.scanIntervalMs ?? 1_000);
        this.timer.unref();
      }
    }
  }

  /** An event from a container not described yet describes it. */
  observe(cgroupId: bigint, container: ContainerInfo): void {
    if (!this.active || cgroupId <= 1n || !container.inContainer || !container.id) return;
    if (this.known.has(cgroupId) || this.pending.has(cgroupId)) return;
    this.describe(cgroupId, { ...container });
  }

  scan(): void {
    if (!this.active || !this.cgroupRoot) return;
    const seen = scanContainerCgroups(this.cgroupRoot);
    for (const [cgid, info] of seen) if (!this.known.has(cgid) && !this.pending.has(cgid)) this.describe(cgid, info);
    for (const [cgid, info] of [...this.known]) {
      if (!seen.has(cgid)) {
        this.known.delete(cgid);
        this.written.delete(cgid);
        this.guard(() => this.maps.forget(cgid));
      } else if (!this.pending.has(cgid)) this.describe(cgid, info); // metadata can arrive late (podman labels): look again, from cache
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private describe(cgid: bigint, info: ContainerInfo): void {
    const resolver = this.opts.resolver;
    if (!resolver || !info.id) return this.remember(cgid, info);
    this.pending.add(cgid);
    resolver
      .resolve(info.id)
      .then((meta) => {
        if (meta) {
          if (meta.name) info.name = meta.name;
          if (meta.image) info.image = meta.image;
          if (meta.labels) info.labels = meta.labels;
          if (meta.kubernetes) info.kubernetes = meta.kubernetes;
        }
      })
      .catch(() => {})
      .finally(() => {
        this.pending.delete(cgid);
        this.remember(cgid, info);
      });
  }

  private remember(cgid: bigint, info: ContainerInfo): void {
    this.known.set(cgid, info);
    if (this.active) this.write(cgid, info);
  }

  private write(cgid: bigint, info: ContainerInfo): void {
    if (!this.plan) return;
    const plan = this.plan.forContainer(info);
    const key = `${plan.kinds}:${plan.exceptions.map((e) => e.rule).join(',')}`;
    if (this.written.get(cgid) === key) return;
    this.guard(() => {
      this.maps.container(cgid, plan);
      this.written.set(cgid, key);
    });
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.opts.metrics.inc('prevention_map_errors_total');
      this.opts.log.warn(`prevention map update failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
