// drift.interpreted_script in real podman containers: a Debian image (the
// debootstrap base the image build makes) with bash, dash, perl, the host's
// Node and the host's Python (Debian's own build, so the base's libraries
// fit), and a script of each kind baked in. Scripts the container writes
// are reported with path, layer and hash; the image's are not.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, cpSync, existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { kernelSkipReason } from '../helpers/minicontainer.js';
import { podmanSkipReason } from '../helpers/podman.js';
import { SensorProcess, argsContain, type Finding } from '../helpers/sensor-process.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BASE_IMAGE = 'localhost/driftwatch-base:bookworm-1';
const IMAGE = 'localhost/driftwatch-test-interpreters:1';
const RUN_FLAGS = ['--runtime=runc', '--network=none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
const SIG = 'drift.interpreted_script';
const PYTHON = '/usr/bin/python3.11';
const APP = {
  'entry.sh': 'sleep 0.5\n',
  'main.py': 'import time\ntime.sleep(0.5)\n',
  'main.js': 'setTimeout(() => {}, 500);\n',
};

function baseProblem(): string | null {
  if (spawnSync('podman', ['image', 'exists', BASE_IMAGE]).status === 0) return null;
  if (spawnSync('debootstrap', ['--version']).error) return 'debootstrap is not installed (scripts/setup.sh installs it)';
  const r = spawnSync('bash', [join(repoRoot, 'scripts', 'build-image.sh'), '--local-base', '--base-only'], { encoding: 'utf8', timeout: 900_000 });
  return r.status === 0 ? null : `the Debian base image could not be made: ${(r.stderr || r.stdout).trim().split('\n').pop()}`;
}

/** The base plus this Node, the host's Python and the image scripts; built once and kept. */
function imageProblem(): string | null {
  if (spawnSync('podman', ['image', 'exists', IMAGE]).status === 0) return null;
  if (!existsSync(PYTHON) || !existsSync('/usr/lib/python3.11')) return `the host has no ${PYTHON} to put in the image`;
  const dir = mkdtempSync(join(tmpdir(), 'driftwatch-interpimg-'));
  try {
    copyFileSync(process.execPath, join(dir, 'node'));
    copyFileSync(PYTHON, join(dir, 'python3.11'));
    cpSync('/usr/lib/python3.11', join(dir, 'pylib'), { recursive: true, filter: (p) => !p.includes('__pycache__') && !p.includes('/test/') });
    copyFileSync(realpathSync('/lib/x86_64-linux-gnu/libexpat.so.1'), join(dir, 'libexpat.so.1'));
    for (const [name, body] of Object.entries(APP)) writeFileSync(join(dir, name), body);
    writeFileSync(join(dir, 'Containerfile'), [
      `FROM ${BASE_IMAGE}`,
      'COPY node /usr/local/bin/node',
      'COPY python3.11 /usr/bin/python3.11',
      'COPY pylib /usr/lib/python3.11',
      'COPY libexpat.so.1 /usr/lib/x86_64-linux-gnu/libexpat.so.1',
      'COPY entry.sh main.py main.js /app/',
      'RUN ln -s python3.11 /usr/bin/python3 && python3 -c "import time"',
      '',
    ].join('\n'));
    const b = spawnSync('podman', ['build', ...RUN_FLAGS, '-t', IMAGE, dir], { encoding: 'utf8', timeout: 600_000 });
    return b.status === 0 ? null : `the interpreter image could not be built: ${(b.stderr || '').trim().split('\n').pop()}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const skip = kernelSkipReason() ?? podmanSkipReason() ?? baseProblem() ?? imageProblem();
if (skip) console.log(`# interpreted scripts in podman skipped: ${skip}`);

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** Runs a script with bash in a fresh container of the image; resolves when it is gone (--rm). */
async function container(script: string): Promise<{ status: number | null; out: string }> {
  const child = spawn('podman', ['run', '--rm', ...RUN_FLAGS, IMAGE, 'bash', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const [status] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { status, out };
}

describe('interpreted scripts (real kernel, podman, Debian image)', { skip: skip ?? false }, () => {
  let sensor: SensorProcess;
  const n = randomBytes(4).toString('hex');
  const dropped = {
    bash: { token: `b${n}`, file: `/tmp/b-${n}.sh`, body: 'sleep 0.5\n', run: `bash /tmp/b-${n}.sh b${n}` },
    dash: { token: `d${n}`, file: `/tmp/d-${n}.sh`, body: 'sleep 0.5\n', run: `sh /tmp/d-${n}.sh d${n}` },
    python3: { token: `p${n}`, file: `/tmp/p-${n}.py`, body: 'import time\ntime.sleep(0.5)\n', run: `python3 -u /tmp/p-${n}.py p${n}` },
    node: { token: `n${n}`, file: `/tmp/n-${n}.js`, body: 'setTimeout(() => {}, 500);\n', run: `node /tmp/n-${n}.js n${n}` },
    perl: { token: `l${n}`, file: `/tmp/l-${n}.pl`, body: 'sleep 1;\n', run: `perl -w /tmp/l-${n}.pl l${n}` },
  };

  before(async () => {
    sensor = await SensorProcess.start();
    const writes = Object.values(dropped).map((d) => `printf '%s' '${d.body.replace(/'/g, "'\\''")}' > ${d.file}`);
    const runs = Object.values(dropped).map((d) => d.run);
    const images = [`bash /app/entry.sh i${n}`, `sh /app/entry.sh i${n}`, `python3 /app/main.py i${n}`, `cd /app && node main.js i${n}`, `python3 -c 'pass' i${n}`];
    const r = await container([...writes, ...runs, ...images].join(' && '));
    assert.equal(r.status, 0, r.out);
  });

  after(async () => {
    const code = await sensor?.stop('SIGTERM');
    sensor?.cleanup();
    assert.equal(code, 0, `sensor exits 0; stderr:\n${sensor?.stderr.slice(-1000)}`);
  });

  for (const [interpreter, family] of [['bash', 'shell'], ['dash', 'shell'], ['python3', 'python'], ['node', 'node'], ['perl', 'perl']] as const) {
    test(`${interpreter} running a script the container wrote is reported with path, layer UPPER_NEW and hash`, async () => {
      const d = dropped[interpreter];
      const f = await sensor.finding((x: Finding) => argsContain(d.token)(x) && x.signature.id === SIG, `${interpreter} finding`, 30_000);
      assert.equal(f.process.script.path, d.file);
      assert.equal(f.process.script.layer, 'UPPER_NEW');
      assert.equal(f.process.script.sha256, sha(d.body));
      assert.equal(f.signature.data['interpreterFamily'], family);
      assert.equal(f.process.executable.layer, 'LOWER');
      assert.match(f.container.id, /^[0-9a-f]{64}$/);
      assert.equal(f.container.runtime, 'podman');
    });
  }

  test('the same interpreters running the image\'s scripts, and inline code, are not reported', async () => {
    // The dropped scripts ran before the image ones in the same container: their findings are in, so these were handled too.
    for (const d of Object.values(dropped)) await sensor.finding((x: Finding) => argsContain(d.token)(x) && x.signature.id === SIG, `finding ${d.token}`, 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(sensor.matching(argsContain(`i${n}`)).map((f) => `${f.signature.id} ${f.process.args.join(' ')}`), []);
  });
});
