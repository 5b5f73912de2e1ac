// `driftwatch policy suggest`: policy YAML that would silence the findings a
// fleet keeps producing. Findings are grouped by image, signature and
// executable; executables that differ from run to run (dpkg's maintainer
// scripts, a build's test binaries) are grouped by the ancestor that ran them
// instead. A group becomes a rule only when it repeats across containers;
// anything seen once stays reported. Nothing is applied: an operator reviews
// the output and adds what they agree with to the policy file.
import type { FindingJson } from '#gen/finding-json.js';

export interface SuggestOptions {
  /** Executions a group needs (folded counts included). */
  minExecutions?: number;
  /** Distinct containers a group needs. */
  minContainers?: number;
  /** An executable with more distinct fleet-wide contents than this gets no rule (it is not one program). */
  maxHashes?: number;
}

export interface Suggestion {
  rule: {
    signature: string;
    image?: string;
    executable?: string;
    ancestor?: string;
    sha256?: string[];
  };
  findings: number;
  executions: number;
  containers: number;
  hosts: number;
  firstSeen: string;
  lastSeen: string;
  why: string;
}

/** Command names that only pass things on: never the ancestor a rule is about. */
const SHELLS = new Set(['sh', 'bash', 'dash', 'ash', 'zsh', 'busybox', 'env', 'timeout', 'xargs', 'nohup', 'sudo', 'su', 'runc', 'crun', 'conmon', 'containerd-shim', 'tini', 'dumb-init']);

const imageOf = (f: FindingJson) => f.container?.image || f.container?.imageId || '';
const containerOf = (f: FindingJson) => f.container?.id || `${f.host?.hostname}:${f.container?.mntNs}`;

/** The nearest ancestor that is not a shell or a runtime, by command name. */
function nearestActor(f: FindingJson): string | undefined {
  const own = (f.process?.executable?.path ?? '').split('/').pop();
  for (const a of f.process?.ancestry ?? []) {
    const c = a.comm ?? '';
    if (c && !SHELLS.has(c) && c !== own) return c;
  }
  return undefined;
}

function summarise(group: FindingJson[], rule: Suggestion['rule']): Suggestion {
  const times = group.flatMap((f) => [f.firstSeen || f.time || '', f.lastSeen || f.time || '']).filter(Boolean).sort();
  return {
    rule,
    findings: group.length,
    executions: group.reduce((n, f) => n + (f.count || 1), 0),
    containers: new Set(group.map(containerOf)).size,
    hosts: new Set(group.map((f) => f.host?.hostname ?? '')).size,
    firstSeen: times[0] ?? '',
    lastSeen: times[times.length - 1] ?? '',
    why: '',
  };
}

export function suggestRules(findings: FindingJson[], opts: SuggestOptions = {}): Suggestion[] {
  const minExecutions = opts.minExecutions ?? 3;
  const minContainers = opts.minContainers ?? 2;
  const maxHashes = opts.maxHashes ?? 4;
  const repeated = (s: Suggestion) => s.executions >= minExecutions && s.containers >= minContainers;
  const out: Suggestion[] = [];

  // 1. The same executable from the same image, in many containers.
  const byExecutable = new Map<string, FindingJson[]>();
  for (const f of findings) {
    // A script finding's executable is its interpreter: group those by who ran them.
    if (f.signature?.id === 'drift.new_script') continue;
    const k = JSON.stringify([imageOf(f), f.signature?.id, f.process?.executable?.path]);
    byExecutable.set(k, [...(byExecutable.get(k) ?? []), f]);
  }
  const covered = new Set<FindingJson>();
  for (const all of byExecutable.values()) {
    const f = all[0]!;
    const image = imageOf(f);
    // Pinned to the contents that repeat across containers themselves: one
    // other binary at the same path (a payload) is not folded into the rule.
    const byHash = new Map<string, FindingJson[]>();
    for (const x of all) {
      const h = x.process?.executable?.sha256 ?? '';
      byHash.set(h, [...(byHash.get(h) ?? []), x]);
    }
    const hashed = [...byHash.entries()].filter(([h]) => h);
    const fleetWide = hashed.filter(([, g]) => new Set(g.map(containerOf)).size >= minContainers).map(([h]) => h).sort();
    const group = hashed.length ? fleetWide.flatMap((h) => byHash.get(h)!) : all;
    if (!group.length || (hashed.length && fleetWide.length > maxHashes)) continue;
    const rule: Suggestion['rule'] = { signature: f.signature?.id ?? '', ...(image ? { image } : {}), executable: f.process?.executable?.path ?? '' };
    if (fleetWide.length) rule.sha256 = fleetWide;
    const s = summarise(group, rule);
    if (!repeated(s)) continue;
    s.why = `${rule.executable} ${image ? `from image ${image} ` : ''}ran in ${s.containers} containers on ${s.hosts} host(s)` +
      (rule.sha256 ? `, with ${rule.sha256.length === 1 ? 'the same content' : `one of ${rule.sha256.length} contents`}` : ' (no content hash known: any content at this path)');
    out.push(s);
    for (const x of group) covered.add(x);
  }

  // 2. What is left, by the ancestor that ran it (package managers, build tools).
  const byActor = new Map<string, FindingJson[]>();
  for (const f of findings) {
    if (covered.has(f)) continue;
    const actor = nearestActor(f);
    if (!actor) continue;
    const k = JSON.stringify([imageOf(f), f.signature?.id, actor]);
    byActor.set(k, [...(byActor.get(k) ?? []), f]);
  }
  for (const group of byActor.values()) {
    const f = group[0]!;
    const image = imageOf(f);
    const actor = nearestActor(f)!;
    const s = summarise(group, { signature: f.signature?.id ?? '', ...(image ? { image } : {}), ancestor: actor });
    if (!repeated(s)) continue;
    const exes = new Set(group.map((x) => (x.signature?.id === 'drift.new_script' ? x.signature?.data?.['script'] : x.process?.executable?.path) ?? ''));
    s.why = `${exes.size} different file(s) run under ${actor} ${image ? `in image ${image} ` : ''}in ${s.containers} containers on ${s.hosts} host(s)`;
    out.push(s);
  }
  return out.sort((a, b) => b.executions - a.executions);
}

const q = (s: string) => JSON.stringify(s); // a JSON string is a YAML double-quoted scalar

export function renderSuggestions(suggestions: Suggestion[], header: { findings: number; since?: string }): string {
  const lines = [
    `# driftwatch policy suggest: ${suggestions.length} rule(s) from ${header.findings} stored finding(s)${header.since ? ` since ${header.since}` : ''}.`,
    '# Review every rule before adding it to your policy file; nothing here is applied by itself.',
    '# Findings seen once, or in a single container, are not suggested: they stay reported.',
  ];
  if (!suggestions.length) return `${lines.join('\n')}\nexceptions: []\n`;
  lines.push('exceptions:');
  for (const s of suggestions) {
    lines.push(`  # ${s.findings} finding(s), ${s.executions} execution(s), ${s.containers} container(s), ${s.hosts} host(s); ${s.firstSeen} .. ${s.lastSeen}`);
    lines.push(`  # why: ${s.why}`);
    const r = s.rule;
    lines.push(`  - signature: ${q(r.signature)}`);
    if (r.image) lines.push(`    image: ${q(r.image)}`);
    if (r.executable) lines.push(`    executable: ${q(r.executable)}`);
    if (r.ancestor) lines.push(`    ancestor: ${q(r.ancestor)}`);
    if (r.sha256) lines.push(`    sha256: [${r.sha256.map(q).join(', ')}]`);
    lines.push(`    reason: ${q(`suggested: ${s.why}`)}`);
  }
  return lines.join('\n') + '\n';
}
