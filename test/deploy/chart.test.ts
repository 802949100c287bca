// The Helm chart deploy/charts/sluice: its generated files match deploy/ (CRDs byte for byte,
// RBAC object for object), the real helm lints and renders it with default and other values, the
// real API server accepts the rendered objects (server-side dry run, then for real), and the real
// `sluice controller`, started with the chart's own arguments and a token of the chart's
// ServiceAccount, reconciles a WasmFilter with the chart's RBAC; then the node agent, started with
// the DaemonSet's arguments and a token like its projected one, gets that filter from it.
import { spawn } from 'node:child_process';
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { parseAllDocuments } from 'yaml';
import { captureUnavailable } from '../../runtime/capture/index.ts';
import { CHART_DIR, chartGeneratedFiles, rbacTemplate } from '../../scripts/chart-files.ts';
import { moduleServer, modules, sha256, waitValidated, wasmFilter, type ModuleServer } from '../helpers/controller-env.ts';
import { repoRoot } from '../helpers/fixtures.ts';
import { helm, runHelm } from '../helpers/helm.ts';
import { hasK8sBinaries, startKube, type KubeCluster } from '../helpers/kube-apiserver.ts';
import { spawnSluice, until } from '../helpers/sluice-run.ts';
import { failUnless, skipUnless } from '../helpers/skip-unless.ts';

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: any };

const why = helm().why;
// npm test builds helm and the Kubernetes binaries: without them these tests fail, not skip.
const helmTest = failUnless(why);
const kubeWhy = why ?? (hasK8sBinaries() ? undefined : 'the Kubernetes test binaries are missing: run scripts/build-k8s.sh');
const kubeTest = failUnless(kubeWhy);

const KUBE_VERSION = '1.32.0';
const NON_DEFAULT = [
  '--set', 'node.capture.enabled=false',
  '--set', 'node.maxSurge=0',
  '--set', 'node.maxUnavailable=10%',
  '--set', 'node.controllerCA=false',
  '--set', 'metrics.serviceMonitor.enabled=true',
  '--set', 'metrics.podAnnotations=false',
  '--set', 'controller.networkPolicy.enabled=false',
  '--set', 'controller.podDisruptionBudget.enabled=false',
  '--set', 'controller.replicas=3',
  '--set', 'image.registry=registry.example.com/sluice',
  '--set', 'image.node.tag=0.1.0-rc1',
  '--set-json', 'imagePullSecrets=["regcred"]',
  '--set-json', 'controller.networkPolicy.grpcFrom=[{"ipBlock":{"cidr":"10.0.0.0/16"}}]',
];

const render = (extra: string[] = [], namespace = 'sluice-system'): string =>
  runHelm(['template', 'sluice', CHART_DIR, '--namespace', namespace, '--kube-version', KUBE_VERSION, ...extra]);
const objects = (yaml: string): Obj[] => parseAllDocuments(yaml).map((d) => d.toJSON()).filter((o): o is Obj => o !== null);
const find = (objs: Obj[], kind: string, name: string): Obj => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in the rendered chart (${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')})`);
  return o;
};
const withoutLabels = (o: Obj): Obj => {
  const { labels: _labels, ...metadata } = o.metadata;
  return { ...o, metadata };
};

test('the chart\'s CRDs and RBAC are the ones generated from deploy/ (npm run gen-crds)', async (t) => {
  for (const [name, text] of Object.entries(chartGeneratedFiles())) {
    t.is(await readFile(join(CHART_DIR, name), 'utf8'), text, `deploy/charts/sluice/${name} is stale: run \`npm run gen-crds\` and commit it`);
  }
  t.is(readFileSync(join(CHART_DIR, 'crds/wasmfilter.yaml'), 'utf8'), readFileSync(`${repoRoot}deploy/crds/wasmfilter.yaml`, 'utf8'));
});

test('the RBAC template generator refuses a mention of sluice-system it would not template', (t) => {
  const source = 'apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  namespace: sluice-system\n---\nkind: RoleBinding\nmetadata:\n  name: b\nsubjects:\n  - name: system:serviceaccount:sluice-system:a\n';
  t.is(t.throws(() => rbacTemplate(source)).message, 'controller-rbac.yaml names sluice-system outside a namespace field; teach scripts/chart-files.ts what to do with it');
  t.regex(rbacTemplate(source.split('---')[0]), /^ {2}namespace: \{\{ \.Release\.Namespace \}\}$/m);
});

helmTest('helm lint --strict passes', (t) => {
  const out = runHelm(['lint', '--strict', '--kube-version', KUBE_VERSION, CHART_DIR]);
  t.regex(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  t.notRegex(out, /\[(WARNING|ERROR)\]/);
});

helmTest('rendered with defaults: RBAC equals deploy/rbac, the workloads as designed', (t) => {
  const objs = objects(render());
  t.deepEqual(objs.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
    'ClusterRole/sluice-controller', 'ClusterRoleBinding/sluice-controller', 'ConfigMap/sluice-cni-config', 'DaemonSet/sluice-node',
    'Deployment/sluice-controller', 'NetworkPolicy/sluice-controller', 'PodDisruptionBudget/sluice-controller', 'Role/sluice-controller-ca', 'Role/sluice-controller-leader-election',
    'Role/sluice-controller-node-reports', 'RoleBinding/sluice-controller-ca', 'RoleBinding/sluice-controller-leader-election', 'RoleBinding/sluice-controller-node-reports', 'Service/sluice-controller', 'Service/sluice-node-metrics', 'ServiceAccount/sluice-controller', 'ServiceAccount/sluice-node',
  ]);
  for (const o of objs) t.is(o.metadata.labels?.['app.kubernetes.io/part-of'], 'sluice', `${o.kind}/${o.metadata.name} carries the chart's labels`);

  // RBAC: the same objects as deploy/rbac/controller-rbac.yaml, its Namespace aside.
  const rbacKinds = ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'];
  const fromFile = objects(readFileSync(`${repoRoot}deploy/rbac/controller-rbac.yaml`, 'utf8'));
  t.deepEqual(fromFile.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name), ['sluice-system']);
  // Compared in one order: helm renders by kind, the file reads as its author wrote it.
  const byName = (a: any, b: any) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`);
  t.deepEqual(
    objs.filter((o) => rbacKinds.includes(o.kind)).map(withoutLabels).sort(byName),
    fromFile.filter((o) => o.kind !== 'Namespace').sort(byName),
  );

  const dep = find(objs, 'Deployment', 'sluice-controller');
  t.is(dep.spec.replicas, 2);
  const c = dep.spec.template.spec.containers[0];
  t.is(dep.spec.template.spec.serviceAccountName, 'sluice-controller');
  t.deepEqual(c.args, ['controller', '--namespace=sluice-system', '--listen=:15014', '--grpc-listen=:15012', '--agent-service-account=sluice-system/sluice-node', '--lease-duration=15', '--workers=4', '--cache-dir=/var/cache/sluice', '--log-level=info', '--rollout-soak=60', '--rollout-failure-threshold=10']);
  t.deepEqual([c.livenessProbe.httpGet, c.readinessProbe.httpGet], [{ path: '/healthz', port: 'http-monitoring' }, { path: '/readyz', port: 'http-monitoring' }]);
  t.deepEqual(c.ports.map((p: any) => [p.name, p.containerPort]), [['grpc', 15012], ['http-monitoring', 15014]]);
  t.deepEqual(c.resources.requests, { cpu: '100m', memory: '256Mi' });
  t.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
  t.is(dep.spec.template.spec.securityContext.runAsNonRoot, true);
  t.deepEqual(dep.spec.template.metadata.annotations, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15014', 'prometheus.io/path': '/metrics' });
  t.deepEqual(find(objs, 'PodDisruptionBudget', 'sluice-controller').spec.minAvailable, 1);
  t.deepEqual(find(objs, 'Service', 'sluice-controller').spec.ports.map((p: any) => [p.name, p.port, p.appProtocol]), [['grpc', 15012, 'grpc'], ['http-monitoring', 15014, undefined]]);
  t.deepEqual(find(objs, 'NetworkPolicy', 'sluice-controller').spec.ingress.map((r: any) => r.ports[0].port), [15012, 15014]);

  const ds = find(objs, 'DaemonSet', 'sluice-node');
  const pod = ds.spec.template.spec;
  t.is(pod.serviceAccountName, 'sluice-node');
  t.is(pod.hostNetwork, true);
  t.is(pod.automountServiceAccountToken, false);
  t.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
  t.is(pod.terminationGracePeriodSeconds, 30);
  const proxy = pod.containers[0];
  t.deepEqual(proxy.args, [
    'run', '--controller=sluice-controller.sluice-system.svc:15012', '--controller-ca=/var/run/sluice/ca/root-cert.pem', '--token-file=/var/run/secrets/tokens/sluice-token',
    '--state-dir=/var/lib/sluice', '--drain-ms=20000', '--log-level=info', '--metrics-listen=0.0.0.0:15020', '--capture-socket=/var/run/sluice/cni.sock',
  ]);
  t.true(Number(proxy.args.find((a: string) => a.startsWith('--drain-ms=')).slice(11)) < pod.terminationGracePeriodSeconds * 1000, 'the drain ends before the kubelet kills the proxy');
  t.deepEqual(proxy.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN', 'SYS_ADMIN'] });
  t.is(proxy.securityContext.privileged, undefined);
  t.deepEqual(proxy.env, [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }]);
  const vol = (name: string) => pod.volumes.find((v: any) => v.name === name);
  const mount = (name: string) => proxy.volumeMounts.find((m: any) => m.name === name);
  t.deepEqual(vol('sluice-token').projected.sources, [{ serviceAccountToken: { audience: 'sluice', expirationSeconds: 3600, path: 'sluice-token' } }]);
  t.is(mount('sluice-token').mountPath, '/var/run/secrets/tokens');
  t.deepEqual(vol('ca-root').configMap, { name: 'sluice-ca-root', items: [{ key: 'root-cert.pem', path: 'root-cert.pem' }] });
  t.is(mount('ca-root').mountPath, '/var/run/sluice/ca');
  t.is(mount('netns').mountPropagation, 'HostToContainer');
  const installer = pod.initContainers[0];
  t.deepEqual([installer.name, installer.restartPolicy], ['cni-install', 'Always']);
  t.deepEqual(installer.args, ['cni', 'install', '--watch', '--cni-bin-dir=/host/opt/cni/bin', '--cni-conf-dir=/host/etc/cni/net.d', '--config=/etc/sluice-cni/sluice-cni.json']);
  t.deepEqual(installer.securityContext.capabilities, { drop: ['ALL'] });
  t.deepEqual(JSON.parse(find(objs, 'ConfigMap', 'sluice-cni-config').data['sluice-cni.json']), {
    proxySocket: '/var/run/sluice/cni.sock', excludeNamespaces: ['kube-system'], capabilities: { 'io.kubernetes.cri.pod-annotations': true },
  });
  t.deepEqual([proxy.readinessProbe.httpGet, proxy.livenessProbe.httpGet], [{ path: '/ready', port: 15020 }, { path: '/healthz', port: 15020 }]);
  // No container port: with hostNetwork it would be a hostPort, and the surge pod could never be scheduled beside the old one.
  t.is(proxy.ports, undefined);
  t.is(find(objs, 'Service', 'sluice-node-metrics').spec.ports[0].targetPort, 15020);
  t.deepEqual(ds.spec.template.metadata.annotations['prometheus.io/path'], '/stats/prometheus');
});

helmTest('rendered with other values: capture off uninstalls, ServiceMonitors, no CA, registry and tags', (t) => {
  const objs = objects(render(NON_DEFAULT, 'mesh'));
  t.deepEqual(objs.filter((o) => o.kind === 'ServiceMonitor').map((o) => [o.metadata.name, o.spec.endpoints[0].path]), [['sluice-controller', '/metrics'], ['sluice-node', '/stats/prometheus']]);
  t.false(objs.some((o) => ['NetworkPolicy', 'PodDisruptionBudget', 'ConfigMap'].includes(o.kind)));
  const dep = find(objs, 'Deployment', 'sluice-controller');
  t.is(dep.spec.replicas, 3);
  t.is(dep.spec.template.spec.containers[0].image, 'registry.example.com/sluice/sluice/controller:0.1.0');
  t.deepEqual(dep.spec.template.spec.imagePullSecrets, [{ name: 'regcred' }]);
  t.is(dep.spec.template.metadata.annotations, undefined);
  t.true(dep.spec.template.spec.containers[0].args.includes('--agent-service-account=mesh/sluice-node'));
  const pod = find(objs, 'DaemonSet', 'sluice-node').spec.template.spec;
  const proxy = pod.containers[0];
  t.is(proxy.image, 'registry.example.com/sluice/sluice/node:0.1.0-rc1');
  t.deepEqual(proxy.args.slice(0, 2), ['run', '--controller=sluice-controller.mesh.svc:15012']);
  t.false(proxy.args.some((a: string) => a.startsWith('--capture-socket') || a.startsWith('--controller-ca')));
  t.deepEqual(proxy.securityContext.capabilities, { drop: ['ALL'] }, 'without capture the proxy needs no capability');
  t.deepEqual(pod.initContainers.map((c: any) => [c.name, c.args.at(-1), c.restartPolicy]), [['cni-uninstall', '--release-pods=/var/run/sluice/pods', undefined]]);
  t.deepEqual(find(objs, 'DaemonSet', 'sluice-node').spec.updateStrategy.rollingUpdate, { maxUnavailable: '10%', maxSurge: 0 });
  // Capture off never surges (the old pod's installer would chain sluice-cni again after the new pod's uninstall).
  const off = find(objects(render(['--set', 'node.capture.enabled=false'])), 'DaemonSet', 'sluice-node');
  t.deepEqual(off.spec.updateStrategy.rollingUpdate, { maxUnavailable: 1, maxSurge: 0 });
  t.false(pod.volumes.some((v: any) => v.name === 'ca-root'));
  // With --set, the RBAC's namespace follows the release too.
  t.is(find(objs, 'RoleBinding', 'sluice-controller-leader-election').subjects[0].namespace, 'mesh');
});

helmTest('values are checked: a misspelt or invalid value, or a drain longer than the grace period, is refused saying which', (t) => {
  const refused = (args: string[]) => t.throws(() => render(args)).message.split('\n').filter((l) => /^(- |Error: )/.test(l)).join('\n');
  t.is(refused(['--set', 'controller.replica=3']), "Error: values don't meet the specifications of the schema(s) in the following chart(s):\n- controller: Additional property replica is not allowed");
  t.is(refused(['--set', 'node.logLevel=verbose']), 'Error: values don\'t meet the specifications of the schema(s) in the following chart(s):\n- node.logLevel: node.logLevel must be one of the following: "trace", "debug", "info", "warn", "error", "critical"');
  t.regex(refused(['--set', 'node.maxSurge=0']), /node\.maxSurge and node\.maxUnavailable cannot both be 0: the DaemonSet could never replace a node's proxy/);
  t.regex(refused(['--set', 'node.drainMs=30000']), /node\.drainMs \(30000\) must be shorter than node\.terminationGracePeriodSeconds \(30 s\): kubelet kills the proxy at the end of the grace period, in the middle of its drain/);
  t.regex(refused(['--set-json', 'node.capture.cniConfig={"type":"sluice-cni"}']), /- node\.capture\.cniConfig: Must not validate the schema \(not\)/);
});

let kube: KubeCluster | undefined;
let server: ModuleServer | undefined;
let dir: string | undefined;
test.after.always(async () => {
  await server?.close();
  await kube?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

kubeTest('the real API server takes the rendered chart (dry run, then applied); the controller reconciles with its RBAC and feeds the node agent run as the DaemonSet runs it', async (t) => {
  kube = await startKube();
  dir = await mkdtemp(join(tmpdir(), 'sluice-chart-'));
  await kube.kubectlOk(['create', 'namespace', 'sluice-system']);
  const rendered = render(['--include-crds']);
  // ServiceMonitor needs the Prometheus Operator's CRD, which this API server does not have (a
  // later --set wins).
  const other = render([...NON_DEFAULT, '--set', 'metrics.serviceMonitor.enabled=false', '--include-crds']);
  for (const [what, yaml] of [['defaults', rendered], ['other values', other]]) {
    const dry = await kube.kubectl(['apply', '--server-side', '--dry-run=server', '--field-manager=helm', '-f', '-'], { input: yaml });
    t.is(dry.code, 0, `${what}: ${dry.stderr}`);
    t.regex(dry.stdout, /daemonset\.apps\/sluice-node serverside-applied \(server dry run\)/);
  }
  await kube.kubectlOk(['apply', '--server-side', '--field-manager=helm', '-f', '-'], { input: rendered });
  await kube.kubectlOk(['wait', '--for=condition=Established', 'crd/wasmfilters.sluice.dev', '--timeout=60s']);
  t.is((await kube.kubectlOk(['get', 'ds', 'sluice-node', '-n', 'sluice-system', '-o', 'jsonpath={.spec.template.spec.containers[0].securityContext.capabilities.add}'])).trim(), '["NET_ADMIN","SYS_ADMIN"]');
  await kube.kubectlOk(['create', 'namespace', 'team-a']);

  // The controller as the Deployment runs it: its args, with addresses and the cache moved to
  // this machine, and a token of the chart's ServiceAccount.
  const dep = find(objects(rendered), 'Deployment', 'sluice-controller');
  const args: string[] = dep.spec.template.spec.containers[0].args.map((a: string) =>
    a.startsWith('--listen=') ? '--listen=127.0.0.1:0' : a.startsWith('--grpc-listen=') ? '--grpc-listen=127.0.0.1:0' : a.startsWith('--cache-dir=') ? `--cache-dir=${dir}/cache` : a);
  const token = await kube.token('sluice-system', dep.spec.template.spec.serviceAccountName);
  const kubeconfig = await kube.kubeconfigFor(token, 'chart-controller');
  // The agent below reaches it as localhost (the chart's names are cluster DNS names).
  const controller = spawnSluice([...args, '--kubeconfig', kubeconfig, '--lease-duration=3', '--identity=chart-test', '--grpc-tls-dns=localhost']);
  let hello = new Uint8Array();
  try {
    server = await moduleServer();
    hello = modules.hello();
    server.set('/hello.wasm', hello);
    await kube.kubectlOk(['apply', '-f', '-'], { input: wasmFilter('hello', 'team-a', { url: server.url('/hello.wasm'), sha256: sha256(hello) }) });
    const f = await waitValidated(kube, 'team-a', 'hello', 'True', 60).catch((error) => {
      throw new Error(`${error.message}\ncontroller said:\n${controller.stderr()}`);
    });
    t.is(f.status!.digest, `sha256:${sha256(hello)}`);
    await until('the leader line', () => (controller.stderr().includes('"msg":"became the leader"') ? true : undefined));
    t.notRegex(controller.stderr(), /forbidden/i, 'no call the chart\'s RBAC refuses');
    const holder = JSON.parse(await kube.kubectlOk(['get', 'lease', 'sluice-controller', '-n', 'sluice-system', '-o', 'json'])).spec.holderIdentity;
    t.is(holder, 'chart-test');

    // The node agent as the DaemonSet runs it, with a token as its projected volume makes it (the
    // chart's ServiceAccount and audience, bound to its Pod on node-a), fed by that controller: a
    // workload on node-a gets the filter. (No kubelet here: the Pods are objects only.)
    const ds = find(objects(rendered), 'DaemonSet', 'sluice-node').spec.template.spec;
    const audience = ds.volumes.find((v: any) => v.name === 'sluice-token').projected.sources[0].serviceAccountToken.audience;
    const pod = (name: string, ns: string, sa: string, labels: Record<string, string> = {}) =>
      JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels }, spec: { nodeName: 'node-a', serviceAccountName: sa, containers: [{ name: 'c', image: 'example:1' }] } });
    await kube.kubectlOk(['create', 'serviceaccount', 'web', '-n', 'team-a']);
    await kube.kubectlOk(['apply', '-f', '-'], { input: pod('web-0', 'team-a', 'web', { app: 'web' }) });
    await kube.kubectlOk(['apply', '-f', '-'], { input: pod('sluice-node-x7k2p', 'sluice-system', ds.serviceAccountName) });
    const nodeToken = (await kube.kubectlOk(['create', 'token', ds.serviceAccountName, '-n', 'sluice-system', `--audience=${audience}`, '--bound-object-kind=Pod', '--bound-object-name=sluice-node-x7k2p'])).trim();
    await writeFile(join(dir, 'node-token'), nodeToken);
    const grpc = await until(`the controller's gRPC address; it said:\n${controller.stderr()}`, () => /"msg":"serving the node agents[^\n]*"address":"127\.0\.0\.1:(\d+)"/.exec(controller.stderr())?.[1]);
    const capture = captureUnavailable() === undefined;
    // The trust bundle as the DaemonSet mounts it: ConfigMap sluice-ca-root, published by the controller.
    const caMount = ds.volumes.find((v: any) => v.configMap?.name === 'sluice-ca-root');
    t.truthy(caMount, 'the DaemonSet mounts ConfigMap sluice-ca-root');
    const root = await kube.kubectlOk(['get', 'configmap', 'sluice-ca-root', '-n', 'sluice-system', '-o', 'jsonpath={.data.root-cert\\.pem}']);
    await writeFile(join(dir, 'root-cert.pem'), root);
    const nodeArgs: string[] = ds.containers[0].args.flatMap((a: string) =>
      a.startsWith('--controller=') ? [`--controller=localhost:${grpc}`]
        : a.startsWith('--controller-ca=') ? [`--controller-ca=${dir}/root-cert.pem`]
          : a.startsWith('--token-file=') ? [`--token-file=${dir}/node-token`]
            : a.startsWith('--state-dir=') ? [`--state-dir=${dir}/state`]
              : a.startsWith('--metrics-listen=') ? ['--metrics-listen=127.0.0.1:0']
                // With capture, the tunnel on a free loopback port (15008 may be taken beside this test).
                : a.startsWith('--capture-socket=') ? (capture ? [`--capture-socket=${dir}/run/cni.sock`, '--tunnel-listen=127.0.0.1:0'] : [])
                  : [a]);
    const node = spawnSluice([...nodeArgs, '--node-name=node-a', '--admin-address=127.0.0.1:0']);
    try {
      const metricsPort = Number(await until(`the node's metrics line; it said:\n${node.stderr()}`, () => /metrics listening on [^:]+:(\d+)/.exec(node.stderr())?.[1]));
      await until(`node-a to apply the controller's config; it said:\n${node.stderr()}`, () => (node.stderr().includes('"msg":"applied version ') ? true : undefined), 30_000);
      // With capture, ready once the node's pods are taken over too (docs/operations.md#upgrade).
      if (capture) await until(`node-a's capture to start; it said:\n${node.stderr()}`, () => (node.stderr().includes('CNI API listening') ? true : undefined), 30_000);
      t.is((await fetch(`http://127.0.0.1:${metricsPort}/ready`)).status, 200);
      t.regex(await (await fetch(`http://127.0.0.1:${metricsPort}/stats/prometheus`)).text(), /^sluice_filter_streams_total\{filter="team-a\.hello"\} 0$/m);
      // sluice status on the node (its admin moved off 15000: other tests run beside this one).
      const adminPort = /"admin listening on [^:]+:(\d+)"/.exec(node.stderr())![1];
      const st = spawnSluice(['status', '--json', '--admin', `127.0.0.1:${adminPort}`]);
      t.is(await st.exited, 0, st.stderr());
      const s = JSON.parse(st.stdout());
      t.deepEqual([s.ready, s.source, s.filters.map((f: any) => [f.name, f.digest, f.state]), s.capturedPods], [true, { controller: `localhost:${grpc}`, node: 'node-a' }, [['team-a.hello', sha256(hello), 'active']], capture ? [] : null]);
      t.regex(s.version, /^\S+$/);
    } finally {
      node.child.kill('SIGTERM');
      t.is(await node.exited, 0, node.stderr());
    }
  } finally {
    controller.child.kill('SIGTERM');
    await controller.exited;
  }
});

// The controller image (scripts/build-images.sh, cached by .ci/run), run as the Deployment runs it:
// user 65532, the chart's arguments, the chart's ServiceAccount token. Uses the API server of the
// test above.
const version = (JSON.parse(readFileSync(`${repoRoot}package.json`, 'utf8')) as { version: string }).version;
const imageDir = join(process.env.SLUICE_IMAGE_CACHE || join(homedir(), '.cache/sluice/images'), version);
const imageWhy = kubeWhy ?? (process.getuid?.() !== 0 ? 'needs root (chroot)' : !existsSync(join(imageDir, '.complete')) ? `no image built in ${imageDir}: run scripts/build-images.sh` : undefined);
const imageTest = skipUnless(imageWhy);

imageTest('the controller image runs the chart\'s `sluice controller` as 65532: it takes the Lease and validates a filter', async (t) => {
  if (!kube || !server || !dir) throw new Error('the API server test above did not run');
  const k = kube;
  const root = join(imageDir, 'controller/rootfs');
  // Shared with the chroot on its /tmp (a bind mount in a private mount namespace; no fork, so the
  // process this test signals is the controller itself): the kubeconfig,
  // the API server's CA, the module cache.
  const shared = await mkdtemp(join(tmpdir(), 'sluice-image-controller-'));
  t.teardown(() => rm(shared, { recursive: true, force: true }));
  await chmod(shared, 0o777);
  await copyFile(join(k.dir, 'certs/apiserver.crt'), join(shared, 'ca.crt'));
  const token = await k.token('sluice-system', 'sluice-controller');
  await writeFile(join(shared, 'kubeconfig'), JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
    clusters: [{ name: 'k', cluster: { server: k.server, 'certificate-authority': '/tmp/ca.crt' } }],
    users: [{ name: 'u', user: { token } }], contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
  }));
  const dep = find(objects(render()), 'Deployment', 'sluice-controller').spec.template.spec;
  t.deepEqual([dep.securityContext.runAsUser, dep.securityContext.runAsGroup], [65532, 65532]);
  const args: string[] = dep.containers[0].args.map((a: string) =>
    a.startsWith('--listen=') ? '--listen=127.0.0.1:0' : a.startsWith('--grpc-listen=') ? '--grpc-listen=127.0.0.1:0' : a.startsWith('--cache-dir=') ? '--cache-dir=/tmp/cache' : a);
  const child = spawn('unshare', ['--mount', 'sh', '-c', `mount --bind ${shared} ${root}/tmp && exec chroot --userspec=65532:65532 ${root} /usr/local/bin/node /app/bin/sluice.js "$@"`, 'sh',
    ...args, '--kubeconfig=/tmp/kubeconfig', '--identity=image-replica', '--lease-duration=3'], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' } });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const port = Number(await until(`the image's controller to serve; it said:\n${stderr}`, () => {
      if (child.exitCode !== null) throw new Error(`it exited with ${child.exitCode}: ${stderr}`);
      return /"msg":"serving \/healthz, \/readyz, \/metrics"[^\n]*"address":"127\.0\.0\.1:(\d+)"/.exec(stderr)?.[1];
    }, 30_000));
    await until(`it to lead; it said:\n${stderr}`, () => (stderr.includes('"msg":"became the leader"') ? true : undefined), 30_000);
    // A module and configuration nothing has validated yet: compiled and started inside the image.
    const headers = modules.headers();
    server.set('/headers.wasm', headers);
    await k.kubectlOk(['apply', '-f', '-'], { input: wasmFilter('from-image', 'team-a', { url: server.url('/headers.wasm'), sha256: sha256(headers), pluginConfig: { response: { add: [{ name: 'x-from', value: 'image' }] } } }) });
    const f = await waitValidated(k, 'team-a', 'from-image', 'True', 30);
    t.is(f.status!.digest, `sha256:${sha256(headers)}`);
    t.is((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
    t.regex(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), /^sluice_controller_leader 1$/m);
    t.notRegex(stderr, /forbidden|EACCES|EROFS/i);
  } finally {
    child.kill('SIGTERM');
    t.is(await exited, 0, stderr);
  }
});
