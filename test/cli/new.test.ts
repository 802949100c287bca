// `sluice new` from a clean checkout with no filters: the scaffolded filter builds and its own
// harness test passes, as a filter author would run it.
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { repoRoot } from '../helpers/fixtures.ts';

const run = promisify(execFile);
const CHECKOUT = ['package.json', 'tsconfig.json', 'asconfig.json', 'bin', 'runtime', 'sdk', 'scripts', 'controller'];

test('sluice new scaffolds a filter that builds and passes its test', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-new-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const entry of CHECKOUT) await cp(join(repoRoot, entry), join(dir, entry), { recursive: true });
  await symlink(join(repoRoot, 'node_modules'), join(dir, 'node_modules'));

  const cli = `import('./runtime/cli/main.ts').then(async (m) => { process.exitCode = await m.main(process.argv.slice(1)); })`;
  const created = await run(process.execPath, ['--import=tsx', '-e', cli, 'new', 'my-filter'], { cwd: dir });
  t.regex(created.stdout, /^created filter "my-filter" in filters\/my-filter:/);
  t.deepEqual((await readdir(join(dir, 'filters/my-filter'), { recursive: true })).sort(), [
    'README.md',
    'assembly',
    'assembly/index.ts',
    'config.schema.json',
    'test',
    'test/my-filter.test.ts',
  ]);

  const refused = await run(process.execPath, ['--import=tsx', '-e', cli, 'new', 'my-filter'], { cwd: dir }).catch((e) => e);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /my-filter/);

  const tested = await run(join(dir, 'node_modules/.bin/ava'), ['filters/my-filter/test/my-filter.test.ts'], { cwd: dir, timeout: 240_000 });
  t.regex(tested.stdout + tested.stderr, /2 tests passed/);
});

test('sluice new refuses a name that is not a DNS label', async (t) => {
  const { main } = await import('../../runtime/cli/main.ts');
  const chunks: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((c: string) => (chunks.push(String(c)), true)) as typeof process.stderr.write;
  try {
    t.is(await main(['new', 'My_Filter', '--dir', join(tmpdir(), 'never-created')]), 1);
  } finally {
    process.stderr.write = write;
  }
  t.regex(chunks.join(''), /invalid filter name "My_Filter": use lower-case letters, digits and single dashes/);
});
