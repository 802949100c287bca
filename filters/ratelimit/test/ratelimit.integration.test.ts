// ratelimit in the node proxy, through `sluice run` on loopback: a bucket of N lets exactly N
// requests through with counting-down x-ratelimit-* headers, then answers 429 with Retry-After;
// other keys keep their own buckets; the counters show on the admin page.

import test from 'ava';
import { request } from 'undici';
import { buildFilters } from '../../../scripts/build-filters.js';
import { echoUpstream, runSluice } from '../../../test/helpers/sluice-run.ts';

const N = 5;

test(`sluice run with ratelimit: a bucket of ${N} passes exactly ${N} requests, then 429 with exact headers`, async (t) => {
  await buildFilters({ only: ['ratelimit'] });
  const upstream = await echoUpstream();
  t.teardown(() => upstream.close());
  // One token a day: nothing refills while the test runs.
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [ratelimit]
    routes:
      - cluster: echo
clusters:
  - name: echo
    endpoints: [127.0.0.1:${upstream.port}]
filters:
  - name: ratelimit
    module: \${repo}/build/filters/ratelimit.wasm
    config:
      rules:
        - name: per-user
          key: { header: x-user }
          match: { prefix: /api/ }
          maxTokens: ${N}
          tokensPerFill: 1
          fillIntervalMs: 86400000
`);
  t.teardown(() => run.stop());
  const port = await run.port('web');
  const get = async (path: string, user?: string) => {
    const r = await request(`http://127.0.0.1:${port}${path}`, { headers: user ? { 'x-user': user } : {} });
    const h = r.headers;
    return {
      status: r.statusCode,
      body: await r.body.text(),
      limit: h['x-ratelimit-limit'],
      remaining: h['x-ratelimit-remaining'],
      reset: h['x-ratelimit-reset'],
      retryAfter: h['retry-after'],
    };
  };

  for (let i = 1; i <= N; i++) {
    const r = await get('/api/items', 'alice');
    t.is(r.status, 200, `request ${i}`);
    t.is(r.limit, String(N));
    t.is(r.remaining, String(N - i));
    t.is(r.reset, '86400');
    t.is(r.retryAfter, undefined);
  }
  for (let i = 0; i < 2; i++) {
    t.deepEqual(await get('/api/items', 'alice'), {
      status: 429,
      body: "ratelimit: too many requests (rule 'per-user'); retry after 86400s\n",
      limit: String(N),
      remaining: '0',
      reset: '86400',
      retryAfter: '86400',
    });
  }
  // Another user has a bucket of their own; outside /api/ nothing is limited.
  t.is((await get('/api/items', 'bob')).remaining, String(N - 1));
  const outside = await get('/healthz', 'alice');
  t.is(outside.status, 200);
  t.is(outside.limit, undefined);
  t.is(upstream.requests.length, N + 2);

  const admin = await run.adminPort();
  const metrics = await (await request(`http://127.0.0.1:${admin}/stats/prometheus`)).body.text();
  t.true(metrics.includes(`\nratelimit_allowed_total ${N + 1}\n`), metrics);
  t.true(metrics.includes('\nratelimit_limited_total 2\n'), metrics);
});
