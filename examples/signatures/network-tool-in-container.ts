// An example custom signature: copy this file, change the id and the test.
//
// It reports a network download tool (curl, wget) started inside a container
// by someone who exec'd into it: often the first step of an attack, rarely
// what an application does on its own. Load it with:
//
//   driftwatch run --signatures examples/signatures
//
// The module's default export is the definition. `driftwatch/sdk` resolves to
// the running sensor's SDK; the file is TypeScript and needs no build step
// (Node strips the types, so keep to syntax that only annotates).
import { defineSignature } from 'driftwatch/sdk';

export default defineSignature({
  id: 'example.network_tool_in_exec_session',
  name: 'Download tool run from an exec session',
  version: '1.0.0',
  description: 'curl or wget was started inside a container from a podman/kubectl exec session.',
  severity: 'MEDIUM',
  mitre: { technique: 'T1105', tactic: 'command-and-control' },
  tags: ['example', 'exec-session'],
  // The event kinds this signature wants: 'exec' and/or 'mmap_exec'.
  events: ['exec'],
  onEvent(event, ctx) {
    // event.exec is the kernel's record (decoded lazily); event.container is enrichment.
    if (!event.container.inContainer || event.exec.session !== 'exec') return;
    const tool = event.exec.path.split('/').pop() ?? '';
    // ctx.config holds signatures.<id>.config from the policy file.
    const tools = (ctx.config['tools'] as string[] | undefined) ?? ['curl', 'wget'];
    if (!tools.includes(tool)) return;
    // ctx.containerState keeps bounded per-container state: report each tool once per container.
    const seen = ctx.containerState(event, () => new Set<string>());
    if (seen.has(tool)) return;
    seen.add(tool);
    ctx.emit({ data: { tool } });
  },
});
