// DiscoveryNodeConfigSource against a real kube-apiserver, with the controller's RBAC: Pods on two
// nodes, Services, EndpointSlices and a WasmFilter validated by the real controller become each
// node's own configuration; a pod deleted or an EndpointSlice changed gives a new version only to
// the nodes it concerns.
import test from 'ava';
import { Controller, silentLogger } from '../../controller/index.ts';
import { loadKubeConfig } from '../../controller/controller.ts';
import { DiscoveryNodeConfigSource } from '../../controller/discovery/source.ts';
import type { NodeConfig } from '../../controller/distribution/types.ts';
import { cond, moduleServer, modules, sha256, startControllerCluster, waitValidated, wasmFilter, type ControllerCluster, type ModuleServer } from '../helpers/controller-env.ts';

let env: ControllerCluster;
let server: ModuleServer;
let controller: Controller;
let source: DiscoveryNodeConfigSource;

const hello = modules.hello();
const helloSha = sha256(hello);

const pod = (ns: string, name: string, node: string, labels: Record<string, string>, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { namespace: ns, name, labels }, spec: { nodeName: node, serviceAccountName: 'web', containers: [{ name: 'c', image: 'example/app' }], ...extra } });
const service = (ns: string, name: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: ns, name }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
const slice = (ns: string, svc: string, readyIps: string[], unready: string[] = []) =>
  JSON.stringify({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: ns, name: `${svc}-1`, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: [...readyIps.map((ip) => ({ addresses: [ip], conditions: { ready: true } })), ...unready.map((ip) => ({ addresses: [ip], conditions: { ready: false } }))],
  });

const list = (...items: string[]) => JSON.stringify({ apiVersion: 'v1', kind: 'List', items: items.map((i) => JSON.parse(i)) });

test.before(async () => {
  env = await startControllerCluster();
  server = await moduleServer();
  server.set('/hello.wasm', hello);
  const kubeConfig = loadKubeConfig(env.controllerKubeconfig);
  controller = new Controller({ kubeConfig, listen: '127.0.0.1:0', grpcListen: '127.0.0.1:0', leaseDurationMs: 3000, baseRetryMs: 200, maxRetryMs: 1000, log: silentLogger });
  await controller.start();
  source = new DiscoveryNodeConfigSource({
    kubeConfig,
    log: silentLogger,
    rootNamespace: 'sluice-system',
    debounceMs: 20,
    modules: { get: (d) => controller.moduleByDigest(d), onModule: (l) => controller.onModule(l) },
  });
});

test.after.always(async () => {
  source?.stop();
  await controller?.stop();
  await server?.close();
  await env?.kube.close();
});

/** Resolves with the next config given to `node`'s watcher for which `until` holds. */
function next(configs: Map<string, NodeConfig[]>, node: string, until: (c: NodeConfig) => boolean, timeoutMs = 20_000): Promise<NodeConfig> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      const c = configs.get(node)?.at(-1);
      if (c && until(c)) return resolve(c);
      if (Date.now() - started > timeoutMs) return reject(new Error(`${node}: no matching config; last ${c?.config}`));
      setTimeout(poll, 50);
    };
    poll();
  });
}

test.serial('each node gets exactly its pods, the services, and the validated filter; a change gives a new version only where it matters', async (t) => {
  const k = env.kube;
  await k.kubectlOk(['create', 'serviceaccount', 'web', '-n', 'team-a']);
  await k.kubectlOk(['apply', '-f', '-'], { input: list(pod('team-a', 'web-1', 'node-1', { app: 'web' }), pod('team-a', 'web-2', 'node-2', { app: 'web' }), pod('team-a', 'db-1', 'node-2', { app: 'db' })) });
  await k.kubectlOk(['apply', '-f', '-'], { input: list(service('team-a', 'cart'), slice('team-a', 'cart', ['10.0.0.1', '10.0.0.2'], ['10.0.0.3'])) });
  await k.kubectlOk(['apply', '-f', '-'], { input: wasmFilter('hello', 'team-a', { url: server.url('/hello.wasm'), sha256: helloSha, selector: { matchLabels: { app: 'web' } }, match: [{ direction: 'INBOUND' }], phase: 'AUTHZ' }) });
  await waitValidated(k, 'team-a', 'hello', 'True');

  await source.start();
  const configs = new Map<string, NodeConfig[]>();
  for (const node of ['node-1', 'node-2', 'node-3']) source.watch(node, (c) => configs.set(node, [...(configs.get(node) ?? []), c]));
  const hasFilter = (c: NodeConfig) => c.config.includes('team-a.hello');
  const n1 = await next(configs, 'node-1', hasFilter);
  const n2 = await next(configs, 'node-2', hasFilter);
  const n3 = await next(configs, 'node-3', () => true);

  const doc = (c: NodeConfig) => JSON.parse(c.config);
  t.deepEqual(doc(n1).workloads.map((w: { name: string; identity: string; filters: unknown }) => [w.name, w.identity, w.filters]), [['web-1', 'spiffe://cluster.local/ns/team-a/sa/web', { outbound: [], inbound: ['team-a.hello'] }]]);
  t.deepEqual(doc(n2).workloads.map((w: { name: string; filters: unknown }) => [w.name, w.filters]), [
    ['db-1', { outbound: [], inbound: [] }],
    ['web-2', { outbound: [], inbound: ['team-a.hello'] }],
  ]);
  // The API server gave the Service a ClusterIP: it is the cluster's Service address.
  const clusterIp = (await k.kubectlOk(['get', 'service', 'cart', '-n', 'team-a', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  t.deepEqual(doc(n1).clusters, [{ name: 'cart.team-a.svc.cluster.local_80', endpoints: ['10.0.0.1:8080', '10.0.0.2:8080'], vips: [`${clusterIp}:80`] }]);
  t.deepEqual(doc(n1).filters, [{ name: 'team-a.hello', module: `${helloSha}.wasm`, failStrategy: 'FAIL_CLOSE' }]);
  t.deepEqual(doc(n1).listeners.map((l: { name: string; filters: string[] }) => [l.name, l.filters]), [['capture-outbound', []], ['capture-inbound', ['team-a.hello']]]);
  t.deepEqual([...n1.modules.keys()], [helloSha]);
  t.is(sha256(n1.modules.get(helloSha)!), helloSha);
  t.deepEqual([doc(n3).workloads, doc(n3).clusters, n3.modules.size], [[], [], 0]);

  // A late watcher gets the current config at once.
  const late = await new Promise<NodeConfig>((r) => source.watch('node-1', r));
  t.is(late.version, n1.version);

  // Deleting a pod on node-2 changes node-2 only.
  await k.kubectlOk(['delete', 'pod', 'db-1', '-n', 'team-a', '--grace-period=0', '--force', '--wait=false']);
  const n2b = await next(configs, 'node-2', (c) => c.version !== n2.version);
  t.deepEqual(doc(n2b).workloads.map((w: { name: string }) => w.name), ['web-2']);

  // An endpoint becoming ready changes the nodes with workloads (both), not node-3, which has none.
  await k.kubectlOk(['apply', '-f', '-'], { input: slice('team-a', 'cart', ['10.0.0.1', '10.0.0.2', '10.0.0.3']) });
  const n1c = await next(configs, 'node-1', (c) => c.version !== n1.version);
  const n2c = await next(configs, 'node-2', (c) => c.version !== n2b.version);
  t.deepEqual(doc(n1c).clusters[0].endpoints, ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
  t.deepEqual(doc(n2c).clusters, doc(n1c).clusters);
  // Everything above has settled by now (the flush after the slice event ran): node-3 never got a second version, node-1 exactly two.
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(configs.get('node-3')!.map((c) => c.version), [n3.version]);
  t.deepEqual(configs.get('node-1')!.map((c) => c.version), [n1.version, n1c.version]);
});

test.serial('a filter with no version in force: FAIL_CLOSE and FAIL_RELOAD ones go to the nodes as unavailable entries (no module) with the reason; FAIL_OPEN ones are left out', async (t) => {
  const k = env.kube;
  const wrong = '0'.repeat(64);
  const broken = (name: string, failStrategy: string, match: Array<Record<string, unknown>>) =>
    k.kubectlOk(['apply', '-f', '-'], { input: wasmFilter(name, 'team-a', { url: server.url('/hello.wasm'), sha256: wrong, failStrategy, selector: { matchLabels: { app: 'web' } }, match }) });
  await broken('guard', 'FAIL_CLOSE', [{ direction: 'INBOUND' }]);
  await broken('reloader', 'FAIL_RELOAD', [{ direction: 'OUTBOUND', ports: [8080] }]);
  await broken('opener', 'FAIL_OPEN', []);
  const guard = await waitValidated(k, 'team-a', 'guard', 'False');
  await waitValidated(k, 'team-a', 'reloader', 'False');
  await waitValidated(k, 'team-a', 'opener', 'False');
  const why = cond(guard, 'Validated')!;
  t.is(why.reason, 'DigestMismatch');

  const configs = new Map<string, NodeConfig[]>();
  const stop = source.watch('node-1', (c) => configs.set('node-1', [...(configs.get('node-1') ?? []), c]));
  try {
    const n1 = await next(configs, 'node-1', (c) => c.config.includes('team-a.guard') && c.config.includes('team-a.reloader'));
    const doc = JSON.parse(n1.config);
    const reason = `the controller could not validate it: DigestMismatch: ${why.message.replace(/\s+/g, ' ').trim()}`;
    // In chain order: hello is AUTHZ, the others UNSPECIFIED. The reason is cut to 300 characters.
    t.deepEqual(doc.filters, [
      { name: 'team-a.hello', module: `${helloSha}.wasm`, failStrategy: 'FAIL_CLOSE' },
      { name: 'team-a.guard', unavailable: reason.length > 300 ? `${reason.slice(0, 299)}…` : reason, failStrategy: 'FAIL_CLOSE' },
      { name: 'team-a.reloader', unavailable: doc.filters[2].unavailable, failStrategy: 'FAIL_RELOAD' },
    ]);
    t.regex(doc.filters[2].unavailable, /^the controller could not validate it: DigestMismatch: /);
    // Selected like any filter, in the workload's chains and the listeners' (the opener nowhere).
    t.deepEqual(doc.workloads.map((w: { name: string; filters: unknown }) => [w.name, w.filters]), [['web-1', { outbound: ['team-a.reloader'], inbound: ['team-a.hello', 'team-a.guard'], ports: { outbound: { 'team-a.reloader': [8080] } } }]]);
    t.deepEqual(doc.listeners.map((l: { name: string; filters: string[] }) => [l.name, l.filters]), [['capture-outbound', ['team-a.reloader']], ['capture-inbound', ['team-a.hello', 'team-a.guard']]]);
    t.false(n1.config.includes('team-a.opener'));
    // No module to send for them, and no version a node could report ready.
    t.deepEqual([...n1.modules.keys()], [helloSha]);
    t.deepEqual(n1.filters?.map((f) => f.key), ['team-a/hello']);

    // Fixed: the guard validates and its module replaces the unavailable entry.
    await k.kubectlOk(['patch', 'wasmfilter', 'guard', '-n', 'team-a', '--type=merge', '-p', JSON.stringify({ spec: { sha256: helloSha } })]);
    await waitValidated(k, 'team-a', 'guard', 'True');
    const fixed = await next(configs, 'node-1', (c) => c.config.includes(`"name":"team-a.guard","module"`));
    t.deepEqual(JSON.parse(fixed.config).filters[1], { name: 'team-a.guard', module: `${helloSha}.wasm`, failStrategy: 'FAIL_CLOSE' });
    t.deepEqual(fixed.filters?.map((f) => f.key), ['team-a/hello', 'team-a/guard']);
  } finally {
    stop();
    await k.kubectlOk(['delete', 'wasmfilter', 'guard', 'reloader', 'opener', '-n', 'team-a']);
  }
});

test.serial('every replica holds the modules in force: a follower fetches them once without validating, and so does a leader restarted with an empty memory', async (t) => {
  const kubeConfig = loadKubeConfig(env.controllerKubeconfig);
  const hitsBefore = server.hits('/hello.wasm');
  const follower = new Controller({ kubeConfig, listen: '127.0.0.1:0', grpcListen: '127.0.0.1:0', leaseDurationMs: 3000, baseRetryMs: 200, maxRetryMs: 1000, log: silentLogger });
  const seen: string[] = [];
  follower.onModule((d) => seen.push(d));
  await follower.start();
  try {
    t.false(follower.elector.isLeader);
    await until(() => follower.moduleByDigest(helloSha) !== undefined);
    t.is(sha256(follower.moduleByDigest(helloSha)!), helloSha);
    t.deepEqual(seen, [helloSha]);
    t.is(server.hits('/hello.wasm'), hitsBefore + 1);
  } finally {
    await follower.stop();
  }

  // The leader goes; a fresh one (nothing in memory) finds the filter validated and unchanged,
  // and still fetches its module once.
  source.stop();
  await controller.stop();
  const fresh = new Controller({ kubeConfig, listen: '127.0.0.1:0', grpcListen: '127.0.0.1:0', leaseDurationMs: 3000, baseRetryMs: 200, maxRetryMs: 1000, log: silentLogger });
  controller = fresh;
  await fresh.start();
  await until(() => fresh.elector.isLeader && fresh.moduleByDigest(helloSha) !== undefined, 20_000);
  t.is(server.hits('/hello.wasm'), hitsBefore + 2);
});

async function until(cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
