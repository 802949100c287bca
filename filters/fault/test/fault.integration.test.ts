// The fault filter in `sluice run`: an abort answers with its exact status and body without
// reaching the upstream; a delay holds the request in the proxy's real timers, then it reaches the
// upstream and succeeds; requests the header match does not select pass untouched.

import test from 'ava';
import { request } from 'undici';
import { buildFilters } from '../../../scripts/build-filters.js';
import { echoUpstream, runSluice } from '../../../test/helpers/sluice-run.ts';

const DELAY_MS = 150;

test.before(async () => {
  await buildFilters({ only: ['fault'] });
});

test('aborts and delays the requests its header match selects', async (t) => {
  const upstream = await echoUpstream('up');
  t.teardown(() => upstream.close());
  const sluice = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [abort, delay]
    routes:
      - name: all
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstream.port}]
filters:
  - name: abort
    module: \${repo}/build/filters/fault.wasm
    config:
      abort: { httpStatus: 503, percentage: 100, body: "chaos says no\\n" }
      match: { headers: [{ name: x-chaos, exact: abort }] }
  - name: delay
    module: \${repo}/build/filters/fault.wasm
    config:
      delay: { fixedDelayMs: ${DELAY_MS}, percentage: 100 }
      match: { headers: [{ name: x-chaos, exact: delay }] }
`);
  t.teardown(() => sluice.stop());
  const base = `http://127.0.0.1:${await sluice.port('web')}`;

  const aborted = await request(`${base}/a`, { headers: { 'x-chaos': 'abort' } });
  t.is(aborted.statusCode, 503);
  t.is(aborted.headers['content-type'], 'text/plain');
  t.is(await aborted.body.text(), 'chaos says no\n');
  t.is(upstream.requests.length, 0);

  const started = performance.now();
  const delayed = await request(`${base}/d`, { headers: { 'x-chaos': 'delay' } });
  const elapsed = performance.now() - started;
  t.is(delayed.statusCode, 200);
  t.is((await delayed.body.json() as { path: string }).path, '/d');
  t.true(elapsed >= DELAY_MS, `answered after ${elapsed} ms`);
  t.deepEqual(upstream.requests.map((r) => r.path), ['/d']);

  const plain = await request(`${base}/p`);
  t.is(plain.statusCode, 200);
  await plain.body.dump();
  t.deepEqual(upstream.requests.map((r) => r.path), ['/d', '/p']);

  const stats = await (await request(`http://127.0.0.1:${await sluice.adminPort()}/stats/prometheus`)).body.text();
  t.regex(stats, /^fault_aborts_injected_total 1$/m);
  t.regex(stats, /^fault_delays_injected_total 1$/m);
  t.regex(stats, /^fault_active_delays 0$/m);
});
