// The router filter in `sluice run`: two echo upstreams as two clusters; requests routed by
// header, by path, by a named route and by weights (exact counts), sticky users staying put,
// the decision header, unmatched requests left to Sluice's own route, and the metric text.

import test from 'ava';
import { request } from 'undici';
import { buildFilters } from '../../../scripts/build-filters.js';
import { echoUpstream, runSluice } from '../../../test/helpers/sluice-run.ts';

test.before(async () => {
  await buildFilters({ only: ['router'] });
});

test('routes by header, path, route name and weights through sluice run', async (t) => {
  const stable = await echoUpstream('stable');
  const canary = await echoUpstream('canary');
  t.teardown(() => stable.close());
  t.teardown(() => canary.close());
  const config = {
    rules: [
      { match: { headers: [{ name: 'x-canary', exact: '1' }] }, cluster: 'canary' },
      { match: { prefix: '/v2/' }, cluster: 'canary' },
      { match: { path: '/legacy' }, route: 'legacy' },
      { match: { prefix: '/split' }, weightedClusters: [{ cluster: 'stable', weight: 3 }, { cluster: 'canary', weight: 1 }] },
      { match: { prefix: '/sticky' }, weightedClusters: [{ cluster: 'stable', weight: 1 }, { cluster: 'canary', weight: 1 }], stickyBy: { header: 'x-user' } },
    ],
    decisionHeader: 'x-sluice-cluster',
  };
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [router]
    routes:
      - name: legacy
        match: { path: /only-by-name }
        cluster: canary
        hostRewrite: legacy.internal
      - name: default
        cluster: stable
clusters:
  - { name: stable, endpoints: [127.0.0.1:${stable.port}] }
  - { name: canary, endpoints: [127.0.0.1:${canary.port}] }
filters:
  - name: router
    module: \${repo}/build/filters/router.wasm
    config: ${JSON.stringify(config)}
`);
  t.teardown(() => run.stop());
  const base = `http://127.0.0.1:${await run.port('web')}`;
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await request(base + path, { headers });
    const body = (await res.body.json()) as { name: string; path: string };
    return { name: body.name, path: body.path, status: res.statusCode, header: res.headers['x-sluice-cluster'] };
  };

  t.like(await get('/anything', { 'x-canary': '1' }), { name: 'canary', status: 200, header: 'canary' });
  t.like(await get('/v2/items'), { name: 'canary', header: 'canary' });
  // The named route applies whole, its host rewrite too, though its own match never held.
  t.like(await get('/legacy'), { name: 'canary', header: 'canary' });
  // Unmatched: Sluice's own route, no decision header.
  t.like(await get('/elsewhere'), { name: 'stable', path: '/elsewhere', header: undefined });

  const counts: Record<string, number> = { stable: 0, canary: 0 };
  for (let i = 0; i < 200; i++) {
    const { name, header } = await get(`/split/${i}`);
    t.is(header, name);
    counts[name]++;
  }
  t.deepEqual(counts, { stable: 150, canary: 50 });

  for (const user of ['alice', 'bob', 'carol', 'dave', 'erin']) {
    const first = (await get('/sticky', { 'x-user': user })).name;
    for (let i = 0; i < 3; i++) t.is((await get(`/sticky/${i}`, { 'x-user': user })).name, first, user);
  }

  const metrics = await (await request(`http://127.0.0.1:${await run.adminPort()}/stats/prometheus`)).body.text();
  t.true(metrics.includes('\nrouter_decisions_total{cluster="canary"} '), metrics);
  t.true(metrics.includes('\nrouter_decisions_total{route="legacy"} 1\n'), metrics);
  t.true(metrics.includes('\nrouter_unmatched_total 1\n'), metrics);
  const series = [...metrics.matchAll(/^router_decisions_total\{cluster="(\w+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]);
  // 1 + 1 (header, path) + 50 (split) canary; 150 stable; plus the 20 sticky requests on either.
  const total = series.reduce((n, [, v]) => n + (v as number), 0);
  t.is(total, 2 + 200 + 20);
  t.is(stable.requests.length + canary.requests.length, 4 + 200 + 20);
  t.is(canary.requests.find((r) => r.path === '/legacy')?.headers.host, 'legacy.internal');
});
