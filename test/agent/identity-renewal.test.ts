// WorkloadIdentities without a controller process: the CSRs it sends are answered by a real CA
// (controller/ca) or refused by the test, to show what the stream alone cannot show on demand: a
// refused renewal keeps the old certificate in force and is retried, CSRs made while no stream is
// accepted go out on ready(), a certificate for another key or identity is not used.
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { CertificateAuthority, parseWorkloadCsr } from '../../controller/index.ts';
import { IdentityStore, WorkloadIdentities, makeKeyAndCsr, type CertificateRequestMessage, type IdentityChange } from '../../runtime/index.ts';
import { until } from '../helpers/sluice-run.ts';

const ID = 'spiffe://cluster.local/ns/team-a/sa/a';

async function setup(connected = true) {
  const ca = await CertificateAuthority.load(await CertificateAuthority.createRoot(), 'test root');
  const store = new IdentityStore();
  const sent: CertificateRequestMessage[] = [];
  const lines: string[] = [];
  const state = { connected };
  const ids = new WorkloadIdentities({
    store,
    send: (r) => (state.connected ? (sent.push(r), true) : false),
    log: (level, msg) => void lines.push(`${level} ${msg}`),
    minRetryMs: 20,
    maxRetryMs: 40,
  });
  ids.onTrustBundle(ca.trustBundle);
  const sign = async (r: CertificateRequestMessage, lifetimeMs = 3600_000) => {
    const csr = await parseWorkloadCsr(r.csr, 'cluster.local');
    const issued = await ca.issue({ publicKey: csr.publicKey, uris: [csr.spiffeId], lifetimeMs });
    ids.onResponse({ requestId: r.requestId, certChain: issued.chainPem, trustBundle: ca.trustBundle, refused: '' });
    return issued;
  };
  const refuse = (r: CertificateRequestMessage, why: string) => ids.onResponse({ requestId: r.requestId, certChain: '', trustBundle: '', refused: why });
  return { ca, store, sent, lines, state, ids, sign, refuse };
}

test('a refused renewal keeps the old certificate in force and is retried until signed', async (t) => {
  const s = await setup();
  t.teardown(() => s.ids.stop());
  const changes: IdentityChange[] = [];
  s.store.onChange((c) => changes.push(c));
  s.ids.setWanted([ID]);
  await until('a CSR', () => s.sent[0]);
  // 4-second certificates: renewal after about two seconds.
  const first = await s.sign(s.sent[0]!, 4000);
  const inForce = s.store.get(ID)!;
  t.is(new X509Certificate(inForce.certChainPem).serialNumber.toLowerCase(), first.serial);
  const renewal = await until('the renewal CSR', () => s.sent[1], 10_000);
  s.refuse(renewal, 'node node-a runs no Pod of ServiceAccount team-a/a');
  t.is(s.store.get(ID), inForce); // still the old one
  const retry = await until('a retried CSR', () => s.sent[2], 10_000);
  t.not(retry.requestId, renewal.requestId);
  const second = await s.sign(retry);
  t.is(new X509Certificate(s.store.get(ID)!.certChainPem).serialNumber.toLowerCase(), second.serial);
  t.deepEqual(changes, [{ kind: 'identity', spiffeId: ID }, { kind: 'identity', spiffeId: ID }]);
  t.true(s.lines.includes('warn workload certificate not renewed: refused by the controller: node node-a runs no Pod of ServiceAccount team-a/a'));
});

test('CSRs made while no stream is accepted are sent on ready(); a lost one is sent again on the next ready()', async (t) => {
  const s = await setup(false);
  t.teardown(() => s.ids.stop());
  s.ids.setWanted([ID, 'spiffe://cluster.local/ns/team-a/sa/b']);
  await new Promise((r) => setTimeout(r, 200));
  t.is(s.sent.length, 0);
  s.state.connected = true;
  s.ids.ready();
  t.is(s.sent.length, 2);
  // The stream broke before an answer; the next accepted stream gets the same requests again.
  s.ids.ready();
  t.is(s.sent.length, 4);
  t.deepEqual(s.sent.slice(2).map((r) => r.requestId), s.sent.slice(0, 2).map((r) => r.requestId));
  await s.sign(s.sent[2]!);
  await s.sign(s.sent[3]!);
  t.deepEqual(s.store.ids(), [ID, 'spiffe://cluster.local/ns/team-a/sa/b']);
  t.deepEqual(new Set(await Promise.all(s.sent.slice(2).map(async (r) => (await parseWorkloadCsr(r.csr, 'cluster.local')).spiffeId))), new Set(s.store.ids()));
});

test('a certificate for another key or another identity is not used, and the CSR is made again', async (t) => {
  const s = await setup();
  t.teardown(() => s.ids.stop());
  s.ids.setWanted([ID]);
  const r = await until('a CSR', () => s.sent[0]);
  const other = await makeKeyAndCsr(ID);
  const csr = await parseWorkloadCsr(other.csrPem, 'cluster.local');
  const issued = await s.ca.issue({ publicKey: csr.publicKey, uris: [ID], lifetimeMs: 3600_000 });
  s.ids.onResponse({ requestId: r.requestId, certChain: issued.chainPem, trustBundle: '', refused: '' });
  t.is(s.store.get(ID), undefined);
  t.true(s.lines.includes('error workload certificate not renewed: the certificate from the controller is unusable: the certificate is not for the key this node made'));
  const again = await until('a new CSR', () => s.sent[1], 10_000);
  const mine = await parseWorkloadCsr(again.csr, 'cluster.local');
  const wrongId = await s.ca.issue({ publicKey: mine.publicKey, uris: ['spiffe://cluster.local/ns/team-a/sa/other'], lifetimeMs: 3600_000 });
  s.ids.onResponse({ requestId: again.requestId, certChain: wrongId.chainPem, trustBundle: '', refused: '' });
  t.is(s.store.get(ID), undefined);
  t.true(s.lines.includes(`error workload certificate not renewed: the certificate from the controller is unusable: the certificate names URI:spiffe://cluster.local/ns/team-a/sa/other, not ${ID}`));
});

test('an identity no workload needs any more is removed from the store and its late answer ignored', async (t) => {
  const s = await setup();
  t.teardown(() => s.ids.stop());
  const B = 'spiffe://cluster.local/ns/team-a/sa/b';
  s.ids.setWanted([ID, B]);
  await until('two CSRs', () => (s.sent.length === 2 ? true : undefined));
  // Both keys are made at once: which CSR went first is not fixed.
  const named = await Promise.all(s.sent.map(async (r) => [(await parseWorkloadCsr(r.csr, 'cluster.local')).spiffeId, r] as const));
  const forA = named.find(([id]) => id === ID)![1];
  const forB = named.find(([id]) => id === B)![1];
  await s.sign(forA);
  const changes: IdentityChange[] = [];
  s.store.onChange((c) => changes.push(c));
  s.ids.setWanted([]);
  await s.sign(forB); // answered after B's workloads left
  t.is(s.store.get(ID), undefined);
  t.is(s.store.get(B), undefined);
  t.deepEqual(changes, [{ kind: 'removed', spiffeId: ID }]);
  t.deepEqual(s.ids.wanted(), []);
});
