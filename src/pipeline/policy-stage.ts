// Stage 4: findings → what the policy lets through. The policy drops
// excepted findings and changes severities; the stage owns one PolicyStage
// whose output is wired to the stream. Folding repeats is not done here but
// when reporting (report-stage.ts), after everything that must see each finding.
import { Observable, type OperatorFunction, type Subscriber } from 'rxjs';
import type { Logger } from '../log.js';
import type { Policy } from '../policy/policy-file.js';
import { PolicyStage } from '../policy/policy.js';
import type { Finding } from './finding.js';
import type { Metrics } from './metrics.js';
import { stageFailed } from './stage-errors.js';

export interface PolicyOperator extends OperatorFunction<Finding[], Finding> {
  /** The running policy; `replace()` swaps it between two findings. */
  readonly stage: PolicyStage;
}

export function applyPolicy(policy: Policy, metrics: Metrics, log: Logger): PolicyOperator {
  let out: Subscriber<Finding> | undefined;
  const stage = new PolicyStage(policy, metrics, (f) => out?.next(f));
  const operator = (findings: Observable<Finding[]>) =>
    new Observable<Finding>((subscriber) => {
      out = subscriber;
      return findings.subscribe({
        next(batch) {
          try {
            for (const f of batch) stage.apply(f);
          } catch (err) {
            stageFailed(metrics, log, 'policy', err);
          }
        },
        error: (err) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
    });
  return Object.assign(operator, { stage });
}
