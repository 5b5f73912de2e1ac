// A #! script created or changed in the container is executed. The exec
// record's file is the interpreter (an image binary, so no other signature
// fires); enrichment knows the script's own layer.
// Where a bprm_check hook loads (BPF-LSM or fentry), the kernel recorded the
// script's own layer and there is no lookup. Otherwise, race: a script
// deleted before the lookup has no known layer; it is counted
// (script_layer_unknown_total), not reported.
import { defineSignature } from './sdk.js';

/** Written at run time: in the container's upper layer, or in memory (tmpfs, memfd). */
const DRIFTED = new Set(['UPPER_NEW', 'UPPER_COPIED_UP', 'TMPFS', 'MEMFD']);

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
    const script = event.script;
    if (script?.layer && DRIFTED.has(script.layer)) {
      ctx.emit({ data: { script: script.path, scriptLayer: script.layer, scriptLayerSource: script.source ?? 'overlay', interpreter: event.exec.path } });
    }
  },
});
