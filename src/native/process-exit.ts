// Typed facade over the addon's process-exit binding (native/src/process_exit.cc):
// pidfd_open, a thread that waits on pidfds, and the clocks read back to back.
import { loadAddon } from './loader.js';

export interface ClockReading {
  realtimeNs: bigint;
  boottimeNs: bigint;
  monotonicNs: bigint;
  /** USER_HZ: the unit of start times in /proc/<pid>/stat. */
  clkTck: number;
}

export interface NativeExitWatcher {
  /** Watches a pidfd (the watcher owns and closes it); onExit(token, realtimeNs) runs once when the process has exited. */
  add(pidfd: number, token: number): void;
  /** Stops watching; false when it already fired. */
  remove(token: number): boolean;
  close(): void;
}

interface ProcessExitAddon {
  pidfdOpen(pid: number): number;
  clocks(): ClockReading;
  ExitWatcher: new (onExit: (token: number, realtimeNs: bigint) => void) => NativeExitWatcher;
}

export function processExitAddon(): ProcessExitAddon {
  return loadAddon() as unknown as ProcessExitAddon;
}
