// A file created inside the container is executed: the classic
// "drop and execute" (downloaded tool, implant, compiled exploit).
import { defineSignature } from '../sdk/signature.js';

export default defineSignature({
  id: 'drift.new_executable',
  name: 'New executable in container',
  version: '1.0.0',
  description: 'A file that is not part of the image (created in the container upper layer) was executed.',
  severity: 'CRITICAL',
  mitre: { technique: 'T1105', tactic: 'command-and-control' },
  tags: ['drift', 'container'],
  events: ['exec'],
  onEvent(event, ctx) {
    if (event.exec.layer === 'UPPER_NEW') ctx.emit();
  },
});
