// Operating a node proxy: `sluice --version`; `sluice status` against a real `sluice run` (file
// mode and node mode serving its last good config from disk, with capture where this machine can);
// `--metrics-listen`, the read-only metrics and health endpoint the DaemonSet's probes and
// Prometheus use.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { request } from 'undici';
import { captureUnavailable } from '../../runtime/capture/index.ts';
import { repoRoot } from '../helpers/fixtures.ts';
import { runSluice, spawnSluice, until } from '../helpers/sluice-run.ts';

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
const config = (value: string) => `
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [stamp]
    routes:
      - match: { prefix: / }
        directResponse: { status: 200, body: "ok" }
filters:
  - name: stamp
    module: \${repo}/build/filters/headers.wasm
    failStrategy: FAIL_OPEN
    config: { response: { add: [{ name: x-stamp, value: "${value}" }] } }
`;
const hash16 = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16);
const status = async (args: string[]) => {
  const p = spawnSluice(['status', ...args]);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
};

test('sluice --version and sluice version print package.json\'s version', async (t) => {
  for (const flag of ['--version', 'version']) {
    const p = spawnSluice([flag]);
    t.is(await p.exited, 0);
    t.is(p.stdout(), `sluice ${pkg.version}\n`);
  }
});

test('sluice status reads a running proxy: config file and version, filters, capture off; follows a reload', async (t) => {
  const run = await runSluice(config('one'), ['--drain-ms', '100']);
  t.teardown(() => run.stop());
  const admin = `127.0.0.1:${await run.adminPort()}`;
  const web = await run.port('web');
  t.is((await request(`http://127.0.0.1:${web}/`)).headers['x-stamp'], 'one');

  const human = await status(['--admin', admin]);
  t.is(human.code, 0, human.stderr);
  const version1 = hash16(readFileSync(run.file, 'utf8'));
  const lines = human.stdout.split('\n');
  t.deepEqual(lines.slice(0, 3), [`proxy:    ready (admin ${admin})`, `config:   file ${run.file}, version ${version1}`, 'filters:  1']);
  t.regex(lines[3], /^ {2}stamp {2}active {2}healthy {2}FAIL_OPEN {2}sha256:[0-9a-f]{12} {2}streams 1 {2}failures 0 {2}quarantines 0$/);
  t.is(lines[4], 'capture:  off (no --capture-socket)');

  const json = await status(['--admin', admin, '--json']);
  t.is(json.code, 0);
  const s = JSON.parse(json.stdout);
  t.deepEqual([s.ready, s.source, s.version, s.capturedPods, s.filters.map((f: any) => [f.name, f.state, f.streams])], [true, { file: run.file }, version1, null, [['stamp', 'active', 1]]]);

  await writeFile(run.file, config('two').replaceAll('${repo}', repoRoot.replace(/\/$/, '')));
  await until('the edit to apply', () => (run.stderr().includes('"msg":"applied ') ? true : undefined));
  const after = JSON.parse((await status(['--admin', admin, '--json'])).stdout);
  t.is(after.version, hash16(readFileSync(run.file, 'utf8')));
  t.not(after.version, version1);
});

test('sluice status says what to check when no proxy answers, and refuses a bad address', async (t) => {
  const none = await status(['--admin', '127.0.0.1:1']);
  t.is(none.code, 3);
  t.is(none.stdout, '');
  t.regex(none.stderr, /^sluice status: no answer from the node proxy's admin endpoint at http:\/\/127\.0\.0\.1:1\/status \(ECONNREFUSED\); is `sluice run` running here\?/);
  const bad = await status(['--admin', 'localhost']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /^sluice status: SLUICE_ERR_CONFIG: --admin must be HOST:PORT, e\.g\. 127\.0\.0\.1:15000, got "localhost"\n$/);
});

test('--metrics-listen serves /healthz, /ready and /stats/prometheus read-only, nothing else', async (t) => {
  const run = await runSluice(config('one'), ['--drain-ms', '100', '--metrics-listen', '127.0.0.1:0']);
  t.teardown(() => run.stop());
  const port = await run.port('metrics');
  const web = await run.port('web');
  await request(`http://127.0.0.1:${web}/`).then((r) => r.body.text());
  const get = async (path: string, method = 'GET') => {
    const r = await request(`http://127.0.0.1:${port}${path}`, { method: method as 'GET' });
    return [r.statusCode, await r.body.text()] as const;
  };
  t.deepEqual(await get('/healthz'), [200, 'ok\n']);
  t.deepEqual(await get('/ready'), [200, 'ready\n']);
  const [code, text] = await get('/stats/prometheus');
  t.is(code, 200);
  t.regex(text, /^istio_requests_total\{[^}]*response_code="200"[^}]*sluice_listener="web"[^}]*\} 1$/m);
  t.regex(text, /^sluice_filter_streams_total\{filter="stamp"\} 1$/m);
  t.deepEqual(await get('/config_dump'), [404, 'this port serves /healthz, /ready and /stats/prometheus; the admin endpoint has the rest\n']);
  t.deepEqual(await get('/reload', 'POST'), [405, 'read-only: GET /healthz, /ready or /stats/prometheus\n']);
});

test('node mode: /ready waits for a config, then status shows the controller, node and version served from disk', async (t) => {
  const state = await mkdtemp(join(tmpdir(), 'sluice-status-node-'));
  t.teardown(() => rm(state, { recursive: true, force: true }));
  const tokenFile = join(state, 'token');
  await writeFile(tokenFile, 'not-a-real-token');
  // Nothing listens on port 1: the agent keeps retrying, the proxy waits for a config.
  const args = ['run', '--controller', '127.0.0.1:1', '--node-name', 'node-a', '--token-file', tokenFile, '--state-dir', state, '--drain-ms', '100', '--metrics-listen', '127.0.0.1:0'];
  const empty = spawnSluice(args);
  t.teardown(() => void empty.child.kill('SIGKILL'));
  const port = Number(await until(`the metrics line; it said:\n${empty.stderr()}`, () => /metrics listening on [^:]+:(\d+)/.exec(empty.stderr())?.[1]));
  const ready = await request(`http://127.0.0.1:${port}/ready`);
  t.deepEqual([ready.statusCode, await ready.body.text()], [503, 'no config yet (waiting for the controller or the last good config)\n']);
  t.is((await request(`http://127.0.0.1:${port}/healthz`)).statusCode, 200);
  empty.child.kill('SIGTERM');
  t.is(await empty.exited, 0);

  // The last good config on disk, as a previous run left it; with capture when this machine can.
  const capture = captureUnavailable() === undefined;
  if (!capture) t.log(`capture not tried: ${captureUnavailable()}`);
  const socket = join(state, 'run/cni.sock');
  await mkdir(join(state, 'run'));
  await writeFile(join(state, 'last-good.json'), JSON.stringify({ version: 'v-disk-1', config: JSON.stringify({ admin: { address: '127.0.0.1:0' }, listeners: [{ name: 'web', address: '127.0.0.1:0', routes: [{ match: { prefix: '/' }, directResponse: { status: 200 } }] }] }) }));
  // The tunnel on a free loopback port: 15008 may be taken by a test running beside this one.
  const node = spawnSluice([...args, ...(capture ? ['--capture-socket', socket, '--tunnel-listen', '127.0.0.1:0'] : [])]);
  t.teardown(() => void node.child.kill('SIGKILL'));
  const admin = Number(await until(`the admin line; it said:\n${node.stderr()}`, () => /admin listening on [^:]+:(\d+)/.exec(node.stderr())?.[1]));
  if (capture) await until(`the capture socket; it said:\n${node.stderr()}`, () => (node.stderr().includes(`capture: CNI API listening on ${socket}`) ? true : undefined));
  const s = await status(['--admin', `127.0.0.1:${admin}`, '--json']);
  t.is(s.code, 0, s.stderr);
  t.deepEqual(JSON.parse(s.stdout), { ready: true, source: { controller: '127.0.0.1:1', node: 'node-a' }, version: 'v-disk-1', capturedPods: capture ? [] : null, filters: [] });
  const human = await status(['--admin', `127.0.0.1:${admin}`]);
  t.is(human.stdout.split('\n')[1], 'config:   from the controller 127.0.0.1:1 for node node-a, version v-disk-1');
  if (capture) {
    // The CNI plugin's API is served in node mode too.
    const pods = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ socketPath: socket, path: '/v1/pods' }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
    t.deepEqual(JSON.parse(pods), { pods: [] });
  }
  node.child.kill('SIGTERM');
  t.is(await node.exited, 0);
});

test('sluice status shows a failing filter with its last failure, and exits 1 once it is quarantined', async (t) => {
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [misbehave]
    routes: [{ match: { prefix: / }, directResponse: { status: 200, body: "ok" } }]
filters:
  - name: misbehave
    module: \${repo}/build/fixtures/containment/misbehave.wasm
    failStrategy: FAIL_OPEN
    quarantine: { failures: 2, backoffMs: 60000, maxBackoffMs: 60000 }
`);
  t.teardown(() => run.stop());
  const admin = `127.0.0.1:${await run.adminPort()}`;
  const web = await run.port('web');
  const get = async (path: string) => (await request(`http://127.0.0.1:${web}${path}`)).body.text();
  t.is(await get('/fine'), 'ok');
  t.regex((await status(['--admin', admin])).stdout.split('\n')[3], /^ {2}misbehave {2}active {2}healthy {2}FAIL_OPEN /);

  t.is(await get('/trap'), 'ok', 'FAIL_OPEN: the request goes on without the filter');
  const failing = await status(['--admin', admin]);
  t.is(failing.code, 0, 'failing, not quarantined: still healthy enough to serve');
  const lines = failing.stdout.split('\n');
  t.regex(lines[3], /^ {2}misbehave {2}active {2}failing {2}FAIL_OPEN {2}sha256:[0-9a-f]{12} {2}streams 2 {2}failures 1 {2}quarantines 0$/);
  t.regex(lines[4], /^ {4}last failure \d+ s ago in proxy_on_request_headers: trap .*unreachable/);

  await get('/trap');
  const quarantined = await status(['--admin', admin]);
  t.is(quarantined.code, 1);
  t.regex(quarantined.stdout.split('\n')[3], /^ {2}misbehave {2}quarantined {2}QUARANTINED {2}FAIL_OPEN .* failures 2 {2}quarantines 1$/);
});

test('--metrics-listen refuses a bad address and a taken port, saying which, and the proxy does not start', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-metrics-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'sluice.yaml');
  await writeFile(file, config('one').replaceAll('${repo}', repoRoot.replace(/\/$/, '')));
  const bad = spawnSluice(['run', '-c', file, '--metrics-listen', 'everywhere']);
  t.is(await bad.exited, 1);
  t.is(bad.stderr().trim().split('\n').at(-1), 'sluice run: SLUICE_ERR_CONFIG: --metrics-listen must be HOST:PORT, e.g. 0.0.0.0:15020, got "everywhere"');
  const taken = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => taken.once('listening', r));
  t.teardown(() => taken.close());
  const port = (taken.address() as AddressInfo).port;
  const busy = spawnSluice(['run', '-c', file, '--metrics-listen', `127.0.0.1:${port}`]);
  t.is(await busy.exited, 1);
  t.is(busy.stderr().trim().split('\n').at(-1), `sluice run: SLUICE_ERR_CONFIG: --metrics-listen 127.0.0.1:${port}: cannot listen (EADDRINUSE); is another proxy on this node using the port?`);
});

test('sluice status shows an unavailable filter with its reason; one that does not fail open makes it exit 1', async (t) => {
  const text = (strategy: string) => `
admin: { address: 127.0.0.1:0 }
listeners:
  - { name: web, address: 127.0.0.1:0, filters: [guard], routes: [{ match: { prefix: / }, directResponse: { status: 200, body: "ok" } }] }
filters:
  - { name: guard, unavailable: "the controller has not validated it yet", failStrategy: ${strategy} }
`;
  for (const [strategy, code, web] of [['FAIL_CLOSE', 1, 503], ['FAIL_OPEN', 0, 200]] as const) {
    const run = await runSluice(text(strategy), ['--drain-ms', '100']);
    try {
      const r = await request(`http://127.0.0.1:${await run.port('web')}/`);
      t.is(r.statusCode, web);
      await r.body.text();
      const human = await status(['--admin', `127.0.0.1:${await run.adminPort()}`]);
      t.is(human.code, code, human.stderr);
      const lines = human.stdout.split('\n');
      t.is(lines[3], `  guard  unavailable  UNAVAILABLE  ${strategy}  sha256:  streams 0  failures 0  quarantines 0`);
      t.is(lines[4], '    unavailable: the controller has not validated it yet');
    } finally {
      await run.stop();
    }
  }
});
