// A file run through an overlay mounted inside the container, whose content
// is not drift by itself: an image binary, or a file on a volume the overlay
// sits on. Docker-in-Docker, buildkit and podman in a pod do this; an
// attacker does it to make a dropped binary look like image content. What
// the kernel found behind the overlay is drift (UPPER_*, TMPFS) is reported
// by those signatures instead; this one covers the rest, and a stack the
// kernel could not follow.
import { isNestedOverlay } from '../pipeline/classify.js';
import { FileFlag } from '../pipeline/records.js';
import { defineSignature } from '../sdk/signature.js';

const REPORTED_ELSEWHERE = new Set(['UPPER_NEW', 'UPPER_COPIED_UP', 'TMPFS', 'MEMFD']);

export default defineSignature({
  id: 'drift.nested_overlay_exec',
  name: 'Execution through an overlay mounted inside the container',
  version: '1.0.0',
  description: 'A file was executed through an overlay filesystem mounted inside the container rather than its root filesystem.',
  severity: 'MEDIUM',
  mitre: { technique: 'T1564', tactic: 'defense-evasion' },
  tags: ['drift', 'container', 'overlay'],
  events: ['exec'],
  onEvent(event, ctx) {
    const e = event.exec;
    if (!isNestedOverlay(e.fileFlags) || REPORTED_ELSEWHERE.has(e.layer)) return;
    ctx.emit({ data: { backingLayer: e.layer, followed: String((e.fileFlags & FileFlag.OVL_UNFOLLOWED) === 0) } });
  },
});
