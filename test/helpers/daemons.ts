// Starting and stopping the daemons tests run (containerd, dockerd) and
// removing what they leave: by pid, by the test's own directories and
// cgroups only, never by name.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, openSync, readFileSync, readdirSync, rmdirSync, closeSync } from 'node:fs';
import { join } from 'node:path';

export function startDaemon(bin: string, args: string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    return spawn(bin, args, { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}

export async function waitForSocket(path: string, child: ChildProcess, logFile: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (child.exitCode !== null || child.signalCode) throw new Error(`${child.spawnfile} exited (${child.exitCode ?? child.signalCode}): ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`${child.spawnfile} did not create ${path}: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** Polls probe every 200 ms until it returns anything but false; a throw counts as not ready yet. */
export async function waitUntilReady(probe: () => Promise<unknown>, timeoutMs: number, describe: (lastError: unknown) => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let lastError: unknown;
    try {
      if ((await probe()) !== false) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) throw new Error(describe(lastError));
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
export async function stopDaemon(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Unmounts every mount below dir, deepest first (what a killed daemon left). */
export function unmountUnder(dir: string): void {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const p of points) spawnSync('umount', ['-l', p]);
}

export function cgroupHierarchies(): string[] {
  const root = '/sys/fs/cgroup';
  const out = [root];
  for (const e of readdirSync(root, { withFileTypes: true })) {
    if (e.isDirectory() && existsSync(join(root, e.name, 'cgroup.procs'))) out.push(join(root, e.name));
  }
  return out;
}

/** Removes the test's cgroup subtree (runc removes only leaves) in every hierarchy, children first. */
export function removeCgroupTree(top: string): void {
  if (!top || top.includes('..') || top.includes('/')) throw new Error(`not a test cgroup name: ${top}`);
  for (const h of cgroupHierarchies()) {
    const base = join(h, top);
    if (!existsSync(base)) continue;
    const dirs: string[] = [];
    const walk = (d: string): void => {
      dirs.push(d);
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    };
    walk(base);
    for (const d of dirs.reverse()) {
      try {
        rmdirSync(d);
      } catch {
        /* still has a process: reported by the caller's leftovers check */
      }
    }
  }
}
