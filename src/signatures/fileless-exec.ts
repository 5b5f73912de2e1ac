// Code executed from memory (memfd) or from a file deleted before exec:
// nothing executable is left on disk for a scanner to find.
import { isUnlinked } from '../pipeline/classify.js';
import { defineSignature } from '../sdk/signature.js';

/**
 * Container runtimes re-exec themselves from a memfd copy (runc's defence
 * against CVE-2019-5736). Their memfd names are fixed; an attacker can choose
 * the same name, so the exception also requires the runtime's own comm.
 */
const RUNTIME_SELF_CLONES: Array<{ memfd: RegExp; comm: RegExp }> = [
  { memfd: /^memfd:runc_cloned:/, comm: /^runc/ },
  { memfd: /^memfd:crun-/, comm: /^crun/ },
];

export default defineSignature({
  id: 'drift.fileless_exec',
  name: 'Fileless execution in container',
  version: '1.0.0',
  description: 'A memfd or an unlinked file was executed in the container.',
  severity: 'CRITICAL',
  mitre: { technique: 'T1620', tactic: 'defense-evasion' },
  tags: ['drift', 'container', 'fileless'],
  events: ['exec'],
  onEvent(event, ctx) {
    const exec = event.exec;
    const memfd = exec.layer === 'MEMFD';
    if (!memfd && !isUnlinked(exec.fileFlags)) return;
    if (memfd && RUNTIME_SELF_CLONES.some((r) => r.memfd.test(exec.path) && r.comm.test(exec.comm))) return;
    ctx.emit({ data: { memfd: String(memfd) } });
  },
});
