// A filter failure costs the requests it concerns, never the proxy: with one request in flight
// (its upstream answers only after the failure), a request that makes a FAIL_CLOSE filter trap gets 503, the one in
// flight gets its answer (a 503 naming the filter: its VM failed under it), and the real
// `sluice run` process stays up and serves the next request.
import test from 'ava';
import { request } from 'undici';
import { fixture } from '../helpers/fixtures.ts';
import { echoUpstream, runSluice, until } from '../helpers/sluice-run.ts';

test('a filter that traps while another request is in flight costs no process', async (t) => {
  // /slow is answered once the trapping request has had its answer: it is in flight throughout.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const upstream = await echoUpstream('slow', (req, res) => {
    if (req.url === '/slow') void released.then(() => res.end(`late ${req.url}`));
    else res.end(`at once ${req.url}`);
  });
  t.teardown(() => upstream.close());
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [misbehave]
    routes:
      - cluster: up
        timeoutMs: 10000
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstream.port}]
filters:
  - name: misbehave
    module: ${fixture('containment/misbehave')}
    failStrategy: FAIL_CLOSE
    quarantine: { backoffMs: 100 }
`);
  t.teardown(() => run.stop());
  const base = `http://127.0.0.1:${await run.port('web')}`;
  const call = async (path: string) => {
    const r = await request(`${base}${path}`);
    return { status: r.statusCode, failed: r.headers['x-sluice-filter-failed'], text: await r.body.text() };
  };

  const slow = call('/slow');
  // The slow request is at the upstream before the trap.
  await until('the slow request to reach the upstream', () => (upstream.requests.length === 1 ? true : undefined));
  const trapped = await call('/trap');
  t.is(trapped.status, 503);
  t.is(trapped.failed, 'misbehave');
  t.regex(trapped.text, /^sluice: filter "misbehave" failed: .*unreachable/);
  release();
  const first = await slow;
  t.is(first.status, 503);
  t.is(first.failed, 'misbehave');

  // Still alive, and serving on a fresh VM once the quarantine (100 ms) is over.
  await new Promise((r) => setTimeout(r, 300));
  t.is(run.child.exitCode, null, run.stderr());
  const third = await call('/again');
  t.is(third.status, 200, third.text);
  t.is(third.text, 'at once /again');
  t.is(run.child.exitCode, null, run.stderr());
});
