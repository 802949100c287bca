// `sluice run --workers 2`: two worker processes share the listening port; the admin endpoint
// shows them as one proxy (metrics summed, filters merged, /workers per process), shared data
// written in one worker reaches the other, a reload reaches both, SIGTERM drains both.
import test from 'ava';
import { Client, request } from 'undici';
import { echoUpstream, runSluice } from '../helpers/sluice-run.ts';

const config = (upstream: number, body = 'one') => `
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [shared]
    routes:
      - name: direct
        match: { prefix: /direct }
        directResponse: { status: 200, body: "${body}" }
      - name: up
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstream}]
filters:
  - name: shared
    module: \${repo}/build/fixtures/shared-value.wasm
    rootId: shared-value
`;

/** One request on a connection of its own: the primary hands new connections to the workers in turn. */
async function fresh(port: number, path: string, headers: Record<string, string> = {}) {
  const client = new Client(`http://127.0.0.1:${port}`);
  try {
    const r = await client.request({ method: 'GET', path, headers });
    return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
  } finally {
    await client.close();
  }
}

test('two workers share the port, and admin, shared data and reload stay coherent', async (t) => {
  const upstream = await echoUpstream();
  t.teardown(() => upstream.close());
  const run = await runSluice(config(upstream.port), ['--workers', '2', '--drain-ms', '1000']);
  t.teardown(() => run.stop());
  await run.waitFor('2 worker processes serving');
  const port = await run.port('web');
  const admin = `http://127.0.0.1:${await run.adminPort()}`;

  for (let i = 0; i < 6; i++) t.is((await fresh(port, `/n/${i}`)).status, 200);
  t.is(upstream.requests.length, 6);

  // Each worker served some of the six connections.
  const workers = (await (await request(`${admin}/workers`)).body.json()) as Array<{ pid: number; ready: boolean; requests: number }>;
  t.is(workers.length, 2);
  t.true(workers.every((w) => w.ready && w.requests >= 1), JSON.stringify(workers));
  t.is(workers[0]!.requests + workers[1]!.requests, 6);
  t.not(workers[0]!.pid, workers[1]!.pid);

  // Metrics are the sum over the workers.
  const metrics = await (await request(`${admin}/stats/prometheus`)).body.text();
  t.true(metrics.includes('istio_requests_total{reporter="source",request_protocol="http",response_code="200",destination_service="up",sluice_listener="web"} 6\n'), metrics);
  t.true(metrics.includes('\nsluice_filter_streams_total{filter="shared"} 6\n'));
  t.true(metrics.includes('\nsluice_workers 2\n'));
  const filters = (await (await request(`${admin}/filters`)).body.json()) as Array<Record<string, unknown>>;
  t.like(filters[0], { name: 'shared', state: 'active', streams: 6, workers: 2 });
  t.is((await request(`${admin}/ready`)).statusCode, 200);

  // Shared data written in one worker reaches the other: soon every connection sees it.
  t.is((await fresh(port, '/direct', { 'x-set': 'blue' })).headers['x-shared'], 'blue');
  const seen = await (async () => {
    for (let round = 0; round < 50; round++) {
      const values = await Promise.all([0, 1, 2, 3].map(() => fresh(port, '/direct').then((r) => r.headers['x-shared'])));
      if (values.every((v) => v === 'blue')) return values;
      await new Promise((r) => setTimeout(r, 100));
    }
    return undefined;
  })();
  t.deepEqual(seen, ['blue', 'blue', 'blue', 'blue']);

  // A reload reaches every worker.
  const { writeFile } = await import('node:fs/promises');
  await writeFile(run.file, config(upstream.port, 'two').replaceAll('${repo}', (await import('../helpers/fixtures.ts')).repoRoot.replace(/\/$/, '')));
  await run.waitFor('applied ');
  const bodies = await Promise.all([0, 1, 2, 3].map(() => fresh(port, '/direct').then((r) => r.text)));
  t.deepEqual(bodies, ['two', 'two', 'two', 'two']);

  run.child.kill('SIGTERM');
  t.is(await run.exited, 0);
  t.true(run.stderr().includes('"msg":"stopped"'));
});

test('a worker that dies is replaced, and the port keeps serving', async (t) => {
  const upstream = await echoUpstream();
  t.teardown(() => upstream.close());
  const run = await runSluice(config(upstream.port), ['--workers', '2']);
  t.teardown(() => run.stop());
  await run.waitFor('2 worker processes serving');
  const port = await run.port('web');
  const admin = `http://127.0.0.1:${await run.adminPort()}`;
  const workers = async () => (await (await request(`${admin}/workers`)).body.json()) as Array<{ pid: number; ready: boolean }>;
  const before = await workers();
  process.kill(before[0]!.pid, 'SIGKILL');
  await run.waitFor(/worker \d+ \(pid \d+\) exited \(SIGKILL\); starting another/);
  let after = await workers();
  for (let i = 0; i < 100 && !(after.length === 2 && after.every((w) => w.ready)); i++) {
    await new Promise((r) => setTimeout(r, 50));
    after = await workers();
  }
  t.is(after.length, 2);
  t.true(after.every((w) => w.ready));
  t.false(after.some((w) => w.pid === before[0]!.pid));
  for (let i = 0; i < 4; i++) t.is((await fresh(port, `/after/${i}`)).status, 200);
  t.is((await request(`${admin}/ready`)).statusCode, 200);
});

test('a filter that refuses its config in the workers stops the start: exit 1, the reason printed', async (t) => {
  const upstream = await echoUpstream();
  t.teardown(() => upstream.close());
  const yaml = `
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [hello]
    routes: [{ cluster: up }]
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstream.port}]
filters:
  - name: hello
    module: \${repo}/build/filters/hello.wasm
    config: { header: 42 }
`;
  const run = await runSluice(yaml, ['--workers', '2']);
  t.teardown(() => run.stop());
  t.is(await run.exited, 1);
  t.regex(run.stderr(), /sluice run: .*SLUICE_ERR_PLUGIN_CONFIGURE.*field 'header': expected a string, got number/);
});

test('--workers must be a number or auto', async (t) => {
  const run = await runSluice(config(1), ['--workers', 'many']);
  t.teardown(() => run.stop());
  t.is(await run.exited, 2);
  t.true(run.stderr().includes('sluice run: --workers must be a whole number from 1 to 256, or auto (one per core), got "many"'));
});
