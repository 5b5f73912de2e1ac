// Findings in Falco's JSON output shape, so falcosidekick and SIEM pipelines
// that already take Falco alerts take these unchanged.
import { closeSync, openSync } from 'node:fs';
import type { Finding } from './finding.js';
import { writeAll, type Sink } from './sinks.js';

const PRIORITY: Record<string, string> = {
  CRITICAL: 'Critical',
  HIGH: 'Error',
  MEDIUM: 'Warning',
  LOW: 'Notice',
  INFO: 'Informational',
};

export function toFalco(f: Finding): Record<string, unknown> {
  const p = f.process ?? {};
  const c = f.container ?? {};
  const k = f.kubernetes ?? {};
  const exe = p.executable ?? {};
  const output =
    `${f.signature?.name} (user.uid=${p.uid ?? 0} proc.cmdline=${(p.args ?? []).join(' ')} proc.exepath=${exe.path} ` +
    `layer=${exe.layer}${exe.installedBy?.manager ? ` installed_by=${exe.installedBy.manager}` : ''}${p.script ? ` script=${p.script.path} script.layer=${p.script.layer}` : ''} action=${f.action || 'alert'} container.id=${c.id ? c.id.slice(0, 12) : 'host'} container.name=${c.name ?? ''} container.image=${c.image ?? ''})`;
  return {
    uuid: f.id,
    output,
    priority: PRIORITY[f.signature?.severity ?? ''] ?? 'Warning',
    rule: f.signature?.name,
    time: f.time,
    source: 'syscall',
    hostname: f.host?.hostname,
    tags: ['driftwatch', f.signature?.id, ...(f.signature?.tags ?? []), ...(f.signature?.mitre?.technique ? [f.signature.mitre.technique] : [])],
    output_fields: {
      'driftwatch.signature': f.signature?.id,
      'driftwatch.action': f.action || 'alert',
      'evt.time.iso8601': f.time,
      'proc.pid': p.pid,
      'proc.ppid': p.ppid,
      'proc.name': p.comm,
      'proc.cmdline': (p.args ?? []).join(' '),
      'proc.exepath': exe.path,
      'proc.is_exe_upper_layer': exe.layer === 'UPPER_NEW' || exe.layer === 'UPPER_COPIED_UP',
      'proc.exe_sha256': exe.sha256 ?? null,
      'proc.exe_sha256_unavailable': exe.sha256Unavailable ?? null,
      'driftwatch.installed_by': exe.installedBy?.manager ?? null,
      'driftwatch.script.path': p.script?.path ?? null,
      'driftwatch.script.layer': p.script?.layer ?? null,
      'driftwatch.script.sha256': p.script?.sha256 ?? null,
      'user.uid': p.uid,
      'container.id': c.id ? c.id.slice(0, 12) : 'host',
      'container.full_id': c.id || null,
      'container.name': c.name ?? null,
      'container.image.repository': c.image ?? null,
      'k8s.ns.name': k.namespace ?? null,
      'k8s.pod.name': k.pod ?? null,
    },
  };
}

export function falcoJsonSink(target: string): Sink {
  const fd = target === '-' ? 1 : openSync(target, 'a');
  return {
    write(f) {
      writeAll(fd, JSON.stringify(toFalco(f)) + '\n');
    },
    close() {
      if (fd !== 1) closeSync(fd);
    },
  };
}
