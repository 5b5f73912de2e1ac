// Checks before touching the kernel, each failing with one line that says
// what is missing and what to do.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Logger } from './log.js';
import type { LoaderError } from './native/loader.js';

export class PreflightError extends Error {}

const CAP_SYS_ADMIN = 21n;
const CAP_BPF = 39n;

function effectiveCaps(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export function preflight(log: Logger): void {
  if (process.platform !== 'linux') throw new PreflightError('driftwatch needs Linux (eBPF)');
  const caps = effectiveCaps();
  const hasCap = (c: bigint) => (caps & (1n << c)) !== 0n;
  if (!hasCap(CAP_SYS_ADMIN) && !hasCap(CAP_BPF)) {
    throw new PreflightError('not allowed to load BPF programs: run as root or grant CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE');
  }
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    throw new PreflightError('this kernel has no BTF (/sys/kernel/btf/vmlinux): driftwatch needs CONFIG_DEBUG_INFO_BTF=y');
  }
  // Syscall tracepoints attach through tracefs; mount it where the host has not.
  if (!existsSync('/sys/kernel/tracing/events') && existsSync('/sys/kernel/tracing')) {
    const r = spawnSync('mount', ['-t', 'tracefs', 'nodev', '/sys/kernel/tracing'], { encoding: 'utf8' });
    log.debug(`tracefs not mounted; mount: ${r.status === 0 ? 'ok' : (r.stderr || 'failed').trim()}`);
  }
  if (!readFileSync('/proc/filesystems', 'utf8').includes('\toverlay\n')) {
    // overlay may be a module nobody loaded yet; load it so CO-RE sees its types.
    const r = spawnSync('modprobe', ['overlay'], { encoding: 'utf8' });
    log.debug(`overlay not loaded; modprobe overlay: ${r.status === 0 ? 'ok' : (r.stderr || r.error?.message || 'failed').trim()}`);
  }
}

/** One line for an error from the addon. */
export function describeLoaderError(err: LoaderError): string {
  const log = err.libbpfLog ?? '';
  switch (err.code) {
    case 'EPERM':
    case 'EACCES':
      return `permission denied loading BPF (${err.message}): run as root or with CAP_BPF+CAP_PERFMON`;
    case 'ENOENT':
      if (/sched_process_exec/.test(log) || /attach/.test(err.message))
        return `tracepoint sched/sched_process_exec is missing on this kernel (${err.message})`;
      return `a kernel type or tracepoint driftwatch needs is missing (${err.message})`;
    case 'EINVAL':
      if (/ovl_|overlay/.test(log)) return `overlayfs types are not usable on this kernel (${err.message})`;
      return `the kernel rejected the BPF program (${err.message}); run with --log-level debug for the verifier log`;
    default:
      return `loading BPF failed: ${err.message}`;
  }
}
