// The retry filter in `sluice run`: the policy it sets is the one Sluice's retry layer follows.
// An upstream fails the first tries of each path with 503; the route itself has no retry policy.

import test from 'ava';
import { request } from 'undici';
import { buildFilters } from '../../../scripts/build-filters.js';
import { echoUpstream, runSluice } from '../../../test/helpers/sluice-run.ts';

const FAILURES = 2;

test.before(async () => {
  await buildFilters({ only: ['retry'] });
});

test('retries as the matching rule says: 200 after N failed tries, the 503 with numRetries 0', async (t) => {
  const tries = new Map<string, number>();
  const upstream = await echoUpstream('up', (req, res) => {
    const n = (tries.get(req.url!) ?? 0) + 1;
    tries.set(req.url!, n);
    res.statusCode = n <= FAILURES ? 503 : 200;
    res.end(n <= FAILURES ? `try ${n} failed\n` : `ok on try ${n}\n`);
  });
  t.teardown(() => upstream.close());
  const sluice = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [retry]
    routes:
      - name: all
        cluster: up
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstream.port}]
    # One endpoint answering 503 on purpose: keep it in the pool.
    outlierDetection: { consecutive5xx: 0 }
filters:
  - name: retry
    module: \${repo}/build/filters/retry.wasm
    config:
      rules:
        - name: flaky
          match: { prefix: /flaky }
          policy: { numRetries: 3, retryOn: [5xx], baseIntervalMs: 0, maxIntervalMs: 0 }
        - name: once
          match: { prefix: /once }
          policy: { numRetries: 0 }
`);
  t.teardown(() => sluice.stop());
  const base = `http://127.0.0.1:${await sluice.port('web')}`;

  const ok = await request(`${base}/flaky`);
  t.is(ok.statusCode, 200);
  t.is(await ok.body.text(), `ok on try ${FAILURES + 1}\n`);
  const flaky = upstream.requests.filter((r) => r.path === '/flaky');
  t.is(flaky.length, FAILURES + 1);
  t.deepEqual(flaky.map((r) => r.headers['x-sluice-attempt-count']), ['1', '2', '3']);

  const failed = await request(`${base}/once`);
  t.is(failed.statusCode, 503);
  t.is(await failed.body.text(), 'try 1 failed\n');
  const once = upstream.requests.filter((r) => r.path === '/once');
  t.is(once.length, 1);
  t.is(once[0].headers['x-sluice-attempt-count'], '1');

  const stats = await (await request(`http://127.0.0.1:${await sluice.adminPort()}/stats/prometheus`)).body.text();
  t.regex(stats, /^retry_policies_applied_total\{rule="flaky"\} 1$/m);
  t.regex(stats, /^retry_policies_applied_total\{rule="once"\} 1$/m);
});
