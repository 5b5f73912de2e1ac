// An image file was changed (or copied up by chmod/touch) in the container
// and then executed: a patched binary, or one given new permissions.
import { defineSignature } from '../sdk/signature.js';

export default defineSignature({
  id: 'drift.modified_executable',
  name: 'Modified image executable in container',
  version: '1.0.0',
  description: 'An executable from the image was modified or copied up in the container and then executed.',
  severity: 'HIGH',
  mitre: { technique: 'T1554', tactic: 'persistence' },
  tags: ['drift', 'container'],
  events: ['exec'],
  onEvent(event, ctx) {
    if (event.exec.layer === 'UPPER_COPIED_UP') ctx.emit();
  },
});
