// The platform end to end: two "nodes" (a netns each, linked by a veth), pods on each wired by
// Debian's bridge + host-local with sluice-cni chained (libcni, as a container runtime calls it),
// one node agent per node (`sluice run --controller --capture-socket` in the node's netns), and
// the controller on the real API server with Pod, Service and EndpointSlice objects that match
// the namespaces. WasmFilters applied with kubectl change what pods see. Root on Linux only.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { Controller, silentLogger } from '../../controller/index.ts';
import { startControllerCluster, waitValidated, wasmFilter, type ControllerCluster } from '../helpers/controller-env.ts';
import { repoRoot } from '../helpers/fixtures.ts';
import { hasK8sBinaries } from '../helpers/kube-apiserver.ts';
import { skipUnless } from '../helpers/skip-unless.ts';
import { until } from '../helpers/sluice-run.ts';
import { NFT } from '../../runtime/capture/nft-rules.ts';
import { Lab, labUnavailable, must, sh, type Pod } from './netns-lab.ts';

const why = labUnavailable() ?? (hasK8sBinaries() ? undefined : 'the Kubernetes test binaries are missing (bash scripts/build-k8s.sh)');
const serial = skipUnless(why);

const NS = 'team-a';
type NodeName = 'node-a' | 'node-b';
/** A node: its lab (netns, pods, CNI socket), its agent, its address on the link. */
interface Node {
  name: NodeName;
  lab: Lab;
  linkIp: string;
  agent?: Awaited<ReturnType<Lab['spawnIn']>>;
}

// A /24 per run for the links, so that runs on one machine do not collide in the root netns.
const net = `10.251.${(process.pid % 200) + 20}`;
/** The controller's address in the root netns, reachable from both nodes. */
const CONTROLLER_IP = `${net}.1`;
const nodes: Record<NodeName, Node> = {
  'node-a': { name: 'node-a', lab: new Lab('10.248.1.0/24', 'fd00:5c:e2e:1::/64'), linkIp: `${net}.11` },
  'node-b': { name: 'node-b', lab: new Lab('10.248.2.0/24', 'fd00:5c:e2e:2::/64'), linkIp: `${net}.12` },
};
const ctx = {} as { cluster: ControllerCluster; controller: Controller; dir: string; grpc: number; pods: Record<string, Pod & { node: Node }> };
const rootLinks: string[] = [];

test.after.always(async () => {
  if (why) return;
  for (const n of Object.values(nodes)) await n.lab.destroy();
  for (const l of rootLinks) sh('ip', ['link', 'del', l]);
  await ctx.controller?.stop();
  await ctx.cluster?.kube.close();
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true });
});

/**
 * Wires the nodes: a veth from the root netns to each node (the controller's address, the same
 * on both, with a host route to each node: nothing is forwarded by the root netns), and a veth
 * between the nodes (each node's pod subnet routed over it: the "network" between nodes).
 */
function link(): void {
  const [a, b] = [nodes['node-a'], nodes['node-b']];
  for (const n of [a, b]) {
    const root = `slr${n.lab.id}`;
    must('ip', ['link', 'add', root, 'type', 'veth', 'peer', 'name', 'up0', 'netns', n.lab.node]);
    rootLinks.push(root);
    must('ip', ['addr', 'add', `${CONTROLLER_IP}/32`, 'dev', root]);
    must('ip', ['link', 'set', root, 'up']);
    must('ip', ['route', 'add', `${n.linkIp}/32`, 'dev', root]);
    must('ip', ['-n', n.lab.node, 'addr', 'add', `${n.linkIp}/32`, 'dev', 'up0']);
    must('ip', ['-n', n.lab.node, 'link', 'set', 'up0', 'up']);
    must('ip', ['-n', n.lab.node, 'route', 'add', `${CONTROLLER_IP}/32`, 'dev', 'up0']);
    must('ip', ['netns', 'exec', n.lab.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  }
  must('ip', ['-n', a.lab.node, 'link', 'add', 'peer0', 'type', 'veth', 'peer', 'name', 'peer0', 'netns', b.lab.node]);
  for (const [n, other] of [[a, b], [b, a]] as const) {
    must('ip', ['-n', n.lab.node, 'addr', 'add', `${n.linkIp}/32`, 'dev', 'peer0']);
    must('ip', ['-n', n.lab.node, 'link', 'set', 'peer0', 'up']);
    must('ip', ['-n', n.lab.node, 'route', 'add', `${other.linkIp}/32`, 'dev', 'peer0']);
    must('ip', ['-n', n.lab.node, 'route', 'add', other.lab.subnet, 'via', other.linkIp, 'dev', 'peer0', 'onlink']);
  }
  // What arrives at node b over the link: packets from node a's pods that carry data (plaintext
  // between pods), and packets to the tunnel's port.
  const rules = `table inet slplatform {\n chain pre {\n type filter hook prerouting priority -400; policy accept;\n iifname "peer0" ip saddr ${a.lab.subnet} ip length > 80 counter\n iifname "peer0" tcp dport 15008 counter\n }\n}\n`;
  const r = sh('ip', ['netns', 'exec', b.lab.node, NFT, '-f', '-'], { input: rules });
  if (r.status !== 0) throw new Error(`nft: ${r.stderr}`);
}

/** The link's counters at node b (see link()). */
function linkCounters(): { fromPods: number; tunnel: number } {
  const text = sh('ip', ['netns', 'exec', nodes['node-b'].lab.node, NFT, 'list', 'table', 'inet', 'slplatform']).stdout;
  const count = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  return { fromPods: count(/ip length > 80 counter packets (\d+)/), tunnel: count(/tcp dport 15008 counter packets (\d+)/) };
}

async function startAgent(n: Node, drainMs = 0): Promise<void> {
  n.agent = await n.lab.spawnIn(
    n.lab.node,
    [
      process.execPath, join(repoRoot, 'bin/sluice.js'), 'run', '--controller', `${CONTROLLER_IP}:${ctx.grpc}`, '--node-name', n.name,
      '--token-file', join(ctx.dir, `token-${n.name}`), '--state-dir', join(ctx.dir, `state-${n.name}`),
      '--controller-ca', join(ctx.dir, 'root-cert.pem'), '--admin-address', '127.0.0.1:0', '--drain-ms', String(drainMs), '--capture-socket', n.lab.socket,
    ],
    'CNI API listening',
    60_000,
  );
}

/**
 * Waits until `node` ACKed discovery's current config for it and `check` holds for that config,
 * every filter in it with its module (a filter not validated yet is sent as unavailable first).
 */
function acked(node: NodeName, what: string, check: (config: any) => boolean): Promise<string> {
  return until(`${node}: ${what}`, () => {
    const current = ctx.controller.discovery!.current(node);
    const r = ctx.controller.distribution.nodes().get(node);
    const config = current && JSON.parse(current.config);
    if (!current || !check(config) || (config.filters ?? []).some((f: { module?: string }) => !f.module) || r?.version !== current.version || !r.acked) return undefined;
    return current.version;
  }, 60_000);
}

/** GET `path` from a node's admin listener, from inside the node's netns. */
function adminGet(n: Node, path: string): string {
  const port = Number(/admin listening on 127\.0\.0\.1:(\d+)/.exec(n.agent!.output())![1]);
  return sh('ip', ['netns', 'exec', n.lab.node, process.execPath, '-e', `fetch('http://127.0.0.1:${port}${path}').then((r) => r.text()).then((t) => process.stdout.write(t))`]).stdout;
}

/** GET from inside a netns: the status and the body, whatever they are. */
function rawGet(lab: Lab, netns: string, url: string): { status: number; body: string } {
  const script = `require('http').get(process.argv[1], (r) => { let b = ''; r.on('data', (c) => (b += c)); r.on('end', () => console.log(JSON.stringify({ status: r.statusCode, body: b }))); }).on('error', (e) => { console.error(e.message); process.exit(1); })`;
  const r = sh('ip', ['netns', 'exec', netns, process.execPath, '-e', script, url]);
  if (r.status !== 0) throw new Error(`GET ${url} from ${netns} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const kubectl = (args: string[], input?: string) => ctx.cluster.kube.kubectlOk(args, input === undefined ? undefined : { input });
const apply = (o: object) => kubectl(['apply', '-f', '-'], JSON.stringify(o));
const ipOf = (addResult: string) => (JSON.parse(addResult).ips as Array<{ address: string }>).map((i) => i.address.split('/')[0]).find((a) => !a.includes(':'))!;

/** Makes pod `name` on `node`: its netns wired by the CNI chain, and its Pod object (Running, its IP). */
async function pod(name: string, node: Node, serviceAccount: string, labels: Record<string, string>, annotations?: Record<string, string>, owner?: { kind: string; name: string }): Promise<Pod & { node: Node }> {
  const p = Object.assign(node.lab.pod(name, NS), { node });
  const add = node.lab.cni('add', p, annotations);
  if (add.status !== 0) throw new Error(`CNI ADD of ${name}: ${add.stdout}${add.stderr}`);
  p.ip = ipOf(add.stdout);
  await apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: NS, labels, ...(annotations && { annotations }), ...(owner && { ownerReferences: [{ apiVersion: 'apps/v1', ...owner, uid: `uid-${owner.name}`, controller: true }] }) }, spec: { nodeName: node.name, serviceAccountName: serviceAccount, containers: [{ name: 'c', image: 'example:test' }] } });
  await kubectl(['patch', 'pod', name, '-n', NS, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', hostIP: node.linkIp, podIP: p.ip, podIPs: [{ ip: p.ip }] } })]);
  return p;
}

test.before(async () => {
  if (why) return;
  ctx.dir = await mkdtemp(join(tmpdir(), 'sluice-platform-'));
  for (const n of Object.values(nodes)) await n.lab.create();
  link();
  ctx.cluster = await startControllerCluster();
  for (const sa of ['client-a', 'client-c', 'web']) await kubectl(['create', 'serviceaccount', sa, '-n', NS]);
  for (const n of Object.values(nodes)) {
    // The DaemonSet's pod (host network: not a workload), whose bound token identifies the agent.
    await apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `agent-${n.name}`, namespace: 'sluice-system' }, spec: { nodeName: n.name, serviceAccountName: 'sluice-node', hostNetwork: true, containers: [{ name: 'c', image: 'example:test' }] } });
    const token = await kubectl(['create', 'token', 'sluice-node', '-n', 'sluice-system', '--audience=sluice', '--bound-object-kind=Pod', `--bound-object-name=agent-${n.name}`, '--duration=3600s']);
    await writeFile(join(ctx.dir, `token-${n.name}`), token.trim());
  }
  ctx.controller = new Controller({ kubeconfig: ctx.cluster.controllerKubeconfig, listen: '127.0.0.1:0', grpcListen: `${CONTROLLER_IP}:0`, grpcTlsIps: [CONTROLLER_IP], log: silentLogger });
  await ctx.controller.start();
  ctx.grpc = ctx.controller.distributionPort!;
  await writeFile(join(ctx.dir, 'root-cert.pem'), await kubectl(['get', 'configmap', 'sluice-ca-root', '-n', 'sluice-system', '-o', 'jsonpath={.data.root-cert\\.pem}']));
  await kubectl(['create', 'configmap', 'headers-module', '-n', NS, `--from-file=filter.wasm=${join(repoRoot, 'build/filters/headers.wasm')}`]);
  for (const n of Object.values(nodes)) await startAgent(n);
  ctx.pods = {
    // A Deployment's pod (owned by its ReplicaSet): its workload is the Deployment, "client".
    a: await pod('a', nodes['node-a'], 'client-a', { app: 'client', 'pod-template-hash': '6d4cf56db6' }, undefined, { kind: 'ReplicaSet', name: 'client-6d4cf56db6' }),
    c: await pod('c', nodes['node-a'], 'client-c', { app: 'client' }),
    b: await pod('b', nodes['node-b'], 'web', { app: 'web' }),
  };
  await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: NS }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'echo', port: 9000, targetPort: 9000 }] } });
  await apply({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'web-1', namespace: NS, labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ctx.pods.b!.ip], conditions: { ready: true } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'echo', port: 9000, protocol: 'TCP' }],
  });
  await nodes['node-b'].lab.serve(ctx.pods.b!);
});

serial('the agents serve discovery\'s config for their node: the workloads the CNI plugin reported, the Service as a cluster', async (t) => {
  for (const n of Object.values(nodes)) {
    await acked(n.name, 'ACKs a config with its workloads', (c) => (c.workloads ?? []).length === (n.name === 'node-a' ? 2 : 1));
    const pods = (await n.lab.api('GET', '/v1/pods')).body.pods.map((p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`).sort();
    t.deepEqual(pods, n.name === 'node-a' ? ['team-a/a', 'team-a/c'] : ['team-a/b']);
  }
});

serial('pod A (node a) to pod B (node b): through both node proxies and the mTLS tunnel between them, to the original destination', async (t) => {
  const { a, b } = ctx.pods;
  const before = linkCounters();
  const answer = nodes['node-a'].lab.get(a!.netns, `http://${b!.ip}:8080/hello`);
  t.is(nodes['node-a'].lab.tcp(a!.netns, b!.ip!, 9000, 'across\n'), 'ACROSS\n');
  // Only the tunnel crossed the link: nothing from A's address with data, TLS to 15008.
  const after = linkCounters();
  t.is(after.fromPods, before.fromPods);
  t.true(after.tunnel > before.tunnel);
  // Both proxies' HTTP stacks ran (each added the peer it saw to x-forwarded-for); B's server
  // was reached on the address A dialled.
  // B sees its own address as the peer (its inbound proxy connected from B's netns) and A in
  // x-forwarded-for twice: A's node proxy saw A, and so did B's (A's proxy dials from A's netns).
  t.deepEqual(answer, { pod: 'b', remote: b!.ip!, local: `${b!.ip}:8080`, xff: `${a!.ip}, ${a!.ip}`, requestId: true });
});

serial('pod A to B by B\'s Service address (its ClusterIP): node a\'s proxy sends it to the Service\'s endpoint', async (t) => {
  const { a, b } = ctx.pods;
  const vip = (await kubectl(['get', 'service', 'web', '-n', NS, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  t.regex(vip, /^\d+\.\d+\.\d+\.\d+$/);
  await acked('node-a', 'the Service cluster with its address', (c) => c.clusters.some((x: { vips?: string[] }) => x.vips?.includes(`${vip}:9000`)));
  // No kube-proxy here: nothing but node a's proxy knows where the ClusterIP leads. The
  // endpoint is on node b, so the call crosses in the tunnel, never in plaintext.
  const before = linkCounters();
  t.deepEqual(nodes['node-a'].lab.get(a!.netns, `http://${vip}/by-service`), { pod: 'b', remote: b!.ip!, local: `${b!.ip}:8080`, xff: `${a!.ip}, ${a!.ip}`, requestId: true });
  // TCP that is not HTTP too (B's upper-casing echo server behind the Service's port 9000).
  t.is(nodes['node-a'].lab.tcp(a!.netns, vip, 9000, 'ping\n'), 'PING\n');
  t.is(linkCounters().fromPods, before.fromPods);
});

serial('kubectl apply of an outbound WasmFilter for the clients and an inbound one for web: both change what A sees', async (t) => {
  const { a, b } = ctx.pods;
  // Each side stamps the address it saw the client dial (destination.*: the original destination, not the proxy's listener).
  const stamp = (value: string) => ({ request: { add: [{ name: 'x-filtered', value: `${value} to %DOWNSTREAM_LOCAL_ADDRESS%` }] } });
  await apply(JSON.parse(wasmFilter('stamp-out', NS, { configMap: { name: 'headers-module', key: 'filter.wasm' }, selector: { matchLabels: { app: 'client' } }, match: [{ direction: 'OUTBOUND' }], pluginConfig: stamp('outbound') })));
  await apply(JSON.parse(wasmFilter('stamp-in', NS, { configMap: { name: 'headers-module', key: 'filter.wasm' }, selector: { matchLabels: { app: 'web' } }, match: [{ direction: 'INBOUND' }], pluginConfig: stamp('inbound') })));
  await waitValidated(ctx.cluster.kube, NS, 'stamp-out', 'True');
  await waitValidated(ctx.cluster.kube, NS, 'stamp-in', 'True');
  const names = (c: any, listener: string) => c.listeners.find((l: { name: string }) => l.name === listener).filters as string[];
  await acked('node-a', 'the outbound filter on its outbound listener', (c) => names(c, 'capture-outbound').length === 1 && names(c, 'capture-inbound').length === 0);
  await acked('node-b', 'the inbound filter on its inbound listener', (c) => names(c, 'capture-inbound').length === 1 && names(c, 'capture-outbound').length === 0);
  const answer = nodes['node-a'].lab.get(a!.netns, `http://${b!.ip}:8080/filtered`);
  t.deepEqual(answer, { pod: 'b', remote: b!.ip!, local: `${b!.ip}:8080`, xff: `${a!.ip}, ${a!.ip}`, requestId: true, filters: `outbound to ${b!.ip}:8080, inbound to ${b!.ip}:8080` });
  // By the Service address: A's side saw the ClusterIP dialled, B's side the endpoint.
  const vip = (await kubectl(['get', 'service', 'web', '-n', NS, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  t.is(nodes['node-a'].lab.get(a!.netns, `http://${vip}/filtered`).filters, `outbound to ${vip}:80, inbound to ${b!.ip}:8080`);
});

serial('filters are chosen per workload: a pod on node a the outbound filter does not select gets only B\'s inbound one', async (t) => {
  const { b } = ctx.pods;
  const e = await pod('e', nodes['node-a'], 'client-c', { app: 'other' });
  const workload = (c: any, name: string) => (c.workloads as Array<{ name: string; filters: { outbound: string[] } }>).find((w) => w.name === name);
  await acked('node-a', 'pod e as a workload without the outbound filter', (c) => workload(c, 'e')?.filters.outbound.length === 0 && workload(c, 'a')?.filters.outbound.length === 1);
  t.deepEqual(nodes['node-a'].lab.get(e.netns, `http://${b!.ip}:8080/unselected`), { pod: 'b', remote: b!.ip!, local: `${b!.ip}:8080`, xff: `${e.ip}, ${e.ip}`, requestId: true, filters: `inbound to ${b!.ip}:8080` });
  // A, selected, still gets both.
  t.is(nodes['node-a'].lab.get(ctx.pods.a!.netns, `http://${b!.ip}:8080/selected`).filters, `outbound to ${b!.ip}:8080, inbound to ${b!.ip}:8080`);
});

serial('match.ports: an inbound WasmFilter for port 8082 runs on B\'s h2c port and not on its port 8080', async (t) => {
  const { a, b } = ctx.pods;
  await apply(JSON.parse(wasmFilter('stamp-port', NS, { configMap: { name: 'headers-module', key: 'filter.wasm' }, selector: { matchLabels: { app: 'web' } }, match: [{ direction: 'INBOUND', ports: [8082] }], pluginConfig: { request: { add: [{ name: 'x-filtered', value: 'port 8082 only' }] } } })));
  await waitValidated(ctx.cluster.kube, NS, 'stamp-port', 'True');
  await acked('node-b', 'stamp-port limited to port 8082 for b', (c) => c.workloads.find((w: { name: string }) => w.name === 'b')?.filters.ports?.inbound?.['team-a.stamp-port']?.[0] === 8082);
  const lab = nodes['node-a'].lab;
  t.is(lab.get(a!.netns, `http://${b!.ip}:8080/port`).filters, `outbound to ${b!.ip}:8080, inbound to ${b!.ip}:8080`);
  t.is(lab.h2get(a!.netns, `http://${b!.ip}:8082/port`).filters, `outbound to ${b!.ip}:8082, inbound to ${b!.ip}:8082, port 8082 only`);
  await kubectl(['delete', 'wasmfilter', 'stamp-port', '-n', NS]);
});

serial('istio_* metrics carry both sides\' workloads: pod A to pod C on the same node, reported by the source and the destination', async (t) => {
  const { a, c } = ctx.pods;
  const lab = nodes['node-a'].lab;
  await lab.serve(c!);
  t.like(lab.get(a!.netns, `http://${c!.ip}:8080/labels`), { pod: 'c', local: `${c!.ip}:8080` });
  t.is(lab.tcp(a!.netns, c!.ip!, 9000, 'labels\n'), 'LABELS\n');
  const metrics = adminGet(nodes['node-a'], '/stats/prometheus');
  const pair = 'source_workload="client",source_workload_namespace="team-a",source_principal="spiffe://cluster.local/ns/team-a/sa/client-a",source_app="client",' +
    'destination_workload="c",destination_workload_namespace="team-a",destination_principal="spiffe://cluster.local/ns/team-a/sa/client-c",destination_app="client",connection_security_policy="mutual_tls"';
  const dst = (port: number) => `destination_service="${c!.ip}:${port}"`;
  t.true(metrics.includes(`istio_requests_total{reporter="source",${pair},request_protocol="http",response_code="200",${dst(8080)},sluice_listener="capture-outbound"} 1\n`), metrics);
  t.true(metrics.includes(`istio_requests_total{reporter="destination",${pair},request_protocol="http",response_code="200",${dst(8080)},sluice_listener="capture-inbound"} 1\n`), metrics);
  t.true(metrics.includes(`istio_tcp_connections_opened_total{reporter="source",${pair},${dst(9000)},sluice_listener="capture-outbound"} 1\n`), metrics);
  t.true(metrics.includes(`istio_tcp_connections_opened_total{reporter="destination",${pair},${dst(9000)},sluice_listener="capture-inbound"} 1\n`), metrics);
});

serial('across nodes too: node b reports A as the source, through the tunnel (mutual_tls)', async (t) => {
  const metrics = adminGet(nodes['node-b'], '/stats/prometheus');
  const pair = 'source_workload="client",source_workload_namespace="team-a",source_principal="spiffe://cluster.local/ns/team-a/sa/client-a",source_app="client",' +
    'destination_workload="b",destination_workload_namespace="team-a",destination_principal="spiffe://cluster.local/ns/team-a/sa/web",destination_app="web",connection_security_policy="mutual_tls"';
  t.regex(metrics, new RegExp(`istio_requests_total\\{reporter="destination",${pair.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')},request_protocol="http",response_code="200",destination_service="${ctx.pods.b!.ip!.replaceAll('.', '\\.')}:8080",sluice_listener="capture-inbound"\\} \\d+\n`));
});

serial('an authz WasmFilter on B allows A\'s ServiceAccount and denies C\'s, by the SPIFFE identity the tunnel verified', async (t) => {
  const { a, b, c } = ctx.pods;
  await kubectl(['create', 'configmap', 'authz-module', '-n', NS, `--from-file=filter.wasm=${join(repoRoot, 'build/filters/authz.wasm')}`]);
  await apply(JSON.parse(wasmFilter('only-client-a', NS, { configMap: { name: 'authz-module', key: 'filter.wasm' }, phase: 'AUTHZ', selector: { matchLabels: { app: 'web' } }, match: [{ direction: 'INBOUND' }], pluginConfig: { rules: [{ name: 'client-a', from: { principals: ['spiffe://cluster.local/ns/team-a/sa/client-a'] } }] } })));
  await waitValidated(ctx.cluster.kube, NS, 'only-client-a', 'True');
  await acked('node-b', 'the authz filter on b', (c) => c.workloads.find((w: { name: string }) => w.name === 'b')?.filters.inbound.includes('team-a.only-client-a'));
  const lab = nodes['node-a'].lab;
  t.deepEqual(rawGet(lab, a!.netns, `http://${b!.ip}:8080/secret`).status, 200);
  t.deepEqual(rawGet(lab, c!.netns, `http://${b!.ip}:8080/secret`), { status: 403, body: 'authz: denied: no rule allows spiffe://cluster.local/ns/team-a/sa/client-c GET /secret\n' });
  await kubectl(['delete', 'wasmfilter', 'only-client-a', '-n', NS]);
  await acked('node-b', 'no authz filter on b', (c) => !c.workloads.find((w: { name: string }) => w.name === 'b')?.filters.inbound.includes('team-a.only-client-a'));
});

serial('an opted-out pod bypasses the proxy: its requests carry no filter and no x-forwarded-for from its own node', async (t) => {
  const { b } = ctx.pods;
  // Opted out by annotation: ADD leaves its netns without rules.
  const d = await pod('d', nodes['node-a'], 'client-a', { app: 'client' }, { 'sluice.dev/capture': 'disabled' });
  t.is(nodes['node-a'].lab.nft(d, 'list', 'ruleset').stdout, '');
  // B's inbound side still passes B's proxy: one x-forwarded-for entry (d), the inbound filter only.
  t.deepEqual(nodes['node-a'].lab.get(d.netns, `http://${b!.ip}:8080/bypass`), { pod: 'b', remote: b!.ip!, local: `${b!.ip}:8080`, xff: d.ip!, requestId: true, filters: `inbound to ${b!.ip}:8080` });
});

serial('a restarted node proxy takes its pods over again; the gap is measured', async (t) => {
  const { a, b } = ctx.pods;
  const n = nodes['node-a'];
  const exited = new Promise((r) => n.agent!.once('exit', r));
  const stopped = performance.now();
  n.agent!.kill('SIGTERM');
  await exited;
  await startAgent(n);
  // The first request that gets through after the restart.
  let answer: Record<string, string | boolean> | undefined;
  await until('A to reach B again', () => {
    try {
      answer = n.lab.get(a!.netns, `http://${b!.ip}:8080/again`);
      return true;
    } catch {
      return undefined;
    }
  }, 60_000);
  t.log(`traffic from A resumed ${Math.round(performance.now() - stopped)} ms after SIGTERM to node-a's agent (restart included)`);
  t.deepEqual(answer, { pod: 'b', remote: b!.ip!, local: `${b!.ip}:8080`, xff: `${a!.ip}, ${a!.ip}`, requestId: true, filters: `outbound to ${b!.ip}:8080, inbound to ${b!.ip}:8080` });
});

serial('an upgrade of both nodes\' proxies with a surge drops no request from A to B: each new agent starts beside the old one, which then gets SIGTERM', async (t) => {
  const { a, b } = ctx.pods;
  const lab = nodes['node-a'].lab;
  // The agents so far drain for 0 ms (their tunnel streams are cut at once): restarted with a drain first.
  for (const n of Object.values(nodes)) {
    const old = n.agent!;
    old.kill('SIGTERM');
    await new Promise((r) => (old.exitCode !== null ? r(undefined) : old.once('exit', r)));
    await startAgent(n, 5000);
  }
  await until('A to reach B again', () => (rawGet(lab, a!.netns, `http://${b!.ip}:8080/ready`).status === 200 ? true : undefined), 60_000);
  const stop = join(ctx.dir, 'stop-upgrade');
  const client = await lab.requestLoop(a!.netns, `http://${b!.ip}:8080/upgrade`, stop);
  // B's side first (its tunnel port and B's inbound capture), then A's (A's outbound capture).
  for (const name of ['node-b', 'node-a'] as const) {
    const n = nodes[name];
    const old = n.agent!;
    await new Promise((r) => setTimeout(r, 300));
    await startAgent(n, 5000);
    t.regex(n.agent!.output(), name === 'node-b' ? /capture: pod team-a\/b captured/ : /capture: pod team-a\/a captured/);
    // It joined the shared ports only once it had its workloads' certificates (the old one served meanwhile).
    t.regex(n.agent!.output(), /another proxy serves this node's pods; taking them over once this one has /);
    await new Promise((r) => setTimeout(r, 300));
    const exited = new Promise<number | null>((r) => old.once('exit', (code) => r(code)));
    old.kill('SIGTERM');
    t.is(await exited, 0);
  }
  await new Promise((r) => setTimeout(r, 300));
  const result = await lab.requestLoopResult(client, stop);
  t.log(`across two node upgrades: ${result.ok} requests on new connections succeeded, ${result.failed} failed`, result.codes, result.bodies);
  t.deepEqual({ failed: result.failed, codes: result.codes, filters: Object.keys(result.filters) }, { failed: 0, codes: {}, filters: [`outbound to ${b!.ip}:8080, inbound to ${b!.ip}:8080`] });
  t.true(result.ok > 50, `only ${result.ok} requests were made`);
});

serial('pod deleted: its rules go with DEL; DEL again succeeds; CHECK after tampering fails', async (t) => {
  const { c } = ctx.pods;
  const lab = nodes['node-a'].lab;
  t.is(lab.cni('check', c!).status, 0);
  // Tampering: the pod's sluice table removed behind the plugin's back.
  t.is(lab.nft(c!, 'delete', 'table', 'ip', 'sluice').status, 0);
  const check = lab.cni('check', c!);
  t.is(check.status, 1);
  t.regex(JSON.parse(check.stdout).msg, /sluice/);
  t.is(lab.cni('del', c!).status, 0);
  t.is(lab.nft(c!, 'list', 'ruleset').stdout, '');
  t.is(lab.cni('del', c!).status, 0);
  t.false((await lab.api('GET', '/v1/pods')).body.pods.some((p: { name: string }) => p.name === 'c'));
});
