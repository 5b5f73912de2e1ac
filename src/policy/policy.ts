// Applies the policy to findings: exceptions drop them (counted per rule),
// severity overrides and the same-as-image downgrade change them. Folding
// repeats is not done here but in reporting (src/report/dedup.ts), after
// every consumer that must see each finding.
import type { Finding } from '../pipeline/finding.js';
import type { Metrics } from '../pipeline/metrics.js';
import type { Policy } from './config.js';
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
    if (r.executable) g(r.executable, (f) => f.process?.executable?.path);
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
    if (rule) {
      this.metrics.inc('policy_excepted_total', { signature: sigId, rule: String(rule.index) });
      return;
    }
    const override = this.policy.signatures[sigId]?.severity;
    if (override) f.signature!.severity = override;
    if (this.policy.sameAsImageSeverity && f.process?.executable?.sameAsImage) f.signature!.severity = this.policy.sameAsImageSeverity;
    this.emit(f);
  }
}
