// Node mode end to end against a real kube-apiserver, with discovery: workload Pods on two nodes,
// a Service with an EndpointSlice of those Pods, a controller computing each
// node's config, and two real `sluice run --controller` processes. A WasmFilter of the headers
// filter applied with kubectl (module from a ConfigMap) reaches both nodes and shows on traffic
// through each node proxy; deleted, it is gone; agents restarted while the controller is down
// serve their last good config from disk.
import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller, silentLogger } from '../../controller/index.ts';
import { hasK8sBinaries } from '../helpers/kube-apiserver.ts';
import { cond, eventually, getFilter, modules, sha256, startControllerCluster, waitValidated, wasmFilter, type ControllerCluster } from '../helpers/controller-env.ts';
import { filterWasm } from '../helpers/fixtures.ts';
import { spawnSluice, until } from '../helpers/sluice-run.ts';

const NODES = ['node-a', 'node-b'] as const;
type Node = (typeof NODES)[number];
const FILTER = 'team-a.add-header';
const HEADER = 'x-sluice-filter';
const digest = sha256(modules.headers());

interface Agent {
  proc: ReturnType<typeof spawnSluice>;
  /** Listener name -> port, from the process's "listening" log lines. */
  ports: Record<string, number>;
}

interface Ctx {
  cluster: ControllerCluster;
  controller?: Controller;
  dir: string;
  agents: Partial<Record<Node, Agent>>;
}
const ctx = { agents: {} } as Ctx;

const filterSpec = {
  configMap: { name: 'headers-module', key: 'filter.wasm' },
  selector: { matchLabels: { app: 'web' } },
  pluginConfig: { response: { set: [{ name: HEADER, value: 'team-a/add-header' }] } },
};

async function startAgent(node: Node): Promise<Agent> {
  const proc = spawnSluice([
    'run', '--controller', `127.0.0.1:${ctx.controller!.distributionPort}`, '--node-name', node,
    '--token-file', join(ctx.dir, `token-${node}`), '--state-dir', join(ctx.dir, `state-${node}`),
    '--controller-ca', join(ctx.dir, 'root-cert.pem'), '--admin-address', '127.0.0.1:0', '--drain-ms', '0',
  ]);
  const names = ['admin', 'capture-outbound', 'capture-inbound'];
  const ports = await until(`${node} serving; it said:\n${proc.stderr()}`, () => {
    if (proc.child.exitCode !== null) throw new Error(`${node} exited with ${proc.child.exitCode}:\n${proc.stderr()}`);
    const found = names.map((n) => new RegExp(`"${n} listening on [^:]+:(\\d+)"`).exec(proc.stderr())?.[1]);
    return found.every(Boolean) ? Object.fromEntries(names.map((n, i) => [n, Number(found[i])])) : undefined;
  }, 60_000);
  return { proc, ports };
}

async function kill(agent: Agent | undefined): Promise<void> {
  if (agent && agent.proc.child.exitCode === null) {
    agent.proc.child.kill('SIGKILL');
    await agent.proc.exited;
  }
}

/** Waits until `node` ACKed discovery's current config for it and `check` holds for that config (a filter not validated yet is in it as `unavailable`, without `module`). */
async function acked(node: Node, what: string, check: (config: { filters?: Array<{ name: string; module?: string }> }) => boolean): Promise<string> {
  return until(`${node}: ${what}`, () => {
    const current = ctx.controller!.discovery!.current(node);
    const r = ctx.controller!.distribution.nodes().get(node);
    if (!current || !check(JSON.parse(current.config)) || r?.version !== current.version || !r.acked) return undefined;
    return current.version;
  }, 60_000);
}

/** A request to a node proxy's listener: the status, the filter's header (null if absent), the body. */
async function through(node: Node, listener: 'capture-outbound' | 'capture-inbound'): Promise<{ status: number; header: string | null; body: string }> {
  const r = await fetch(`http://127.0.0.1:${ctx.agents[node]!.ports[listener]}/orders/7`, { headers: { host: 'web.team-a.svc.cluster.local' } });
  return { status: r.status, header: r.headers.get(HEADER), body: await r.text() };
}

const admin = async (node: Node, page: string): Promise<any> => (await fetch(`http://127.0.0.1:${ctx.agents[node]!.ports.admin}${page}`)).json();

const LOCAL_REPLY = { status: 404, body: 'sluice: captured traffic only\n' };

test.before(async () => {
  if (!hasK8sBinaries()) throw new Error('Kubernetes test binaries missing: run scripts/build-k8s.sh');
  ctx.cluster = await startControllerCluster();
  const k = ctx.cluster.kube;
  ctx.dir = await mkdtemp(join(tmpdir(), 'sluice-e2e-'));
  const apply = (o: object) => k.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify(o) });
  const pod = (namespace: string, name: string, node: string, extra: object) =>
    apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels: { app: name.startsWith('web') ? 'web' : 'sluice' } }, spec: { nodeName: node, containers: [{ name: 'c', image: 'example:test' }], ...extra } });
  await k.kubectlOk(['create', 'serviceaccount', 'web', '-n', 'team-a']);
  for (const node of NODES) {
    // The DaemonSet's pod (host network: not a workload), whose bound token identifies the agent.
    await pod('sluice-system', `agent-${node}`, node, { serviceAccountName: 'sluice-node', hostNetwork: true });
    await pod('team-a', `web-${node}`, node, { serviceAccountName: 'web' });
    const token = await k.kubectlOk(['create', 'token', 'sluice-node', '-n', 'sluice-system', '--audience=sluice', '--bound-object-kind=Pod', `--bound-object-name=agent-${node}`, '--duration=3600s']);
    await writeFile(join(ctx.dir, `token-${node}`), token.trim());
  }
  // The web pods are the Service's endpoints. EndpointSlices refuse loopback addresses, so these
  // are pod-network addresses: they appear in each node's clusters; nothing connects to them.
  for (const [node, ip] of [['node-a', '10.244.1.5'], ['node-b', '10.244.2.5']]) {
    await k.kubectlOk(['patch', 'pod', `web-${node}`, '-n', 'team-a', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } })]);
  }
  await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'team-a' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
  await apply({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'web-1', namespace: 'team-a', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.244.1.5'], conditions: { ready: true } }, { addresses: ['10.244.2.5'], conditions: { ready: true } }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  });
  await k.kubectlOk(['create', 'configmap', 'headers-module', '-n', 'team-a', `--from-file=filter.wasm=${filterWasm('headers')}`]);
  ctx.controller = new Controller({ kubeconfig: ctx.cluster.controllerKubeconfig, listen: '127.0.0.1:0', grpcListen: '127.0.0.1:0', grpcTlsIps: ['127.0.0.1'], log: silentLogger });
  await ctx.controller.start();
  // The agents verify the controller over TLS with the trust bundle it published, as the DaemonSet mounts it.
  const root = await k.kubectlOk(['get', 'configmap', 'sluice-ca-root', '-n', 'sluice-system', '-o', 'jsonpath={.data.root-cert\\.pem}']);
  await writeFile(join(ctx.dir, 'root-cert.pem'), root);
  for (const node of NODES) ctx.agents[node] = await startAgent(node);
});

test.after.always(async () => {
  for (const node of NODES) await kill(ctx.agents[node]);
  await ctx.controller?.stop();
  await ctx.cluster?.kube.close();
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true });
});

test.serial('before any WasmFilter: each node serves discovery\'s config, the Service as a cluster, its capture listeners answering direct clients locally', async (t) => {
  for (const node of NODES) {
    await acked(node, 'ACKs a config without filters', (c) => (c.filters ?? []).length === 0);
    const dump = await admin(node, '/config_dump');
    t.deepEqual(dump.clusters.map((c: { name: string; endpoints: Array<{ host: string; port: number }> }) => ({ name: c.name, endpoints: c.endpoints.map((e) => `${e.host}:${e.port}`) })), [
      { name: 'web.team-a.svc.cluster.local_80', endpoints: ['10.244.1.5:8080', '10.244.2.5:8080'] },
    ]);
    t.deepEqual(dump.workloads.map((w: { namespace: string; name: string; identity: string; addresses: string[] }) => `${w.namespace}/${w.name} ${w.identity} ${w.addresses}`), [`team-a/web-${node} spiffe://cluster.local/ns/team-a/sa/web ${node === 'node-a' ? '10.244.1.5' : '10.244.2.5'}`]);
    t.deepEqual(await admin(node, '/filters'), []);
    t.deepEqual(await through(node, 'capture-outbound'), { ...LOCAL_REPLY, header: null });
    t.deepEqual(await through(node, 'capture-inbound'), { ...LOCAL_REPLY, header: null });
  }
  // Two agents on one host: each has its own admin port (--admin-address 127.0.0.1:0), not 15000.
  t.not(ctx.agents['node-a']!.ports.admin, ctx.agents['node-b']!.ports.admin);
});

test.serial('kubectl apply of a WasmFilter (headers filter from a ConfigMap): both nodes load it and their traffic shows it', async (t) => {
  const k = ctx.cluster.kube;
  await k.kubectlOk(['apply', '-f', '-'], { input: wasmFilter('add-header', 'team-a', filterSpec) });
  const f = await waitValidated(k, 'team-a', 'add-header', 'True');
  t.is(f.status?.digest, `sha256:${digest}`);
  for (const node of NODES) {
    await acked(node, `ACKs a config with ${FILTER}`, (c) => (c.filters ?? []).some((x) => x.name === FILTER && x.module !== undefined));
    t.deepEqual(await through(node, 'capture-outbound'), { ...LOCAL_REPLY, header: 'team-a/add-header' });
    t.deepEqual(await through(node, 'capture-inbound'), { ...LOCAL_REPLY, header: 'team-a/add-header' });
    const filters = (await admin(node, '/filters')) as Array<{ name: string; module: string; state: string }>;
    t.deepEqual(filters.map((x) => [x.name, x.state]), [[FILTER, 'active']]);
    const dump = await admin(node, '/config_dump');
    t.deepEqual(dump.listeners.map((l: { name: string; filters: string[] }) => [l.name, l.filters]), [['capture-outbound', [FILTER]], ['capture-inbound', [FILTER]]]);
    // The module reached the agent's content-addressed cache by digest.
    t.is(sha256(new Uint8Array(await readFile(join(ctx.dir, `state-${node}`, 'modules', `${digest}.wasm`)))), digest);
  }
  // Both nodes' ACKs come back to the WasmFilter's status.
  const ready = await eventually('status.nodes to count both nodes', async () => {
    const now = await getFilter(k, 'team-a', 'add-header');
    return now.status?.nodes?.ready === 2 && cond(now, 'Ready')?.status === 'True' ? now : undefined;
  }, 30_000);
  t.deepEqual(ready.status?.nodes, { ready: 2, total: 2 });
  t.like(cond(ready, 'Ready'), { status: 'True', reason: 'NodesReady' });
});

test.serial('kubectl delete of the WasmFilter: both nodes drop it and their traffic no longer shows it', async (t) => {
  await ctx.cluster.kube.kubectlOk(['delete', 'wasmfilter', 'add-header', '-n', 'team-a']);
  for (const node of NODES) {
    await acked(node, 'ACKs a config without filters', (c) => (c.filters ?? []).length === 0);
    t.deepEqual(await through(node, 'capture-outbound'), { ...LOCAL_REPLY, header: null });
    t.deepEqual(await through(node, 'capture-inbound'), { ...LOCAL_REPLY, header: null });
    t.deepEqual(await admin(node, '/filters'), []);
  }
});

test.serial('a FAIL_CLOSE WasmFilter whose module cannot be fetched: the nodes refuse what it selects with a 503 naming it; deleted, traffic flows again', async (t) => {
  const k = ctx.cluster.kube;
  await k.kubectlOk(['apply', '-f', '-'], { input: wasmFilter('guard', 'team-a', { configMap: { name: 'headers-module', key: 'missing.wasm' }, selector: { matchLabels: { app: 'web' } }, failStrategy: 'FAIL_CLOSE' }) });
  const f = await waitValidated(k, 'team-a', 'guard', 'False');
  const reason = cond(f, 'Validated')!;
  for (const node of NODES) {
    await acked(node, 'ACKs a config with the unavailable team-a.guard', (c) => (c.filters ?? []).some((x) => x.name === 'team-a.guard'));
    const entry = (JSON.parse(ctx.controller!.discovery!.current(node)!.config).filters as Array<{ name: string; unavailable?: string }>).find((x) => x.name === 'team-a.guard')!;
    const unavailable = entry.unavailable!;
    t.true(unavailable.startsWith(`the controller could not validate it: ${reason.reason}: ${reason.message.slice(0, 40)}`), unavailable);
    for (const listener of ['capture-outbound', 'capture-inbound'] as const) {
      const r = await fetch(`http://127.0.0.1:${ctx.agents[node]!.ports[listener]}/orders/7`, { headers: { host: 'web.team-a.svc.cluster.local' } });
      t.is(r.status, 503);
      t.is(r.headers.get('x-sluice-filter-failed'), 'team-a.guard');
      t.is(await r.text(), `sluice: filter "team-a.guard" is unavailable on this node (${unavailable}); the request was refused (failStrategy FAIL_CLOSE)\n`);
    }
    const filters = (await admin(node, '/filters')) as Array<{ name: string; state: string; failStrategy: string }>;
    t.deepEqual(filters.map((x) => [x.name, x.state, x.failStrategy]), [['team-a.guard', 'unavailable', 'FAIL_CLOSE']]);
  }
  // Never ready anywhere: no node runs a version of it.
  t.deepEqual((await getFilter(k, 'team-a', 'guard')).status?.nodes ?? { ready: 0, total: 0 }, { ready: 0, total: 0 });

  await k.kubectlOk(['delete', 'wasmfilter', 'guard', '-n', 'team-a']);
  for (const node of NODES) {
    await acked(node, 'ACKs a config without filters', (c) => (c.filters ?? []).length === 0);
    t.deepEqual(await through(node, 'capture-inbound'), { ...LOCAL_REPLY, header: null });
  }
});

test.serial('agents restarted while the controller is down serve their last good config (the filter) from disk', async (t) => {
  await ctx.cluster.kube.kubectlOk(['apply', '-f', '-'], { input: wasmFilter('add-header', 'team-a', filterSpec) });
  const versions: Partial<Record<Node, string>> = {};
  for (const node of NODES) versions[node] = await acked(node, `ACKs a config with ${FILTER} again`, (c) => (c.filters ?? []).some((x) => x.name === FILTER && x.module !== undefined));
  await ctx.controller!.stop();
  for (const node of NODES) {
    await kill(ctx.agents[node]);
    ctx.agents[node] = await startAgent(node);
    // Listening is said while the config is applied, the source of it just after: wait for both.
    const line = new RegExp(`serving the last good config from disk \\(version ${versions[node]}\\)`);
    await until(`${node} to say it serves from disk; it said:\n${ctx.agents[node]!.proc.stderr()}`, () => line.test(ctx.agents[node]!.proc.stderr()) || undefined);
    t.deepEqual(await through(node, 'capture-outbound'), { ...LOCAL_REPLY, header: 'team-a/add-header' });
    t.deepEqual(await through(node, 'capture-inbound'), { ...LOCAL_REPLY, header: 'team-a/add-header' });
  }
});

test.serial('--admin-address is for node mode: with -c the config file says where the admin listens', async (t) => {
  const p = spawnSluice(['run', '-c', join(ctx.dir, 'unused.yaml'), '--admin-address', '127.0.0.1:0']);
  t.is(await p.exited, 2);
  t.is(p.stderr(), 'sluice run: --node-name, --token-file, --state-dir, --controller-ca, --controller-plaintext and --admin-address are for node mode (with -c the config file sets admin.address); add --controller HOST:PORT\n');
});
