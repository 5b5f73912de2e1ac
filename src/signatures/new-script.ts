// A #! script created or changed in the container is executed. The exec
// record's file is the interpreter (an image binary, so no other signature
// fires); enrichment knows the script's own layer.
// The kernel records the script's own layer (a bprm_check hook, or the
// exec's deferred fput of the script file at sched_process_exec), so there
// is no lookup. Only where neither finds it does user space look it up; a
// script deleted before that has no known layer and is counted
// (script_layer_unknown_total), not reported.
import { defineSignature } from '../sdk/signature.js';

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
