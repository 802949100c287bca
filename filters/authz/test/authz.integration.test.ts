// authz in the node proxy, through `sluice run` on loopback: path, method and header rules,
// deny-over-allow and default deny, the 403 a caller sees, and the counters on the admin page;
// then on an mTLS listener, rules on the SPIFFE ID of the client's certificate.

import test from 'ava';
import { Agent, request } from 'undici';
import { makePki, tlsTest } from '../../../test/helpers/certs.ts';
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

tlsTest('on an mTLS listener, rules see the SPIFFE ID of the client certificate', async (t) => {
  await buildFilters({ only: ['authz'] });
  const upstream = await echoUpstream();
  t.teardown(() => upstream.close());
  const pki = makePki();
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [authz]
    tls: { certFile: ${pki.serverCert}, keyFile: ${pki.serverKey}, caFile: ${pki.caFile} }
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
        - name: shop-web
          from: { principals: [spiffe://cluster.local/ns/shop/sa/web] }
          to: { paths: [/api/*] }
        - name: ops-namespace
          from: { namespaces: [ops] }
`);
  t.teardown(() => run.stop());
  const port = await run.port('web');
  const as = (spiffe?: string) => {
    const cert = spiffe ? pki.client(spiffe) : undefined;
    const agent = new Agent({ connect: { ca: pki.ca, ...(cert ? { cert: cert.cert, key: cert.key } : {}) } });
    t.teardown(() => agent.close());
    return async (path: string) => {
      const r = await request(`https://localhost:${port}${path}`, { dispatcher: agent });
      return { status: r.statusCode, text: await r.body.text() };
    };
  };
  const web = as('spiffe://cluster.local/ns/shop/sa/web');
  t.is((await web('/api/items')).status, 200);
  t.deepEqual(await web('/admin'), { status: 403, text: 'authz: denied: no rule allows spiffe://cluster.local/ns/shop/sa/web GET /admin\n' });
  const cart = as('spiffe://cluster.local/ns/shop/sa/cart');
  t.deepEqual(await cart('/api/items'), { status: 403, text: 'authz: denied: no rule allows spiffe://cluster.local/ns/shop/sa/cart GET /api/items\n' });
  t.is((await as('spiffe://cluster.local/ns/ops/sa/debug')('/anything')).status, 200);
  const anonymous = await as()('/api/items');
  t.is(anonymous.status, 403);
  t.regex(anonymous.text, /no peer identity/);
  t.is(upstream.requests.length, 2);
});
