// `sluice run -c FILE` as an operator runs it: a bad file is refused naming the path and the
// problem; a good one serves; edits are applied hot, a broken edit is refused while the running
// config keeps serving; SIGTERM drains and exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { request } from 'undici';
import { repoRoot } from '../helpers/fixtures.ts';

const config = (body: string, extra = '') => `
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /${extra} }
        directResponse: { status: 200, body: "${body}" }
`;

function sluice(args: string[]): { child: ChildProcess; stderr: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [join(repoRoot, 'bin/sluice.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => stderr, exited };
}

async function until<T>(what: string, fn: () => T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('an invalid config is refused with the path and the problem, exit code 1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-run-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'sluice.yaml');
  await writeFile(file, config('x').replace('prefix:', 'prefx:'));
  const run = sluice(['run', '-c', file]);
  t.is(await run.exited, 1);
  t.true(run.stderr().includes('listeners[0].routes[0].match: unknown property "prefx"'), run.stderr());
});

test('serves, applies an edit hot, refuses a broken edit, drains on SIGTERM', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-run-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'sluice.yaml');
  await writeFile(file, config('one'));
  const run = sluice(['run', '-c', file, '--drain-ms', '500']);
  t.teardown(() => run.child.kill('SIGKILL'));
  const port = await until('the listener', () => /web listening on 127\.0\.0\.1:(\d+)/.exec(run.stderr())?.[1]);
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
