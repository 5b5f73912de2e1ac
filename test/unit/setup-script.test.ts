// scripts/setup.sh on failure: the tail of the failing command's output and
// the package it names, from real apt-get and npm runs that fail.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'dw-setup-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function runLogged(label: string, cmd: string, cwd = repoRoot) {
  const r = spawnSync('bash', ['-c', `. "${repoRoot}/scripts/lib/logged.sh" && run_logged ${label} ${cmd}`], { cwd, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const aptSkip = spawnSync('apt-get', ['--version']).status === 0 ? undefined : 'apt-get is not installed';
test('setup: a failing apt-get install shows its output and names the package', { skip: aptSkip }, () => {
  // -s simulates: nothing is installed or changed, and no root is needed
  const r = runLogged("'apt-get install'", 'apt-get install -s -y driftwatch-no-such-package');
  assert.equal(r.status, 100);
  assert.match(r.stderr, /setup: apt-get install failed \(exit 100\): apt-get install -s -y driftwatch-no-such-package/);
  assert.match(r.stderr, /\| E: Unable to locate package driftwatch-no-such-package/);
  assert.match(r.stderr, /the package that failed: driftwatch-no-such-package$/m);
});

const npmSkip = spawnSync('npm', ['--version']).status === 0 ? undefined : 'npm is not installed';
test('setup: a failing npm install script shows its output and names the package', { skip: npmSkip }, () => {
  const pkg = join(dir, 'broken-native-dep');
  mkdirSync(pkg);
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({
    name: 'broken-native-dep', version: '1.0.0',
    scripts: { install: 'echo "compiling the addon"; echo "fatal: no compiler" >&2; exit 3' },
  }));
  const app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  const r = runLogged("'npm install'", `npm install --no-audit --no-fund --offline "${pkg}"`, app);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /setup: npm install failed \(exit \d+\)/);
  assert.match(r.stderr, /\| .*fatal: no compiler/);
  assert.match(r.stderr, /the package that failed: broken-native-dep \(/m);
});

test('setup: a command that succeeds prints nothing and returns 0', () => {
  const r = runLogged('echo', 'echo noisy');
  assert.equal(r.status, 0);
  assert.equal(r.stdout + r.stderr, '');
});

test('setup: a package that fails to configure is named, with dpkg\'s reason from above apt\'s summary', () => {
  // dpkg's own words from a failed configure, far from the end of apt's output
  const out = join(dir, 'dpkg-failure.txt');
  writeFileSync(out, [
    'Setting up gyp (0.1+20220404git9ecf45e-2) ...',
    'Traceback (most recent call last):',
    'OSError: [Errno 28] No space left on device',
    'dpkg: error processing package gyp (--configure):',
    ' installed gyp package post-installation script subprocess returned error exit status 1',
    ...Array.from({ length: 60 }, (_, i) => `Setting up unrelated-package-${i} ...`),
    'Errors were encountered while processing:',
    ' gyp',
    'E: Sub-process /usr/bin/dpkg returned an error code (1)',
  ].join('\n') + '\n');
  const r = runLogged("'apt-get install'", `bash -c 'cat "${out}"; exit 100'`);
  assert.equal(r.status, 100);
  assert.match(r.stderr, /\| 3-OSError: \[Errno 28\] No space left on device/);
  assert.match(r.stderr, /\| 4:dpkg: error processing package gyp \(--configure\):/);
  assert.match(r.stderr, /the package that failed: gyp$/m);
});
