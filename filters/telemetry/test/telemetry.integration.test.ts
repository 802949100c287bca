// The telemetry filter in `sluice run` in front of a loopback echo upstream: after known traffic,
// /stats/prometheus on the admin port holds the filter's series with exact values; the upstream
// saw x-request-id and traceparent; the response carries them back; the access-log fields arrive
// as one JSON line per request next to the proxy's own access log.

import test from 'ava';
import { request } from 'undici';
import { buildFilters } from '../../../scripts/build-filters.js';
import { echoUpstream, runSluice, until } from '../../../test/helpers/sluice-run.ts';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;
const INCOMING_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

test.before(async () => {
  await buildFilters({ only: ['telemetry'] });
});

const config = (upstreamPort: number) => `
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [telemetry]
    accessLog: { path: stdout, fields: [status, request_id, trace_id] }
    routes:
      - name: missing
        match: { prefix: /missing }
        directResponse: { status: 404, body: "no\\n" }
      - name: default
        cluster: echo
clusters:
  - name: echo
    endpoints: [127.0.0.1:${upstreamPort}]
filters:
  - name: telemetry
    module: \${repo}/build/filters/telemetry.wasm
    config:
      metrics: { labels: [method, response_code, cluster, route] }
      requestId: { responseHeader: x-request-id }
      traceparent: { responseHeader: x-trace-id }
      accessLog:
        fields:
          - { name: request_id, header: x-request-id }
          - { name: user, header: x-user }
          - { name: upstream_type, responseHeader: content-type }
`;

/**
 * A sample line as /stats/prometheus writes it. The filter names a series
 * `metric{name="value",...}`: a host that reads labels from metric names writes it as is; one that
 * does not (Sluice until its telemetry.ts reads them) writes the whole name with every character
 * outside [a-zA-Z0-9_:] turned into `_`. Either line must be there, with exactly this value.
 */
function sampleLines(metric: string, suffix: string, labels: Record<string, string>, extra: string, value: number): [string, string] {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const all = [...pairs, ...(extra ? [extra] : [])];
  const labelled = `${metric}${suffix}${all.length > 0 ? `{${all.join(',')}}` : ''} ${value}`;
  const flatName = (pairs.length > 0 ? `${metric}{${pairs.join(',')}}` : metric).replace(/[^a-zA-Z0-9_:]/g, '_');
  const flat = `${flatName}${suffix}${extra ? `{${extra}}` : ''} ${value}`;
  return [labelled, flat];
}

test('metrics on /stats/prometheus, ids seen upstream and returned, access-log fields', async (t) => {
  const echo = await echoUpstream('echo');
  t.teardown(() => echo.close());
  const run = await runSluice(config(echo.port));
  t.teardown(() => run.stop());
  const port = await run.port('web');
  const admin = await run.adminPort();
  const base = `http://127.0.0.1:${port}`;

  const answers: Array<{ status: number; requestId?: string; traceId?: string }> = [];
  const send = async (method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}) => {
    const r = await request(base + path, { method, headers, body: method === 'POST' ? '{}' : undefined });
    await r.body.text();
    answers.push({ status: r.statusCode, requestId: r.headers['x-request-id'] as string, traceId: r.headers['x-trace-id'] as string });
  };
  for (let i = 0; i < 3; i++) await send('GET', `/a/${i}`, { 'x-user': 'alice' });
  await send('POST', '/b', { 'x-request-id': 'given-1', traceparent: `00-${INCOMING_TRACE}-00f067aa0ba902b7-01`, 'x-user': 'carol' });
  await send('GET', '/missing');
  await send('GET', '/missing/too');
  t.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 404, 404]);

  // Metrics: exact values per label combination. A stream ends (onLog) just after its response
  // is written, so poll until all six are counted.
  const stats = async () => (await request(`http://127.0.0.1:${admin}/stats/prometheus`)).body.text();
  const counted = (text: string) => [...text.matchAll(/telemetry_request_duration_milliseconds_count\S* (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  let body = await stats();
  for (const deadline = Date.now() + 15_000; counted(body) < 6 && Date.now() < deadline; body = await stats()) {
    await new Promise((r) => setTimeout(r, 25));
  }
  const lines = new Set(body.split('\n'));
  const expectSample = (metric: string, suffix: string, labels: Record<string, string>, extra: string, value: number) => {
    const [labelled, flat] = sampleLines(metric, suffix, labels, extra, value);
    t.true(lines.has(labelled) || lines.has(flat), `neither\n  ${labelled}\nnor\n  ${flat}\nin\n${body}`);
  };
  const get200 = { method: 'GET', response_code: '200', cluster: 'echo', route: 'default' };
  const post200 = { method: 'POST', response_code: '200', cluster: 'echo', route: 'default' };
  // Direct responses pick no cluster; the route is named from the match on.
  const missing = { method: 'GET', response_code: '404', cluster: 'unknown', route: 'missing' };
  expectSample('telemetry_requests_total', '', get200, '', 3);
  expectSample('telemetry_requests_total', '', post200, '', 1);
  expectSample('telemetry_requests_total', '', missing, '', 2);
  for (const [labels, n] of [[get200, 3], [post200, 1], [missing, 2]] as const) {
    expectSample('telemetry_request_duration_milliseconds', '_count', labels, '', n);
    expectSample('telemetry_request_duration_milliseconds', '_bucket', labels, 'le="+Inf"', n);
  }
  // Sluice itself sets x-request-id and traceparent before the filters run: the filter generates none.
  expectSample('telemetry_request_ids_generated_total', '', {}, '', 0);
  expectSample('telemetry_traceparents_generated_total', '', {}, '', 0);

  // The upstream saw a request id and a traceparent on every request it got.
  t.is(echo.requests.length, 4);
  for (const [i, seen] of echo.requests.entries()) {
    const id = seen.headers['x-request-id'] as string;
    const m = TRACEPARENT.exec(seen.headers.traceparent as string);
    t.truthy(m, seen.headers.traceparent as string);
    if (i < 3) t.regex(id, UUID_V4);
    else t.is(id, 'given-1');
    // ... and the client got the same ones back.
    t.is(answers[i].requestId, id);
    t.is(answers[i].traceId, m![1]);
  }
  // An incoming trace is continued, not restarted.
  t.is(answers[3].traceId, INCOMING_TRACE);
  for (const a of answers.slice(4)) {
    t.regex(a.requestId ?? '', UUID_V4);
    t.regex(a.traceId ?? '', /^[0-9a-f]{32}$/);
  }

  // Access-log fields: one JSON line per request from the filter, matching the proxy's own line.
  const fieldLines = await until('six access-log field lines', () => {
    const found = run
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"plugin":"telemetry"') && l.includes('access_log'))
      .map((l) => JSON.parse(l) as { level: string; plugin: string; msg: string });
    return found.length === 6 ? found : undefined;
  });
  const fields = fieldLines.map((l) => {
    t.is(l.level, 'info');
    return (JSON.parse(l.msg) as { access_log: Record<string, string | null> }).access_log;
  });
  t.deepEqual(fields, [
    ...answers.slice(0, 3).map((a) => ({ request_id: a.requestId!, user: 'alice', upstream_type: 'application/json' })),
    { request_id: 'given-1', user: 'carol', upstream_type: 'application/json' },
    ...answers.slice(4).map((a) => ({ request_id: a.requestId!, user: null, upstream_type: null })),
  ]);
  // The proxy's own line: its fields, plus (once the host adds `sluice.access_log.*` properties to
  // it) the filter's fields that have a value and no name of the proxy's own.
  const proxyLines = run
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{"status"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(proxyLines.length, 6);
  for (const [i, line] of proxyLines.entries()) {
    const { status, request_id, trace_id, ...fromFilter } = line;
    t.deepEqual({ status, request_id, trace_id }, { status: answers[i].status, request_id: answers[i].requestId, trace_id: answers[i].traceId });
    if (Object.keys(fromFilter).length > 0) {
      const { request_id: _, ...rest } = fields[i];
      t.deepEqual(fromFilter, Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== null)));
    }
  }
});
