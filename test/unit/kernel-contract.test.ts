// The kernel/user contract, held against the built BPF object the way
// tetragon's alignchecker holds its Go structs: every member of the record
// structs in the object's BTF must have a mirror in records.ts at the same
// offset (and every mirror a member), sizes must agree, and the counter
// names the addon reports must be enum dw_stat's. Preprocessor constants
// (flag bits, versions) never reach BTF, so those are read from the header
// the object was built from. A field moved, added or dropped on one side
// only fails here.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { addonPath, loadAddon } from '../../src/native/loader.js';
import * as R from '../../src/pipeline/records.js';

const root = join(addonPath, '..', '..', '..', '..');
const object = join(root, 'bpf', 'build', 'tracee.bpf.o');
const header = join(root, 'bpf', 'tracee', 'headers', 'events.h');

interface BtfMember {
  name: string;
  type_id: number;
  bits_offset: number;
}
interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  members?: BtfMember[];
  values?: Array<{ name: string; val: number }>;
  type_id?: number;
  nr_elems?: number;
}

function bpftool(): string | null {
  for (const p of ['/usr/sbin/bpftool', '/usr/bin/bpftool', '/usr/local/sbin/bpftool']) if (existsSync(p)) return p;
  return null;
}

const tool = bpftool();
const skip = !existsSync(object) ? `no BPF object at bpf/build/tracee.bpf.o (npm run build:bpf)` : !tool ? 'bpftool is not installed' : false;
if (skip) console.log(`# kernel contract: skipped: ${skip}`);

function btf(): Map<string, BtfType> & { byId: Map<number, BtfType> } {
  const { types } = JSON.parse(execFileSync(tool!, ['-j', 'btf', 'dump', 'file', object], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { types: BtfType[] };
  const byName = new Map(types.filter((t) => t.name && t.name !== '(anon)').map((t) => [t.name, t])) as Map<string, BtfType> & { byId: Map<number, BtfType> };
  byName.byId = new Map(types.map((t) => [t.id, t]));
  return byName;
}

const camel = (snake: string): string => snake.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Explicit padding members (pad, _pad1, reserved): kept by C for alignment, not read. */
const PADDING = /^_*(pad|reserved)\d*$/;

/**
 * What differs between a BTF struct and its mirror (member name in camel
 * case → byte offset). `skip` names members checked elsewhere (the nested header).
 */
export function layoutMismatches(struct: BtfType, mirror: Readonly<Record<string, number>>, skip: string[] = []): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const m of struct.members ?? []) {
    if (skip.includes(m.name) || PADDING.test(m.name)) continue;
    const key = camel(m.name);
    seen.add(key);
    if (m.bits_offset % 8) out.push(`${struct.name}.${m.name} is a bitfield`);
    else if (!(key in mirror)) out.push(`${struct.name}.${m.name} (offset ${m.bits_offset / 8}) has no mirror ${key}`);
    else if (mirror[key] !== m.bits_offset / 8) out.push(`${struct.name}.${m.name} is at ${m.bits_offset / 8}, the mirror says ${mirror[key]}`);
  }
  for (const key of Object.keys(mirror)) if (!seen.has(key)) out.push(`mirror ${key} has no member in ${struct.name}`);
  return out;
}

/** #define NAME value lines of the header with a prefix, value evaluated (1U << n, hex, decimal). */
function defines(prefix: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of readFileSync(header, 'utf8').matchAll(new RegExp(`^#define\\s+${prefix}(\\w+)\\s+\\(?\\s*(?:1U?\\s*<<\\s*(\\d+)|(0x[0-9a-fA-F]+)U?|(\\d+)U?)\\s*\\)?`, 'gm'))) {
    out.set(m[1]!, m[2] !== undefined ? 2 ** Number(m[2]) : Number(m[3] ?? m[4]));
  }
  return out;
}

test('kernel contract: record structs in the object\'s BTF match records.ts, member by member', { skip }, () => {
  const types = btf();
  const struct = (name: string): BtfType => {
    const t = types.get(name);
    assert.ok(t && t.kind === 'STRUCT', `struct ${name} in the object's BTF`);
    return t;
  };
  const hdr = struct('dw_event_header');
  assert.deepEqual(layoutMismatches(hdr, R.HDR), []);
  assert.equal(hdr.size, R.HEADER_SIZE);
  for (const [name, mirror] of [['dw_exec_event', R.EXEC], ['dw_mmap_event', R.MMAP]] as const) {
    const s = struct(name);
    assert.deepEqual(layoutMismatches(s, mirror, ['hdr']), []);
    assert.equal(s.members![0]!.name, 'hdr', `${name} starts with the header`);
    assert.equal(mirror.data, s.size, `${name}: data[] starts where the fixed part ends`);
    const comm = types.byId.get(s.members!.find((m) => m.name === 'comm')!.type_id)!;
    assert.equal(comm.nr_elems, R.COMM_LEN, `${name}.comm length`);
  }
  const ancestor = struct('dw_ancestor');
  assert.equal(ancestor.size, R.ANCESTOR_SIZE);
  const ancestors = types.byId.get(struct('dw_exec_event').members!.find((m) => m.name === 'ancestors')!.type_id)!;
  assert.equal(ancestors.kind, 'ARRAY');
  assert.equal(ancestors.nr_elems, R.MAX_ANCESTORS);
});

test('kernel contract: a moved, added or dropped C field is caught', { skip }, () => {
  const exec = btf().get('dw_exec_event')!;
  const moved = { ...exec, members: exec.members!.map((m) => (m.name === 'uid' ? { ...m, bits_offset: m.bits_offset + 32 } : m)) };
  assert.deepEqual(layoutMismatches(moved, R.EXEC, ['hdr']), ['dw_exec_event.uid is at 44, the mirror says 40']);
  const added = { ...exec, members: [...exec.members!, { name: 'action', type_id: 9, bits_offset: 8 * 240 }] };
  assert.match(layoutMismatches(added, R.EXEC, ['hdr']).join(), /dw_exec_event\.action \(offset 240\) has no mirror action/);
  const dropped = { ...exec, members: exec.members!.filter((m) => m.name !== 'gid') };
  assert.deepEqual(layoutMismatches(dropped, R.EXEC, ['hdr']), ['mirror gid has no member in dw_exec_event']);
});

test('kernel contract: the addon\'s counter names are enum dw_stat from the object, in order', { skip }, () => {
  const e = btf().get('dw_stat');
  assert.ok(e && e.kind === 'ENUM', 'enum dw_stat in the object\'s BTF');
  const fromBtf = e
    .values!.filter((v) => v.name !== 'DW_STAT_MAX')
    .sort((a, b) => a.val - b.val)
    .map((v) => v.name.replace(/^DW_STAT_/, '').toLowerCase());
  assert.deepEqual(fromBtf.map((_, i) => e.values!.find((v) => v.val === i)?.name.replace(/^DW_STAT_/, '').toLowerCase()), fromBtf, 'values are 0..n-1');
  assert.deepEqual(loadAddon().statNames, fromBtf);
});

test('kernel contract: flag bits, versions and kinds in the header match records.ts', { skip }, () => {
  const mirror = (prefix: string, ts: Record<string, number>) => {
    const c = Object.fromEntries(defines(prefix));
    assert.deepEqual(ts, c, `${prefix}* (header) against records.ts`);
  };
  mirror('DW_FILE_', R.FileFlag);
  mirror('DW_TRUNC_', R.TruncFlag);
  mirror('DW_SCRIPT_', R.ScriptFlag);
  const execBits = Object.fromEntries([...defines('DW_EXEC_')].filter(([k]) => k !== 'VERSION'));
  assert.deepEqual({ ...R.ExecOutcome, ...Object.fromEntries(Object.entries(R.ExecWatch).map(([k, v]) => [`WATCH_${k}`, v])) }, execBits, 'DW_EXEC_* (header) against records.ts');
  const watch = defines('DW_WATCH_');
  assert.equal(watch.get('INLINE_OPT_SHIFT'), R.WATCH_INLINE_OPT_SHIFT);
  watch.delete('INLINE_OPT_SHIFT');
  assert.equal(watch.get('MULTICALL'), R.WATCH_MULTICALL);
  watch.delete('MULTICALL');
  assert.deepEqual(Object.fromEntries(watch), R.WatchKind, 'DW_WATCH_* (header) against records.ts');
  // File facts, outcomes and watch bits share file_flags: no bit is used twice.
  const all = [...Object.values(R.FileFlag), ...Object.values(R.ExecOutcome), ...Object.values(R.ExecWatch)];
  assert.equal(all.reduce((a, b) => a | b, 0).toString(2).replace(/0/g, '').length, all.length, 'file_flags bits overlap');
  const versions = defines('DW_');
  assert.equal(versions.get('EXEC_VERSION'), R.EXEC_VERSION);
  assert.equal(versions.get('MMAP_VERSION'), R.MMAP_VERSION);
  const text = readFileSync(header, 'utf8');
  const enumValues = (name: string) =>
    Object.fromEntries(
      [...(new RegExp(`enum ${name} \\{([^}]*)\\}`).exec(text)?.[1] ?? '').matchAll(/DW_\w+?_(\w+)\s*=\s*(\d+)/g)].map((m) => [m[1]!, Number(m[2])]),
    );
  assert.deepEqual(enumValues('dw_session'), R.Session);
  assert.deepEqual(enumValues('dw_event_kind'), R.EventKind);
});

test('kernel contract: exec_watch keys and values as setExecWatch writes them', { skip }, async () => {
  const { execWatchKey, execWatchValue, setExecWatch, watchFilterBit } = await import('../../src/native/loader.js');
  const key = btf().get('dw_watch_key');
  assert.ok(key && key.kind === 'STRUCT', 'struct dw_watch_key in the object\'s BTF');
  assert.equal(key.size, execWatchKey('sh').length);
  assert.deepEqual(key.members!.map((m) => [m.name, m.bits_offset]), [['comm', 0]]);
  assert.equal(execWatchValue(0).length, 4, 'value is a u32');
  // comm is the basename cut to 15 bytes and NUL-padded, as the kernel sets it.
  assert.equal(execWatchKey('python3.11').toString('latin1'), 'python3.11\0\0\0\0\0\0');
  assert.equal(execWatchKey('a-very-long-interpreter').toString('latin1'), 'a-very-long-int\0');
  assert.throws(() => execWatchKey('usr/bin/sh'), /not a file name/);
  assert.equal(execWatchValue(R.WatchKind.INTERPRETER, 'c').readUInt32LE(0), R.WatchKind.INTERPRETER | (0x63 << R.WATCH_INLINE_OPT_SHIFT));
  // The union of interpreters and package managers: one key per comm, kinds merged.
  const writes: Array<[string, Buffer, Buffer]> = [];
  const n = setExecWatch({ mapUpdate: (m, k, v) => void writes.push([m, k, v]), mapClear: () => 0 }, [
    { comm: 'sh', kinds: R.WatchKind.INTERPRETER, inlineOption: 'c' },
    { comm: 'apk', kinds: R.WatchKind.PACKAGE_MANAGER },
    { comm: 'sh', kinds: R.WatchKind.PACKAGE_MANAGER },
  ]);
  assert.equal(n, 2);
  const filter = writes.find(([m]) => m === 'exec_watch_filter')!;
  assert.equal(filter[2].length, btf().get('dw_watch_filter')!.size, 'the filter value is struct dw_watch_filter');
  for (const name of ['sh', 'apk']) {
    const bit = watchFilterBit(execWatchKey(name));
    assert.ok(filter[2][bit >> 3]! & (1 << (bit & 7)), `${name} has its filter bit`);
  }
  // The hash is the kernel's (watch_maybe): a known value, so a change on one side only fails here.
  assert.equal(watchFilterBit(execWatchKey('sh')), Number((((0x6873n ^ 0n) * 0x9e3779b97f4a7c15n) & ((1n << 64n) - 1n)) >> 52n));
  assert.deepEqual(writes.filter(([m]) => m === 'exec_watch').map(([m, k, v]) => [m, k.toString('latin1').replace(/\0+$/, ''), v.readUInt32LE(0)]), [
    ['exec_watch', 'sh', R.WatchKind.INTERPRETER | R.WatchKind.PACKAGE_MANAGER | (0x63 << R.WATCH_INLINE_OPT_SHIFT)],
    ['exec_watch', 'apk', R.WatchKind.PACKAGE_MANAGER],
  ]);
});

test('kernel contract: the exec_watch first stage in .rodata, as the loader fills it', { skip }, async () => {
  const { execWatchKey, execWatchPrefilter, execWatchPrefilterFor, setExecWatch, watchPrefilterBits, WATCH_PRE_WORDS } = await import('../../src/native/loader.js');
  const types = btf();
  const pre = types.get('cfg_watch_pre');
  assert.equal(pre?.kind, 'VAR', 'cfg_watch_pre in the object\'s BTF');
  const arr = types.byId.get(pre!.type_id!);
  assert.equal(arr?.kind, 'ARRAY');
  assert.equal(arr!.nr_elems, WATCH_PRE_WORDS, 'as many words as the loader writes');
  assert.equal(execWatchPrefilter([]).length, WATCH_PRE_WORDS * 8);
  // The hash is the kernel's (watch_pre): known values, so a change on one side only fails here.
  const h = (w: bigint) => (w * 0x9e3779b97f4a7c15n) & ((1n << 64n) - 1n);
  const bits = (w: bigint) => [Number(h(w) >> 56n), Number((h(w) >> 48n) & 0xffn)];
  assert.deepEqual(watchPrefilterBits(execWatchKey('sh')), bits(0x6873n));
  // Digits and dots are cleared: a versioned name has its family's bits.
  assert.deepEqual(watchPrefilterBits(execWatchKey('python3.11')), watchPrefilterBits(execWatchKey('python')));
  assert.deepEqual(watchPrefilterBits(execWatchKey('perl5.36.0')), watchPrefilterBits(execWatchKey('perl')));
  assert.notDeepEqual(watchPrefilterBits(execWatchKey('python')), watchPrefilterBits(execWatchKey('perl')));
  // Bytes of 0x80 and above (UTF-8) are kept, also those whose low 7 bits are a digit.
  assert.deepEqual(watchPrefilterBits(Buffer.from([0xb1, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])), bits(0x61b1n));
  // A name outside the list the object was loaded with could never be seen: refused, not silently lost.
  const loadedWith = execWatchPrefilterFor([{ comm: 'sh', kinds: R.WatchKind.INTERPRETER }]);
  const writer = { mapUpdate: () => undefined, mapClear: () => 0 };
  assert.equal(setExecWatch(writer, [{ comm: 'sh', kinds: R.WatchKind.INTERPRETER }], loadedWith), 1);
  const outside = ['apk', 'dpkg', 'ruby', 'node', 'perl'].find((n) => !watchPrefilterBits(execWatchKey(n)).every((b) => loadedWith[b >> 3]! & (1 << (b & 7))))!;
  assert.throws(() => setExecWatch(writer, [{ comm: outside, kinds: R.WatchKind.PACKAGE_MANAGER }], loadedWith), /take effect at start/);
});
