// OCI through the controller: a real registry (Debian's docker-registry on loopback) with basic
// auth, a kubernetes.io/dockerconfigjson Secret made by `kubectl create secret docker-registry`,
// and oci:// WasmFilters applied with `kubectl apply`, reconciled by the controller running with
// exactly the RBAC in deploy/. Right credentials validate; none, wrong ones, or a Secret without
// the registry are Validated=False with reason RegistryAuthFailed and what to check; fixing the
// Secret brings the filter to Validated=True on a retry, with no change to the WasmFilter.
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import test from 'ava';
import { Controller, silentLogger } from '../../controller/index.ts';
import { loadKubeConfig } from '../../controller/controller.ts';
import { MEDIA_TYPES, RegistryClient, pushModule, writeTar } from '../../controller/source/index.ts';
import { filterWasm } from '../helpers/fixtures.ts';
import { cond, eventsFor, sha256, startControllerCluster, waitValidated, wasmFilter, type ControllerCluster } from '../helpers/controller-env.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';

let env: ControllerCluster;
let registry: TestRegistry;
let controller: Controller;
let hello: Uint8Array;
let helloSha: string;

const NS = 'team-a';
const kubectl = (args: string[], input?: string) => env.kube.kubectlOk(args, input === undefined ? undefined : { input });
const apply = (name: string, spec: Record<string, unknown>) => kubectl(['apply', '-f', '-'], wasmFilter(name, NS, spec));
const secret = (name: string, server: string, password: string) =>
  kubectl(['create', 'secret', 'docker-registry', name, '-n', NS, `--docker-server=${server}`, '--docker-username=ann', `--docker-password=${password}`]);

test.before(async () => {
  [env, registry] = await Promise.all([startControllerCluster(), startRegistry({ users: { ann: 's3cr:et' } })]);
  hello = await readFile(filterWasm('hello'));
  helloSha = sha256(hello);
  await pushModule(`${registry.host}/team/hello:v1`, hello, { plainHttp: true, auth: { username: 'ann', password: 's3cr:et' } });
  controller = new Controller({ kubeConfig: loadKubeConfig(env.controllerKubeconfig), listen: '127.0.0.1:0', grpcListen: '127.0.0.1:0', leaseDurationMs: 3000, baseRetryMs: 200, maxRetryMs: 1000, log: silentLogger });
  await controller.start();
});

test.after.always(async () => {
  await controller?.stop();
  await registry?.remove();
  await env?.kube.close();
});

test.serial('an oci:// WasmFilter with an imagePullSecret holding the registry\'s credentials is pulled with them and validated', async (t) => {
  await secret('regcred', registry.host, 's3cr:et');
  await apply('hello', { url: `oci://${registry.host}/team/hello:v1`, imagePullSecret: 'regcred', pluginConfig: { header: 'x-team', value: 'a' } });
  const f = await waitValidated(env.kube, NS, 'hello', 'True');
  t.is(f.status!.digest, `sha256:${helloSha}`);
  t.like(cond(f, 'Validated'), { status: 'True', reason: 'Validated', message: `module sha256:${helloSha} compiled, started and accepted its configuration in Sluice's host` });
  t.is(sha256(controller.moduleByDigest(helloSha)!), helloSha);
});

test.serial('an image whose one tar+gzip layer holds the .wasm (Istio\'s other layout), pinned by digest, validates with the same Secret', async (t) => {
  const client = new RegistryClient(registry.host, { plainHttp: true, auth: { username: 'ann', password: 's3cr:et' } });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layer = gzipSync(writeTar([{ name: 'README', data: Buffer.from('hi') }, { name: 'plugin.wasm', data: hello }]));
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await client.pushBlob('team/image', config), size: config.byteLength },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: await client.pushBlob('team/image', layer), size: layer.byteLength }],
  };
  const manifestDigest = await client.putManifest('team/image', 'v1', Buffer.from(JSON.stringify(manifest)), MEDIA_TYPES.ociManifest);
  await apply('image', { url: `oci://${registry.host}/team/image@${manifestDigest}`, sha256: helloSha, imagePullSecret: 'regcred' });
  const f = await waitValidated(env.kube, NS, 'image', 'True');
  t.is(f.status!.digest, `sha256:${helloSha}`);
});

test.serial('wrong credentials, none, or a Secret without the registry: Validated=False, RegistryAuthFailed, saying what to check', async (t) => {
  await secret('badcred', registry.host, 'wrong');
  await apply('wrong-password', { url: `oci://${registry.host}/team/hello:v1`, imagePullSecret: 'badcred' });
  const wrong = await waitValidated(env.kube, NS, 'wrong-password', 'False');
  t.like(cond(wrong, 'Validated'), { status: 'False', reason: 'RegistryAuthFailed' });
  t.is(cond(wrong, 'Validated')!.message, `registry ${registry.host} answered 401 for repository team/hello (manifest team/hello:v1): the credentials of user "ann" were refused; check the WasmFilter's imagePullSecret (a kubernetes.io/dockerconfigjson Secret with an entry for this registry)`);
  t.is(wrong.status!.digest, undefined);

  await apply('no-secret', { url: `oci://${registry.host}/team/hello:v1` });
  const none = await waitValidated(env.kube, NS, 'no-secret', 'False');
  t.like(cond(none, 'Validated'), { reason: 'RegistryAuthFailed', message: `registry ${registry.host} answered 401 for repository team/hello (manifest team/hello:v1): it asks for credentials and none were given; check the WasmFilter's imagePullSecret (a kubernetes.io/dockerconfigjson Secret with an entry for this registry)` });

  await secret('othercred', 'registry.example.com', 's3cr:et');
  await apply('other-registry', { url: `oci://${registry.host}/team/hello:v1`, imagePullSecret: 'othercred' });
  const other = await waitValidated(env.kube, NS, 'other-registry', 'False');
  t.like(cond(other, 'Validated'), { reason: 'RegistryAuthFailed', message: `Secret ${NS}/othercred has no credentials for ${registry.host} (it has: registry.example.com)` });
  // A Warning Event says it too.
  t.true((await eventsFor(env.kube, NS, 'wrong-password')).some((e) => e.type === 'Warning' && e.reason === 'RegistryAuthFailed'));
});

test.serial('the Secret fixed: the refused filter validates on a retry, with no change to the WasmFilter', async (t) => {
  await kubectl(['delete', 'secret', 'badcred', '-n', NS]);
  await secret('badcred', registry.host, 's3cr:et');
  const f = await waitValidated(env.kube, NS, 'wrong-password', 'True');
  t.is(f.generation, 1);
  t.is(f.status!.digest, `sha256:${helloSha}`);
});
