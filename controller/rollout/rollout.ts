// Rollouts (docs/platform.md#rollouts): a new version of a filter goes to `rollout.percent` of
// its nodes first (the canary), and to every node once the canary nodes ran it for the soak time
// without refusing it or failing too often; a refusal or too many failures roll it back to the
// last good (stable) version. The state lives in the WasmFilter's status.rollout, so a restarted
// or new leader resumes where the last one was, and every replica's discovery sends each node the
// same version. Pure: the caller passes the clock and what the nodes said.

import { createHash } from 'node:crypto';
import { capMessage, type FilterVersionRef, type RolloutStatus, type WasmFilterSpec } from '../crd/index.ts';
import type { FilterNodes } from '../nodes/node-report.ts';
import { canonicalJson } from '../discovery/node-config.ts';

export interface RolloutOptions {
  /** How long the canary nodes run a version before it goes to every node. */
  soakMs: number;
  /** Failures of the canary version on one canary node that stop the rollout. */
  failureThreshold: number;
}

export const ROLLOUT_DEFAULTS: RolloutOptions = { soakMs: 60_000, failureThreshold: 10 };

export interface RolloutInput {
  /** The version the spec asks for (validated). */
  target: FilterVersionRef;
  /** status.rollout as it is. */
  current?: RolloutStatus;
  spec: WasmFilterSpec['rollout'];
  /** The filter's uid: with the node name it orders the nodes for the canary. */
  uid: string;
  /** Nodes with a workload the filter selects (from the Pods); a function is called only when a decision needs them. */
  candidates: readonly string[] | (() => readonly string[]);
  /** What the nodes reported; undefined when no replica reports. */
  nodes?: FilterNodes;
  now: Date;
}

export interface RolloutDecision {
  rollout: RolloutStatus;
  /** Look again after this long (the rest of the soak time). */
  recheckMs?: number;
}

/**
 * The canary nodes: each node's rank is the sha256 of the filter uid and its name; the first
 * ceil(percent% of the nodes) by rank, sorted by name. Every replica computes the same set.
 */
export function canaryNodes(nodes: readonly string[], uid: string, percent: number): string[] {
  const count = Math.ceil((nodes.length * Math.max(0, Math.min(100, percent))) / 100);
  const rank = (n: string) => createHash('sha256').update(`${uid}/${n}`).digest('hex');
  return [...new Set(nodes)]
    .map((n) => [rank(n), n] as const)
    .sort(([a], [b]) => a.localeCompare(b))
    .slice(0, count)
    .map(([, n]) => n)
    .sort();
}

const iso = (d: Date): string => d.toISOString();

const candidatesOf = (input: RolloutInput): readonly string[] => (typeof input.candidates === 'function' ? input.candidates() : input.candidates);

/** The next rollout state. */
export function nextRollout(input: RolloutInput, options: RolloutOptions): RolloutDecision {
  const { target, current: r, now } = input;
  const percent = input.spec?.percent ?? 100;
  const paused = input.spec?.paused === true;
  // The first version of a filter has nothing to roll back to: it is stable at once.
  if (!r?.stable) return { rollout: { phase: 'Stable', stable: target, since: iso(now) } };
  if (r.stable.version === target.version) {
    // Back to (or still at) the stable version; its source may have moved (a re-tagged image, say).
    if (r.phase === 'Stable' && !r.canary && canonicalJson(r.stable.source) === canonicalJson(target.source) && r.stable.digest === target.digest) return { rollout: r };
    return { rollout: { phase: 'Stable', stable: target, since: iso(now) } };
  }
  // A version that was rolled back is not tried again until the spec changes.
  if (r.phase === 'RolledBack' && r.failedVersion === target.version) return { rollout: r };

  if (r.phase !== 'Canary' || r.canary?.version !== target.version) {
    // percent 0: the new version reaches no node until percent is raised.
    if (percent === 0) return { rollout: { phase: 'Stable', stable: r.stable, since: r.phase === 'Stable' && !r.canary ? r.since : iso(now) } };
    const chosen = canaryNodes(candidatesOf(input), input.uid, percent);
    return { rollout: { phase: 'Canary', stable: r.stable, canary: target, canaryNodes: chosen, since: iso(now) }, recheckMs: options.soakMs };
  }

  // A canary is running: a refusal or too many failures on a canary node stop it, paused or not.
  const canarySet = new Set(r.canaryNodes ?? []);
  const n = input.nodes;
  const refused = (n?.rejected ?? []).filter((x) => x.version === target.version && canarySet.has(x.node));
  if (refused.length > 0) {
    return { rollout: rolledBack(r, target, now, 'NodeRejected', refused.map((x) => `${x.node} refused version ${x.version}: ${x.message}`).join('; ')) };
  }
  const failing = (n?.failures ?? []).filter((x) => x.version === target.version && canarySet.has(x.node) && x.failures >= options.failureThreshold);
  if (failing.length > 0) {
    const what = failing.map((x) => `${x.node} counted ${x.failures} failures of version ${x.version}`).join('; ');
    return { rollout: rolledBack(r, target, now, 'FailureThreshold', `${what} (--rollout-failure-threshold ${options.failureThreshold})`) };
  }
  if (paused) return { rollout: r };
  const elapsed = now.getTime() - Date.parse(r.since);
  if (elapsed < options.soakMs) return { rollout: r, recheckMs: options.soakMs - elapsed };
  // Soaked: the canary nodes that still have a workload of the filter must have run the canary
  // version: at least one of them, and every one whose agent reports (a node gone is not waited for).
  const candidates = new Set(candidatesOf(input));
  const relevant = [...canarySet].filter((x) => candidates.has(x));
  const reporting = new Set(n?.nodes ?? []);
  const ready = new Set(n?.ready ?? []);
  const waiting = relevant.filter((x) => reporting.has(x) && !ready.has(x));
  if (waiting.length > 0 || (relevant.length > 0 && !relevant.some((x) => ready.has(x)))) return { rollout: r };
  return { rollout: { phase: 'Stable', stable: target, since: iso(now) } };
}

function rolledBack(r: RolloutStatus, target: FilterVersionRef, now: Date, reason: string, message: string): RolloutStatus {
  return { phase: 'RolledBack', stable: r.stable, since: iso(now), failedVersion: target.version, reason, message: capMessage(message) };
}
