// A filter author's own repository, end to end: the sluice package packed with `npm pack`, then
// in an empty folder outside the checkout `sluice new` from that package, `npm install`,
// `npm test`, `npm run push` to a real registry (docker-registry on loopback), the pushed
// module pulled back by the WasmFilter the push printed, and that WasmFilter piped to
// `kubectl apply` against a real API server, where the controller validates it: from an empty
// folder to a filter in force in five commands.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { parse } from 'yaml';
import { Controller, silentLogger } from '../../controller/index.ts';
import { loadKubeConfig } from '../../controller/controller.ts';
import { fetchModule } from '../../controller/source/index.ts';
import { cond, startControllerCluster, waitValidated, type ControllerCluster } from '../helpers/controller-env.ts';
import { repoRoot } from '../helpers/fixtures.ts';
import { startRegistry } from '../helpers/registry.ts';

const NPM_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund'];

function run(file: string, args: string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, timeout: 180_000, env: { ...process.env, npm_config_update_notifier: 'false' } }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed in ${cwd} (${error.message.split('\n')[0]}):\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

test('from an empty folder to a filter in force: sluice new, npm install, npm test, npm run push, kubectl apply', async (t) => {
  t.timeout(300_000);
  const registry = await startRegistry();
  const dir = await mkdtemp(join(tmpdir(), 'sluice-standalone-'));
  // The API server starts while npm works.
  let cluster: ControllerCluster | undefined;
  let controller: Controller | undefined;
  const clusterStarted = startControllerCluster().then((c) => (cluster = c));
  clusterStarted.catch(() => {});
  t.teardown(async () => {
    await controller?.stop();
    await clusterStarted.catch(() => {});
    await cluster?.kube.close();
    await registry.remove();
    await rm(dir, { recursive: true, force: true });
  });

  // The package as it would be published. dist/ is already built by `npm test`'s build step, so
  // the prepack script is skipped: rebuilding dist/ here would race the tests running beside this one.
  const packed = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir, repoRoot], dir);
  const tarball = join(dir, packed.stdout.trim().split('\n').pop()!);
  // What `npx --package=<tarball> sluice` does, into a folder this test removes afterwards
  // instead of npx's cache.
  const tools = join(dir, 'tools');
  await mkdir(tools);
  await run('npm', ['install', '--prefix', tools, ...NPM_FLAGS, tarball], tools);

  const work = join(dir, 'work');
  await mkdir(work);
  const created = await run(join(tools, 'node_modules/.bin/sluice'), ['new', 'my-filter'], work);
  t.regex(created.stdout, /^created filter project "my-filter" in my-filter:\n/);
  const project = join(work, 'my-filter');
  t.deepEqual((await readdir(project, { recursive: true })).sort(), [
    '.gitignore',
    'README.md',
    'assembly',
    'assembly/index.ts',
    'config.example.json',
    'config.schema.json',
    'package.json',
    'test',
    'test/my-filter.test.js',
  ]);
  const source = await readFile(join(project, 'assembly/index.ts'), 'utf8');
  t.regex(source, /} from "sluice\/sdk\/assembly";\n/);
  t.regex(source, /\nexport \* from "sluice\/sdk\/assembly\/exports";\n$/);

  await run('npm', ['install', ...NPM_FLAGS, tarball], project);
  const tested = await run('npm', ['test'], project);
  t.regex(tested.stdout, /^# pass 2$/m);
  t.regex(tested.stdout, /^# fail 0$/m);

  const pushed = await run('npm', ['run', '--silent', 'push', '--', `${registry.host}/team/my-filter:v1`], project);
  const filter = parse(pushed.stdout);
  const wasm = await readFile(join(project, 'build/my-filter.wasm'));
  const hex = createHash('sha256').update(wasm).digest('hex');
  t.is(filter.kind, 'WasmFilter');
  t.is(filter.metadata.name, 'my-filter');
  t.regex(filter.spec.url, new RegExp(`^oci://${registry.host}/team/my-filter@sha256:[a-f0-9]{64}$`));
  t.deepEqual({ sha256: filter.spec.sha256, rootId: filter.spec.rootId, pluginConfig: filter.spec.pluginConfig }, { sha256: hex, rootId: 'my-filter', pluginConfig: { value: 'on' } });
  t.regex(pushed.stderr, new RegExp(`^pushed ${registry.host}/team/my-filter:v1\\n`, 'm'));

  const pulled = await fetchModule({ url: filter.spec.url, sha256: filter.spec.sha256 });
  t.is(pulled.digest, `sha256:${hex}`);
  t.deepEqual(Buffer.from(pulled.bytes), Buffer.from(wasm));

  // The push's advice, followed: its stdout piped to kubectl apply, and the controller validates it.
  await clusterStarted;
  controller = new Controller({ kubeConfig: loadKubeConfig(cluster!.controllerKubeconfig), listen: '127.0.0.1:0', grpcListen: '127.0.0.1:0', leaseDurationMs: 3000, baseRetryMs: 200, maxRetryMs: 1000, log: silentLogger });
  await controller.start();
  t.regex(pushed.stderr, /\| kubectl apply -n <namespace> -f -/);
  const applied = await cluster!.kube.kubectlOk(['apply', '-n', 'team-a', '-f', '-'], { input: pushed.stdout });
  t.is(applied.trim(), 'wasmfilter.sluice.dev/my-filter created');
  const validated = await waitValidated(cluster!.kube, 'team-a', 'my-filter', 'True');
  t.is(validated.status?.digest, `sha256:${hex}`);
  t.like(cond(validated, 'Validated'), { status: 'True', reason: 'Validated', message: `module sha256:${hex} compiled, started and accepted its configuration in Sluice's host` });
});
