// The controller against a real API server, running as the sluice-controller ServiceAccount with
// exactly the RBAC in deploy/: WasmFilters applied with kubectl are validated in Sluice's host and
// get their status and Events; faults are reported with a reason and retried with backoff; the
// last good version stays in force; restarts of the API server and etcd are survived.
import test from 'ava';
import { Controller, silentLogger, type Logger } from '../../controller/index.ts';
import { CoreV1Api } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../controller/controller.ts';
import { pullSecretAuth } from '../../controller/reconcile/resolve-source.ts';
import { cond, eventsFor, getFilter, moduleServer, modules, sha256, startControllerCluster, waitValidated, wasmFilter, type ControllerCluster, type ModuleServer } from '../helpers/controller-env.ts';

let env: ControllerCluster;
let server: ModuleServer;
let controller: Controller;
const logLines: string[] = [];

const hello = modules.hello();
const helloSha = sha256(hello);

test.before(async () => {
  env = await startControllerCluster();
  server = await moduleServer();
  server.set('/hello.wasm', hello);
  server.set('/plain.wasm', modules.noMarker());
  server.set('/private.wasm', { status: 401 });
  server.set('/spin.wasm', modules.spinOnConfigure());
  const log: Logger = { ...silentLogger, warn: (m, f) => void logLines.push(`${m} ${JSON.stringify(f)}`), error: (m, f) => void logLines.push(`${m} ${JSON.stringify(f)}`), with: () => log };
  controller = new Controller({
    kubeConfig: loadKubeConfig(env.controllerKubeconfig),
    listen: '127.0.0.1:0',
    grpcListen: '127.0.0.1:0',
    leaseDurationMs: 3000,
    baseRetryMs: 200,
    maxRetryMs: 1000,
    // Small pages, so every list here is paginated.
    listPageSize: 2,
    log,
  });
  await controller.start();
});

test.after.always(async () => {
  await controller?.stop();
  await server?.close();
  await env?.kube.close();
});

const apply = (name: string, spec: Record<string, unknown>, namespace = 'team-a') => env.kube.kubectlOk(['apply', '-f', '-'], { input: wasmFilter(name, namespace, spec) });

test.serial('a valid filter from an https/http url is validated: conditions, digest, observedGeneration, an Event, kubectl get columns', async (t) => {
  await apply('hello', { url: server.url('/hello.wasm'), sha256: helloSha, pluginConfig: { header: 'x-team', value: 'a' } });
  const f = await waitValidated(env.kube, 'team-a', 'hello', 'True');
  t.is(f.status!.digest, `sha256:${helloSha}`);
  t.is(f.status!.observedGeneration, 1);
  t.deepEqual(f.status!.nodes, { ready: 0, total: 0 });
  t.like(cond(f, 'Accepted'), { status: 'True', reason: 'Accepted', message: 'the spec is valid; the filter applies to pods in namespace team-a', observedGeneration: 1 });
  t.like(cond(f, 'Validated'), { status: 'True', reason: 'Validated', message: `module sha256:${helloSha} compiled, started and accepted its configuration in Sluice's host` });
  t.like(cond(f, 'Ready'), { status: 'Unknown', reason: 'NodesNotReporting' });
  t.like(cond(f, 'Degraded'), { status: 'False', reason: 'AsExpected', message: 'generation 1 is in force' });
  const events = await eventsFor(env.kube, 'team-a', 'hello');
  t.deepEqual(events.map((e) => [e.type, e.reason, e.note, e.reportingController]), [['Normal', 'Validated', `module sha256:${helloSha} validated for generation 1`, 'sluice.dev/controller']]);
  const table = await env.kube.kubectlOk(['get', 'wf', 'hello', '-n', 'team-a']);
  t.regex(table, new RegExp(`^hello\\s+True\\s+0\\s+sha256:${helloSha}\\s+\\d+s\\n$`, 'm'));
});

const faults: Array<[string, Record<string, unknown>, string, RegExp]> = [
  // Messages from the module source are matched loosely: the source (controller/source/) words them.
  ['a module that is not there', { url: '/missing.wasm', sha256: helloSha }, 'ModuleNotFound', /404.*check the url/],
  ['a digest mismatch', { url: '/hello.wasm', sha256: 'ab'.repeat(32) }, 'DigestMismatch', new RegExp(`${helloSha}.*${'ab'.repeat(32)}.*spec\\.sha256`)],
  ['Wasm that is not proxy-wasm', { url: '/plain.wasm', sha256: sha256(modules.noMarker()) }, 'NotProxyWasm', /proxy_abi_version.*; build it with a proxy-wasm SDK/],
  ['a registry that refuses', { url: '/private.wasm', sha256: helloSha }, 'RegistryAuthFailed', /\b401\b/],
  ['a filter that never returns from proxy_on_configure (stopped by its time budget, as on a node)', { url: '/spin.wasm', sha256: sha256(modules.spinOnConfigure()), limits: { callBudgetMs: 100 } }, 'StartFailed', /^filter "team-a\/startfailed": proxy_on_configure failed: the guest call ran for [\d.]+ ms, over its 100 ms budget, and was stopped;/],
  ['a configuration the filter refuses', { url: '/hello.wasm', sha256: helloSha, pluginConfig: { header: 'Not A Header' } }, 'ConfigurationRefused', /proxy_on_configure rejected the configuration.*hello: invalid configuration: field 'header': must be a lower-case header name like 'x-hello', got 'Not A Header'.*fix spec\.pluginConfig/s],
];

for (const [what, spec, reason, message] of faults) {
  test.serial(`${what}: Validated=False, reason ${reason}, a message that says what to do, a Warning Event`, async (t) => {
    const name = reason.toLowerCase();
    await apply(name, { ...spec, url: server.url(spec.url as string) });
    const f = await waitValidated(env.kube, 'team-a', name, 'False');
    const v = cond(f, 'Validated')!;
    t.is(v.reason, reason);
    t.regex(v.message, message);
    t.like(cond(f, 'Accepted'), { status: 'True' });
    t.like(cond(f, 'Degraded'), { status: 'True', reason, message: 'generation 1 is not in force; no version has validated yet, so nodes refuse the traffic it selects (failStrategy FAIL_CLOSE)' });
    t.is(f.status!.digest, undefined);
    // Retried with backoff; each retry finds the same fault, which is one transition, one Event.
    while (controller.queue.retries(`team-a/${name}`) < 3) await new Promise((r) => setTimeout(r, 50));
    const events = await eventsFor(env.kube, 'team-a', name);
    t.deepEqual(events.map((e) => [e.type, e.reason]), [['Warning', reason]]);
  });
}

test.serial('a refused filter is retried with backoff and validates once its source is fixed, without a spec change', async (t) => {
  const path = '/later.wasm';
  await apply('later', { url: server.url(path), sha256: helloSha });
  await waitValidated(env.kube, 'team-a', 'later', 'False');
  // Retries keep coming (backoff 200 ms doubling to 1 s here), so the controller fetches again.
  const before = server.hits(path);
  while (server.hits(path) < before + 2) await new Promise((r) => setTimeout(r, 100));
  server.set(path, hello);
  const f = await waitValidated(env.kube, 'team-a', 'later', 'True');
  t.is(f.generation, 1);
  t.is(f.status!.digest, `sha256:${helloSha}`);
  const events = await eventsFor(env.kube, 'team-a', 'later');
  t.deepEqual(events.map((e) => e.reason), ['ModuleNotFound', 'Validated']);
});

test.serial('a new version that is refused leaves the last good version in force; fixing it brings it back', async (t) => {
  await apply('keeper', { url: server.url('/hello.wasm'), sha256: helloSha, pluginConfig: { value: 'one' } });
  const good = await waitValidated(env.kube, 'team-a', 'keeper', 'True');
  await env.kube.kubectlOk(['patch', 'wasmfilter', 'keeper', '-n', 'team-a', '--type=merge', '-p', '{"spec":{"pluginConfig":{"value":"bad\\nline"}}}']);
  const bad = await waitValidated(env.kube, 'team-a', 'keeper', 'False');
  t.is(bad.generation, 2);
  t.is(bad.status!.observedGeneration, 2);
  t.is(bad.status!.digest, good.status!.digest);
  t.like(cond(bad, 'Validated'), { reason: 'ConfigurationRefused' });
  t.regex(cond(bad, 'Validated')!.message, /hello: invalid configuration: field 'value': must not contain CR, LF or NUL/);
  t.like(cond(bad, 'Degraded'), { status: 'True', message: `generation 2 is not in force; sha256:${helloSha} (the last version that validated) stays in force` });
  await env.kube.kubectlOk(['patch', 'wasmfilter', 'keeper', '-n', 'team-a', '--type=merge', '-p', '{"spec":{"pluginConfig":{"value":"two"}}}']);
  const fixed = await waitValidated(env.kube, 'team-a', 'keeper', 'True');
  t.is(fixed.status!.observedGeneration, 3);
  t.like(cond(fixed, 'Degraded'), { status: 'False', message: 'generation 3 is in force' });
});

test.serial('a module from a ConfigMap (binaryData) is validated; a missing ConfigMap or key says how to create it', async (t) => {
  await apply('from-cm', { configMap: { name: 'hello-module', key: 'filter.wasm' } });
  const missing = await waitValidated(env.kube, 'team-a', 'from-cm', 'False');
  t.like(cond(missing, 'Validated'), {
    reason: 'ModuleNotFound',
    message: 'ConfigMap team-a/hello-module not found; create it with `kubectl create configmap hello-module -n team-a --from-file=filter.wasm=filter.wasm`',
  });
  const { writeFile } = await import('node:fs/promises');
  const file = `${env.kube.dir}/filter.wasm`;
  await writeFile(file, hello);
  await env.kube.kubectlOk(['create', 'configmap', 'hello-module', '-n', 'team-a', `--from-file=filter.wasm=${file}`]);
  const f = await waitValidated(env.kube, 'team-a', 'from-cm', 'True');
  t.is(f.status!.digest, `sha256:${helloSha}`);
});

test.serial('imagePullSecret: a missing Secret, or one without the registry, is RegistryAuthFailed saying how to create it; a real docker-registry Secret yields its credentials', async (t) => {
  await apply('no-secret', { url: 'oci://127.0.0.1:5999/filters/hello:v1', imagePullSecret: 'regcred' });
  const f = await waitValidated(env.kube, 'team-a', 'no-secret', 'False');
  t.like(cond(f, 'Validated'), {
    reason: 'RegistryAuthFailed',
    message: 'imagePullSecret team-a/regcred not found; create it with `kubectl create secret docker-registry regcred -n team-a --docker-server=127.0.0.1:5999 --docker-username=... --docker-password=...`',
  });
  await env.kube.kubectlOk(['create', 'secret', 'docker-registry', 'othercred', '-n', 'team-a', '--docker-server=registry.example.com', '--docker-username=u', '--docker-password=p']);
  await apply('wrong-secret', { url: 'oci://127.0.0.1:5999/filters/hello:v1', imagePullSecret: 'othercred' });
  const g = await waitValidated(env.kube, 'team-a', 'wrong-secret', 'False');
  t.like(cond(g, 'Validated'), { reason: 'RegistryAuthFailed', message: 'Secret team-a/othercred has no credentials for 127.0.0.1:5999 (it has: registry.example.com)' });
  // The parsing, on a Secret kubectl made, read with the controller's own token.
  await env.kube.kubectlOk(['create', 'secret', 'docker-registry', 'regcred', '-n', 'team-a', '--docker-server=127.0.0.1:5999', '--docker-username=puller', '--docker-password=s3cr:et']);
  const core = loadKubeConfig(env.controllerKubeconfig).makeApiClient(CoreV1Api);
  t.deepEqual(await pullSecretAuth(core, 'team-a', 'regcred', 'oci://127.0.0.1:5999/filters/hello:v1'), { username: 'puller', password: 's3cr:et' });
});

test.serial('bytes that are not Wasm: Validated=False, reason NotWasm, showing the first bytes', async (t) => {
  const page = Buffer.from('<html>this is a web page</html>').toString('base64');
  await env.kube.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'not-a-module', namespace: 'team-a' }, binaryData: { 'filter.wasm': page } }) });
  await apply('notwasm', { configMap: { name: 'not-a-module', key: 'filter.wasm' } });
  const f = await waitValidated(env.kube, 'team-a', 'notwasm', 'False');
  t.like(cond(f, 'Validated'), {
    reason: 'NotWasm',
    message: 'the module is not WebAssembly (31 bytes starting 3c68746d6c3e74686973206973206120, not \\0asm); point the source at the compiled .wasm file',
  });
});

test.serial('an httpCalls capability that is neither a boolean nor a list of names: Accepted=False, InvalidSpec, not retried', async (t) => {
  await apply('bad-caps', { url: server.url('/hello.wasm'), sha256: helloSha, capabilities: { httpCalls: 'yes' } });
  const f = await waitValidated(env.kube, 'team-a', 'bad-caps', 'False');
  t.like(cond(f, 'Accepted'), { status: 'False', reason: 'InvalidSpec', message: 'spec.capabilities.httpCalls must be true, false or a list of cluster names, got "yes"' });
  t.like(cond(f, 'Validated'), { status: 'False', reason: 'InvalidSpec' });
  t.is(controller.queue.retries('team-a/bad-caps'), 0);
});

test.serial('a filter in the root namespace applies to every namespace', async (t) => {
  await apply('global', { url: server.url('/hello.wasm'), sha256: helloSha }, 'sluice-system');
  const f = await waitValidated(env.kube, 'sluice-system', 'global', 'True');
  t.is(cond(f, 'Accepted')!.message, 'the spec is valid; the filter applies to every namespace (sluice-system is the root namespace)');
});

test.serial('nothing changed, no work: a metadata-only change is reconciled without fetching or writing status', async (t) => {
  // `later` is the only filter fetching /later.wasm, and it is validated.
  const before = await getFilter(env.kube, 'team-a', 'later');
  const hits = server.hits('/later.wasm');
  const unchanged = controller.metrics.reconciles.get({ result: 'unchanged' });
  await env.kube.kubectlOk(['annotate', 'wasmfilter', 'later', '-n', 'team-a', 'note=touched']);
  const annotated = await getFilter(env.kube, 'team-a', 'later');
  t.not(annotated.resourceVersion, before.resourceVersion);
  while (controller.informer.get('team-a/later')?.metadata.resourceVersion !== annotated.resourceVersion) await new Promise((r) => setTimeout(r, 20));
  while (controller.metrics.reconciles.get({ result: 'unchanged' }) === unchanged) await new Promise((r) => setTimeout(r, 20));
  while (controller.queue.inFlight > 0 || controller.queue.depth > 0) await new Promise((r) => setTimeout(r, 20));
  const after = await getFilter(env.kube, 'team-a', 'later');
  t.is(after.resourceVersion, annotated.resourceVersion, 'no status write');
  t.is(server.hits('/later.wasm'), hits, 'no fetch');
  t.deepEqual(after.status, before.status);
});

test.serial('a watch from a version the server no longer has (410 Gone) lists again (in pages), and deletions made meanwhile are seen', async (t) => {
  await apply('doomed', { url: server.url('/hello.wasm'), sha256: helloSha });
  await waitValidated(env.kube, 'team-a', 'doomed', 'True');
  while (!controller.informer.get('team-a/doomed')) await new Promise((r) => setTimeout(r, 20));
  const expired = controller.metrics.watchRestarts.get({ resource: 'wasmfilters', cause: 'expired' });
  // Stop watching, delete behind the informer's back, and resume from a version long gone.
  controller.informer.stop();
  await env.kube.kubectlOk(['delete', 'wasmfilter', 'doomed', '-n', 'team-a']);
  (controller.informer as unknown as { resourceVersion: string }).resourceVersion = '1';
  controller.informer.start();
  while (controller.informer.get('team-a/doomed')) await new Promise((r) => setTimeout(r, 20));
  t.is(controller.informer.get('team-a/doomed'), undefined);
  const listed = JSON.parse(await env.kube.kubectlOk(['get', 'wasmfilters', '-A', '-o', 'json'])).items.length;
  t.true(listed > 2, 'more filters than one page');
  t.is(controller.informer.size, listed);
  t.is(controller.metrics.watchRestarts.get({ resource: 'wasmfilters', cause: 'expired' }), expired + 1);
  // And it keeps watching: a new filter is validated.
  await apply('after-relist', { url: server.url('/hello.wasm'), sha256: helloSha });
  await waitValidated(env.kube, 'team-a', 'after-relist', 'True');
});

test.serial('no request was refused for lack of permission (the RBAC in deploy/ covers every call): Events, status, Lease, ConfigMaps', (t) => {
  t.deepEqual(logLines.filter((l) => /forbidden|HTTP-Code: 403|could not emit/i.test(l)), []);
});

test.serial('the API server and etcd stop and come back: the controller keeps its cache, reconnects and converges', async (t) => {
  const cached = controller.informer.size;
  await env.kube.stopApiServer();
  await new Promise((r) => setTimeout(r, 1500));
  t.is(controller.informer.size, cached);
  await env.kube.startApiServer();
  await apply('after-apiserver', { url: server.url('/hello.wasm'), sha256: helloSha });
  await waitValidated(env.kube, 'team-a', 'after-apiserver', 'True', 60);

  await env.kube.stopEtcd();
  await new Promise((r) => setTimeout(r, 1500));
  t.is(controller.informer.size, cached + 1);
  await env.kube.startEtcd();
  await apply('after-etcd', { url: server.url('/hello.wasm'), sha256: helloSha });
  await waitValidated(env.kube, 'team-a', 'after-etcd', 'True', 60);
  t.true(controller.metrics.watchRestarts.get({ resource: 'wasmfilters', cause: 'error' }) + controller.metrics.watchRestarts.get({ resource: 'wasmfilters', cause: 'closed' }) >= 1);
  t.true(controller.ready);
});
