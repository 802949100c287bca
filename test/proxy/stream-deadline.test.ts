// A stream has a deadline however it is held, through the real `sluice run` process: the route
// timeout counts from the request's arrival to the end of its response, including time a filter
// holds the stream paused; the listener's stream idle timeout ends a stream nothing moves on.
// Before response headers the client gets 504 (408 for idle) naming the timeout and the filter
// that held the stream; after them, a reset.
import http2 from 'node:http2';
import test, { type ExecutionContext } from 'ava';
import { request } from 'undici';
import { fixture } from '../helpers/fixtures.ts';
import { echoUpstream, runSluice } from '../helpers/sluice-run.ts';

async function start(t: ExecutionContext, route: string, listener = '', handler?: Parameters<typeof echoUpstream>[1]) {
  const upstream = await echoUpstream('up', handler);
  t.teardown(() => upstream.close());
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [hold]
    ${listener}
    routes:
      - cluster: up
        ${route}
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstream.port}]
filters:
  - name: hold
    module: ${fixture('stream/hold')}
`);
  t.teardown(() => run.stop());
  return { upstream, run, base: `http://127.0.0.1:${await run.port('web')}` };
}

/** The answer, or 'no answer' when none came within `ms` (a bound on the test, not a timing assertion). */
async function answer(url: string, ms = 8000) {
  try {
    const r = await request(url, { signal: AbortSignal.timeout(ms) });
    return { status: r.statusCode, text: await r.body.text() };
  } catch (error) {
    return { status: 0, text: `no answer: ${String(error)}` };
  }
}

test('a filter holding the request headers past the route timeout: 504 naming the timeout and the filter', async (t) => {
  const { upstream, run, base } = await start(t, 'timeoutMs: 1000');
  const r = await answer(`${base}/q/held`);
  t.is(r.status, 504, r.text);
  t.is(r.text, 'sluice: the request did not complete within the route\'s timeout of 1000 ms (timeoutMs of route "route-0"); filter "hold" held the stream\n');
  t.deepEqual(upstream.requests, []);
  const metrics = await (await request(`http://127.0.0.1:${await run.adminPort()}/stats/prometheus`)).body.text();
  t.true(metrics.includes('\nsluice_downstream_rq_timeout_total{sluice_listener="web",timeout="route"} 1\n'), metrics);
  // The process and the filter serve on.
  const next = await answer(`${base}/other`);
  t.is(next.status, 200);
  t.is(run.child.exitCode, null);
});

test('a filter holding the response headers past the route timeout: 504 naming it', async (t) => {
  const { upstream, base } = await start(t, 'timeoutMs: 1000');
  const r = await answer(`${base}/s/held`);
  t.is(r.status, 504, r.text);
  t.is(r.text, 'sluice: the request did not complete within the route\'s timeout of 1000 ms (timeoutMs of route "route-0"); filter "hold" held the stream\n');
  t.deepEqual(upstream.requests.map((q) => q.path), ['/s/held']);
});

test('the stream idle timeout ends a stream a filter holds when the route has no timeout: 408', async (t) => {
  const { run, base } = await start(t, 'timeoutMs: 0', 'streamIdleTimeoutMs: 800');
  const r = await answer(`${base}/q/held`);
  t.is(r.status, 408, r.text);
  t.is(r.text, 'sluice: nothing moved on the stream for 800 ms (streamIdleTimeoutMs of listener "web"); filter "hold" held the stream\n');
  const metrics = await (await request(`http://127.0.0.1:${await run.adminPort()}/stats/prometheus`)).body.text();
  t.true(metrics.includes('\nsluice_downstream_rq_timeout_total{sluice_listener="web",timeout="idle"} 1\n'), metrics);
});

test('past the route timeout after the response headers were sent, an HTTP/2 client gets RST_STREAM INTERNAL_ERROR', async (t) => {
  const { base } = await start(t, 'timeoutMs: 1000', '', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('part of it');
    // ... and never the rest.
  });
  const session = http2.connect(base);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const result = await new Promise<{ status: number; body: string; rstCode?: number; ended: boolean }>((resolve) => {
    const stream = session.request({ ':path': '/partial' });
    let status = 0;
    let body = '';
    let ended = false;
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', (c) => (body += c));
    stream.on('end', () => (ended = true));
    stream.on('error', () => {});
    stream.on('close', () => resolve({ status, body, rstCode: stream.rstCode, ended }));
  });
  t.is(result.status, 200);
  t.is(result.body, 'part of it');
  t.false(result.ended, 'the body ended (END_STREAM) before the reset');
  t.is(result.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
});

test('a route timeout that passes during a retry\'s backoff sends no further try: 504', async (t) => {
  const upstream = await echoUpstream('up', (_req, res) => {
    res.writeHead(503, { 'retry-after': '1' });
    res.end('busy');
  });
  t.teardown(() => upstream.close());
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - cluster: up
        timeoutMs: 300
        retryPolicy: { numRetries: 1, retryOn: [5xx], maxIntervalMs: 1000 }
clusters:
  - name: up
    endpoints: [127.0.0.1:${upstream.port}]
`);
  t.teardown(() => run.stop());
  // Retry-After: 1 makes the backoff 1 s, past the 300 ms timeout.
  const r = await answer(`http://127.0.0.1:${await run.port('web')}/x`);
  t.is(r.status, 504, r.text);
  t.regex(r.text, /timed out: the upstream did not answer within the route's timeout of 300 ms/);
  t.is(upstream.requests.length, 1);
});
