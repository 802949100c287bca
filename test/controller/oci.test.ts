// Module sources against a real registry (Debian's docker-registry on loopback): both layouts Istio
// accepts, image indexes, digests checked, missing tags, basic auth, the cache and pull policies.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import test from 'ava';
import { ControllerError } from '../../controller/errors.ts';
import { MEDIA_TYPES, RegistryClient, WASM_MEDIA_TYPES, fetchModule, pushModule, writeTar } from '../../controller/source/index.ts';
import { filterWasm } from '../helpers/fixtures.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
let registry: TestRegistry;
let hello: Uint8Array;

test.before(async () => {
  registry = await startRegistry();
  hello = await readFile(filterWasm('hello'));
});
test.after.always(async () => {
  await registry?.remove();
});

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-cache-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Pushes an image whose last layer is `layer` (a tar, maybe gzipped) under `tag`; returns the manifest digest. */
async function pushImage(repo: string, tag: string, layer: Uint8Array, layerType: string, manifestType: string = MEDIA_TYPES.ociManifest): Promise<string> {
  const client = new RegistryClient(registry.host, { plainHttp: true });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const configType = manifestType === MEDIA_TYPES.dockerManifest ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json';
  const configDigest = await client.pushBlob(repo, config);
  const layerDigest = await client.pushBlob(repo, layer);
  const manifest = {
    schemaVersion: 2,
    mediaType: manifestType,
    config: { mediaType: configType, digest: configDigest, size: config.byteLength },
    layers: [{ mediaType: layerType, digest: layerDigest, size: layer.byteLength }],
  };
  return client.putManifest(repo, tag, Buffer.from(JSON.stringify(manifest)), manifestType);
}

async function rejects(t: import('ava').ExecutionContext, p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const error = await t.throwsAsync(p);
  t.true(error instanceof ControllerError, String(error));
  t.is((error as ControllerError).code, code, error?.message);
  t.regex(error!.message, message);
}

test('a module pushed as a Wasm artifact is pulled back by tag and by digest', async (t) => {
  const pushed = await pushModule(`${registry.host}/team/hello:v1`, hello, { plainHttp: true, config: { rootIds: ['hello'] } });
  t.is(pushed.digest, `sha256:${sha(hello)}`);
  t.is(pushed.reference, `${registry.host}/team/hello:v1`);

  // The manifest as the registry serves it: Istio's Wasm artifact media types.
  const res = await fetch(`http://${registry.host}/v2/team/hello/manifests/v1`, { headers: { accept: MEDIA_TYPES.ociManifest } });
  const body = Buffer.from(await res.arrayBuffer());
  t.is(`sha256:${sha(body)}`, pushed.manifestDigest);
  const manifest = JSON.parse(body.toString());
  t.is(manifest.mediaType, MEDIA_TYPES.ociManifest);
  t.is(manifest.artifactType, WASM_MEDIA_TYPES.config);
  t.is(manifest.config.mediaType, 'application/vnd.module.wasm.config.v1+json');
  t.deepEqual(manifest.layers.map((l: { mediaType: string; digest: string }) => [l.mediaType, l.digest]), [['application/vnd.module.wasm.content.layer.v1+wasm', pushed.digest]]);

  const byTag = await fetchModule({ url: `oci://${registry.host}/team/hello:v1` });
  t.is(byTag.digest, pushed.digest);
  t.is(byTag.manifestDigest, pushed.manifestDigest);
  t.deepEqual(Buffer.from(byTag.bytes), Buffer.from(hello));
  const byDigest = await fetchModule({ url: `oci://${registry.host}/team/hello@${pushed.manifestDigest}`, sha256: sha(hello) });
  t.is(byDigest.digest, pushed.digest);
});

test('an image whose tar+gzip layer holds plugin.wasm (OCI manifest) is pulled', async (t) => {
  const layer = gzipSync(writeTar([{ name: 'README', data: Buffer.from('hi') }, { name: 'other.wasm', data: Buffer.from('not it') }, { name: 'plugin.wasm', data: hello }]));
  await pushImage('team/image-gz', 'v1', layer, 'application/vnd.oci.image.layer.v1.tar+gzip');
  const got = await fetchModule({ url: `oci://${registry.host}/team/image-gz:v1` });
  t.is(got.digest, `sha256:${sha(hello)}`);
});

test('a Docker schema2 image whose plain tar layer holds a single .wasm in a folder is pulled', async (t) => {
  const layer = writeTar([{ name: 'etc/motd', data: Buffer.from('x') }, { name: 'filters/hello.wasm', data: hello }]);
  await pushImage('team/image-docker', 'v1', layer, 'application/vnd.docker.image.rootfs.diff.tar', MEDIA_TYPES.dockerManifest);
  const got = await fetchModule({ url: `oci://${registry.host}/team/image-docker:v1` });
  t.is(got.digest, `sha256:${sha(hello)}`);
});

test('an image index: the linux/amd64 entry is used', async (t) => {
  const client = new RegistryClient(registry.host, { plainHttp: true });
  const wrong = writeTar([{ name: 'plugin.wasm', data: Buffer.from('\0asm\x01\0\0\0') }]);
  const armDigest = await pushImage('team/indexed', 'arm', wrong, 'application/vnd.oci.image.layer.v1.tar');
  const amdDigest = await pushImage('team/indexed', 'amd', gzipSync(writeTar([{ name: 'plugin.wasm', data: hello }])), 'application/vnd.oci.image.layer.v1.tar+gzip');
  const size = async (tag: string) => (await client.getManifest('team/indexed', tag)).bytes.byteLength;
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [
      { mediaType: MEDIA_TYPES.ociManifest, digest: armDigest, size: await size('arm'), platform: { os: 'linux', architecture: 'arm64' } },
      { mediaType: MEDIA_TYPES.ociManifest, digest: amdDigest, size: await size('amd'), platform: { os: 'linux', architecture: 'amd64' } },
    ],
  };
  const indexDigest = await client.putManifest('team/indexed', 'multi', Buffer.from(JSON.stringify(index)), MEDIA_TYPES.ociIndex);
  const got = await fetchModule({ url: `oci://${registry.host}/team/indexed:multi` });
  t.is(got.digest, `sha256:${sha(hello)}`);
  t.is(got.manifestDigest, indexDigest);
});

test('layouts that hold no module are refused with SLUICE_ERR_SOURCE_FORMAT', async (t) => {
  await pushImage('team/no-wasm', 'v1', gzipSync(writeTar([{ name: 'bin/sh', data: Buffer.from('x') }])), 'application/vnd.oci.image.layer.v1.tar+gzip');
  await rejects(t, fetchModule({ url: `oci://${registry.host}/team/no-wasm:v1` }), 'SLUICE_ERR_SOURCE_FORMAT', /the image layer holds no \.wasm file \(it has 1 files\): put the module in the image as plugin\.wasm/);
  await pushImage('team/two-wasm', 'v1', writeTar([{ name: 'a.wasm', data: hello }, { name: 'b.wasm', data: hello }]), 'application/vnd.oci.image.layer.v1.tar');
  await rejects(t, fetchModule({ url: `oci://${registry.host}/team/two-wasm:v1` }), 'SLUICE_ERR_SOURCE_FORMAT', /holds 2 \.wasm files \(a\.wasm, b\.wasm\) and none is plugin\.wasm/);
  await pushModule(`${registry.host}/team/not-wasm:v1`, Buffer.from('#!/bin/sh\necho hi\n'), { plainHttp: true });
  await rejects(t, fetchModule({ url: `oci://${registry.host}/team/not-wasm:v1` }), 'SLUICE_ERR_SOURCE_FORMAT', /is not WebAssembly \(it starts with 0x23212f62696e2f73, not \\0asm\): point the url at a compiled \.wasm/);
});

test('a blob corrupted in the registry fails its digest check', async (t) => {
  const module = Buffer.concat([Buffer.from(hello), Buffer.from([0])]); // a blob of its own, so other tests keep theirs
  const pushed = await pushModule(`${registry.host}/team/corrupt:v1`, module, { plainHttp: true });
  const hex = pushed.digest.slice('sha256:'.length);
  const data = join(registry.dir, 'storage/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
  const stored = await readFile(data);
  stored[100] ^= 0xff;
  await writeFile(data, stored);
  await rejects(t, fetchModule({ url: `oci://${registry.host}/team/corrupt:v1` }), 'SLUICE_ERR_SOURCE_DIGEST', new RegExp(`blob ${pushed.digest} of team/corrupt with content whose sha256 is sha256:${sha(stored)}: the blob is corrupt`));
});

test('a module whose sha256 differs from the one the WasmFilter names is refused', async (t) => {
  await pushModule(`${registry.host}/team/pinned:v1`, hello, { plainHttp: true });
  const wrong = 'ab'.repeat(32);
  await rejects(t, fetchModule({ url: `oci://${registry.host}/team/pinned:v1`, sha256: wrong }), 'SLUICE_ERR_SOURCE_DIGEST', new RegExp(`has sha256:${sha(hello)}, not the sha256 ${wrong} the WasmFilter names: if the tag moved on purpose, update spec.sha256`));
});

test('a missing tag, repository or manifest digest is SLUICE_ERR_SOURCE_NOT_FOUND naming it', async (t) => {
  await pushModule(`${registry.host}/team/present:v1`, hello, { plainHttp: true });
  await rejects(t, fetchModule({ url: `oci://${registry.host}/team/present:v2` }), 'SLUICE_ERR_SOURCE_NOT_FOUND', new RegExp(`registry ${registry.host} has no tag v2 in repository team/present \\(404 MANIFEST_UNKNOWN: manifest unknown\\): check the repository and tag`));
  await rejects(t, fetchModule({ url: `oci://${registry.host}/team/absent:v1` }), 'SLUICE_ERR_SOURCE_NOT_FOUND', /has no tag v1 in repository team\/absent \(404 MANIFEST_UNKNOWN/);
  const digest = `sha256:${'0'.repeat(64)}`;
  await rejects(t, fetchModule({ url: `oci://${registry.host}/team/present@${digest}` }), 'SLUICE_ERR_SOURCE_NOT_FOUND', new RegExp(`has no manifest ${digest} in repository team/present`));
});

test('an unreachable registry is SLUICE_ERR_SOURCE_FETCH naming the address', async (t) => {
  const gone = await startRegistry();
  await gone.remove();
  await rejects(t, fetchModule({ url: `oci://${gone.host}/team/x:v1` }), 'SLUICE_ERR_SOURCE_FETCH', new RegExp(`cannot reach the registry at ${gone.host} \\(ECONNREFUSED\\): check the address`));
});

test('a registry with basic auth: no credentials and wrong ones are refused, right ones pull', async (t) => {
  const secured = await startRegistry({ users: { ann: 's3cret' } });
  t.teardown(() => secured.remove());
  const url = `oci://${secured.host}/team/private:v1`;
  await rejects(t, pushModule(`${secured.host}/team/private:v1`, hello, { plainHttp: true, authHint: 'pass --username and --password' }), 'SLUICE_ERR_SOURCE_AUTH', new RegExp(`registry ${secured.host} answered 401 for repository team/private \\(.*\\): it asks for credentials and none were given; pass --username and --password`));
  const pushed = await pushModule(`${secured.host}/team/private:v1`, hello, { plainHttp: true, auth: { username: 'ann', password: 's3cret' } });
  await rejects(t, fetchModule({ url }), 'SLUICE_ERR_SOURCE_AUTH', new RegExp(`registry ${secured.host} answered 401 for repository team/private \\(manifest team/private:v1\\): it asks for credentials and none were given; check the WasmFilter's imagePullSecret`));
  await rejects(t, fetchModule({ url, auth: { username: 'ann', password: 'wrong' } }), 'SLUICE_ERR_SOURCE_AUTH', /answered 401 for repository team\/private \(manifest team\/private:v1\): the credentials of user "ann" were refused; check the WasmFilter's imagePullSecret/);
  const got = await fetchModule({ url, auth: { username: 'ann', password: 's3cret' } });
  t.is(got.digest, pushed.digest);
});

test('the cache answers IfNotPresent pulls with the registry stopped; Always asks the registry', async (t) => {
  const own = await startRegistry();
  t.teardown(() => own.remove());
  const cacheDir = await tempDir(t);
  const pushed = await pushModule(`${own.host}/team/cached:v1`, hello, { plainHttp: true });
  const byDigest = `oci://${own.host}/team/cached@${pushed.manifestDigest}`;
  const byTag = `oci://${own.host}/team/cached:v1`;
  t.is((await fetchModule({ url: byDigest }, { cacheDir })).digest, pushed.digest);
  t.is((await fetchModule({ url: byTag }, { cacheDir })).digest, pushed.digest);
  t.deepEqual(Buffer.from(await readFile(join(cacheDir, 'modules/sha256', `${sha(hello)}.wasm`))), Buffer.from(hello));

  await own.stop();
  const again = await fetchModule({ url: byDigest, pullPolicy: 'IfNotPresent' }, { cacheDir });
  t.deepEqual(Buffer.from(again.bytes), Buffer.from(hello));
  t.is(again.manifestDigest, pushed.manifestDigest);
  t.is((await fetchModule({ url: byTag }, { cacheDir })).digest, pushed.digest);
  await rejects(t, fetchModule({ url: byTag, pullPolicy: 'Always' }, { cacheDir }), 'SLUICE_ERR_SOURCE_FETCH', new RegExp(`cannot reach the registry at ${own.host}`));
});

test('a moved tag: IfNotPresent keeps the cached module, Always pulls the new one', async (t) => {
  const cacheDir = await tempDir(t);
  const first = Buffer.concat([Buffer.from(hello), Buffer.from([1])]);
  const second = Buffer.concat([Buffer.from(hello), Buffer.from([2])]);
  const url = `oci://${registry.host}/team/moving:latest`;
  await pushModule(`${registry.host}/team/moving:latest`, first, { plainHttp: true });
  t.is((await fetchModule({ url }, { cacheDir })).digest, `sha256:${sha(first)}`);
  await pushModule(`${registry.host}/team/moving:latest`, second, { plainHttp: true });
  t.is((await fetchModule({ url, pullPolicy: 'IfNotPresent' }, { cacheDir })).digest, `sha256:${sha(first)}`);
  t.is((await fetchModule({ url, pullPolicy: 'Always' }, { cacheDir })).digest, `sha256:${sha(second)}`);
  // Always updated the tag's record: IfNotPresent now answers with the new module.
  t.is((await fetchModule({ url }, { cacheDir })).digest, `sha256:${sha(second)}`);
});

test('a corrupted cache entry is a miss, fetched again', async (t) => {
  const cacheDir = await tempDir(t);
  const pushed = await pushModule(`${registry.host}/team/recache:v1`, hello, { plainHttp: true });
  const url = `oci://${registry.host}/team/recache@${pushed.manifestDigest}`;
  await fetchModule({ url }, { cacheDir });
  const file = join(cacheDir, 'modules/sha256', `${sha(hello)}.wasm`);
  await writeFile(file, Buffer.from('garbage'));
  const got = await fetchModule({ url }, { cacheDir });
  t.deepEqual(Buffer.from(got.bytes), Buffer.from(hello));
  t.deepEqual(Buffer.from(await readFile(file)), Buffer.from(hello));
});

test('bad urls are SLUICE_ERR_SOURCE_URL saying the accepted forms', async (t) => {
  await rejects(t, fetchModule({ url: 'ftp://example.test/x.wasm' }), 'SLUICE_ERR_SOURCE_URL', /has scheme ftp:\/\/: use oci:\/\/registry\/repo:tag, oci:\/\/registry\/repo@sha256:<hex> or https:\/\/host\/path\.wasm/);
  await rejects(t, fetchModule({ url: 'oci://127.0.0.1:1/Team/X:v1' }), 'SLUICE_ERR_SOURCE_URL', /invalid OCI reference "oci:\/\/127\.0\.0\.1:1\/Team\/X:v1": the repository "Team\/X" must be lower-case/);
  await rejects(t, fetchModule({ url: 'oci://127.0.0.1:1/team/x@sha256:abc' }), 'SLUICE_ERR_SOURCE_URL', /the digest "sha256:abc" is not sha256: followed by 64 lower-case hex digits/);
  await rejects(t, fetchModule({ url: 'oci://127.0.0.1:1/team/x:v1', sha256: 'XYZ' }), 'SLUICE_ERR_SOURCE_URL', /sha256 "XYZ" is not 64 lower-case hex digits/);
});
