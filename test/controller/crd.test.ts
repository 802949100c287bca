// The WasmFilter CRD in a real API server: `kubectl apply` installs it, refuses invalid filters
// with the schema's and the CEL rules' own messages, and fills in defaults.
import test from 'ava';
import { Controller, jsonLogger } from '../../controller/index.ts';
import { loadKubeConfig } from '../../controller/controller.ts';
import { repoRoot } from '../helpers/fixtures.ts';
import { startKube, type KubeCluster } from '../helpers/kube-apiserver.ts';

let kube: KubeCluster;

test.before(async () => {
  kube = await startKube();
  // The controller's namespace: its CA Secret lives there, and a replica without its CA is not ready.
  await kube.kubectlOk(['create', 'namespace', 'sluice-system']);
});

// Serial tests run before the others, which need the CRD this one installs.
test.serial('a controller started before the CRD exists says how to install it, and is ready once it is installed', async (t) => {
  const lines: string[] = [];
  const controller = new Controller({
    kubeConfig: loadKubeConfig(kube.kubeconfig),
    listen: '127.0.0.1:0',
    grpcListen: '127.0.0.1:0',
    minWatchBackoffMs: 50,
    log: jsonLogger({ write: (l) => void lines.push(l) }),
  });
  await controller.start();
  try {
    const readyz = async () => (await fetch(`http://127.0.0.1:${controller.address!.port}/readyz`)).status;
    while (!lines.some((l) => l.includes('"hint":"the WasmFilter CRD is not installed: kubectl apply -f deploy/crds/wasmfilter.yaml"'))) await new Promise((r) => setTimeout(r, 50));
    t.is(await readyz(), 503);
    await kube.kubectlOk(['apply', '-f', `${repoRoot}deploy/crds/wasmfilter.yaml`]);
    await kube.kubectlOk(['wait', '--for=condition=Established', 'crd/wasmfilters.sluice.dev', '--timeout=60s']);
    while ((await readyz()) !== 200) await new Promise((r) => setTimeout(r, 100));
    t.true(controller.ready);
  } finally {
    await controller.stop();
  }
});

test.after.always(async () => {
  await kube?.close();
});

const SHA = 'ab'.repeat(32);
const filter = (name: string, spec: Record<string, unknown>) =>
  JSON.stringify({ apiVersion: 'sluice.dev/v1alpha1', kind: 'WasmFilter', metadata: { name, namespace: 'default' }, spec });

const refused: Array<[string, Record<string, unknown>, string]> = [
  ['both url and configMap', { url: 'https://example.com/f.wasm', sha256: SHA, configMap: { name: 'm', key: 'k' } }, 'The WasmFilter "t" is invalid: spec: Invalid value: "object": exactly one of url and configMap must be set\n'],
  ['neither url nor configMap', { rootId: 'x' }, 'The WasmFilter "t" is invalid: spec: Invalid value: "object": exactly one of url and configMap must be set\n'],
  ['an https url without sha256', { url: 'https://example.com/f.wasm' }, 'The WasmFilter "t" is invalid: spec: Invalid value: "object": sha256 is required when url is https:// or http:// (the module bytes are checked against it)\n'],
  ['an ftp url', { url: 'ftp://example.com/f.wasm', sha256: SHA }, 'The WasmFilter "t" is invalid: spec.url: Invalid value: "string": url must start with oci://, https:// or http://\n'],
  ['a sha256 that is not 64 hex digits', { url: 'https://example.com/f.wasm', sha256: 'ABC' }, 'The WasmFilter "t" is invalid: spec.sha256: Invalid value: "ABC": spec.sha256 in body should match \'^[0-9a-f]{64}$\'\n'],
  ['imagePullSecret with an https url', { url: 'https://example.com/f.wasm', sha256: SHA, imagePullSecret: 'creds' }, 'The WasmFilter "t" is invalid: spec: Invalid value: "object": imagePullSecret applies only to oci:// urls\n'],
  ['rollout percent above 100', { url: 'oci://registry.local/f:1', rollout: { percent: 101 } }, 'The WasmFilter "t" is invalid: spec.rollout.percent: Invalid value: 101: spec.rollout.percent in body should be less than or equal to 100\n'],
  ['an unknown fail strategy', { url: 'oci://registry.local/f:1', failStrategy: 'FAIL_SOMETIMES' }, 'The WasmFilter "t" is invalid: \n* spec.failStrategy: Unsupported value: "FAIL_SOMETIMES": supported values: "FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"\n* <nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation\n'],
  ['a port out of range', { url: 'oci://registry.local/f:1', match: [{ direction: 'INBOUND', ports: [0] }] }, 'The WasmFilter "t" is invalid: spec.match[0].ports[0]: Invalid value: 0: spec.match[0].ports[0] in body should be greater than or equal to 1\n'],
  ['an environment variable from the proxy\'s own environment (Istio\'s valueFrom: HOST)', { url: 'oci://registry.local/f:1', vmConfig: { env: [{ name: 'POD_NAME', valueFrom: 'HOST' }] } }, 'The WasmFilter "t" is invalid: \n* spec.vmConfig.env[0].valueFrom: Unsupported value: "HOST": supported values: "INLINE"\n* <nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation\n'],
  ['an environment variable name with "="', { url: 'oci://registry.local/f:1', vmConfig: { env: [{ name: 'A=B', value: 'x' }] } }, 'The WasmFilter "t" is invalid: spec.vmConfig.env[0].name: Invalid value: "A=B": spec.vmConfig.env[0].name in body should match \'^[A-Za-z_][A-Za-z0-9_]*$\'\n'],
  ['a memory limit below one page', { url: 'oci://registry.local/f:1', limits: { memoryBytes: 1024 } }, 'The WasmFilter "t" is invalid: spec.limits.memoryBytes: Invalid value: 1024: spec.limits.memoryBytes in body should be greater than or equal to 65536\n'],
];

for (const [what, spec, message] of refused) {
  test(`kubectl apply refuses a WasmFilter with ${what}`, async (t) => {
    const r = await kube.kubectl(['apply', '-f', '-'], { input: filter('t', spec) });
    t.is(r.code, 1);
    t.is(r.stderr, message);
    t.is(r.stdout, '');
  });
}

test('kubectl apply accepts a valid WasmFilter and the API server fills in the defaults', async (t) => {
  await kube.kubectlOk(['apply', '-f', '-'], { input: filter('ok', { url: 'oci://registry.local/filters/hello:v1', pluginConfig: { header: 'x-a' }, capabilities: { httpCalls: ['auth'] } }) });
  const got = JSON.parse(await kube.kubectlOk(['get', 'wasmfilter', 'ok', '-n', 'default', '-o', 'json']));
  t.deepEqual(got.spec, {
    url: 'oci://registry.local/filters/hello:v1',
    pluginConfig: { header: 'x-a' },
    capabilities: { httpCalls: ['auth'] },
    imagePullPolicy: 'IfNotPresent',
    rootId: '',
    vmId: '',
    phase: 'UNSPECIFIED',
    priority: 0,
    failStrategy: 'FAIL_CLOSE',
    rollout: { percent: 100, paused: false },
  });
  const table = await kube.kubectlOk(['get', 'wf', '-n', 'default']);
  t.regex(table, /^NAME\s+VALIDATED\s+READY NODES\s+DIGEST\s+AGE\n/);
  t.regex(table, /\nok\s+/);
});
