// `sluice run -c FILE` as an operator runs it: a bad file is refused naming the path and the
// problem; a good one serves; edits are applied hot, a broken edit is refused while the running
// config keeps serving; SIGTERM drains and exits 0.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { request } from 'undici';
import { runSluice, spawnSluice, until } from '../helpers/sluice-run.ts';

const config = (body: string, extra = '') => `
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /${extra} }
        directResponse: { status: 200, body: "${body}" }
`;

test('an invalid config is refused with the path and the problem, exit code 1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-run-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'sluice.yaml');
  await writeFile(file, config('x').replace('prefix:', 'prefx:'));
  const run = spawnSluice(['run', '-c', file]);
  t.is(await run.exited, 1);
  t.true(run.stderr().includes('listeners[0].routes[0].match: unknown property "prefx"'), run.stderr());
});

test('serves, applies an edit hot, refuses a broken edit, drains on SIGTERM', async (t) => {
  const run = await runSluice(config('one'), ['--drain-ms', '500']);
  t.teardown(() => run.stop());
  const file = run.file;
  const port = await run.port('web');
  const get = async () => (await request(`http://127.0.0.1:${port}/x`)).body.text();
  t.is(await get(), 'one');

  await writeFile(file, config('two'));
  await until('the edit to apply', () => (run.stderr().includes('"msg":"applied ') ? true : undefined));
  t.is(await get(), 'two');

  await writeFile(file, config('three', '\n        bogus: 1'));
  await until('the broken edit to be refused', () => (run.stderr().includes('config refused, the running one stays') ? true : undefined));
  t.is(await get(), 'two');

  run.child.kill('SIGHUP');
  await until('SIGHUP', () => (run.stderr().includes('"msg":"SIGHUP: config refused') ? true : undefined));

  run.child.kill('SIGTERM');
  t.is(await run.exited, 0);
  t.true(run.stderr().includes('"msg":"stopped"'));
});
