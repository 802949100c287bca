// OCI references as `oci://` urls and `sluice push` arguments: Docker's defaults, ports, tags and
// digests; and the WWW-Authenticate challenges registries send.
import test from 'ava';
import { formatOciReference, parseOciReference } from '../../controller/source/index.ts';
import { parseChallenge } from '../../controller/source/registry-client.ts';

const D = `sha256:${'0123456789abcdef'.repeat(4)}`;

test('references: registry, repository, tag and digest', (t) => {
  t.deepEqual(parseOciReference('oci://127.0.0.1:5000/team/filter:v1'), { registry: '127.0.0.1:5000', apiHost: '127.0.0.1:5000', repository: 'team/filter', tag: 'v1', digest: undefined });
  t.deepEqual(parseOciReference(`ghcr.io/a/b/c@${D}`), { registry: 'ghcr.io', apiHost: 'ghcr.io', repository: 'a/b/c', tag: undefined, digest: D });
  t.deepEqual(parseOciReference(`localhost:5000/x:v2@${D}`), { registry: 'localhost:5000', apiHost: 'localhost:5000', repository: 'x', tag: 'v2', digest: D });
  t.deepEqual(parseOciReference('oci://[::1]:5000/team/x'), { registry: '[::1]:5000', apiHost: '[::1]:5000', repository: 'team/x', tag: 'latest', digest: undefined });
  // Docker Hub: no registry component; single names are library/ images; the API is elsewhere.
  t.deepEqual(parseOciReference('envoy:v1'), { registry: 'docker.io', apiHost: 'registry-1.docker.io', repository: 'library/envoy', tag: 'v1', digest: undefined });
  t.deepEqual(parseOciReference('team/filter'), { registry: 'docker.io', apiHost: 'registry-1.docker.io', repository: 'team/filter', tag: 'latest', digest: undefined });
  t.is(formatOciReference(parseOciReference(`oci://ghcr.io/a/b:v1@${D}`)), `ghcr.io/a/b:v1@${D}`);
});

test('references that break the grammar say which part', (t) => {
  t.throws(() => parseOciReference('oci://'), { code: 'SLUICE_ERR_SOURCE_URL', message: /invalid OCI reference "oci:\/\/": it is empty/ } as never);
  t.throws(() => parseOciReference('ghcr.io/team/x:-bad'), { message: /the tag "-bad" is not valid/ });
  t.throws(() => parseOciReference('ghcr.io/team//x:v1'), { message: /the repository "team\/\/x" must be lower-case path components/ });
  t.throws(() => parseOciReference('ghcr.io/team/x@sha512:00'), { message: /the digest "sha512:00" is not sha256: followed by 64 lower-case hex digits/ });
  t.throws(() => parseOciReference('bad_host.io:99/x:v1'), { message: /the registry "bad_host\.io:99" is not a host name/ });
});

test('WWW-Authenticate challenges', (t) => {
  t.deepEqual(parseChallenge('Bearer realm="https://auth.example.test/token",service="registry.example.test",scope="repository:team/x:pull,push"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.example.test/token', service: 'registry.example.test', scope: 'repository:team/x:pull,push' },
  });
  t.deepEqual(parseChallenge('Basic realm="basic-realm"'), { scheme: 'basic', params: { realm: 'basic-realm' } });
  t.deepEqual(parseChallenge('Bearer realm=https://a.test/t, service=s'), { scheme: 'bearer', params: { realm: 'https://a.test/t', service: 's' } });
  t.deepEqual(parseChallenge('Bearer realm="a\\"b"'), { scheme: 'bearer', params: { realm: 'a"b' } });
  t.is(parseChallenge(''), undefined);
});
