// A WasmFilter's status as the reconciler computes it: transition times move only on a change of
// status, a refusal keeps the digest in force, and identical status compares equal.
import test from 'ava';
import type { WasmFilter } from '../../controller/index.ts';
import { desiredStatus, sameStatus } from '../../controller/reconcile/status.ts';

const filter = (generation: number, status?: WasmFilter['status']): WasmFilter => ({
  apiVersion: 'sluice.dev/v1alpha1',
  kind: 'WasmFilter',
  metadata: { name: 'f', namespace: 'team-a', generation },
  spec: { url: 'oci://registry.local/f:1' },
  status,
});
const t0 = new Date('2026-12-05T08:00:00.123Z');
const t1 = new Date('2026-12-05T09:00:00.456Z');
const good = { kind: 'validated' as const, digest: 'sha256:aa', durationMs: 1 };

test('a first validation sets every condition, the digest and observedGeneration', (t) => {
  const s = desiredStatus(filter(1), good, 'pods in namespace team-a', t0);
  t.is(s.observedGeneration, 1);
  t.is(s.digest, 'sha256:aa');
  t.deepEqual(s.nodes, { ready: 0, total: 0 });
  t.deepEqual(s.conditions!.map((c) => [c.type, c.status, c.reason, c.lastTransitionTime, c.observedGeneration]), [
    ['Accepted', 'True', 'Accepted', '2026-12-05T08:00:00Z', 1],
    ['Validated', 'True', 'Validated', '2026-12-05T08:00:00Z', 1],
    ['Ready', 'Unknown', 'NodesNotReporting', '2026-12-05T08:00:00Z', 1],
    ['Degraded', 'False', 'AsExpected', '2026-12-05T08:00:00Z', 1],
  ]);
});

test('a refused new generation keeps the digest in force; only conditions whose status changed get a new time', (t) => {
  const first = desiredStatus(filter(1), good, 'pods in namespace team-a', t0);
  const s = desiredStatus(filter(2, first), { kind: 'refused', code: 'SLUICE_ERR_FILTER_CONFIG_REFUSED', message: 'no' }, 'pods in namespace team-a', t1);
  t.is(s.digest, 'sha256:aa');
  t.is(s.observedGeneration, 2);
  t.deepEqual(s.conditions!.map((c) => [c.type, c.status, c.reason, c.lastTransitionTime]), [
    ['Accepted', 'True', 'Accepted', '2026-12-05T08:00:00Z'],
    ['Validated', 'False', 'ConfigurationRefused', '2026-12-05T09:00:00Z'],
    ['Ready', 'Unknown', 'NodesNotReporting', '2026-12-05T08:00:00Z'],
    ['Degraded', 'True', 'ConfigurationRefused', '2026-12-05T09:00:00Z'],
  ]);
  t.is(s.conditions![3]!.message, 'generation 2 is not in force; sha256:aa (the last version that validated) stays in force');
});

test('the same outcome again is the same status (no write), whatever the clock says', (t) => {
  const first = desiredStatus(filter(1), good, 'pods in namespace team-a', t0);
  const again = desiredStatus(filter(1, first), good, 'pods in namespace team-a', t1);
  t.true(sameStatus(first, again));
  t.false(sameStatus(first, desiredStatus(filter(2, first), good, 'pods in namespace team-a', t1)));
});
