// A drifted file (upper layer, memfd, tmpfs) mapped executable: a dropped
// library pulled in with LD_PRELOAD, or a dropped binary run as
// `ld.so /tmp/x` so that no exec of it ever happens.
import { defineSignature } from '../sdk/signature.js';

export default defineSignature({
  id: 'drift.exec_mapping',
  name: 'Drifted file mapped executable in container',
  version: '1.0.0',
  description: 'A file that is not part of the image was mapped with PROT_EXEC (shared library injection or a loader-run binary).',
  severity: 'HIGH',
  mitre: { technique: 'T1574.006', tactic: 'defense-evasion' },
  tags: ['drift', 'container', 'library'],
  events: ['mmap_exec'],
  onEvent(event, ctx) {
    ctx.emit({ data: { prot: `0x${event.mmap.prot.toString(16)}` } });
  },
});
