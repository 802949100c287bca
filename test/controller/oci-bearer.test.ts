// Bearer token auth against a real registry (docker-registry with `auth: token`) and a loopback
// token service: the challenge's realm, service and scope are followed, Basic credentials go to
// the realm, anonymous pulls work where the token service allows them, refusals are AUTH errors.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import test from 'ava';
import { ControllerError } from '../../controller/errors.ts';
import { fetchModule, pushModule } from '../../controller/source/index.ts';
import { tlsTest } from '../helpers/certs.ts';
import { filterWasm } from '../helpers/fixtures.ts';
import { startRegistry } from '../helpers/registry.ts';
import { startTokenServer } from '../helpers/token-server.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const withSortedActions = (r: { user: string; scope: string; granted: boolean }) => {
  const [type, name, actions] = r.scope.split(':');
  return { ...r, scope: `${type}:${name}:${actions.split(',').sort().join(',')}` };
};

tlsTest('a registry with token auth: push and pull with Bearer tokens from its realm', async (t) => {
  const tokens = await startTokenServer({ users: { ann: 's3cret' }, publicRepos: ['team/public'] });
  const registry = await startRegistry({ token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, rootCertBundle: tokens.certFile } });
  t.teardown(async () => {
    await registry.remove();
    await tokens.close();
  });
  const hello = await readFile(filterWasm('hello'));
  const auth = { username: 'ann', password: 's3cret' };

  const pushed = await pushModule(`${registry.host}/team/private:v1`, hello, { plainHttp: true, auth });
  await pushModule(`${registry.host}/team/public:v1`, hello, { plainHttp: true, auth });
  // The scope is the one the registry's challenge names: pull for the blob check, then pull and push
  // for the upload. The registry lists those two actions in either order (it keeps them in a Go map).
  t.deepEqual(tokens.requests.slice(0, 2).map(withSortedActions), [
    { user: 'ann', scope: 'repository:team/private:pull', granted: true },
    { user: 'ann', scope: 'repository:team/private:pull,push', granted: true },
  ]);
  // The registry really checks tokens: a made-up one is refused.
  const forged = await fetch(`http://${registry.host}/v2/team/private/manifests/v1`, { headers: { authorization: 'Bearer e30.e30.AAAA' } });
  await forged.arrayBuffer();
  t.is(forged.status, 401);

  const got = await fetchModule({ url: `oci://${registry.host}/team/private@${pushed.manifestDigest}`, auth });
  t.is(got.digest, `sha256:${sha(hello)}`);
  t.deepEqual(tokens.requests.at(-1), { user: 'ann', scope: 'repository:team/private:pull', granted: true });

  // Anonymous: a token for the public repository, none for the private one.
  t.is((await fetchModule({ url: `oci://${registry.host}/team/public:v1` })).digest, `sha256:${sha(hello)}`);
  t.deepEqual(tokens.requests.at(-1), { user: 'anonymous', scope: 'repository:team/public:pull', granted: true });
  const anonymous = await t.throwsAsync(fetchModule({ url: `oci://${registry.host}/team/private:v1` }));
  t.is((anonymous as ControllerError).code, 'SLUICE_ERR_SOURCE_AUTH');
  t.is(anonymous!.message, `registry ${registry.host} answered 401 for repository team/private (token from 127.0.0.1:${new URL(tokens.realm).port}): it asks for credentials and none were given; check the WasmFilter's imagePullSecret (a kubernetes.io/dockerconfigjson Secret with an entry for this registry)`);

  const wrong = await t.throwsAsync(fetchModule({ url: `oci://${registry.host}/team/private:v1`, auth: { username: 'ann', password: 'nope' } }));
  t.is((wrong as ControllerError).code, 'SLUICE_ERR_SOURCE_AUTH');
  t.regex(wrong!.message, /answered 401 for repository team\/private \(token from 127\.0\.0\.1:\d+\): the credentials of user "ann" were refused/);
  t.deepEqual(tokens.requests.at(-1), { user: 'ann', scope: 'repository:team/private:pull', granted: false });
});
