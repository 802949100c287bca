// nodeConfig: the pure heart of discovery. Selection, ordering, directions, ready endpoints only,
// own pods only, scope, versions; and every output is accepted by the runtime's own loader.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { parseConfig } from '../../runtime/index.ts';
import { filterVersion, nodeConfig, unavailableFilter, versionedSpec, workloadName, type ClusterState, type EndpointSliceView, type PodView, type ServiceView, type ValidatedFilter } from '../../controller/discovery/node-config.ts';
import type { WasmFilter, WasmFilterSpec } from '../../controller/crd/index.ts';
import { withRollout } from '../../controller/discovery/source.ts';

const D1 = 'a'.repeat(64);
const D2 = 'b'.repeat(64);
const bytes = new Map([[D1, new Uint8Array([1])], [D2, new Uint8Array([2])]]);
const cache = mkdtempSync(join(tmpdir(), 'sluice-disc-'));
for (const d of bytes.keys()) writeFileSync(join(cache, `${d}.wasm`), '');
test.after.always(() => rmSync(cache, { recursive: true, force: true }));

const pod = (ns: string, name: string, node: string, extra: { labels?: Record<string, string>; sa?: string; phase?: string; hostNetwork?: boolean; ips?: string[]; egress?: string } = {}): PodView => ({
  metadata: { namespace: ns, name, labels: extra.labels ?? {}, ...(extra.egress !== undefined ? { annotations: { 'sluice.dev/egress-namespaces': extra.egress } } : {}) },
  spec: { nodeName: node, hostNetwork: extra.hostNetwork ?? false, ...(extra.sa ? { serviceAccountName: extra.sa } : {}) },
  status: { phase: extra.phase ?? 'Running', podIPs: (extra.ips ?? []).map((ip) => ({ ip })) },
});
const svc = (ns: string, name: string, ports: Array<{ name?: string; port: number; appProtocol?: string; protocol?: string }>, type?: string): ServiceView => ({ metadata: { namespace: ns, name }, spec: { ...(type ? { type } : {}), ports } });
const slice = (ns: string, svcName: string, name: string, addressType: string, ports: Array<{ name?: string; port: number }>, endpoints: Array<{ addresses: string[]; ready?: boolean | null }>): EndpointSliceView => ({
  metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svcName } },
  addressType,
  ports,
  endpoints: endpoints.map((e) => ({ addresses: e.addresses, conditions: e.ready === undefined ? {} : { ready: e.ready } })),
});
const wf = (ns: string, name: string, spec: Partial<WasmFilterSpec>, digest = D1): ValidatedFilter => ({ namespace: ns, name, spec: { url: 'http://x', ...spec } as WasmFilterSpec, digest });

const base = (over: Partial<ClusterState> = {}): ClusterState => ({ services: [], endpointSlices: [], pods: [], filters: [], module: (d) => bytes.get(d), ...over });
const opts = { rootNamespace: 'sluice-system' };

function build(node: string, state: ClusterState, options: Parameters<typeof nodeConfig>[2] = opts) {
  const r = nodeConfig(node, state, options);
  if (!r.ok) throw new Error(`missing modules ${r.missingModules.join(',')}`);
  const snapshot = parseConfig(r.config.config, `node ${node}`, cache); // the runtime's loader accepts it
  return { ...r.config, doc: JSON.parse(r.config.config), snapshot };
}

test('clusters: one per service port, ready (or unknown) endpoints only, ports by name, IPv4 and IPv6, h2 by appProtocol', (t) => {
  const state = base({
    pods: [pod('shop', 'web-1', 'n1')],
    services: [svc('shop', 'cart', [{ name: 'http', port: 80 }, { name: 'grpc', port: 9000, appProtocol: 'grpc' }, { name: 'dns', port: 53, protocol: 'UDP' }]), svc('shop', 'ext', [{ port: 80 }], 'ExternalName'), svc('shop', 'empty', [{ port: 80 }])],
    endpointSlices: [
      slice('shop', 'cart', 'cart-v4', 'IPv4', [{ name: 'grpc', port: 19000 }, { name: 'http', port: 8080 }], [{ addresses: ['10.0.0.2'], ready: true }, { addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.9'], ready: false }]),
      slice('shop', 'cart', 'cart-v6', 'IPv6', [{ name: 'http', port: 8080 }], [{ addresses: ['fd00::1'], ready: null }]),
      slice('shop', 'empty', 'empty-x', 'IPv4', [{ port: 80 }], [{ addresses: ['10.0.0.5'], ready: false }]),
    ],
  });
  const { doc, snapshot } = build('n1', state);
  t.deepEqual(doc.clusters, [
    { name: 'cart.shop.svc.cluster.local_80', endpoints: ['10.0.0.1:8080', '10.0.0.2:8080', '[fd00::1]:8080'] },
    { name: 'cart.shop.svc.cluster.local_9000', endpoints: ['10.0.0.1:19000', '10.0.0.2:19000'], protocol: 'http2' },
  ]);
  t.deepEqual(snapshot.clusters[0]!.endpoints, [{ host: '10.0.0.1', port: 8080 }, { host: '10.0.0.2', port: 8080 }, { host: 'fd00::1', port: 8080 }]);
});

test('clusters carry their Service\'s ClusterIPs with the Service port (vips); a headless Service has none', (t) => {
  const withIps = (s: ServiceView, clusterIPs: string[]): ServiceView => ({ ...s, spec: { ...s.spec, clusterIP: clusterIPs[0], clusterIPs } });
  const state = base({
    pods: [pod('shop', 'web-1', 'n1')],
    services: [withIps(svc('shop', 'cart', [{ name: 'http', port: 80 }]), ['10.96.0.10', 'fd00:96::a']), withIps(svc('shop', 'headless', [{ name: 'http', port: 80 }]), ['None'])],
    endpointSlices: [
      slice('shop', 'cart', 'cart-v4', 'IPv4', [{ name: 'http', port: 8080 }], [{ addresses: ['10.0.0.1'] }]),
      slice('shop', 'headless', 'headless-v4', 'IPv4', [{ name: 'http', port: 8080 }], [{ addresses: ['10.0.0.2'] }]),
    ],
  });
  const { doc, snapshot } = build('n1', state);
  t.deepEqual(doc.clusters, [
    { name: 'cart.shop.svc.cluster.local_80', endpoints: ['10.0.0.1:8080'], vips: ['10.96.0.10:80', '[fd00:96::a]:80'] },
    { name: 'headless.shop.svc.cluster.local_80', endpoints: ['10.0.0.2:8080'] },
  ]);
  t.deepEqual(snapshot.clusters[0]!.vips, [{ host: '10.96.0.10', port: 80 }, { host: 'fd00:96::a', port: 80 }]);
  t.is(snapshot.clusters[1]!.vips, undefined);
});

test('workload names as Istio gives them: a ReplicaSet\'s Deployment, another controller, or the pod itself', (t) => {
  const owned = (name: string, labels: Record<string, string>, owners: Array<{ kind: string; name: string; controller?: boolean }>): PodView => ({ metadata: { namespace: 'shop', name, labels, ownerReferences: owners } });
  t.is(workloadName(owned('web-7d9f8c6b5-x2x9q', { 'pod-template-hash': '7d9f8c6b5' }, [{ kind: 'ReplicaSet', name: 'web-7d9f8c6b5', controller: true }])), 'web');
  t.is(workloadName(owned('my-web-abc12', {}, [{ kind: 'ReplicaSet', name: 'my-web-5c4f7', controller: true }])), 'my-web');
  t.is(workloadName(owned('db-0', {}, [{ kind: 'StatefulSet', name: 'db', controller: true }])), 'db');
  t.is(workloadName(owned('x', {}, [{ kind: 'ConfigMap', name: 'not-it' }, { kind: 'DaemonSet', name: 'agent', controller: true }])), 'agent');
  t.is(workloadName(owned('lonely', {}, [])), 'lonely');
  t.is(workloadName({ metadata: { namespace: 'shop', name: 'bare' } }), 'bare');
});

test('workloads: only pods on this node, not hostNetwork, Running or Pending; identity from the ServiceAccount and trust domain', (t) => {
  const state = base({
    pods: [
      pod('shop', 'web-1', 'n1', { labels: { app: 'web' }, sa: 'web', ips: ['10.0.0.7', 'fd00::7'] }),
      pod('shop', 'web-2', 'n1', { phase: 'Pending' }),
      pod('shop', 'other', 'n2'),
      pod('kube-system', 'net', 'n1', { hostNetwork: true }),
      pod('shop', 'done', 'n1', { phase: 'Succeeded' }),
      pod('shop', 'failed', 'n1', { phase: 'Failed' }),
    ],
  });
  const { doc, snapshot } = build('n1', state, { ...opts, trustDomain: 'example.org' });
  t.deepEqual(doc.workloads, [
    { namespace: 'shop', name: 'web-1', workload: 'web-1', identity: 'spiffe://example.org/ns/shop/sa/web', serviceAccount: 'web', labels: { app: 'web' }, addresses: ['10.0.0.7', 'fd00::7'], filters: { outbound: [], inbound: [] } },
    { namespace: 'shop', name: 'web-2', workload: 'web-2', identity: 'spiffe://example.org/ns/shop/sa/default', serviceAccount: 'default', labels: {}, addresses: [], filters: { outbound: [], inbound: [] } },
  ]);
  t.is(snapshot.workloads?.length, 2);
  t.deepEqual(build('n1', base({ pods: [pod('a', 'p', 'n1')] })).doc.workloads[0].identity, 'spiffe://cluster.local/ns/a/sa/default');
});

test('filters: selected by namespace (root namespace: all) and matchLabels, ordered by phase, priority (higher first), name; put on listeners by direction', (t) => {
  const state = base({
    pods: [pod('shop', 'web-1', 'n1', { labels: { app: 'web' } }), pod('shop', 'db-1', 'n1', { labels: { app: 'db' } })],
    filters: [
      wf('sluice-system', 'stats', { phase: 'STATS' }),
      wf('shop', 'authz-low', { phase: 'AUTHZ', priority: 1, match: [{ direction: 'INBOUND' }] }),
      wf('shop', 'authz-high', { phase: 'AUTHZ', priority: 10, selector: { matchLabels: { app: 'web' } }, match: [{ direction: 'INBOUND', ports: [8080] }] }, D2),
      wf('shop', 'authn', { phase: 'AUTHN', match: [{ direction: 'OUTBOUND' }] }),
      wf('shop', 'b-plain', {}),
      wf('shop', 'a-plain', {}),
      wf('other', 'foreign', {}),
      wf('shop', 'nobody', { selector: { matchLabels: { app: 'cache' } } }),
    ],
  });
  const { doc, modules, snapshot } = build('n1', state);
  const names = (l: { filters: string[] }) => l.filters;
  t.deepEqual(names(doc.listeners[0]), ['shop.authn', 'sluice-system.stats', 'shop.a-plain', 'shop.b-plain']);
  t.deepEqual(doc.listeners.map((l: { name: string }) => l.name), ['capture-outbound', 'capture-inbound']);
  t.deepEqual(names(doc.listeners[1]), ['shop.authz-high', 'shop.authz-low', 'sluice-system.stats', 'shop.a-plain', 'shop.b-plain']);
  t.deepEqual(doc.filters.map((f: { name: string }) => f.name), ['shop.authn', 'shop.authz-high', 'shop.authz-low', 'sluice-system.stats', 'shop.a-plain', 'shop.b-plain']);
  t.deepEqual(doc.workloads.map((w: { name: string; filters: unknown }) => [w.name, w.filters]), [
    ['db-1', { outbound: ['shop.authn', 'sluice-system.stats', 'shop.a-plain', 'shop.b-plain'], inbound: ['shop.authz-low', 'sluice-system.stats', 'shop.a-plain', 'shop.b-plain'] }],
    ['web-1', { outbound: ['shop.authn', 'sluice-system.stats', 'shop.a-plain', 'shop.b-plain'], inbound: ['shop.authz-high', 'shop.authz-low', 'sluice-system.stats', 'shop.a-plain', 'shop.b-plain'], ports: { inbound: { 'shop.authz-high': [8080] } } }],
  ]);
  t.deepEqual([...modules.keys()].sort(), [D1, D2]);
  t.is(snapshot.filters.find((f) => f.name === 'shop.authz-high')!.module, join(cache, `${D2}.wasm`));
});

test('match.ports: a filter limited to some ports in a direction is listed with them under the workload\'s filters.ports', (t) => {
  const state = base({
    pods: [pod('shop', 'web-1', 'n1', { labels: { app: 'web' } })],
    filters: [
      wf('shop', 'in-8080', { match: [{ direction: 'INBOUND', ports: [8080] }] }),
      wf('shop', 'both-ports', { match: [{ direction: 'BOTH', ports: [9090, 80] }, { direction: 'OUTBOUND', ports: [443] }] }),
      wf('shop', 'out-any', { match: [{ direction: 'OUTBOUND', ports: [80] }, { direction: 'OUTBOUND' }] }),
      wf('shop', 'everywhere', {}),
    ],
  });
  const { doc, snapshot } = build('n1', state);
  t.deepEqual(doc.workloads[0].filters, {
    outbound: ['shop.both-ports', 'shop.everywhere', 'shop.out-any'],
    inbound: ['shop.both-ports', 'shop.everywhere', 'shop.in-8080'],
    ports: { outbound: { 'shop.both-ports': [80, 443, 9090] }, inbound: { 'shop.both-ports': [80, 9090], 'shop.in-8080': [8080] } },
  });
  t.deepEqual(snapshot.workloads![0]!.filters.ports?.inbound, { 'shop.both-ports': [80, 9090], 'shop.in-8080': [8080] });
  // Without any port limit the field is left out.
  t.false('ports' in build('n1', base({ pods: state.pods, filters: [wf('shop', 'everywhere', {})] })).doc.workloads[0].filters);
});

test('a filter is rendered with its module by digest, config as JSON text, ids, fail strategy, limits, capabilities (httpCalls only to clusters the node has)', (t) => {
  const state = base({
    pods: [pod('shop', 'web-1', 'n1')],
    services: [svc('shop', 'auth', [{ name: 'http', port: 80 }])],
    endpointSlices: [slice('shop', 'auth', 'auth-1', 'IPv4', [{ name: 'http', port: 8080 }], [{ addresses: ['10.0.0.3'] }])],
    filters: [
      wf('shop', 'f', { pluginConfig: { deny: ['/admin'] }, rootId: 'r', vmId: 'v', failStrategy: 'FAIL_OPEN', limits: { callBudgetMs: 20 }, capabilities: { httpCalls: ['auth.shop.svc.cluster.local_80', 'gone'], sharedData: false } }),
      wf('shop', 's', { pluginConfig: 'plain text' }),
    ],
  });
  const { doc, snapshot } = build('n1', state);
  t.deepEqual(doc.filters[0], {
    name: 'shop.f',
    module: `${D1}.wasm`,
    rootId: 'r',
    vmId: 'v',
    config: '{"deny":["/admin"]}',
    failStrategy: 'FAIL_OPEN',
    limits: { callBudgetMs: 20 },
    capabilities: { httpCalls: ['auth.shop.svc.cluster.local_80'], sharedData: false },
  });
  t.is(snapshot.filters[0]!.configuration, '{"deny":["/admin"]}');
  t.is(snapshot.filters[1]!.configuration, 'plain text');
});

test('scope: a node without workloads gets no clusters and no filters; the egress annotation narrows the services to those namespaces', (t) => {
  const state = base({
    pods: [pod('shop', 'web-1', 'n1', { egress: 'shop' }), pod('shop', 'web-2', 'n2'), pod('x', 'net', 'n3', { hostNetwork: true })],
    services: [svc('shop', 'cart', [{ port: 80 }]), svc('pay', 'card', [{ port: 80 }])],
    endpointSlices: [slice('shop', 'cart', 'c1', 'IPv4', [{ port: 80 }], [{ addresses: ['10.0.0.1'] }]), slice('pay', 'card', 'p1', 'IPv4', [{ port: 80 }], [{ addresses: ['10.0.1.1'] }])],
    filters: [wf('sluice-system', 'stats', {})],
  });
  t.deepEqual(build('n1', state).doc.clusters.map((c: { name: string }) => c.name), ['cart.shop.svc.cluster.local_80']);
  t.deepEqual(build('n2', state).doc.clusters.map((c: { name: string }) => c.name), ['card.pay.svc.cluster.local_80', 'cart.shop.svc.cluster.local_80']);
  const n3 = build('n3', state);
  t.deepEqual([n3.doc.clusters, n3.doc.filters, n3.doc.workloads, n3.modules.size], [[], [], [], 0]);
});

test('versions: stable for the same state in any order, new on any change of config or module set; a missing module publishes nothing', (t) => {
  const pods = [pod('shop', 'a', 'n1'), pod('shop', 'b', 'n1')];
  const filters = [wf('shop', 'f', {}), wf('shop', 'g', {}, D2)];
  const services = [svc('shop', 'cart', [{ port: 80 }])];
  const endpointSlices = [slice('shop', 'cart', 'c1', 'IPv4', [{ port: 80 }], [{ addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.2'] }])];
  const v = build('n1', base({ pods, filters, services, endpointSlices })).version;
  t.is(build('n1', base({ pods: [...pods].reverse(), filters: [...filters].reverse(), services, endpointSlices })).version, v);
  t.not(build('n1', base({ pods, filters: [filters[0]!, { ...filters[1]!, digest: D1 }], services, endpointSlices })).version, v);
  t.not(build('n1', base({ pods: pods.slice(1), filters, services, endpointSlices })).version, v);
  const fewer = [slice('shop', 'cart', 'c1', 'IPv4', [{ port: 80 }], [{ addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.2'], ready: false }])];
  t.not(build('n1', base({ pods, filters, services, endpointSlices: fewer })).version, v);
  t.deepEqual(nodeConfig('n1', base({ pods, filters, module: () => undefined }), opts), { ok: false, missingModules: [D1, D2] });
});

test('long names are shortened with a hash and stay valid', (t) => {
  const long = 'x'.repeat(63);
  const state = base({ pods: [pod(long, 'p', 'n1')], services: [svc(long, long, [{ port: 65000 }])], endpointSlices: [slice(long, long, 's', 'IPv4', [{ port: 1 }], [{ addresses: ['10.0.0.1'] }])], filters: [wf(long, 'y'.repeat(200), {})] });
  const { doc } = build('n1', state);
  t.is(doc.clusters[0].name.length, 128);
  t.is(doc.filters[0].name.length, 128);
  t.regex(doc.clusters[0].name, /^x{63}\.x{53}-[0-9a-f]{10}$/);
});

test('tunnel: pods on other nodes in scope, with their node\'s hostIP:15008 and identity; own, host-network, addressless and out-of-scope pods left out', (t) => {
  const remote = (ns: string, name: string, node: string, hostIP: string | undefined, extra: Parameters<typeof pod>[3] = {}): PodView => {
    const p = pod(ns, name, node, extra);
    return { ...p, status: { ...p.status, ...(hostIP ? { hostIP } : {}) } };
  };
  const state = base({
    pods: [
      remote('shop', 'web-1', 'n1', '192.168.1.1', { ips: ['10.1.0.5'], egress: 'shop,pay' }),
      remote('shop', 'cart-1', 'n2', '192.168.1.2', { ips: ['10.2.0.7', 'fd00::7'], sa: 'cart' }),
      remote('pay', 'api-1', 'n3', 'fd00:1::3', { ips: ['10.3.0.9'], sa: 'api' }),
      remote('other', 'x-1', 'n2', '192.168.1.2', { ips: ['10.2.0.8'] }),
      remote('shop', 'new-1', 'n2', '192.168.1.2', { ips: [] }),
      remote('shop', 'nohost-1', 'n2', undefined, { ips: ['10.2.0.9'] }),
      remote('shop', 'hostnet-1', 'n2', '192.168.1.2', { ips: ['192.168.1.2'], hostNetwork: true }),
      remote('shop', 'done-1', 'n2', '192.168.1.2', { ips: ['10.2.0.10'], phase: 'Succeeded' }),
    ],
  });
  const { doc, snapshot } = build('n1', state);
  t.deepEqual(doc.tunnel, {
    remoteWorkloads: [
      { namespace: 'pay', name: 'api-1', identity: 'spiffe://cluster.local/ns/pay/sa/api', workload: 'api-1', addresses: ['10.3.0.9'], tunnel: '[fd00:1::3]:15008' },
      { namespace: 'shop', name: 'cart-1', identity: 'spiffe://cluster.local/ns/shop/sa/cart', workload: 'cart-1', addresses: ['10.2.0.7', 'fd00::7'], tunnel: '192.168.1.2:15008' },
    ],
  });
  t.deepEqual(snapshot.tunnel!.remoteWorkloads[1]!.tunnel, { host: '192.168.1.2', port: 15008 });
  // A node whose pods call every namespace gets the other one too; a node without workloads gets none.
  t.deepEqual(build('n3', state).doc.tunnel.remoteWorkloads.map((w: { name: string }) => w.name), ['x-1', 'cart-1', 'web-1']);
  t.is(build('n9', state).doc.tunnel, undefined);
});

test('rollouts: the canary nodes get the canary version (module and configuration), the others the stable one; where it applies is the spec\'s; each config lists its filters\' versions', (t) => {
  const spec = { selector: { matchLabels: { app: 'web' } }, pluginConfig: { v: 'new' }, failStrategy: 'FAIL_OPEN' as const };
  const current: ValidatedFilter = wf('team-a', 'f', spec, D2);
  const rollout = {
    phase: 'Canary' as const,
    stable: { version: filterVersion(D1, { pluginConfig: { v: 'old' } }), digest: `sha256:${D1}`, source: { url: 'http://x' }, config: { pluginConfig: { v: 'old' } } },
    canary: { version: filterVersion(D2, spec), digest: `sha256:${D2}`, source: { url: 'http://x' }, config: versionedSpec(spec) },
    canaryNodes: ['node-b'],
    since: '2026-12-05T08:00:00.000Z',
  };
  const filters = [withRollout(current, rollout)];
  const pods = ['node-a', 'node-b', 'node-c'].map((n) => pod('team-a', `web-${n}`, n, { labels: { app: 'web' } }));
  const a = build('node-a', base({ pods, filters }));
  const b = build('node-b', base({ pods, filters }));
  t.like(a.doc.filters[0], { name: 'team-a.f', module: `${D1}.wasm`, config: '{"v":"old"}' });
  t.is(a.doc.filters[0].failStrategy, undefined);
  t.like(b.doc.filters[0], { name: 'team-a.f', module: `${D2}.wasm`, config: '{"v":"new"}', failStrategy: 'FAIL_OPEN' });
  t.deepEqual(a.filters, [{ name: 'team-a.f', key: 'team-a/f', version: rollout.stable.version }]);
  t.deepEqual(b.filters, [{ name: 'team-a.f', key: 'team-a/f', version: rollout.canary.version }]);
  t.deepEqual([...a.modules.keys()], [D1]);
  t.deepEqual([...b.modules.keys()], [D2]);
  // Promoted: every node gets the new version; rolled back: the stable one.
  const promoted = [withRollout(current, { phase: 'Stable', stable: rollout.canary, since: rollout.since })];
  t.is(build('node-a', base({ pods, filters: promoted })).doc.filters[0].module, `${D2}.wasm`);
  const back = [withRollout(current, { phase: 'RolledBack', stable: rollout.stable, since: rollout.since, failedVersion: rollout.canary.version })];
  t.is(build('node-b', base({ pods, filters: back })).doc.filters[0].module, `${D1}.wasm`);
  // The selector is the spec's: a node without a selected workload gets neither version.
  t.deepEqual(build('node-d', base({ pods: [...pods, pod('team-a', 'db', 'node-d', { labels: { app: 'db' } })], filters })).doc.filters, []);
  // Versions: the module and the versioned fields count, in any key order; the selector does not.
  t.is(filterVersion(D1, { pluginConfig: { a: 1, b: 2 }, limits: { callBudgetMs: 5 } }), filterVersion(`sha256:${D1}`, { limits: { callBudgetMs: 5 }, pluginConfig: { b: 2, a: 1 }, selector: { matchLabels: { x: 'y' } } }));
  t.not(filterVersion(D1, { pluginConfig: { a: 1 } }), filterVersion(D2, { pluginConfig: { a: 1 } }));
  t.not(filterVersion(D1, { pluginConfig: { a: 1 } }), filterVersion(D1, { pluginConfig: { a: 2 } }));
  t.regex(filterVersion(D1, {}), /^a{12}\.[0-9a-f]{8}$/);
});

test('unavailableFilter: FAIL_CLOSE (the default) and FAIL_RELOAD filters whose validation failed refuse with the reason; FAIL_OPEN ones, and any whose first validation has not concluded, are left out', (t) => {
  const f = (failStrategy: string | undefined, condition?: { status: string; reason: string; message: string; observedGeneration: number }) =>
    ({ metadata: { namespace: 'shop', name: 'guard', generation: 2 }, spec: { url: 'http://x', ...(failStrategy ? { failStrategy } : {}) }, status: condition ? { conditions: [{ type: 'Validated', lastTransitionTime: '', ...condition }] } : {} }) as unknown as WasmFilter;
  const failed = { status: 'False', reason: 'FetchFailed', message: 'x', observedGeneration: 2 };
  t.is(unavailableFilter(f('FAIL_OPEN', failed)), undefined);
  t.is(unavailableFilter(f(undefined)), undefined);
  t.is(unavailableFilter(f('FAIL_CLOSE', { ...failed, status: 'Unknown' })), undefined);
  t.like(unavailableFilter(f(undefined, failed)), { namespace: 'shop', name: 'guard', digest: '', unavailable: 'the controller could not validate it: FetchFailed: x' });
  t.like(unavailableFilter(f('FAIL_RELOAD', { status: 'False', reason: 'ConfigRejected', message: 'the filter said:\n  bad   config', observedGeneration: 2 })), { unavailable: 'the controller could not validate it: ConfigRejected: the filter said: bad config' });
  // A refusal of an older generation stands while the new one is validated.
  t.like(unavailableFilter(f('FAIL_CLOSE', { ...failed, observedGeneration: 1 })), { unavailable: 'the controller could not validate generation 1 (generation 2 is being validated): FetchFailed: x' });
  t.is(unavailableFilter(f('FAIL_CLOSE', { ...failed, message: 'y'.repeat(400) }))!.unavailable!.length, 300);

  // In a node's config: no module, selected like any filter, and the runtime's loader takes it.
  const state = base({ pods: [pod('shop', 'web-1', 'n1', { labels: { app: 'web' } })], filters: [unavailableFilter(f(undefined, failed))!] });
  const { doc, snapshot, modules, filters } = build('n1', state);
  t.deepEqual(doc.filters, [{ name: 'shop.guard', unavailable: 'the controller could not validate it: FetchFailed: x', failStrategy: 'FAIL_CLOSE' }]);
  t.deepEqual(doc.workloads[0].filters, { outbound: ['shop.guard'], inbound: ['shop.guard'] });
  t.like(snapshot.filters[0], { name: 'shop.guard', module: '', unavailable: 'the controller could not validate it: FetchFailed: x' });
  t.is(modules.size, 0);
  t.deepEqual(filters, []);
});

test('vmConfig.env reaches the node as the filter\'s environment, in order, and the runtime\'s loader takes it; without env there is none', (t) => {
  const state = base({
    pods: [pod('shop', 'web-1', 'n1')],
    filters: [wf('shop', 'env', { vmConfig: { env: [{ name: 'MODE', value: 'enforce', valueFrom: 'INLINE' }, { name: 'EMPTY' }, { name: 'A_1', value: 'x' }] } }), wf('shop', 'plain', { vmConfig: {} })],
  });
  const { doc, snapshot } = build('n1', state);
  t.deepEqual(doc.filters.map((f: { name: string; environment?: unknown }) => [f.name, f.environment]), [['shop.env', { MODE: 'enforce', EMPTY: '', A_1: 'x' }], ['shop.plain', undefined]]);
  t.deepEqual(Object.entries(snapshot.filters[0]!.environment), [['MODE', 'enforce'], ['EMPTY', ''], ['A_1', 'x']]);
  t.deepEqual(snapshot.filters[1]!.environment, {});
});
