// A binary executed from a writable volume (emptyDir, hostPath) inside a
// container: not in the image, and invisible to overlay-based checks.
import { FileFlag } from '../pipeline/records.js';
import { defineSignature } from '../sdk/signature.js';

export default defineSignature({
  id: 'drift.volume_exec',
  name: 'Execution from a writable volume in container',
  version: '1.0.0',
  description: 'A file on a writable, non-overlay mount (a volume) was executed in the container.',
  severity: 'MEDIUM',
  mitre: { technique: 'T1610', tactic: 'execution' },
  tags: ['drift', 'container', 'volume'],
  events: ['exec'],
  onEvent(event, ctx) {
    const f = event.exec.fileFlags;
    if (event.exec.layer !== 'OTHER' || !(f & FileFlag.FOREIGN_NS) || f & FileFlag.MNT_READONLY) return;
    if (f & FileFlag.SCRIPT) return; // the interpreter of a script lives on the volume: the script decides
    ctx.emit();
  },
});
