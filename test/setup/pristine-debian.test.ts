// The README's commands on a machine with nothing but Debian 12 on it: a
// debootstrap'ed bookworm minbase (no Node, no npm, no compiler) runs
// scripts/setup.sh from a clean copy of this checkout, then the sensor from
// the README's first command (`npx driftwatch run`, stopped with SIGINT) and
// the unit tests. A missing install step fails here on every run, not only on
// a fresh machine. The base image, apt's downloaded packages and npm's cache
// are kept between runs; every install step still runs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { podmanSkipReason } from '../helpers/podman.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

function skipReason(): string | null {
  const podman = podmanSkipReason();
  if (podman) return podman;
  const base = spawnSync('podman', ['image', 'exists', 'localhost/driftwatch-base:bookworm-1']).status === 0;
  if (!base && spawnSync('debootstrap', ['--version']).error) return 'debootstrap is not installed (scripts/setup.sh installs it)';
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'kernel has no BTF: the sensor cannot start in the pristine container';
  return null;
}

const skip = skipReason();
if (skip) console.log(`# pristine Debian 12 setup test skipped: ${skip}`);

const cacheRoot = join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'driftwatch', 'pristine-debian');
const work = mkdtempSync(join(tmpdir(), 'dw-pristine-'));
const name = `dw-pristine-${process.pid}`;
after(() => {
  spawnSync('podman', ['rm', '-f', '--time', '0', name], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
});

/** This checkout without anything a build or install made, as a fresh clone has it. */
function cleanCopy(dst: string): void {
  mkdirSync(dst);
  const excludes = ['.git', 'node_modules', 'dist', 'gen', 'native/build', 'native/.node-headers', 'bpf/build', '.test-artifacts'];
  const r = spawnSync('bash', ['-c', `tar -C "$1" ${excludes.map((e) => `--exclude=./${e}`).join(' ')} -c . | tar -C "$2" -x`, '_', repoRoot, dst]);
  assert.equal(r.status, 0, `copying the checkout: ${r.stderr}`);
}

// In the container: no Node at all, then the README's first command, then the unit tests.
const SCRIPT = `
set -u
if command -v node || command -v npm || command -v cc; then echo "not pristine: node, npm or a compiler is installed" >&2; exit 90; fi
./scripts/setup.sh || exit 91
echo "== README: ./scripts/setup.sh && npx driftwatch run"
timeout -s INT 20 npx driftwatch run --metrics-address 127.0.0.1:0 2>run.log
rc=$?
cat run.log >&2
[ $rc -eq 0 ] || [ $rc -eq 124 ] || exit 92
echo "== unit tests"
npm run test:unit 2>&1 | tail -n 12
exit "\${PIPESTATUS[0]}"
`;

test('pristine Debian 12: setup.sh, then npx driftwatch run and the unit tests', { skip: skip ?? false, timeout: 60 * 60_000 }, () => {
  const base = spawnSync(join(repoRoot, 'scripts', 'debian-base.sh'), { encoding: 'utf8', timeout: 20 * 60_000 });
  assert.equal(base.status, 0, `making the Debian base: ${base.stderr}`);
  const image = base.stdout.trim();
  const src = join(work, 'src');
  cleanCopy(src);
  // the data dir on a disk, as on a node (not on the container's own overlay)
  const data = join(work, 'data');
  mkdirSync(data);
  const apt = join(cacheRoot, 'apt-archives');
  const npm = join(cacheRoot, 'npm');
  mkdirSync(join(apt, 'partial'), { recursive: true });
  mkdirSync(npm, { recursive: true });
  const args = [
    'run', '--rm', '--name', name, '--runtime=runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024',
    // the host's network, its CA trust (a TLS-intercepting proxy's CA included) and the sensor's needs
    '--network=host', '--privileged', '--pid=host', '--cgroupns=host',
    '-v', `${src}:/src`, '-w', '/src', '-v', `${data}:/var/lib/driftwatch`,
    '-v', `${apt}:/var/cache/apt/archives`, '-v', `${npm}:/root/.npm`,
    ...(existsSync(CA_BUNDLE) ? ['-v', `${CA_BUNDLE}:/run/host-ca.crt:ro`, '-e', 'NODE_EXTRA_CA_CERTS=/run/host-ca.crt'] : []),
    image, 'bash', '-c', SCRIPT,
  ];
  const t0 = Date.now();
  const r = spawnSync('podman', args, { encoding: 'utf8', timeout: 55 * 60_000, maxBuffer: 256 << 20 });
  const out = `${r.stdout}\n${r.stderr}`;
  console.log(`# pristine run took ${Math.round((Date.now() - t0) / 1000)}s; last lines:\n${out.trim().split('\n').slice(-25).map((l) => `#   ${l}`).join('\n')}`);
  assert.notEqual(r.status, 90, 'the base image is not pristine');
  assert.notEqual(r.status, 91, 'scripts/setup.sh failed');
  assert.match(out, /setup: installing .*\bnodejs npm\b/, 'setup.sh bootstraps Debian\'s nodejs and npm when npm is missing');
  assert.match(out, /setup: done \(v24\./, 'Node 24 from the npm package');
  assert.notEqual(r.status, 92, 'npx driftwatch run failed');
  assert.match(out, /attached .*sched_process_exec.*; watching for drift/, 'the sensor attached');
  assert.match(out, /self-test passed/);
  assert.match(out, /SIGINT: detaching and flushing/);
  assert.match(out, /stopped; events \d+/);
  assert.match(out, /ℹ fail 0/);
  assert.match(out, /ℹ pass [1-9]\d*/);
  assert.equal(r.status, 0, out.slice(-4000));
});
