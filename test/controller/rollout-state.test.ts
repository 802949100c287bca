// The pure parts of node status and rollouts: merging replicas' node reports (stale ones dropped,
// a node on two replicas counted once), a filter's standing on the nodes, Ready and Degraded from
// it, the canary set (deterministic, the share asked), and every transition of the rollout state.
import test from 'ava';
import { canaryNodes, filterNodes, mergeReports, nextRollout, type FilterNodes, type ReplicaReport, type RolloutStatus, type WasmFilter } from '../../controller/index.ts';
import type { FilterVersionRef } from '../../controller/crd/index.ts';
import { desiredStatus } from '../../controller/reconcile/status.ts';

const K = 'team-a/f';

test('reports: stale replicas are dropped; a node on two replicas counts once, with its latest record', (t) => {
  const now = 100_000;
  const node = (at: number, v: string) => ({ sent: { [K]: v }, applied: { [K]: v }, at });
  const reports: ReplicaReport[] = [
    { replica: 'r1', heartbeat: now - 1000, nodes: { a: node(10, 'v1'), b: node(20, 'v1') } },
    { replica: 'r2', heartbeat: now - 500, nodes: { b: node(30, 'v2') } },
    { replica: 'dead', heartbeat: now - 31_000, nodes: { c: node(99, 'v9') } },
  ];
  const merged = mergeReports(reports, now, 30_000);
  t.deepEqual([...merged.keys()].sort(), ['a', 'b']);
  t.is(merged.get('b')!.sent[K], 'v2');
});

test('a filter on the nodes: total holds it, ready run what they were sent, a NACK blames only filters whose version it changed, failures of the version run', (t) => {
  const nodes = new Map([
    ['a', { sent: { [K]: 'v2', other: 'o1' }, applied: { [K]: 'v2', other: 'o1' }, failures: { [K]: { version: 'v2', failures: 4 } }, at: 1 }],
    ['b', { sent: { [K]: 'v2', other: 'o1' }, applied: { [K]: 'v1', other: 'o1' }, rejected: { reason: 'cannot load', filters: { [K]: 'v2', other: 'o1' } }, failures: { [K]: { version: 'v0', failures: 7 } }, at: 2 }],
    ['c', { sent: { other: 'o1' }, applied: { other: 'o1' }, at: 3 }],
  ]);
  const f = filterNodes(nodes, K);
  t.deepEqual(f, {
    nodes: ['a', 'b'],
    ready: ['a'],
    rejected: [{ node: 'b', version: 'v2', message: 'cannot load' }],
    failures: [{ node: 'a', version: 'v2', failures: 4 }],
    versions: { v2: 2 },
  });
  t.deepEqual(filterNodes(nodes, 'other').rejected, []);
});

const wf = (status?: WasmFilter['status']): WasmFilter => ({ apiVersion: 'sluice.dev/v1alpha1', kind: 'WasmFilter', metadata: { name: 'f', namespace: 'team-a', generation: 1 }, spec: { url: 'oci://r/f:1' }, status });
const good = { kind: 'validated' as const, digest: 'sha256:aa', durationMs: 1 };
const t0 = new Date('2026-12-05T08:00:00Z');
const view = (f: Partial<FilterNodes>): FilterNodes => ({ nodes: [], ready: [], rejected: [], failures: [], versions: {}, ...f });
const ready = (s: WasmFilter['status']) => s!.conditions!.find((c) => c.type === 'Ready');
const degraded = (s: WasmFilter['status']) => s!.conditions!.find((c) => c.type === 'Degraded');

test('Ready and Degraded from the nodes: all ready, some waiting, one refused, none selected', (t) => {
  const all = desiredStatus(wf(), good, 'x', t0, { nodes: view({ nodes: ['a', 'b'], ready: ['a', 'b'], versions: { v1: 2 } }) });
  t.deepEqual(all.nodes, { ready: 2, total: 2 });
  t.like(ready(all), { status: 'True', reason: 'NodesReady', message: '2 of 2 nodes run the version they should (v1)' });
  t.like(degraded(all), { status: 'False', reason: 'AsExpected' });
  const waiting = desiredStatus(wf(), good, 'x', t0, { nodes: view({ nodes: ['a', 'b'], ready: ['a'], versions: { v1: 2 } }) });
  t.like(ready(waiting), { status: 'False', reason: 'NodesNotReady', message: '1 of 2 nodes run the version they should; not yet: b' });
  const refused = desiredStatus(wf(), good, 'x', t0, { nodes: view({ nodes: ['a', 'b'], ready: ['a'], rejected: [{ node: 'b', version: 'v1', message: 'no' }] }) });
  t.deepEqual(refused.nodes, { ready: 1, total: 2, rejected: [{ node: 'b', version: 'v1', message: 'no' }] });
  t.like(ready(refused), { status: 'False', reason: 'NodeRejected', message: '1 of 2 nodes run the version they should; not yet: b; b refused version v1: no' });
  t.like(degraded(refused), { status: 'True', reason: 'NodeRejected', message: 'b refused version v1: no; those nodes keep serving their last good version' });
  t.like(ready(desiredStatus(wf(), good, 'x', t0, { nodes: view({}) })), { status: 'True', reason: 'NoNodes' });
  t.like(ready(desiredStatus(wf(), good, 'x', t0, {})), { status: 'Unknown', reason: 'NodesNotReporting' });
  // At most five NACKs are listed.
  const many = desiredStatus(wf(), good, 'x', t0, { nodes: view({ nodes: ['n1'], rejected: ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7'].map((node) => ({ node, version: 'v', message: 'm' })) }) });
  t.is(many.nodes!.rejected!.length, 5);
});

test('canary nodes: the share asked (rounded up), the same for any order of the nodes, different per filter', (t) => {
  const nodes = Array.from({ length: 10 }, (_, i) => `node-${i}`);
  t.is(canaryNodes(nodes, 'uid-1', 50).length, 5);
  t.is(canaryNodes(nodes, 'uid-1', 1).length, 1);
  t.is(canaryNodes(nodes, 'uid-1', 0).length, 0);
  t.deepEqual(canaryNodes(nodes, 'uid-1', 100), nodes);
  t.deepEqual(canaryNodes([...nodes].reverse(), 'uid-1', 30), canaryNodes(nodes, 'uid-1', 30));
  t.notDeepEqual(['uid-1', 'uid-2', 'uid-3', 'uid-4'].map((u) => canaryNodes(nodes, u, 30).join()), Array(4).fill(canaryNodes(nodes, 'uid-1', 30).join()));
  // Growing percent grows the set from the same order.
  t.true(canaryNodes(nodes, 'uid-1', 30).every((n) => canaryNodes(nodes, 'uid-1', 60).includes(n)));
});

const ref = (version: string): FilterVersionRef => ({ version, digest: `sha256:${version}`, source: { url: 'oci://r/f:1' }, config: {} });
const OPTS = { soakMs: 10_000, failureThreshold: 3 };
const at = (s: number) => new Date(Date.parse('2026-12-05T08:00:00.000Z') + s * 1000);
const step = (target: string, current: RolloutStatus | undefined, now: Date, extra: { nodes?: FilterNodes; paused?: boolean; percent?: number } = {}) =>
  nextRollout({ target: ref(target), current, spec: { percent: extra.percent ?? 50, paused: extra.paused }, uid: 'u', candidates: ['a', 'b'], nodes: extra.nodes, now }, OPTS);

test('rollout: first version stable at once; a new one starts a canary, soaks, and is promoted once its canary nodes run it', (t) => {
  const first = step('v1', undefined, at(0)).rollout;
  t.deepEqual(first, { phase: 'Stable', stable: ref('v1'), since: at(0).toISOString() });
  t.is(step('v1', first, at(5)).rollout, first);
  const c = step('v2', first, at(10));
  const canary = canaryNodes(['a', 'b'], 'u', 50);
  t.deepEqual(c.rollout, { phase: 'Canary', stable: ref('v1'), canary: ref('v2'), canaryNodes: canary, since: at(10).toISOString() });
  t.is(c.recheckMs, 10_000);
  const soaking = step('v2', c.rollout, at(15));
  t.is(soaking.rollout, c.rollout);
  t.is(soaking.recheckMs, 5000);
  // Soaked, but the canary node has not ACKed: wait.
  const notYet = step('v2', c.rollout, at(21), { nodes: view({ nodes: ['a', 'b'], ready: [] }) });
  t.is(notYet.rollout, c.rollout);
  // Soaked, but no canary node reports yet (a controller just restarted, say): wait too.
  t.is(step('v2', c.rollout, at(21), { nodes: view({}) }).rollout, c.rollout);
  const done = step('v2', c.rollout, at(21), { nodes: view({ nodes: ['a', 'b'], ready: canary }) });
  t.deepEqual(done.rollout, { phase: 'Stable', stable: ref('v2'), since: at(21).toISOString() });
  // A canary node that no longer has a workload of the filter is not waited for.
  const gone = nextRollout({ target: ref('v2'), current: c.rollout, spec: { percent: 50 }, uid: 'u', candidates: ['a', 'b'].filter((x) => !canary.includes(x)), nodes: view({}), now: at(21) }, OPTS);
  t.is(gone.rollout.phase, 'Stable');
});

test('rollout: paused holds the canary past the soak; a NACK or the failure threshold on a canary node rolls back even paused; a rolled-back version is not tried again', (t) => {
  const first = step('v1', undefined, at(0)).rollout;
  const c = step('v2', first, at(10), { paused: true }).rollout;
  t.is(c.phase, 'Canary');
  const [canary] = c.canaryNodes!;
  const other = canary === 'a' ? 'b' : 'a';
  t.is(step('v2', c, at(100), { paused: true, nodes: view({ nodes: ['a', 'b'], ready: ['a', 'b'] }) }).rollout, c);
  // A NACK from the other node (not a canary) or failures below the threshold do not stop it.
  t.is(step('v2', c, at(11), { paused: true, nodes: view({ rejected: [{ node: other, version: 'v2', message: 'x' }], failures: [{ node: canary!, version: 'v2', failures: 2 }] }) }).rollout, c);
  const nacked = step('v2', c, at(12), { paused: true, nodes: view({ rejected: [{ node: canary!, version: 'v2', message: 'cannot load' }] }) }).rollout;
  t.deepEqual(nacked, { phase: 'RolledBack', stable: ref('v1'), since: at(12).toISOString(), failedVersion: 'v2', reason: 'NodeRejected', message: `${canary} refused version v2: cannot load` });
  const failing = step('v2', c, at(12), { nodes: view({ failures: [{ node: canary!, version: 'v2', failures: 3 }] }) }).rollout;
  t.like(failing, { phase: 'RolledBack', failedVersion: 'v2', reason: 'FailureThreshold', message: `${canary} counted 3 failures of version v2 (--rollout-failure-threshold 3)` });
  t.is(step('v2', nacked, at(50)).rollout, nacked);
  // A new version after a rollback starts a new canary; going back to the stable version ends it.
  t.like(step('v3', nacked, at(60)).rollout, { phase: 'Canary', canary: ref('v3') });
  t.deepEqual(step('v1', c, at(60)).rollout, { phase: 'Stable', stable: ref('v1'), since: at(60).toISOString() });
  // percent 0: the new version waits on no node.
  t.deepEqual(step('v2', first, at(70), { percent: 0 }).rollout, first);
});
