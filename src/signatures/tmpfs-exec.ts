// A file on tmpfs (/dev/shm, /run, an emptyDir in memory) was executed:
// a favourite staging place because it is writable even in read-only containers.
import { defineSignature } from '../sdk/signature.js';

export default defineSignature({
  id: 'drift.tmpfs_exec',
  name: 'Execution from tmpfs in container',
  version: '1.0.0',
  description: 'A file on a tmpfs mount was executed in the container.',
  severity: 'HIGH',
  mitre: { technique: 'T1059', tactic: 'execution' },
  tags: ['drift', 'container'],
  events: ['exec'],
  onEvent(event, ctx) {
    if (event.exec.layer === 'TMPFS') ctx.emit();
  },
});
