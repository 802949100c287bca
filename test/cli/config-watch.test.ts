// `sluice run` follows its config file through atomic replaces: `mv new.yaml sluice.yaml` (how
// editors save) and a Kubernetes ConfigMap volume's symlink swap (sluice.yaml -> ..data/sluice.yaml,
// ..data -> ..<timestamp>, ..data replaced by a rename). Every change applies, not just the first.
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { request } from 'undici';
import { runSluice, spawnSluice, until } from '../helpers/sluice-run.ts';

const config = (body: string) => `
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes: [{ directResponse: { status: 200, body: "${body}" } }]
`;

/** Resolves once the listener answers `body` (the change applied), or fails naming what it still answers. */
async function answers(port: number, body: string): Promise<string> {
  let seen = '';
  const deadline = Date.now() + 8000;
  while (Date.now() < deadline) {
    seen = await (await request(`http://127.0.0.1:${port}/`)).body.text();
    if (seen === body) return seen;
    await new Promise((r) => setTimeout(r, 50));
  }
  return seen;
}

test('three successive atomic replaces by rename each apply', async (t) => {
  const run = await runSluice(config('v1'));
  t.teardown(() => run.stop());
  const port = await run.port('web');
  t.is(await answers(port, 'v1'), 'v1');
  for (const v of ['v2', 'v3', 'v4']) {
    const next = join(run.dir, `.sluice.yaml.${v}.tmp`);
    await writeFile(next, config(v));
    await rename(next, run.file);
    t.is(await answers(port, v), v);
  }
  // An in-place write still applies after the renames.
  await writeFile(run.file, config('v5'));
  t.is(await answers(port, 'v5'), 'v5');
  t.is(run.stderr().split('"msg":"applied ').length - 1, 4);
});

test('a ConfigMap volume: the ..data symlink swapped twice, each version applies', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-configmap-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // What the kubelet's atomic writer does: a new timestamped dir, a ..data_tmp link to it, renamed over ..data, the old dir removed.
  let current: string | undefined;
  const publish = async (version: string, body: string) => {
    const versionDir = `..2026_12_05_08_00_0${version}.000000001`;
    await mkdir(join(dir, versionDir));
    await writeFile(join(dir, versionDir, 'sluice.yaml'), config(body));
    await symlink(versionDir, join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    if (current) await rm(join(dir, current), { recursive: true });
    current = versionDir;
  };
  await publish('1', 'one');
  await symlink('..data/sluice.yaml', join(dir, 'sluice.yaml'));

  const run = spawnSluice(['run', '-c', join(dir, 'sluice.yaml')]);
  t.teardown(async () => {
    run.child.kill('SIGKILL');
    await run.exited;
  });
  const port = await until('the web listener', () => {
    if (run.child.exitCode !== null) throw new Error(`sluice exited:\n${run.stderr()}`);
    const m = /web listening on [^:]+:(\d+)/.exec(run.stderr());
    return m ? Number(m[1]) : undefined;
  });
  t.is(await answers(port, 'one'), 'one');
  await publish('2', 'two');
  t.is(await answers(port, 'two'), 'two');
  await publish('3', 'three');
  t.is(await answers(port, 'three'), 'three');
  t.is(run.stderr().split('"msg":"applied ').length - 1, 2);
});
