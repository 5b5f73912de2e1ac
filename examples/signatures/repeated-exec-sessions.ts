// An example stream signature: copy this file, change the id and the test.
//
// It reports a container that several different exec sessions (podman exec,
// kubectl exec) entered within a few minutes: someone, or something, keeps
// coming back by hand. A per-event signature cannot see this; a stream
// signature's detect() gets every event of its kinds as an RxJS Observable
// and returns the findings as one.
import { debounceTime, filter, groupBy, map, mergeMap, scan, timestamp } from 'rxjs';
import { containerKey, defineStreamSignature, type StreamFinding } from 'driftwatch/sdk';

interface State {
  /** Session leader (host pid) → when it was last seen. */
  leaders: Map<number, number>;
  found?: StreamFinding;
}

export default defineStreamSignature({
  id: 'example.repeated_exec_sessions',
  name: 'Repeated exec sessions into one container',
  version: '1.0.0',
  description: 'Several distinct exec sessions entered the same container within a few minutes.',
  severity: 'LOW',
  tags: ['example', 'exec-session'],
  events: ['exec'],
  detect(events, ctx) {
    // ctx.config holds signatures.<id>.config from the policy file.
    const sessions = Number(ctx.config['sessions'] ?? 3);
    const windowMs = Number(ctx.config['windowSeconds'] ?? 300) * 1000;
    return events.pipe(
      filter((ev) => ev.container.inContainer && ev.exec.session === 'exec'),
      // One group per container; a group ends after a quiet window, so state stays bounded.
      groupBy((ev) => containerKey(ev), { duration: (g) => g.pipe(debounceTime(windowMs)) }),
      mergeMap((container) =>
        container.pipe(
          // timestamp() reads RxJS's clock: virtual time in the tests.
          timestamp(),
          scan(
            (st: State, { value: ev, timestamp: now }): State => {
              for (const [leader, at] of st.leaders) if (now - at > windowMs) st.leaders.delete(leader);
              st.leaders.set(ev.exec.sessionHostPid, now);
              if (st.leaders.size < sessions) return { leaders: st.leaders };
              return { leaders: new Map(), found: { event: ev, data: { sessions: String(st.leaders.size) } } };
            },
            { leaders: new Map() } as State,
          ),
          map((st) => st.found),
          filter((f): f is StreamFinding => f !== undefined),
        ),
      ),
    );
  },
});
