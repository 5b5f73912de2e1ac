// drift.interpreted_script without a kernel: the argv rules that find an
// interpreter's script operand, the interpreter list's expansion into
// exec_watch names, the signature over each kind of script file, and how
// dedup, policy and stream signatures treat its findings.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { ScriptFileFacts } from '../../src/enrich/script-file.js';
import { belowRoot, devString, parseMountinfo } from '../../src/enrich/script-file.js';
import { userDev } from '../../src/enrich/safe-open.js';
import { parsePolicy } from '../../src/policy/policy-file.js';
import { PolicyStage } from '../../src/policy/policy.js';
import { containerOf } from '../../src/pipeline/container.js';
import { decodeExecRecord } from '../../src/pipeline/decode.js';
import { SignatureEngine } from '../../src/pipeline/engine.js';
import { BootClock, type Finding } from '../../src/pipeline/finding.js';
import { DEFAULT_INTERPRETERS, expandRanges, familyOf, interpreterWatchEntries, parseInterpreters, scriptOperand, type Family, type Operand } from '../../src/pipeline/interpreters.js';
import { Metrics } from '../../src/pipeline/metrics.js';
import { ExecWatch, FileFlag as F, WatchKind } from '../../src/pipeline/records.js';
import { dedupKey } from '../../src/report/dedup.js';
import { encodeExec } from '../../src/sdk/encode.js';
import { builtinSignatures } from '../../src/signatures/index.js';
import { isDrift, type DetectionEvent } from '../../src/sdk/signature.js';

const operands: Array<[Family, string[], Operand]> = [
  ['shell', ['sh', '/tmp/x.sh'], { kind: 'file', path: '/tmp/x.sh', family: 'shell' }],
  ['shell', ['sh', '-e', '-x', 'x.sh', 'arg'], { kind: 'file', path: 'x.sh', family: 'shell' }],
  ['shell', ['bash', '-o', 'pipefail', '/tmp/x.sh'], { kind: 'file', path: '/tmp/x.sh', family: 'shell' }],
  ['shell', ['bash', '--rcfile', '/etc/rc', '/tmp/x.sh'], { kind: 'file', path: '/tmp/x.sh', family: 'shell' }],
  ['shell', ['sh', '-c', 'echo hi', 'x'], { kind: 'inline', code: 'echo hi', family: 'shell' }],
  ['shell', ['bash', '-ec', 'true'], { kind: 'inline', code: 'true', family: 'shell' }],
  ['shell', ['sh', '-s', 'a'], { kind: 'stdin', family: 'shell' }],
  ['shell', ['sh', '--', '-weird.sh'], { kind: 'file', path: '-weird.sh', family: 'shell' }],
  ['shell', ['sh'], { kind: 'none', family: 'shell' }],
  ['busybox', ['sh', '/tmp/x.sh'], { kind: 'file', path: '/tmp/x.sh', family: 'shell' }],
  ['busybox', ['busybox', 'sh', '/tmp/x.sh'], { kind: 'file', path: '/tmp/x.sh', family: 'shell' }],
  ['busybox', ['busybox', 'ls', '/tmp'], { kind: 'none' }],
  ['busybox', ['ls', '/tmp'], { kind: 'none' }],
  ['python', ['python3', '/app/main.py'], { kind: 'file', path: '/app/main.py', family: 'python' }],
  ['python', ['python3', '-u', '-W', 'ignore', 'x.py'], { kind: 'file', path: 'x.py', family: 'python' }],
  ['python', ['python3', '-Wignore::DeprecationWarning', '/tmp/x.py'], { kind: 'file', path: '/tmp/x.py', family: 'python' }],
  ['python', ['python3', '-c', 'print(1)'], { kind: 'inline', code: 'print(1)', family: 'python' }],
  ['python', ['python3', '-m', 'http.server'], { kind: 'module', family: 'python' }],
  ['perl', ['perl', '-e', 'print 1'], { kind: 'inline', code: 'print 1', family: 'perl' }],
  ['perl', ['perl', '-w', '/tmp/x.pl'], { kind: 'file', path: '/tmp/x.pl', family: 'perl' }],
  ['ruby', ['ruby', '-I', 'lib', '/tmp/x.rb'], { kind: 'file', path: '/tmp/x.rb', family: 'ruby' }],
  ['node', ['node', '--require', 'a.js', '/tmp/x.js'], { kind: 'file', path: '/tmp/x.js', family: 'node' }],
  ['node', ['node', '--eval', '1'], { kind: 'inline', code: '1', family: 'node' }],
  ['node', ['node', '-e', '1'], { kind: 'inline', code: '1', family: 'node' }],
  ['php', ['php', '-c', '/etc/php.ini', '/tmp/x.php'], { kind: 'file', path: '/tmp/x.php', family: 'php' }],
  ['php', ['php', '-r', 'echo 1;'], { kind: 'inline', code: 'echo 1;', family: 'php' }],
];

for (const [family, argv, want] of operands) {
  test(`interpreters: ${argv.join(' ')} → ${want.kind}${want.path ? ` ${want.path}` : ''}`, () => assert.deepEqual(scriptOperand(family, argv), want));
}

test('interpreters: families by comm or file name, minor versions included', () => {
  assert.equal(familyOf('python3.11'), 'python');
  assert.equal(familyOf('perl5.36.0'), 'perl');
  assert.equal(familyOf('dash'), 'shell');
  assert.equal(familyOf('nodejs'), 'node');
  assert.equal(familyOf('pythonista'), undefined);
});

test('interpreters: ranges expand, bad entries are refused with the entry named', () => {
  assert.deepEqual(expandRanges('python3.{8..10}'), ['python3.8', 'python3.9', 'python3.10']);
  assert.deepEqual(expandRanges('a{1..2}.{0..1}'), ['a1.0', 'a1.1', 'a2.0', 'a2.1']);
  assert.deepEqual(parseInterpreters(['sh:c', 'python3']), [{ name: 'sh', inlineOption: 'c' }, { name: 'python3' }]);
  assert.throws(() => parseInterpreters(['/bin/sh']), /interpreters: expected name/);
  assert.throws(() => parseInterpreters(['sh:cc']), /interpreters: expected name/);
  assert.throws(() => expandRanges('p{5..1}'), /bad range/);
  const entries = interpreterWatchEntries(DEFAULT_INTERPRETERS);
  const byName = new Map(entries.map((e) => [e.comm, e]));
  for (const name of ['sh', 'bash', 'dash', 'ash', 'busybox', 'python3', 'python3.11', 'python3.19', 'python2.7', 'perl', 'ruby', 'node', 'php', 'php8.2']) {
    assert.ok(byName.get(name)!.kinds & WatchKind.INTERPRETER, name);
  }
  assert.equal(byName.get('sh')!.inlineOption, 'c');
  assert.equal(byName.get('python3')!.inlineOption, undefined, 'python options with values may hold a c: judged in user space');
  assert.equal(byName.get('busybox')!.multiCall, true);
  assert.ok(entries.length < 1024, 'fits exec_watch');
});

test('script-file helpers: mountinfo, device numbers, paths below a root', () => {
  const mi = '36 35 0:40 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n37 36 0:41 / /dev/shm rw - tmpfs tmpfs rw\n38 36 8:1 /vol /mnt/ro ro,relatime - ext4 /dev/sda1 rw\n';
  assert.deepEqual(parseMountinfo(mi).map((m) => [m.dev, m.mountPoint, m.readOnly, m.fstype]), [
    ['0:40', '/', false, 'overlay'],
    ['0:41', '/dev/shm', false, 'tmpfs'],
    ['8:1', '/mnt/ro', true, 'ext4'],
  ]);
  assert.equal(devString((8n << 8n) | 1n), '8:1');
  assert.equal(devString(userDev((259 << 20) | 300)), '259:300', 'the inverse of glibc\'s encoding');
  assert.equal(belowRoot('/run/ct/merged/tmp/x', '/run/ct/merged'), '/tmp/x');
  assert.equal(belowRoot('/tmp/x', '/'), '/tmp/x');
  assert.equal(belowRoot('/run/ct/mergedX/tmp', '/run/ct/merged'), undefined);
});

const HOST = { mnt: 4026531840, pid: 4026531836 };
const IMAGE_SH = F.OVERLAY | F.OVL_LAYOUT_FSDATA | ExecWatch.INTERPRETER;

function detection(file: ScriptFileFacts | undefined, flags = IMAGE_SH): DetectionEvent {
  const exec = decodeExecRecord(encodeExec({ fileFlags: flags, path: '/bin/busybox', comm: 'sh', args: ['sh', file?.operand ?? '/tmp/x.sh'], mntNs: 4026532000, pidNs: 4026532001 }));
  return { kind: 'exec', exec, container: containerOf(exec, HOST), ...(file ? { interpreted: { family: 'shell', operand: 'file', file } } : {}) };
}

function findings(ev: DetectionEvent): Finding[] {
  const engine = new SignatureEngine(builtinSignatures, { hostname: 'node-1', clock: new BootClock(), metrics: new Metrics() });
  return engine.dispatch(ev);
}

const script = (o: Partial<ScriptFileFacts>): ScriptFileFacts => ({ path: '/tmp/x.sh', operand: '/tmp/x.sh', inode: '7', device: '0:40', ...o });

const signatureTable: Array<[string, ScriptFileFacts | undefined, string[]]> = [
  ['no operand facts (inline code)', undefined, []],
  ['image script', script({ layer: 'LOWER', sha256: 'a'.repeat(64) }), []],
  ['script created in the container', script({ layer: 'UPPER_NEW', sha256: 'b'.repeat(64) }), ['drift.interpreted_script']],
  ['image script changed', script({ layer: 'UPPER_COPIED_UP', sameAsImage: false }), ['drift.interpreted_script']],
  ['image script touched (same content)', script({ layer: 'UPPER_COPIED_UP', sameAsImage: true }), []],
  ['script on tmpfs', script({ layer: 'TMPFS' }), ['drift.interpreted_script']],
  ['script in a memfd', script({ layer: 'MEMFD', path: 'memfd:x' }), ['drift.interpreted_script']],
  ['script on a writable volume', script({ layer: 'OTHER', volume: 'writable' }), ['drift.interpreted_script']],
  ['script on a read-only volume', script({ layer: 'OTHER', volume: 'read_only' }), []],
  ['a FIFO where the script was', script({ layerUnavailable: 'not_regular' }), ['drift.interpreted_script']],
  ['gone before the lookup (counted, not reported)', script({ layerUnavailable: 'gone' }), []],
];

for (const [name, file, want] of signatureTable) {
  test(`drift.interpreted_script: ${name} → ${want.join(', ') || 'nothing'}`, () => {
    const ev = detection(file);
    const got = findings(ev);
    assert.deepEqual(got.map((f) => f.signature!.id).sort(), want);
    assert.equal(isDrift(ev), want.length > 0 && !file?.layerUnavailable, 'stream signatures count it as drift');
    for (const f of got) {
      assert.equal(f.signature!.severity, 'HIGH');
      assert.equal(f.process!.script!.path, file!.path);
      assert.equal(f.process!.script!.layer, file!.layer ?? 'UNKNOWN');
      assert.equal(f.signature!.data!['script'], file!.path);
    }
  });
}

test('drift.interpreted_script: findings of two scripts under one interpreter are two dedup groups; one script twice is one', () => {
  const a = findings(detection(script({ layer: 'UPPER_NEW', sha256: 'a'.repeat(64) })))[0]!;
  const b = findings(detection(script({ layer: 'UPPER_NEW', sha256: 'b'.repeat(64) })))[0]!;
  const a2 = findings(detection(script({ layer: 'UPPER_NEW', sha256: 'a'.repeat(64) })))[0]!;
  assert.notEqual(dedupKey(a), dedupKey(b));
  assert.equal(dedupKey(a), dedupKey(a2));
});

test('drift.interpreted_script: policy exceptions by executable glob and sha256 match the script', () => {
  const f = () => findings(detection(script({ path: '/build/gen.sh', layer: 'UPPER_NEW', sha256: 'c'.repeat(64) })))[0]!;
  for (const rule of ['executable: /build/**', `sha256: ["${'c'.repeat(64)}"]`]) {
    const out: Finding[] = [];
    const metrics = new Metrics();
    new PolicyStage(parsePolicy(`exceptions:\n  - signature: drift.interpreted_script\n    ${rule}\n`, 'p.yaml'), metrics, (x) => out.push(x)).apply(f());
    assert.deepEqual(out, [], rule);
  }
  const out: Finding[] = [];
  new PolicyStage(parsePolicy('exceptions:\n  - executable: /other/**\n', 'p.yaml'), new Metrics(), (x) => out.push(x)).apply(f());
  assert.equal(out.length, 1);
});

test('held interpreters: a real stopped child is killed or continued through its pidfd, once; a mismatched identity is left alone', async () => {
  const { spawn } = await import('node:child_process');
  const { statSync } = await import('node:fs');
  const { HeldExec } = await import('../../src/prevent/held.js');
  const exeOf = (pid: number) => {
    const st = statSync(`/proc/${pid}/exe`, { bigint: true });
    // The kernel's dev_t (major << 20 | minor) from glibc's st_dev.
    const major = Number(((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn));
    const minor = Number((st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn));
    return { dev: (major << 20) | minor, inode: st.ino };
  };
  const children: Array<ReturnType<typeof spawn>> = [];
  const state = (pid: number) => /\) (\S) /.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
  const stopped = async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    await once(child, 'spawn');
    process.kill(child.pid!, 'SIGSTOP');
    while (state(child.pid!) !== 'T') await new Promise((r) => setTimeout(r, 10));
    return child;
  };
  try {
    const metrics = new Metrics();
    const killed = await stopped();
    const h = new HeldExec(killed.pid!, exeOf(killed.pid!), metrics);
    assert.equal(h.decide(true), 'killed');
    assert.equal(h.decide(false), 'killed', 'one verdict only');
    const [, signal] = (await once(killed, 'exit')) as [number | null, string | null];
    assert.equal(signal, 'SIGKILL');

    const continued = await stopped();
    assert.equal(new HeldExec(continued.pid!, exeOf(continued.pid!), metrics).decide(false), 'continued');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(state(continued.pid!), 'S', 'running (sleeping) again, not stopped');

    const other = await stopped();
    const wrong = { ...exeOf(other.pid!), inode: exeOf(other.pid!).inode + 1n };
    assert.equal(new HeldExec(other.pid!, wrong, metrics).decide(true), 'gone', 'not the recorded executable: never signalled');
    assert.equal(state(other.pid!), 'T', 'still stopped');
  } finally {
    for (const c of children) c.kill('SIGKILL');
  }
});
