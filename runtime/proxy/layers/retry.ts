// The attempt loop (Envoy's retry model, policy in ../retry.ts): picks each try's endpoint (a
// retry prefers one not tried yet; a pinned endpoint stays), runs the try, and when the try asked
// for another (wantsRetry), waits the backoff holding a retry-budget slot.

import type { RetryPolicy } from '../../config/snapshot.ts';
import { log } from '../../log.ts';
import { backoffMs, closedBeforeAnswer, effectivePolicy, retriable } from '../retry.ts';
import type { UpstreamHost } from '../upstreams.ts';
import type { Layer } from './compose.ts';
import type { Exchange } from './context.ts';

/** This request's retry policy: the route's, or what a filter set in sluice.retry_policy (worked out once). */
export function retryPolicy(x: Exchange): RetryPolicy {
  return (x.policy ??= effectivePolicy(x.routeConfig!.retryPolicy, x.stream.state.property('sluice\u0000retry_policy'), (m) => log('warn', m)));
}

export const retry: Layer<Exchange> = (next) =>
  async function retry(x) {
    const policy = retryPolicy(x);
    const cluster = x.upstreamCluster!;
    const tried = new Set<UpstreamHost>();
    for (let attempt = 1; ; attempt++) {
      const current = attempt === 1 || x.pinned ? x.host! : cluster.pick(tried, x.hashKey)!;
      tried.add(current);
      x.attempt = attempt;
      x.current = current;
      x.again = false;
      x.retryAfter = undefined;
      await next(x);
      if (!x.again) return;
      // wantsRetry took a budget slot: held through the backoff.
      try {
        await sleep(backoffMs(policy, attempt, x.retryAfter));
      } finally {
        cluster.retryBudget.release();
      }
    }
  };

/**
 * Called by the try with its outcome (a status, or a failure): true when another try follows, in
 * which case a retry-budget slot is taken (released after the backoff).
 */
export function wantsRetry(x: Exchange, status: number | undefined, failure: unknown): boolean {
  const policy = retryPolicy(x);
  const cluster = x.upstreamCluster!;
  const again =
    (x.attempt <= policy.numRetries && retriable(policy, status, failure)) ||
    // The keep-alive race (RFC 9112 §9.3.1), retried once even with no retry policy.
    closedBeforeAnswer(x.headers!.get(':method') ?? 'GET', x.attempt, status, failure);
  return again && (x.pump === undefined || x.pump.replay() !== undefined) && cluster.retryBudget.tryAcquire(cluster.config.circuitBreakers.maxRetries);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
