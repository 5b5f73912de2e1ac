// Many different foreign executables in one container in a short time: a
// dropped toolkit unpacking and running, a worm, a miner trying binaries.
// Distinct means distinct files as the kernel saw them (device and inode),
// so renaming one file does not count twice. One finding per burst; the
// count starts again after it.
import { debounceTime, filter, groupBy, map, mergeMap, scan, timestamp } from 'rxjs';
import { containerKey, defineStreamSignature, isDrift, isDriftedScript, recordOf, type DetectionEvent, type StreamFinding } from '../sdk/signature.js';

interface State {
  /** dev:inode → when last run, and its path for the finding. */
  seen: Map<string, { at: number; path: string }>;
  found?: StreamFinding;
}

export default defineStreamSignature({
  id: 'drift.burst',
  name: 'Burst of drifted executables in container',
  version: '1.0.0',
  description: 'Several distinct executables that are not part of the image ran in one container within a short window.',
  severity: 'HIGH',
  mitre: { technique: 'T1105', tactic: 'command-and-control' },
  tags: ['drift', 'container'],
  events: ['exec', 'mmap_exec'],
  detect(events, ctx) {
    const threshold = Math.max(2, Number(ctx.config['threshold'] ?? 10));
    const windowMs = Number(ctx.config['windowSeconds'] ?? 60) * 1000;
    const step = (st: State, ev: DetectionEvent, now: number): State => {
      const seen = st.seen;
      for (const [k, v] of seen) if (now - v.at > windowMs) seen.delete(k);
      const script = ev.kind === 'exec' && isDriftedScript(ev.interpreted?.file) ? ev.interpreted!.file! : undefined;
      const r = recordOf(ev);
      // An interpreter runs many scripts: each drifted script counts as its own file.
      if (script) seen.set(`script:${script.device ?? ''}:${script.inode ?? script.path}`, { at: now, path: script.path });
      else seen.set(`${r.dev}:${r.inode}`, { at: now, path: r.path });
      if (seen.size < threshold) return { seen };
      const paths = [...seen.values()].map((v) => v.path);
      return {
        seen: new Map(),
        found: { event: ev, data: { distinct: String(paths.length), windowSeconds: String(windowMs / 1000), executables: paths.slice(0, 16).join(',') } },
      };
    };
    return events.pipe(
      filter(isDrift),
      groupBy(containerKey, { duration: (g) => g.pipe(debounceTime(windowMs)) }),
      mergeMap((container) =>
        container.pipe(
          timestamp(),
          scan((st: State, { value, timestamp: now }) => step(st, value, now), { seen: new Map() }),
          map((st) => st.found),
          filter((f): f is StreamFinding => f !== undefined),
        ),
      ),
    );
  },
});
