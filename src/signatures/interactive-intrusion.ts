// Someone exec'd into a container (podman/kubectl/docker exec) and then code
// that is not the image's ran there: hands-on-keyboard intrusion rather than
// an application misbehaving. The window starts at the session's latest
// exec and is reset by each; one finding per session.
import { debounceTime, filter, groupBy, map, mergeMap, scan, timestamp } from 'rxjs';
import { containerKey, defineStreamSignature, isDrift, type DetectionEvent, type StreamFinding } from '../sdk/signature.js';

interface Session {
  leader: number;
  lastSeen: number;
  reported: boolean;
}

interface State {
  session?: Session;
  found?: StreamFinding;
}

export default defineStreamSignature({
  id: 'drift.interactive_intrusion',
  name: 'Drift after an exec session in container',
  version: '1.0.0',
  description: 'An exec session was opened in the container and code that is not part of the image ran there within the window.',
  severity: 'CRITICAL',
  mitre: { technique: 'T1609', tactic: 'execution' },
  tags: ['drift', 'container', 'exec-session'],
  events: ['exec', 'mmap_exec'],
  detect(events, ctx) {
    const windowMs = Number(ctx.config['windowSeconds'] ?? 600) * 1000;
    const step = (st: State, ev: DetectionEvent, now: number): State => {
      let session = st.session && now - st.session.lastSeen <= windowMs ? st.session : undefined;
      if (ev.kind === 'exec' && ev.exec.session === 'exec') {
        const leader = ev.exec.sessionHostPid;
        session = session?.leader === leader ? { ...session, lastSeen: now } : { leader, lastSeen: now, reported: false };
      }
      if (!session || session.reported || !isDrift(ev)) return { ...(session ? { session } : {}) };
      return {
        session: { ...session, reported: true },
        found: { event: ev, data: { sessionLeaderHostPid: String(session.leader), windowSeconds: String(windowMs / 1000) } },
      };
    };
    return events.pipe(
      // A container's group ends after a window with no events: state stays bounded.
      groupBy(containerKey, { duration: (g) => g.pipe(debounceTime(windowMs)) }),
      mergeMap((container) =>
        container.pipe(
          timestamp(),
          scan((st: State, { value, timestamp: now }) => step(st, value, now), {}),
          map((st) => st.found),
          filter((f): f is StreamFinding => f !== undefined),
        ),
      ),
    );
  },
});
