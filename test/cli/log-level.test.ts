// `sluice run --log-level` and a filter's `logLevel`: which of a filter's proxy_log lines are
// printed, what proxy_get_log_level returns to it, and which of the proxy's own lines are printed;
// with --workers too. The log-levels fixture logs at every level and answers its level in a header.
import { writeFile } from 'node:fs/promises';
import test from 'ava';
import { request } from 'undici';
import { runSluice, spawnSluice, until, type SluiceProcess } from '../helpers/sluice-run.ts';
import { freePort } from '../helpers/free-port.ts';

const filter = (name: string, extra = '') => `
  - name: ${name}
    module: \${repo}/build/fixtures/log-levels.wasm
    rootId: log-levels
    config: x-${name}-level${extra}`;

const config = (filters: string, admin = '127.0.0.1:0', listener = '127.0.0.1:0') => `
admin: { address: ${admin} }
listeners:
  - name: web
    address: ${listener}
    filters: [${[...filters.matchAll(/- name: (\S+)/g)].map((m) => m[1]).join(', ')}]
    routes: [{ directResponse: { status: 200, body: "ok" } }]
filters:${filters}
`;

const line = (plugin: string, msg: string) => `"plugin":"${plugin}","msg":"${msg}"`;

async function get(port: number, path: string): Promise<Record<string, string | string[] | undefined>> {
  const res = await request(`http://127.0.0.1:${port}${path}`);
  await res.body.text();
  return res.headers;
}

/** Waits until `text` is in the process's stdout or stderr (`stream`). */
const logged = (run: SluiceProcess, stream: 'stdout' | 'stderr', text: string) =>
  until(`${text} in ${stream}:\n${run[stream]()}`, () => (run[stream]().includes(text) ? true : undefined));

test('by default (info) a filter\'s debug and trace lines are not printed, and proxy_get_log_level says info', async (t) => {
  const run = await runSluice(config(filter('levels')));
  t.teardown(() => run.stop());
  t.is((await get(await run.port('web'), '/a'))['x-levels-level'], '2');
  // One stream, written in order: once the info line is there, a debug or trace line would be too.
  await logged(run, 'stdout', line('levels', 'info /a'));
  await logged(run, 'stderr', line('levels', 'warn /a'));
  t.false(run.stdout().includes(line('levels', 'debug /a')), run.stdout());
  t.false(run.stdout().includes(line('levels', 'trace /a')));
  t.true(run.stderr().includes(`"level":"critical",${line('levels', 'level 2')}`));
});

test('--log-level debug prints a filter\'s debug lines (not trace), and proxy_get_log_level says debug', async (t) => {
  const run = await runSluice(config(filter('levels')), ['--log-level', 'debug']);
  t.teardown(() => run.stop());
  t.is((await get(await run.port('web'), '/b'))['x-levels-level'], '1');
  await logged(run, 'stdout', `"level":"debug",${line('levels', 'debug /b')}`);
  await logged(run, 'stdout', line('levels', 'info /b'));
  t.false(run.stdout().includes(line('levels', 'trace /b')), run.stdout());
  t.true(run.stdout().includes(line('levels', 'configure debug')));
});

test('--log-level trace with --workers 2: every worker prints trace lines and says trace', async (t) => {
  const run = await runSluice(config(filter('levels')), ['--log-level', 'trace', '--workers', '2']);
  t.teardown(() => run.stop());
  const port = await run.port('web');
  await run.waitFor('2 worker processes serving');
  for (let i = 0; i < 4; i++) t.is((await get(port, `/w${i}`))['x-levels-level'], '0');
  for (let i = 0; i < 4; i++) await logged(run, 'stdout', `"level":"trace",${line('levels', `trace /w${i}`)}`);
  // Both workers configured their filter at trace.
  t.is(run.stdout().split(line('levels', 'configure trace')).length - 1, 2);
});

test('a filter\'s logLevel overrides --log-level for that filter only, both ways', async (t) => {
  const run = await runSluice(config(`${filter('quiet', '\n    logLevel: error')}${filter('chatty', '\n    logLevel: trace')}${filter('plain')}`));
  t.teardown(() => run.stop());
  const headers = await get(await run.port('web'), '/d');
  t.deepEqual([headers['x-quiet-level'], headers['x-chatty-level'], headers['x-plain-level']], ['4', '0', '2']);
  await logged(run, 'stdout', line('chatty', 'trace /d'));
  await logged(run, 'stdout', line('chatty', 'debug /d'));
  // The chain runs quiet, chatty, plain: plain's warn line comes after anything quiet wrote.
  await logged(run, 'stderr', line('plain', 'warn /d'));
  t.false(run.stderr().includes(line('quiet', 'warn /d')), run.stderr());
  t.false(run.stdout().includes(line('quiet', 'info /d')));
  t.false(run.stdout().includes(line('plain', 'debug /d')));
  t.deepEqual(run.stderr().match(/"msg":"level \d"/g), ['"msg":"level 4"', '"msg":"level 0"', '"msg":"level 2"']);
});


test('--log-level error: the proxy\'s own info lines (listening, applied) are not printed; its errors are', async (t) => {
  const [admin, web] = [await freePort(), await freePort()];
  const run = await runSluice(config(filter('levels'), `127.0.0.1:${admin}`, `127.0.0.1:${web}`), ['--log-level', 'error']);
  t.teardown(() => run.stop());
  const ready = async () => (await request(`http://127.0.0.1:${admin}/ready`).then((r) => r.body.text(), () => '')) === 'ready\n';
  for (let i = 0; !(await ready()); i++) {
    if (i > 300 || run.child.exitCode !== null) throw new Error(`not ready:\n${run.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.is((await get(web, '/e'))['x-levels-level'], '4');
  t.is((await request(`http://127.0.0.1:${admin}/reload`, { method: 'POST' })).statusCode, 200);
  await writeFile(run.file, 'listeners: nope\n');
  await logged(run, 'stderr', '"level":"error","msg":"');
  const levels = new Set([...run.stderr().matchAll(/"level":"(\w+)"/g)].map((m) => m[1]));
  t.deepEqual([...levels].sort(), ['critical', 'error']);
  t.is(run.stdout(), '');
});

test('a --log-level that is not a level is refused, naming the levels', async (t) => {
  const run = spawnSluice(['run', '-c', 'x.yaml', '--log-level', 'verbose']);
  t.is(await run.exited, 2);
  t.is(run.stderr(), 'sluice run: --log-level must be one of trace, debug, info, warn, error, critical, got "verbose"\n');
});
