// An image interpreter runs a script file that is not the image's: sh
// /tmp/x.sh, python3 /dev/shm/x.py. The exec record's file is the
// interpreter (an image binary, so no other signature fires); the kernel
// sent it because its comm is a watched interpreter with an operand, and
// enrichment found the script inside the container, classified and hashed
// it (src/enrich/script-file.ts). Image scripts give nothing; inline code
// (-c, -e) is recorded on the event, never judged here.
import { defineSignature, isDriftedScript } from '../sdk/signature.js';

/** The script could not be read as a regular file of the container: a FIFO, a device, or swapped under the lookup. */
const TAMPERED = new Set(['not_regular', 'replaced']);

export default defineSignature({
  id: 'drift.interpreted_script',
  name: 'Interpreter ran a script that is not part of the image',
  version: '1.0.0',
  description:
    'An interpreter from the image (sh, bash, python, perl, ruby, node, php) ran a script file created or changed in the container, or on tmpfs, memfd or a writable volume.',
  severity: 'HIGH',
  mitre: { technique: 'T1059', tactic: 'execution' },
  tags: ['drift', 'container', 'script', 'interpreter'],
  events: ['exec'],
  onEvent(event, ctx) {
    const s = event.interpreted;
    const f = s?.file;
    if (!s || !f) return;
    const drifted = isDriftedScript(f);
    if (!drifted && !(f.layerUnavailable && TAMPERED.has(f.layerUnavailable))) return;
    ctx.emit({
      data: {
        script: f.path,
        scriptOperand: f.operand,
        scriptLayer: f.layer ?? 'UNKNOWN',
        ...(f.layerUnavailable ? { scriptLayerUnavailable: f.layerUnavailable } : {}),
        ...(f.volume ? { scriptVolume: f.volume } : {}),
        ...(f.sha256 ? { scriptSha256: f.sha256 } : {}),
        ...(f.sha256Unavailable ? { scriptSha256Unavailable: f.sha256Unavailable } : {}),
        ...(f.sameAsImage !== undefined ? { scriptSameAsImage: String(f.sameAsImage) } : {}),
        interpreter: event.exec.path,
        interpreterFamily: s.family,
      },
    });
  },
});
