// The headers filter in `sluice run`: the upstream sees the request headers it added, set and
// removed (a :path rewrite included, which also decides the route), and the client sees the
// response headers — on upstream answers and on Sluice's own replies.

import test from 'ava';
import { request } from 'undici';
import { buildFilters } from '../../../scripts/build-filters.js';
import { echoUpstream, runSluice } from '../../../test/helpers/sluice-run.ts';

test.before(async () => {
  await buildFilters({ only: ['headers'] });
});

test('the upstream sees the request changes, the client the response changes', async (t) => {
  const upstream = await echoUpstream('app', (req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.setHeader('server', 'app/1.0');
    res.setHeader('x-powered-by', 'node');
    res.end('ok');
  });
  t.teardown(() => upstream.close());
  const config = {
    request: {
      set: [
        { name: 'x-client-ip', value: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%' },
        { name: ':path', value: '/v2%REQ(:path)%' },
        { name: 'x-env', value: 'prod' },
      ],
      add: [{ name: 'x-tag', value: 'via-%PROTOCOL%' }],
      remove: ['x-debug'],
    },
    response: {
      set: [{ name: 'x-served-by', value: '%UPSTREAM_CLUSTER%/%RESPONSE_CODE%' }],
      add: [{ name: 'x-started', value: '%START_TIME%' }],
      remove: ['server', 'x-powered-by'],
    },
  };
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [headers]
    routes:
      - name: healthz
        match: { path: /v2/healthz }
        directResponse: { status: 200, body: "ok\\n", headers: { server: sluice } }
      - name: v2
        match: { prefix: /v2/ }
        cluster: app
clusters:
  - { name: app, endpoints: [127.0.0.1:${upstream.port}] }
filters:
  - name: headers
    module: \${repo}/build/filters/headers.wasm
    config: ${JSON.stringify(config)}
`);
  t.teardown(() => run.stop());
  const base = `http://127.0.0.1:${await run.port('web')}`;

  const res = await request(`${base}/items?page=2`, { headers: { 'x-debug': '1', 'x-env': 'dev', 'x-tag': 'client' } });
  t.is(res.statusCode, 200);
  t.is(await res.body.text(), 'ok');
  t.is(res.headers['x-served-by'], 'app/200');
  t.regex(String(res.headers['x-started']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.is(res.headers.server, undefined);
  t.is(res.headers['x-powered-by'], undefined);
  t.is(res.headers['content-type'], 'text/plain');

  t.is(upstream.requests.length, 1);
  const seen = upstream.requests[0];
  // The rewritten :path reached the upstream, and picked the /v2/ route.
  t.is(seen.path, '/v2/items?page=2');
  t.is(seen.headers['x-client-ip'], '127.0.0.1');
  t.is(seen.headers['x-env'], 'prod');
  t.is(seen.headers['x-tag'], 'client, via-HTTP/1.1');
  t.is(seen.headers['x-debug'], undefined);

  // Sluice's own reply (a direct response) passes the response changes too.
  const health = await request(`${base}/healthz`);
  t.is(health.statusCode, 200);
  t.is(await health.body.text(), 'ok\n');
  t.is(health.headers.server, undefined);
  t.regex(String(health.headers['x-started']), /Z$/);
  // No cluster took it: %UPSTREAM_CLUSTER% is empty, the rest of the value is still written.
  t.is(health.headers['x-served-by'], '/200');
  t.is(upstream.requests.length, 1);
});
