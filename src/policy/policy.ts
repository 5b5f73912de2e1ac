// Applies the policy to findings: exceptions drop them (counted per rule),
// severity overrides and the same-as-image downgrade change them. Folding
// repeats is not done here but in reporting (src/report/dedup.ts), after
// every consumer that must see each finding.
import type { Finding } from '../pipeline/finding.js';
import type { Metrics } from '../pipeline/metrics.js';
import type { Policy } from './policy-file.js';
import { globToRegExp } from './glob.js';

interface CompiledRule {
  index: number;
  test: (f: Finding) => boolean;
}

function compile(policy: Policy): CompiledRule[] {
  return policy.exceptions.map((r, index) => {
    const checks: Array<(f: Finding) => boolean> = [];
    const g = (pattern: string, get: (f: Finding) => string | undefined) => {
      const re = globToRegExp(pattern);
      checks.push((f) => re.test(get(f) ?? ''));
    };
    if (r.signature) g(r.signature, (f) => f.signature?.id);
    if (r.image) g(r.image, (f) => f.container?.image);
    if (r.container) g(r.container, (f) => f.container?.name || f.container?.id);
    if (r.namespace) g(r.namespace, (f) => f.kubernetes?.namespace);
    if (r.label) {
      // "=" separates key and value; a label is one string so "app=dind*" and "*=ci" both work
      const re = globToRegExp(r.label);
      checks.push((f) => Object.entries(f.container?.labels ?? {}).some(([k, v]) => re.test(`${k}=${v}`)));
    }
    if (r.executable) {
      // For a script an interpreter ran, the script is the drifted file: either path matches.
      const re = globToRegExp(r.executable);
      checks.push((f) => re.test(f.process?.executable?.path ?? '') || (!!f.process?.script?.path && re.test(f.process.script.path)));
    }
    if (r.parent) {
      const re = globToRegExp(r.parent);
      checks.push((f) => {
        const p = f.process?.parent;
        const comm = p?.comm ?? f.process?.ancestry?.[0]?.comm;
        return (!!comm && re.test(comm)) || (!!p?.executable && re.test(p.executable));
      });
    }
    if (r.ancestor) {
      // Names only reach as far as the kernel's ancestry (4 parents); the
      // parent's executable path is known too.
      const re = globToRegExp(r.ancestor);
      checks.push((f) => {
        const p = f.process?.parent;
        if (p?.comm && re.test(p.comm)) return true;
        if (p?.executable && re.test(p.executable)) return true;
        return (f.process?.ancestry ?? []).some((a) => !!a.comm && re.test(a.comm));
      });
    }
    if (r.sha256) {
      const set = new Set(r.sha256);
      checks.push((f) => set.has(f.process?.executable?.sha256 ?? '') || set.has(f.process?.script?.sha256 ?? ''));
    }
    if (r.imageId) {
      const re = globToRegExp(r.imageId);
      checks.push((f) => {
        const id = f.container?.imageId;
        if (!id) return false;
        const bare = id.replace(/^sha256:/, '');
        return re.test(id) || re.test(bare) || re.test(`sha256:${bare}`);
      });
    }
    if (r.labels) {
      const want = Object.entries(r.labels).map(([k, g]) => [k, globToRegExp(g)] as const);
      checks.push((f) => want.every(([k, re]) => {
        const v = f.container?.labels?.[k];
        return v !== undefined && re.test(v);
      }));
    }
    if (r.session) {
      const session = r.session;
      checks.push((f) => f.process?.session === session);
    }
    if (r.installedBy) {
      // A fact about process.executable: a finding about a #! script
      // (signature.data.script) is about another file, whose ctime the kernel did not record.
      const res = r.installedBy.map(globToRegExp);
      checks.push((f) => {
        if (f.signature?.data?.['script']) return false;
        const managers = f.process?.executable?.installedBy?.managers ?? [];
        return managers.some((m) => res.some((re) => re.test(m)));
      });
    }
    if (r.args) {
      const re = globToRegExp(r.args.replaceAll('/', '\u0000'));
      checks.push((f) => re.test((f.process?.args ?? []).join(' ').replaceAll('/', '\u0000')));
    }
    return { index, test: (f) => checks.every((c) => c(f)) };
  });
}

export class PolicyStage {
  private rules: CompiledRule[];

  constructor(
    private policy: Policy,
    private readonly metrics: Metrics,
    private readonly emit: (f: Finding) => void,
  ) {
    this.rules = compile(policy);
  }

  /** Enabled per policy (signatures.<id>.enabled, default true). */
  enabled(signatureId: string): boolean {
    return this.policy.signatures[signatureId]?.enabled !== false;
  }

  replace(policy: Policy): void {
    this.policy = policy;
    this.rules = compile(policy);
  }

  apply(f: Finding): void {
    const sigId = f.signature?.id ?? '';
    const rule = this.rules.find((r) => r.test(f));
    // What the kernel stopped is always reported: an exception that metadata
    // matched only after the kernel had decided must not hide a killed exec.
    if (rule && f.action !== 'prevented') {
      this.metrics.inc('policy_excepted_total', { signature: sigId, rule: String(rule.index) });
      return;
    }
    this.metrics.inc('findings_action_total', { signature: sigId, action: f.action || 'alert' });
    const override = this.policy.signatures[sigId]?.severity;
    if (override) f.signature!.severity = override;
    if (this.policy.sameAsImageSeverity && f.process?.executable?.sameAsImage) f.signature!.severity = this.policy.sameAsImageSeverity;
    this.emit(f);
  }
}
