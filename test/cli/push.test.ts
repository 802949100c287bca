// `sluice push` as a process against a real registry (docker-registry on loopback): the filter is
// built, pushed as a Wasm artifact, and the printed WasmFilter pulls back the same module; bad
// input (no filter, a build error, a refused login, an unreachable registry) says what to do.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { parse } from 'yaml';
import { fetchModule } from '../../controller/source/index.ts';
import { filterWasm, repoRoot } from '../helpers/fixtures.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
let registry: TestRegistry;

test.before(async () => {
  registry = await startRegistry();
});
test.after.always(async () => {
  await registry?.remove();
});

function sluice(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(repoRoot, 'bin/sluice.js'), ...args], { cwd: opts.cwd ?? repoRoot, env: { ...process.env, ...opts.env }, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('push builds a checkout filter, pushes it and prints a WasmFilter that pulls the same module', async (t) => {
  const ref = `${registry.host}/team/hello:v1`;
  const out = await sluice(['push', ref, 'filters/hello', '--plain-http']);
  t.is(out.code, 0, out.stderr);
  const hello = await readFile(filterWasm('hello'));
  const filter = parse(out.stdout);
  const manifestDigest = /^ {2}manifest {2}(sha256:[a-f0-9]{64})$/m.exec(out.stderr)?.[1];
  t.truthy(manifestDigest, out.stderr);
  t.regex(out.stderr, new RegExp(`^pushed ${ref}\\n  manifest  sha256:[a-f0-9]{64}\\n  module    sha256:${sha(hello)} \\(${hello.byteLength} bytes, .*hello\\.wasm\\)\\n`));
  t.deepEqual(filter, {
    apiVersion: 'sluice.dev/v1alpha1',
    kind: 'WasmFilter',
    metadata: { name: 'hello' },
    spec: {
      url: `oci://${registry.host}/team/hello@${manifestDigest}`,
      sha256: sha(hello),
      rootId: 'hello',
      // the first example of filters/hello/config.schema.json
      pluginConfig: { header: 'x-hello', value: 'world', denyPath: '/forbidden' },
    },
  });
  const pulled = await fetchModule({ url: filter.spec.url, sha256: filter.spec.sha256 });
  t.is(pulled.digest, `sha256:${sha(hello)}`);
  // The tag points at the same manifest.
  t.is((await fetchModule({ url: `oci://${ref}` })).manifestDigest, manifestDigest);
});

test('push to a registry with basic auth: refused without credentials, accepted with them from the environment', async (t) => {
  const secured = await startRegistry({ users: { ci: 'pushpass' } });
  t.teardown(() => secured.remove());
  const ref = `${secured.host}/team/hello:v2`;
  const refused = await sluice(['push', ref, 'filters/hello']);
  t.is(refused.code, 1);
  t.is(
    refused.stderr,
    `sluice push: SLUICE_ERR_SOURCE_AUTH: registry ${secured.host} answered 401 for repository team/hello (blob sha256:${sha(Buffer.from(JSON.stringify({ type: 'envoy_proxy_wasm_api_v1', abiVersions: ['proxy_abi_version_0_2_1'], rootIds: ['hello'] })))}): it asks for credentials and none were given; pass --username and --password (or SLUICE_REGISTRY_USERNAME and SLUICE_REGISTRY_PASSWORD) of a user who may push there\n`,
  );
  const wrong = await sluice(['push', ref, 'filters/hello', '--username', 'ci', '--password', 'nope']);
  t.is(wrong.code, 1);
  t.regex(wrong.stderr, /the credentials of user "ci" were refused; pass --username and --password/);
  const ok = await sluice(['push', ref, 'filters/hello'], { env: { SLUICE_REGISTRY_USERNAME: 'ci', SLUICE_REGISTRY_PASSWORD: 'pushpass' } });
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /\n {2}# imagePullSecret: <secret-name>\n$/);
  const half = await sluice(['push', ref, 'filters/hello'], { env: { SLUICE_REGISTRY_USERNAME: 'ci' } });
  t.is(half.stderr, 'sluice push: give both a username and a password (--username/--password, or SLUICE_REGISTRY_USERNAME/SLUICE_REGISTRY_PASSWORD), or neither\n');
});

test('push says what is wrong: no filter in the folder, a build error, an unreachable registry, a digest reference', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-push-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const none = await sluice(['push', `${registry.host}/team/x:v1`, dir]);
  t.is(none.code, 1);
  t.is(none.stderr, `sluice push: no filter in ${dir}: expected assembly/index.ts there (create one with \`sluice new <name>\`, or give the filter's folder)\n`);

  // A standalone project whose filter does not compile: asc's own message comes through.
  await mkdir(join(dir, 'assembly'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'broken' }));
  await writeFile(join(dir, 'assembly', 'index.ts'), 'import { log } from "sluice/sdk/assembly";\nconst x: i32 = "text";\nexport * from "sluice/sdk/assembly/exports";\n');
  const uninstalled = await sluice(['build', dir]);
  t.is(uninstalled.code, 1);
  t.is(uninstalled.stderr, `sluice build: the sluice package is not installed in ${dir}: run \`npm install\` there first\n`);
  await mkdir(join(dir, 'node_modules'));
  await symlink(repoRoot, join(dir, 'node_modules', 'sluice'));
  const broken = await sluice(['push', `${registry.host}/team/x:v1`, dir]);
  t.is(broken.code, 1);
  t.regex(broken.stderr, new RegExp(`^sluice push: building ${dir} failed: \\d+ compile error\\(s\\)\\n`));
  t.regex(broken.stderr, /TS2322: Type '~lib\/string\/String' is not assignable to type 'i32'/);

  const closed = await startRegistry();
  await closed.remove();
  const unreachable = await sluice(['push', `${closed.host}/team/hello:v1`, 'filters/hello']);
  t.is(unreachable.code, 1);
  t.is(unreachable.stderr, `sluice push: SLUICE_ERR_SOURCE_FETCH: cannot reach the registry at ${closed.host} (ECONNREFUSED): check the address, that the server is up, and that this network may reach it\n`);

  const digest = await sluice(['push', `${registry.host}/team/hello@sha256:${'a'.repeat(64)}`, 'filters/hello']);
  t.is(digest.code, 1);
  t.is(digest.stderr, `sluice push: push to a tag (e.g. ${registry.host}/team/hello:v1), not a digest: the digest is printed after the push\n`);
});
