// A WasmFilter's status from what the reconciler found: the four conditions with their reasons,
// the digest in force (the last version that validated stays when a new one is refused),
// observedGeneration, and node counts (zero until node agents report).

import { isDeepStrictEqual } from 'node:util';
import { capMessage, type Condition, type RolloutStatus, type WasmFilter, type WasmFilterStatus } from '../crd/index.ts';
import type { ControllerErrorCode } from '../errors.ts';
import { MAX_REJECTED, type FilterNodes } from '../nodes/node-report.ts';
import { canonicalJson } from '../discovery/node-config.ts';

export type Outcome =
  | { kind: 'validated'; digest: string; durationMs: number }
  | { kind: 'refused'; code: ControllerErrorCode; message: string }
  | { kind: 'invalid'; message: string };

/** The condition reason for each refusal, as `kubectl get wf -o wide` and programs see it. */
export const REASONS: Partial<Record<ControllerErrorCode, string>> = {
  SLUICE_ERR_SOURCE_NOT_FOUND: 'ModuleNotFound',
  SLUICE_ERR_FILTER_CONFIGMAP: 'ModuleNotFound',
  SLUICE_ERR_SOURCE_AUTH: 'RegistryAuthFailed',
  SLUICE_ERR_FILTER_PULL_SECRET: 'RegistryAuthFailed',
  SLUICE_ERR_SOURCE_DIGEST: 'DigestMismatch',
  SLUICE_ERR_SOURCE_FETCH: 'FetchFailed',
  SLUICE_ERR_SOURCE_FORMAT: 'UnsupportedArtifact',
  SLUICE_ERR_SOURCE_URL: 'InvalidSource',
  SLUICE_ERR_SOURCE_CACHE: 'CacheFailed',
  SLUICE_ERR_FILTER_NOT_WASM: 'NotWasm',
  SLUICE_ERR_FILTER_NOT_PROXY_WASM: 'NotProxyWasm',
  SLUICE_ERR_FILTER_VALIDATION: 'InvalidModule',
  SLUICE_ERR_FILTER_START: 'StartFailed',
  SLUICE_ERR_FILTER_CONFIG_REFUSED: 'ConfigurationRefused',
  SLUICE_ERR_FILTER_INVALID: 'InvalidSpec',
};

export const reasonOf = (code: ControllerErrorCode): string => REASONS[code] ?? 'ValidationFailed';

/** Condition messages are capped (the API allows 32 KiB; log lines of a chatty filter could be more). */

/** What the node agents said (node-report.ts), and the rollout's state, when known. */
export interface NodeView {
  nodes?: FilterNodes;
  rollout?: RolloutStatus;
}

const list = (items: string[], max = 5): string => (items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`);

export function desiredStatus(filter: WasmFilter, outcome: Outcome, scope: string, now: Date, view: NodeView = {}): WasmFilterStatus {
  const generation = filter.metadata.generation ?? 0;
  const old = filter.status ?? {};
  const previous = new Map((old.conditions ?? []).map((c) => [c.type, c]));
  const condition = (type: Condition['type'], status: Condition['status'], reason: string, message: string): Condition => {
    const before = previous.get(type);
    // lastTransitionTime moves only when status changes (metav1.Condition semantics).
    const lastTransitionTime = before && before.status === status ? before.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z');
    return { type, status, reason, message: capMessage(message), lastTransitionTime, observedGeneration: generation };
  };
  const digest = outcome.kind === 'validated' ? outcome.digest : old.digest;
  const inForce = old.digest
    ? `${old.digest} (the last version that validated) stays in force`
    : (filter.spec.failStrategy ?? 'FAIL_CLOSE') === 'FAIL_OPEN'
      ? 'no version has validated yet, so nodes run nothing for this filter (FAIL_OPEN)'
      : `no version has validated yet, so nodes refuse the traffic it selects (failStrategy ${filter.spec.failStrategy ?? 'FAIL_CLOSE'})`;
  const conditions: Condition[] = [];
  if (outcome.kind === 'invalid') {
    conditions.push(condition('Accepted', 'False', 'InvalidSpec', outcome.message));
    conditions.push(condition('Validated', 'False', 'InvalidSpec', 'not validated: the spec is invalid (see Accepted)'));
  } else {
    conditions.push(condition('Accepted', 'True', 'Accepted', `the spec is valid; the filter applies to ${scope}`));
    if (outcome.kind === 'validated') {
      conditions.push(condition('Validated', 'True', 'Validated', `module ${outcome.digest} compiled, started and accepted its configuration in Sluice's host`));
    } else {
      conditions.push(condition('Validated', 'False', reasonOf(outcome.code), outcome.message));
    }
  }
  const n = view.nodes;
  const rejected = (n?.rejected ?? []).slice(0, MAX_REJECTED).map((r) => ({ node: r.node, version: r.version, message: capMessage(r.message) }));
  const nodes = n ? { ready: n.ready.length, total: n.nodes.length, ...(rejected.length > 0 ? { rejected } : {}) } : { ready: 0, total: 0 };
  const refusals = (n?.rejected ?? []).map((r) => `${r.node} refused version ${r.version}: ${r.message}`);
  if (!n) {
    conditions.push(condition('Ready', 'Unknown', 'NodesNotReporting', 'no node agent reports yet'));
  } else if (n.nodes.length === 0) {
    conditions.push(condition('Ready', 'True', 'NoNodes', 'no node with a connected agent runs a workload this filter selects'));
  } else if (n.ready.length === n.nodes.length) {
    const versions = Object.keys(n.versions).sort();
    conditions.push(condition('Ready', 'True', 'NodesReady', `${n.ready.length} of ${n.nodes.length} nodes run the version they should (${versions.join(', ')})`));
  } else {
    const waiting = n.nodes.filter((x) => !n.ready.includes(x));
    const reason = refusals.length > 0 ? 'NodeRejected' : 'NodesNotReady';
    conditions.push(condition('Ready', 'False', reason, `${n.ready.length} of ${n.nodes.length} nodes run the version they should; not yet: ${list(waiting)}${refusals.length > 0 ? `; ${list(refusals, MAX_REJECTED)}` : ''}`));
  }
  const r = view.rollout;
  if (outcome.kind !== 'validated') {
    const reason = outcome.kind === 'invalid' ? 'InvalidSpec' : reasonOf(outcome.code);
    conditions.push(condition('Degraded', 'True', reason, `generation ${generation} is not in force; ${inForce}`));
  } else if (r?.phase === 'RolledBack' && r.reason) {
    conditions.push(condition('Degraded', 'True', r.reason, `version ${r.failedVersion} was rolled back to ${r.stable?.version ?? 'nothing'}: ${r.message ?? ''}; change the spec to try a new version`));
  } else if (refusals.length > 0) {
    conditions.push(condition('Degraded', 'True', 'NodeRejected', `${list(refusals, MAX_REJECTED)}; those nodes keep serving their last good version`));
  } else {
    conditions.push(condition('Degraded', 'False', 'AsExpected', `generation ${generation} is in force`));
  }
  return { observedGeneration: generation, ...(digest ? { digest } : {}), conditions, nodes, ...(r ? { rollout: r } : {}) };
}

export function sameStatus(a: WasmFilterStatus | undefined, b: WasmFilterStatus): boolean {
  return isDeepStrictEqual(normalize(a ?? {}), normalize(b));
}

// Status read back from the API may carry fields in another order; compare by content.
function normalize(s: WasmFilterStatus): unknown {
  return {
    observedGeneration: s.observedGeneration,
    digest: s.digest,
    nodes: s.nodes ? { ready: s.nodes.ready, total: s.nodes.total, rejected: s.nodes.rejected?.map((r) => ({ node: r.node, version: r.version, message: r.message })) } : undefined,
    rollout: s.rollout ? JSON.parse(canonicalJson(s.rollout)) : undefined,
    conditions: (s.conditions ?? [])
      .map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message, lastTransitionTime: String(c.lastTransitionTime), observedGeneration: c.observedGeneration }))
      .sort((x, y) => x.type.localeCompare(y.type)),
  };
}

export const conditionOf = (s: WasmFilterStatus | undefined, type: Condition['type']): Condition | undefined => s?.conditions?.find((c) => c.type === type);
