// A #! script created or changed in the container is executed. The exec
// record's file is the interpreter (an image binary, so no other signature
// fires); enrichment looked up the script itself in the container's overlay.
// Race: a script deleted before that lookup has no known layer; it is
// counted (script_layer_unknown_total), not reported.
import { defineSignature } from './sdk.js';

export default defineSignature({
  id: 'drift.new_script',
  name: 'New or modified script executed in container',
  version: '1.0.0',
  description: 'A #! script that is not part of the image (created or modified in the container) was executed.',
  severity: 'HIGH',
  mitre: { technique: 'T1059.004', tactic: 'execution' },
  tags: ['drift', 'container', 'script'],
  events: ['exec'],
  onEvent(event, ctx) {
    const layer = event.script?.layer;
    if (layer === 'UPPER_NEW' || layer === 'UPPER_COPIED_UP') {
      ctx.emit({ data: { script: event.script!.path, scriptLayer: layer, interpreter: event.exec.path } });
    }
  },
});
