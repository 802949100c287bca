// authz in the node proxy, through `sluice run` on loopback: path, method and header rules,
// deny-over-allow and default deny, the 403 a caller sees, and the counters on the admin page.
// Listeners are plain HTTP here, so no request has a peer identity; rules on SPIFFE IDs are
// covered by the harness tests (authz.test.ts), which set the mTLS peer on the stream.

import test from 'ava';
import { request } from 'undici';
import { buildFilters } from '../../../scripts/build-filters.js';
import { echoUpstream, runSluice } from '../../../test/helpers/sluice-run.ts';

test('sluice run with authz: allowed requests reach the upstream, denied ones get 403 with the reason', async (t) => {
  await buildFilters({ only: ['authz'] });
  const upstream = await echoUpstream();
  t.teardown(() => upstream.close());
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [authz]
    routes:
      - cluster: echo
clusters:
  - name: echo
    endpoints: [127.0.0.1:${upstream.port}]
filters:
  - name: authz
    module: \${repo}/build/filters/authz.wasm
    config:
      rules:
        - name: no-admin
          action: DENY
          to: { paths: [/api/admin/*] }
        - name: api-reads
          to: { paths: [/api/*], methods: [GET, HEAD] }
        - name: tenant-writes
          to: { paths: [/api/*], methods: [POST] }
          when: [{ header: x-tenant, values: [acme] }]
`);
  t.teardown(() => run.stop());
  const port = await run.port('web');
  const call = async (method: string, path: string, headers: Record<string, string> = {}) => {
    const r = await request(`http://127.0.0.1:${port}${path}`, { method: method as 'GET', headers, body: method === 'POST' ? '{}' : undefined });
    return { status: r.statusCode, body: await r.body.text(), type: r.headers['content-type'] };
  };

  const allowed = await call('GET', '/api/items?page=2');
  t.is(allowed.status, 200);
  t.is(JSON.parse(allowed.body).path, '/api/items?page=2');
  t.is((await call('POST', '/api/items', { 'x-tenant': 'acme' })).status, 200);

  t.deepEqual(await call('POST', '/api/items', { 'x-tenant': 'globex' }), {
    status: 403,
    body: 'authz: denied: no rule allows (no peer identity) POST /api/items\n',
    type: 'text/plain; charset=utf-8',
  });
  t.is((await call('GET', '/api/admin/users')).body, "authz: denied: rule 'no-admin' denies (no peer identity) GET /api/admin/users\n");
  t.is((await call('GET', '/other')).body, 'authz: denied: no rule allows (no peer identity) GET /other\n');
  t.is((await call('GET', '/api/x/../admin/users')).status, 403);
  t.is(upstream.requests.length, 2, 'denied requests never reach the upstream');

  const admin = await run.adminPort();
  const metrics = await (await request(`http://127.0.0.1:${admin}/stats/prometheus`)).body.text();
  t.true(metrics.includes('\nauthz_allowed_total 2\n'), metrics);
  t.true(metrics.includes('\nauthz_denied_total 4\n'), metrics);
});
