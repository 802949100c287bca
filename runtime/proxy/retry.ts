// Envoy's retry model: which outcomes are retried (retryOn), how many times, how long each try may
// take, exponential backoff with full jitter from a 25 ms base (or the upstream's Retry-After),
// and a per-cluster retry budget (20% of active requests, at least 3 retries at once) so retries
// cannot amplify an outage.

import { DEFAULT_RETRY_POLICY } from '../config/index.ts';
import type { RetryOn, RetryPolicy } from '../config/snapshot.ts';
import { classifyUpstreamFailure } from './upstream-errors.ts';

export { DEFAULT_RETRY_POLICY };

const NO_RETRIES: RetryPolicy = Object.freeze({ ...DEFAULT_RETRY_POLICY, numRetries: 0 });
const RETRY_ON: readonly RetryOn[] = ['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-status-codes', 'retriable-4xx'];

/**
 * The policy for one request: the route's, with what a filter set in `sluice.retry_policy` (JSON)
 * on top. A malformed filter policy is reported through `warn` and ignored.
 */
export function effectivePolicy(route: RetryPolicy | undefined, fromFilter: string | undefined, warn: (message: string) => void): RetryPolicy {
  const base = route ?? NO_RETRIES;
  if (fromFilter === undefined) return base;
  try {
    const o = JSON.parse(fromFilter) as Record<string, unknown>;
    const merged = { ...(route ?? DEFAULT_RETRY_POLICY), ...o } as RetryPolicy;
    const ints = ['numRetries', 'perTryTimeoutMs', 'baseIntervalMs', 'maxIntervalMs'] as const;
    for (const k of ints) if (!Number.isInteger(merged[k]) || merged[k] < 0) throw new Error(`${k} must be a whole number ≥ 0`);
    if (!Array.isArray(merged.retryOn) || merged.retryOn.some((r) => !RETRY_ON.includes(r))) throw new Error(`retryOn must list some of ${RETRY_ON.join(', ')}`);
    if (!Array.isArray(merged.retriableStatusCodes) || merged.retriableStatusCodes.some((c) => !Number.isInteger(c))) throw new Error('retriableStatusCodes must be a list of status codes');
    return merged;
  } catch (error) {
    warn(`ignoring the retry policy a filter set in sluice.retry_policy (${(error as Error).message}): ${fromFilter}`);
    return base;
  }
}

/** Whether this outcome of a try is one the policy retries. */
export function retriable(policy: RetryPolicy, status: number | undefined, error: unknown): boolean {
  const on = policy.retryOn;
  if (error !== undefined) {
    const kind = classifyUpstreamFailure(error);
    if (kind === 'SLUICE_ERR_UPSTREAM_CONNECT') return on.includes('connect-failure') || on.includes('reset') || on.includes('5xx') || on.includes('gateway-error');
    // A try that timed out is a reset to the policy (Envoy: 5xx covers "does not respond at all").
    if (kind === 'SLUICE_ERR_UPSTREAM_RESET' || kind === 'SLUICE_ERR_UPSTREAM_TIMEOUT') return on.includes('reset') || on.includes('5xx') || on.includes('gateway-error');
    return false;
  }
  if (status === undefined) return false;
  if (status >= 500 && on.includes('5xx')) return true;
  if ((status === 502 || status === 503 || status === 504) && on.includes('gateway-error')) return true;
  if (status === 409 && on.includes('retriable-4xx')) return true;
  return on.includes('retriable-status-codes') && policy.retriableStatusCodes.includes(status);
}

/** RFC 9110 §9.2.2: the methods whose request may be sent again without changing the outcome. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Connection-level closes (a subset of upstream-errors.ts's resets): the upstream's connection ended under the request. */
const CONNECTION_CLOSED = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

/**
 * Whether a first try that failed is sent once more whatever the route's policy says: an
 * idempotent request whose HTTP/1.1 connection closed before any of the response arrived, which
 * RFC 9112 §9.3.1 lets a client retry on a new connection. This is the keep-alive race: an
 * upstream (or a peer node's proxy, draining for an upgrade) closes an idle pooled connection just
 * as a request is sent on it.
 */
export function closedBeforeAnswer(method: string, attempt: number, status: number | undefined, error: unknown): boolean {
  if (attempt !== 1 || status !== undefined || error === undefined || !IDEMPOTENT.has(method)) return false;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && CONNECTION_CLOSED.has(code);
}

/**
 * How long to wait before retry number `retry` (1 = the first): the upstream's Retry-After when it
 * gave one (seconds, at most the max interval × 10), else full jitter over base × 2^(retry-1).
 */
export function backoffMs(policy: RetryPolicy, retry: number, retryAfter: string | undefined, random = Math.random()): number {
  if (retryAfter !== undefined && /^\d+$/.test(retryAfter.trim())) return Math.min(Number(retryAfter) * 1000, policy.maxIntervalMs * 10);
  const ceiling = Math.min(policy.maxIntervalMs, policy.baseIntervalMs * 2 ** (retry - 1));
  return Math.floor(random * ceiling);
}

/** Envoy's default retry budget: retries in flight may be 20% of active requests, and at least 3. */
export class RetryBudget {
  active = 0;
  retrying = 0;
  /** Retries refused because the budget was spent. */
  overflows = 0;
  /** Retries made. */
  retries = 0;

  /** Takes a retry slot; `maxRetries` is the cluster's circuit breaker on top of the budget. */
  tryAcquire(maxRetries = Infinity): boolean {
    if (this.retrying >= Math.min(maxRetries, Math.max(3, 0.2 * this.active))) {
      this.overflows++;
      return false;
    }
    this.retrying++;
    this.retries++;
    return true;
  }

  release(): void {
    this.retrying--;
  }
}
