// The telemetry filter in the real host through the SDK harness: exact metric values per label
// combination after known traffic, every label source, the series limit, request ids and
// traceparents (generated formats, kept and replaced ones, response headers), the access-log
// fields (properties and the JSON log line), and configurations it must refuse, naming the field.

import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FilterHarness, type HarnessStream } from '../../../sdk/harness/index.ts';
import { HISTOGRAM_BUCKETS } from '../../../runtime/host/metrics.ts';
import type { StreamInfo } from '../../../runtime/host/stream.ts';
import { buildFilters } from '../../../scripts/build-filters.js';

const wasm = fileURLToPath(new URL('../../../build/filters/telemetry.wasm', import.meta.url));
const helloWasm = fileURLToPath(new URL('../../../build/filters/hello.wasm', import.meta.url));

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;
const VALID_TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

// Compiles the filters when missing or older than their sources (a no-op after `npm run build`).
test.before(async () => {
  await buildFilters({ only: ['telemetry', 'hello'] });
});

type Headers = Record<string, string>;

async function load(configuration: unknown = {}, logLevel?: number) {
  return FilterHarness.load(wasm, { name: 'telemetry', rootId: 'telemetry', configuration: JSON.stringify(configuration), logLevel });
}

const request = (method: string, path = '/', extra: Headers = {}): Headers => ({ ':method': method, ':path': path, ':authority': 'shop.local', ':scheme': 'http', ...extra });

interface Exchange {
  info?: StreamInfo;
  request?: Headers;
  /** Omitted: the stream ends without a response. */
  response?: Headers;
  /** Time between the request and the response. */
  ms?: number;
}

async function exchange(h: FilterHarness, e: Exchange = {}): Promise<HarnessStream> {
  const s = h.stream(e.info);
  await s.requestHeaders(e.request ?? request('GET'), { endOfStream: true });
  if (e.ms) await h.advanceTime(e.ms);
  if (e.response) await s.responseHeaders(e.response, { endOfStream: true });
  await s.end();
  return s;
}

const ok = { ':status': '200' };

/** The metric name of a series: `metric{name="value",...}`, values escaped as in the Prometheus text format. */
function tagged(labels: Record<string, string>, metric: string): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`);
  return pairs.length > 0 ? `${metric}{${pairs.join(',')}}` : metric;
}

const requests = (h: FilterHarness, labels: Record<string, string>, prefix = 'telemetry_') => h.metric(tagged(labels, `${prefix}requests_total`));
const durations = (h: FilterHarness, labels: Record<string, string>, prefix = 'telemetry_') => h.metric(tagged(labels, `${prefix}request_duration_milliseconds`));

/** What the host's histogram holds after these observations. */
function histogram(values: number[]) {
  const buckets = new Array<number>(HISTOGRAM_BUCKETS.length + 1).fill(0);
  for (const v of values) {
    let i = 0;
    while (i < HISTOGRAM_BUCKETS.length && v > HISTOGRAM_BUCKETS[i]) i++;
    buckets[i]++;
  }
  return { count: values.length, sum: values.reduce((a, b) => a + b, 0), buckets };
}

/** Names of every metric the filter defined, sorted. */
const metricNames = (h: FilterHarness) => h.env.metrics.all().map((m) => m.name).sort();

// ---- Metrics ------------------------------------------------------------------------------------

test('counts requests and records durations per method, response code and cluster (the default labels)', async (t) => {
  const h = await load();
  const echo = { clusterName: 'echo' };
  await exchange(h, { info: echo, response: ok, ms: 7 });
  await exchange(h, { info: echo, response: ok, ms: 30 });
  await exchange(h, { info: echo, response: ok, ms: 1 });
  await exchange(h, { info: echo, request: request('POST', '/orders'), response: { ':status': '503' }, ms: 250 });
  await exchange(h, { response: ok });

  t.is(requests(h, { method: 'GET', response_code: '200', cluster: 'echo' }), 3);
  t.deepEqual(durations(h, { method: 'GET', response_code: '200', cluster: 'echo' }), histogram([7, 30, 1]));
  t.is(requests(h, { method: 'POST', response_code: '503', cluster: 'echo' }), 1);
  t.deepEqual(durations(h, { method: 'POST', response_code: '503', cluster: 'echo' }), histogram([250]));
  t.is(requests(h, { method: 'GET', response_code: '200', cluster: 'unknown' }), 1);
  t.deepEqual(durations(h, { method: 'GET', response_code: '200', cluster: 'unknown' }), histogram([0]));
  t.deepEqual(metricNames(h), [
    tagged({ method: 'GET', response_code: '200', cluster: 'echo' }, 'telemetry_request_duration_milliseconds'),
    tagged({ method: 'GET', response_code: '200', cluster: 'echo' }, 'telemetry_requests_total'),
    tagged({ method: 'GET', response_code: '200', cluster: 'unknown' }, 'telemetry_request_duration_milliseconds'),
    tagged({ method: 'GET', response_code: '200', cluster: 'unknown' }, 'telemetry_requests_total'),
    tagged({ method: 'POST', response_code: '503', cluster: 'echo' }, 'telemetry_request_duration_milliseconds'),
    tagged({ method: 'POST', response_code: '503', cluster: 'echo' }, 'telemetry_requests_total'),
    'telemetry_request_ids_generated_total',
    'telemetry_traceparents_generated_total',
  ].sort());
  t.deepEqual(h.logLines(), [
    "info: telemetry: metrics telemetry_requests_total and telemetry_request_duration_milliseconds by [method, response_code, cluster], request id in 'x-request-id' when missing, traceparent when missing or invalid",
  ]);
});

test('durations are whole milliseconds, rounded', async (t) => {
  const h = await load({ metrics: { labels: [] } });
  for (const ms of [0.4, 0.6, 2.9, 1499.4]) await exchange(h, { response: ok, ms });
  t.deepEqual(h.metric('telemetry_request_duration_milliseconds'), histogram([0, 1, 3, 1499]));
  t.is(h.metric('telemetry_requests_total'), 4);
});

test('every built-in label, in the configured order', async (t) => {
  const h = await load({
    metrics: { labels: ['path', 'destination_service', 'source_principal', 'request_protocol', 'cluster', 'route', 'response_code', 'method'] },
  });
  const info: StreamInfo = {
    routeName: 'orders-route',
    clusterName: 'orders',
    protocol: 'HTTP/1.1',
    connection: { id: 1, mtls: true, peerUriSans: ['spiffe://cluster.local/ns/shop/sa/web'] },
  };
  await exchange(h, { info, request: request('PUT', '/items/7?color=red', { ':authority': 'shop.local:8080' }), response: { ':status': '201' }, ms: 12 });
  const labels = {
    path: '/items/7',
    destination_service: 'shop.local:8080',
    source_principal: 'spiffe://cluster.local/ns/shop/sa/web',
    request_protocol: 'http',
    cluster: 'orders',
    route: 'orders-route',
    response_code: '201',
    method: 'PUT',
  };
  t.is(requests(h, labels), 1);
  t.deepEqual(durations(h, labels), histogram([12]));
});

test('a missing value reads unknown', async (t) => {
  const h = await load({ metrics: { labels: ['route', 'cluster', 'source_principal', 'destination_service', 'path'] } });
  const s = h.stream();
  await s.requestHeaders({ ':method': 'GET' }, { endOfStream: true });
  await s.responseHeaders(ok, { endOfStream: true });
  await s.end();
  t.is(requests(h, { route: 'unknown', cluster: 'unknown', source_principal: 'unknown', destination_service: 'unknown', path: 'unknown' }), 1);
});

test('method: the standard methods as themselves, any other as OTHER', async (t) => {
  const h = await load({ metrics: { labels: ['method'] } });
  const standard = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
  for (const m of [...standard, 'PROPFIND', 'get', 'BREW']) await exchange(h, { request: request(m), response: ok });
  for (const m of standard) t.is(requests(h, { method: m }), 1, m);
  t.is(requests(h, { method: 'OTHER' }), 3);
  t.is(requests(h, { method: 'PROPFIND' }), undefined);
});

test('response_code: 0 when the stream ends without a response', async (t) => {
  const h = await load({ metrics: { labels: ['response_code'] } });
  await exchange(h, { ms: 3 });
  t.is(requests(h, { response_code: '0' }), 1);
  t.deepEqual(durations(h, { response_code: '0' }), histogram([3]));
});

test('request_protocol: http, http2, or grpc by content type', async (t) => {
  const h = await load({ metrics: { labels: ['request_protocol'] } });
  await exchange(h, { info: { protocol: 'HTTP/1.1' }, response: ok });
  await exchange(h, { info: { protocol: 'HTTP/1.0' }, response: ok });
  await exchange(h, { info: { protocol: 'HTTP/2' }, response: ok });
  await exchange(h, { info: { protocol: 'HTTP/2' }, request: request('POST', '/pkg.Svc/Call', { 'content-type': 'application/grpc+proto' }), response: ok });
  await exchange(h, { response: ok });
  t.is(requests(h, { request_protocol: 'http' }), 3);
  t.is(requests(h, { request_protocol: 'http2' }), 1);
  t.is(requests(h, { request_protocol: 'grpc' }), 1);
});

test('custom labels from a request header (pseudo-headers too) and from a property', async (t) => {
  const h = await load({
    metrics: {
      labels: [
        { name: 'tenant', header: 'x-tenant' },
        { name: 'host', header: ':authority' },
        { name: 'scheme', property: 'request.scheme' },
        { name: 'region', property: 'node.metadata.REGION' },
      ],
    },
  });
  await exchange(h, { request: request('GET', '/', { 'x-tenant': 'acme' }), response: ok });
  await exchange(h, { request: request('GET', '/', { 'x-tenant': 'acme' }), response: ok });
  await exchange(h, { request: request('GET', '/'), response: ok });
  await exchange(h, { request: request('GET', '/', { 'x-tenant': 'a"b\\c;d' }), response: ok });
  await exchange(h, { request: request('GET', '/', { 'x-tenant': '' }), response: ok });
  const base = { host: 'shop.local', scheme: 'http', region: 'unknown' };
  t.is(requests(h, { tenant: 'acme', ...base }), 2);
  t.is(requests(h, { tenant: 'unknown', ...base }), 2);
  t.is(h.metric('telemetry_requests_total{tenant="a\\"b\\\\c;d",host="shop.local",scheme="http",region="unknown"}'), 1);
});

test('labelEncoding istio: labels as Envoy stats tags in the name, `;` in a value as `_`', async (t) => {
  const h = await load({ metrics: { labelEncoding: 'istio', labels: ['method', { name: 'tenant', header: 'x-tenant' }] } });
  await exchange(h, { request: request('GET', '/', { 'x-tenant': 'acme' }), response: ok, ms: 9 });
  await exchange(h, { request: request('GET', '/', { 'x-tenant': 'a;b;.;c"d' }), response: ok });
  t.is(h.metric('method=.=GET;.;tenant=.=acme;.;telemetry_requests_total'), 1);
  t.deepEqual(h.metric('method=.=GET;.;tenant=.=acme;.;telemetry_request_duration_milliseconds'), histogram([9]));
  t.is(h.metric('method=.=GET;.;tenant=.=a_b_._c"d;.;telemetry_requests_total'), 1);
});

test('a custom prefix and no labels give plain metric names', async (t) => {
  const h = await load({ metrics: { prefix: 'edge_', labels: [] }, requestId: { generate: false }, traceparent: { inject: false } });
  await exchange(h, { response: ok, ms: 4 });
  await exchange(h, { response: { ':status': '500' }, ms: 40 });
  t.deepEqual(metricNames(h), ['edge_request_duration_milliseconds', 'edge_requests_total']);
  t.is(h.metric('edge_requests_total'), 2);
  t.deepEqual(h.metric('edge_request_duration_milliseconds'), histogram([4, 40]));
});

test('an empty prefix', async (t) => {
  const h = await load({ metrics: { prefix: '', labels: ['response_code'] }, requestId: { generate: false }, traceparent: { inject: false } });
  await exchange(h, { response: ok });
  t.deepEqual(metricNames(h), ['request_duration_milliseconds{response_code="200"}', 'requests_total{response_code="200"}']);
});

test('metrics.enabled false defines no request metrics', async (t) => {
  const h = await load({ metrics: { enabled: false } });
  const s = await exchange(h, { request: request('GET'), response: ok, ms: 5 });
  t.regex(s.request.header('x-request-id') ?? '', UUID_V4);
  t.deepEqual(metricNames(h), ['telemetry_request_ids_generated_total', 'telemetry_traceparents_generated_total']);
  t.deepEqual(h.logLines(), ["info: telemetry: no metrics, request id in 'x-request-id' when missing, traceparent when missing or invalid"]);
});

test('past metrics.maxSeries, new label combinations share the overflow series, with one warning', async (t) => {
  const h = await load({ metrics: { labels: [{ name: 'user', header: 'x-user' }, 'response_code'], maxSeries: 2 } });
  for (const user of ['alice', 'bob', 'carol', 'dave', 'alice', 'carol']) {
    await exchange(h, { request: request('GET', '/', { 'x-user': user }), response: ok, ms: 2 });
  }
  await exchange(h, { request: request('GET', '/', { 'x-user': 'bob' }), response: { ':status': '404' } });
  t.is(requests(h, { user: 'alice', response_code: '200' }), 2);
  t.is(requests(h, { user: 'bob', response_code: '200' }), 1);
  t.is(requests(h, { user: 'overflow', response_code: 'overflow' }), 4);
  t.deepEqual(durations(h, { user: 'overflow', response_code: 'overflow' }), histogram([2, 2, 2, 0]));
  t.is(requests(h, { user: 'carol', response_code: '200' }), undefined);
  t.is(requests(h, { user: 'bob', response_code: '404' }), undefined);
  t.deepEqual(h.logLines(3), [
    "warn: telemetry: metrics.maxSeries (2) label combinations reached; further new combinations are counted under the series whose labels are all 'overflow'",
  ]);
});

test('a local reply from an earlier filter is counted with its status and the host-measured duration', async (t) => {
  const h = await FilterHarness.chain([
    { module: helloWasm, name: 'hello', rootId: 'hello', configuration: JSON.stringify({ denyPath: '/forbidden' }) },
    { module: wasm, name: 'telemetry', rootId: 'telemetry', configuration: JSON.stringify({ metrics: { labels: ['response_code'] }, requestId: { responseHeader: 'x-request-id' }, traceparent: { responseHeader: 'x-trace-id' } }) },
  ]);
  const s = h.stream();
  const r = await s.requestHeaders(request('GET', '/forbidden', { 'x-request-id': 'req-7', traceparent: VALID_TRACEPARENT }), { endOfStream: true });
  t.is(r.kind, 'local-reply');
  t.is(r.status, 403);
  // The telemetry filter's request callback never ran; its response callback still echoes the ids.
  t.is(r.headers?.['x-request-id'], 'req-7');
  t.is(r.headers?.['x-trace-id'], '4bf92f3577b34da6a3ce929d0e0e4736');
  await h.advanceTime(6);
  await s.end();
  t.is(requests(h, { response_code: '403' }), 1);
  t.deepEqual(durations(h, { response_code: '403' }), histogram([6]));
});

// ---- Request id ---------------------------------------------------------------------------------

test('a request without an id gets a random UUID v4, counted, and echoed in requestId.responseHeader', async (t) => {
  const h = await load({ requestId: { responseHeader: 'x-request-id' } });
  const s = await exchange(h, { request: request('GET'), response: ok });
  const id = s.request.header('x-request-id');
  t.regex(id ?? '', UUID_V4);
  t.is(s.response.header('x-request-id'), id);
  t.is(h.metric('telemetry_request_ids_generated_total'), 1);
});

test('an incoming request id is kept and echoed', async (t) => {
  const h = await load({ requestId: { responseHeader: 'x-correlation' } });
  const s = await exchange(h, { request: request('GET', '/', { 'x-request-id': 'abc-123' }), response: ok });
  t.is(s.request.header('x-request-id'), 'abc-123');
  t.is(s.response.header('x-correlation'), 'abc-123');
  t.is(s.response.header('x-request-id'), undefined);
  t.is(h.metric('telemetry_request_ids_generated_total'), 0);
});

test('a custom request id header', async (t) => {
  const h = await load({ requestId: { header: 'x-trace-request' } });
  const s = await exchange(h, { request: request('GET', '/', { 'x-request-id': 'not-this-one' }), response: ok });
  t.regex(s.request.header('x-trace-request') ?? '', UUID_V4);
  t.is(s.request.header('x-request-id'), 'not-this-one');
  t.is(s.response.header('x-trace-request'), undefined);
});

test('requestId.generate false leaves a request without an id, and echoes only an incoming one', async (t) => {
  const h = await load({ requestId: { generate: false, responseHeader: 'x-request-id' } });
  const without = await exchange(h, { request: request('GET'), response: ok });
  t.is(without.request.header('x-request-id'), undefined);
  t.is(without.response.header('x-request-id'), undefined);
  const withId = await exchange(h, { request: request('GET', '/', { 'x-request-id': 'r-1' }), response: ok });
  t.is(withId.response.header('x-request-id'), 'r-1');
  t.is(h.metric('telemetry_request_ids_generated_total'), undefined);
});

test('generated ids and traceparents are well formed and distinct across many requests', async (t) => {
  const h = await load({ metrics: { enabled: false } });
  const ids = new Set<string>();
  const traces = new Set<string>();
  const spans = new Set<string>();
  // 40 random bytes a request: the filter's 1 KiB pool is refilled several times.
  for (let i = 0; i < 200; i++) {
    const s = await exchange(h, { request: request('GET'), response: ok });
    const id = s.request.header('x-request-id')!;
    const m = TRACEPARENT.exec(s.request.header('traceparent')!);
    t.regex(id, UUID_V4);
    t.truthy(m);
    ids.add(id);
    traces.add(m![1]);
    spans.add(m![2]);
  }
  t.is(ids.size, 200);
  t.is(traces.size, 200);
  t.is(spans.size, 200);
  t.is(h.metric('telemetry_request_ids_generated_total'), 200);
  t.is(h.metric('telemetry_traceparents_generated_total'), 200);
});

// ---- traceparent --------------------------------------------------------------------------------

test('a request without a traceparent gets a new sampled one; traceparent.responseHeader carries its trace id', async (t) => {
  const h = await load({ traceparent: { responseHeader: 'x-trace-id' } });
  const s = await exchange(h, { request: request('GET'), response: ok });
  const m = TRACEPARENT.exec(s.request.header('traceparent') ?? '');
  t.truthy(m, s.request.header('traceparent'));
  t.not(m![1], '0'.repeat(32));
  t.not(m![2], '0'.repeat(16));
  t.is(s.response.header('x-trace-id'), m![1]);
  t.is(h.metric('telemetry_traceparents_generated_total'), 1);
});

const validTraceparents = [
  VALID_TRACEPARENT,
  '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00',
  // A later version may carry more fields after the four it shares with version 00.
  '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
  'cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09',
];

for (const traceparent of validTraceparents) {
  test(`a valid traceparent is left as it is, tracestate too: ${traceparent}`, async (t) => {
    const h = await load({ traceparent: { responseHeader: 'x-trace-id' } });
    const s = await exchange(h, { request: request('GET', '/', { traceparent, tracestate: 'vendor=1' }), response: ok });
    t.is(s.request.header('traceparent'), traceparent);
    t.is(s.request.header('tracestate'), 'vendor=1');
    t.is(s.response.header('x-trace-id'), '4bf92f3577b34da6a3ce929d0e0e4736');
    t.is(h.metric('telemetry_traceparents_generated_total'), 0);
  });
}

const invalidTraceparents: Array<[string, string]> = [
  ['upper-case hex', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01'],
  ['an all-zero trace id', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
  ['an all-zero parent id', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
  ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
  ['version 00 with more after it', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra'],
  ['a later version without a dash after the flags', '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x'],
  ['a short trace id', '00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01'],
  ['underscores for dashes', '00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01'],
  ['a non-hex flag', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g'],
  ['garbage', 'hello'],
];

for (const [what, traceparent] of invalidTraceparents) {
  test(`a traceparent with ${what} is replaced, and its tracestate dropped`, async (t) => {
    const h = await load({ traceparent: { responseHeader: 'x-trace-id' } });
    const s = await exchange(h, { request: request('GET', '/', { traceparent, tracestate: 'vendor=1' }), response: ok });
    const m = TRACEPARENT.exec(s.request.header('traceparent') ?? '');
    t.truthy(m, s.request.header('traceparent'));
    t.is(s.request.header('tracestate'), undefined);
    t.is(s.response.header('x-trace-id'), m![1]);
    t.is(h.metric('telemetry_traceparents_generated_total'), 1);
  });
}

test('traceparent.inject false leaves requests as they are, and echoes only a valid trace id', async (t) => {
  const h = await load({ traceparent: { inject: false, responseHeader: 'x-trace-id' } });
  const missing = await exchange(h, { request: request('GET'), response: ok });
  t.is(missing.request.header('traceparent'), undefined);
  t.is(missing.response.header('x-trace-id'), undefined);
  const invalid = await exchange(h, { request: request('GET', '/', { traceparent: 'hello', tracestate: 'v=1' }), response: ok });
  t.is(invalid.request.header('traceparent'), 'hello');
  t.is(invalid.request.header('tracestate'), 'v=1');
  t.is(invalid.response.header('x-trace-id'), undefined);
  const valid = await exchange(h, { request: request('GET', '/', { traceparent: VALID_TRACEPARENT }), response: ok });
  t.is(valid.response.header('x-trace-id'), '4bf92f3577b34da6a3ce929d0e0e4736');
  t.is(h.metric('telemetry_traceparents_generated_total'), undefined);
});

test('without response headers configured, none are added', async (t) => {
  const h = await load();
  const s = await exchange(h, { request: request('GET'), response: { ':status': '200', 'content-type': 'text/plain' } });
  t.deepEqual(s.response.headersObject(), { ':status': '200', 'content-type': 'text/plain' });
});

// ---- Access-log fields --------------------------------------------------------------------------

const accessLog = {
  fields: [
    { name: 'request_id', header: 'x-request-id' },
    { name: 'user', header: 'x-user' },
    { name: 'cache', responseHeader: 'x-cache' },
    { name: 'route', property: 'xds.route_name' },
    { name: 'tenant', header: 'x-tenant' },
  ],
};

test('access-log fields become sluice.access_log.<name> properties and one JSON log line', async (t) => {
  const h = await load({ metrics: { enabled: false }, accessLog });
  const s = await exchange(h, {
    info: { routeName: 'default' },
    request: request('GET', '/', { 'x-request-id': 'r-9', 'x-user': 'al"ice\\ü' }),
    response: { ':status': '200', 'x-cache': 'HIT' },
  });
  t.is(s.property('sluice.access_log.request_id'), 'r-9');
  t.is(s.property('sluice.access_log.user'), 'al"ice\\ü');
  t.is(s.property('sluice.access_log.cache'), 'HIT');
  t.is(s.property('sluice.access_log.route'), 'default');
  t.is(s.property('sluice.access_log.tenant'), undefined);
  const line = '{"access_log":{"request_id":"r-9","user":"al\\"ice\\\\ü","cache":"HIT","route":"default","tenant":null}}';
  t.deepEqual(h.logLines().slice(1), [`info: ${line}`]);
  t.deepEqual(JSON.parse(line), { access_log: { request_id: 'r-9', user: 'al"ice\\ü', cache: 'HIT', route: 'default', tenant: null } });
});

test('accessLog.logLine false: the properties only', async (t) => {
  const h = await load({ metrics: { enabled: false }, accessLog: { ...accessLog, logLine: false } });
  const s = await exchange(h, { request: request('GET', '/', { 'x-user': 'bob' }), response: ok });
  t.is(s.property('sluice.access_log.user'), 'bob');
  t.regex(s.property('sluice.access_log.request_id') ?? '', UUID_V4);
  t.is(h.logLines().length, 1);
});

test('no JSON log line when the host logs above info; the properties still go', async (t) => {
  const h = await load({ metrics: { enabled: false }, accessLog }, 3);
  const s = await exchange(h, { request: request('GET', '/', { 'x-user': 'bob' }), response: ok });
  t.is(s.property('sluice.access_log.user'), 'bob');
  t.deepEqual(h.logLines(), []);
});

// ---- Configuration ------------------------------------------------------------------------------

const invalid: Array<[string, unknown, RegExp]> = [
  ['metrics that is not an object', { metrics: 5 }, /field 'metrics': expected an object, got number/],
  ['metrics.enabled that is not a boolean', { metrics: { enabled: 'yes' } }, /field 'metrics.enabled': expected true or false, got string/],
  ['a prefix that is not a Prometheus name', { metrics: { prefix: '9x-' } }, /field 'metrics.prefix': must be empty or letters, digits and '_', not starting with a digit/],
  ['labels that is not an array', { metrics: { labels: 'method' } }, /field 'metrics.labels': expected an array, got string/],
  ['an unknown built-in label', { metrics: { labels: ['method', 'status'] } }, /field 'metrics.labels\[1\]': unknown label "status" \(built-in: method, response_code, route, cluster, request_protocol, source_principal, destination_service, path; or an object \{name, header\} or \{name, property\}\)/],
  ['a label that is a number', { metrics: { labels: [3] } }, /field 'metrics.labels\[0\]': expected a label name or an object \{name, header\} \/ \{name, property\}, got number/],
  ['a custom label without a name', { metrics: { labels: [{ header: 'x-a' }] } }, /field 'metrics.labels\[0\].name': is required/],
  ['a custom label with both header and property', { metrics: { labels: [{ name: 'a', header: 'x-a', property: 'request.path' }] } }, /field 'metrics.labels\[0\]': give exactly one of header or property/],
  ['a custom label with neither header nor property', { metrics: { labels: [{ name: 'a' }] } }, /field 'metrics.labels\[0\]': give exactly one of header or property/],
  ['a custom label name with a dash', { metrics: { labels: [{ name: 'x-user', header: 'x-user' }] } }, /field 'metrics.labels\[0\].name': must be a Prometheus label name/],
  ['a custom label name starting with __', { metrics: { labels: [{ name: '__user', header: 'x-user' }] } }, /field 'metrics.labels\[0\].name': must be a Prometheus label name/],
  ['a custom label named like a built-in', { metrics: { labels: [{ name: 'method', header: 'x-method' }] } }, /field 'metrics.labels\[0\].name': "method" is a built-in label; list it as the string "method" instead/],
  ['a custom label named le', { metrics: { labels: [{ name: 'le', header: 'x-le' }] } }, /field 'metrics.labels\[0\].name': "le" is reserved for histogram buckets/],
  ['a label given twice', { metrics: { labels: ['method', 'cluster', 'method'] } }, /field 'metrics.labels\[2\]': label "method" is given twice/],
  ['a label given twice (as objects)', { metrics: { labels: [{ name: 'u', header: 'x-a' }, { name: 'u', property: 'request.path' }] } }, /field 'metrics.labels\[1\]': label "u" is given twice/],
  ['a custom label header that is not lower case', { metrics: { labels: [{ name: 'user', header: 'X-User' }] } }, /field 'metrics.labels\[0\].header': must be a lower-case header name like 'x-request-id' \(or a pseudo-header like ':authority'\), got "X-User"/],
  ['a custom label header that is a number', { metrics: { labels: [{ name: 'user', header: 7 }] } }, /field 'metrics.labels\[0\].header': expected a string, got number$/],
  ['a custom label property with an empty segment', { metrics: { labels: [{ name: 'r', property: 'node..REGION' }] } }, /field 'metrics.labels\[0\].property': must be a dotted property path like 'node.metadata.REGION' \(no empty segment\), got "node..REGION"/],
  ['an unknown field in a custom label', { metrics: { labels: [{ name: 'u', headr: 'x-u' }] } }, /unknown field 'metrics.labels\[0\].headr'/],
  ['an unknown label encoding', { metrics: { labelEncoding: 'envoy' } }, /field 'metrics.labelEncoding': must be "prometheus" or "istio", got "envoy"/],
  ['maxSeries of 0', { metrics: { maxSeries: 0 } }, /field 'metrics.maxSeries': must be between 1 and 1000000, got 0/],
  ['maxSeries that is not an integer', { metrics: { maxSeries: 1.5 } }, /field 'metrics.maxSeries': expected an integer, got number/],
  ['custom histogram buckets (the host has fixed ones)', { metrics: { histogramBucketsMs: [1, 5] } }, /unknown field 'metrics.histogramBucketsMs'/],
  ['a request id header that is a pseudo-header', { requestId: { header: ':path' } }, /field 'requestId.header': must be a lower-case header name like 'x-request-id', got ":path"/],
  ['an empty request id header', { requestId: { header: '' } }, /field 'requestId.header': must be a lower-case header name/],
  ['requestId.generate that is not a boolean', { requestId: { generate: 1 } }, /field 'requestId.generate': expected true or false, got number/],
  ['a requestId.responseHeader that is not lower case', { requestId: { responseHeader: 'X-Id' } }, /field 'requestId.responseHeader': must be a lower-case header name/],
  ['traceparent.inject that is a string', { traceparent: { inject: 'true' } }, /field 'traceparent.inject': expected true or false, got string/],
  ['a traceparent.responseHeader with a space', { traceparent: { responseHeader: 'x trace' } }, /field 'traceparent.responseHeader': must be a lower-case header name/],
  ['an unknown traceparent field', { traceparent: { sampled: true } }, /unknown field 'traceparent.sampled'/],
  ['access-log fields that is not an array', { accessLog: { fields: {} } }, /field 'accessLog.fields': expected an array, got object/],
  ['an access-log field that is a string', { accessLog: { fields: ['user'] } }, /field 'accessLog.fields\[0\]': expected an object \{name, header \| responseHeader \| property\}, got string/],
  ['an access-log field without a name', { accessLog: { fields: [{ header: 'x-user' }] } }, /field 'accessLog.fields\[0\].name': is required/],
  ['an access-log field name with a dash', { accessLog: { fields: [{ name: 'user-name', header: 'x-user' }] } }, /field 'accessLog.fields\[0\].name': must be 1 to 64 letters, digits and '_', not starting with a digit, got "user-name"/],
  ['an access-log field with two sources', { accessLog: { fields: [{ name: 'u', header: 'x-user', responseHeader: 'x-user' }] } }, /field 'accessLog.fields\[0\]': give exactly one of header, responseHeader or property/],
  ['an access-log field with no source', { accessLog: { fields: [{ name: 'u' }] } }, /field 'accessLog.fields\[0\]': give exactly one of header, responseHeader or property/],
  ['an access-log field name given twice', { accessLog: { fields: [{ name: 'u', header: 'x-a' }, { name: 'u', header: 'x-b' }] } }, /field 'accessLog.fields\[1\]': field name "u" is given twice/],
  ['an access-log response header that is not lower case', { accessLog: { fields: [{ name: 'c', responseHeader: 'X-Cache' }] } }, /field 'accessLog.fields\[0\].responseHeader': must be a lower-case header name/],
  ['an access-log property with an empty segment', { accessLog: { fields: [{ name: 'r', property: 'xds.' }] } }, /field 'accessLog.fields\[0\].property': must be a dotted property path/],
  ['accessLog.logLine that is not a boolean', { accessLog: { logLine: 'no' } }, /field 'accessLog.logLine': expected true or false, got string/],
  ['an unknown top-level field', { labels: ['method'] }, /unknown field 'labels'/],
  ['a configuration that is not an object', [1, 2], /must be a JSON object, got array/],
];

/** The error's message plus any filter log lines the harness attached to it. */
function errorText(error: unknown): string {
  const e = error as { message?: string; logs?: Array<{ message: string }> } | undefined;
  return [e?.message ?? '', ...(e?.logs ?? []).map((l) => l.message)].join('\n');
}

for (const [what, configuration, message] of invalid) {
  test(`rejects ${what}, naming the field`, async (t) => {
    const error = await t.throwsAsync(load(configuration));
    t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
    t.regex(errorText(error), /telemetry: invalid configuration: /);
    t.regex(errorText(error), message);
  });
}

test('reports every problem of a configuration at once', async (t) => {
  const error = await t.throwsAsync(load({ metrics: { prefix: '1', labels: ['nope'] }, requestId: { header: 'A' }, extra: 1 }));
  t.regex(
    errorText(error),
    /telemetry: invalid configuration: field 'metrics.prefix': .*; field 'requestId.header': .*; unknown field 'extra' .*; field 'metrics.labels\[0\]': unknown label "nope"/,
  );
});

test('rejects configuration text that is not JSON, saying where', async (t) => {
  const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'telemetry', rootId: 'telemetry', configuration: '{"metrics": [' }));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
  t.regex(errorText(error), /telemetry: invalid configuration: invalid JSON: line 1, column 14/);
});

// ---- config.schema.json -------------------------------------------------------------------------

const schema = JSON.parse(readFileSync(new URL('../config.schema.json', import.meta.url), 'utf8')) as { examples: unknown[] };
const validConfigs: unknown[] = [
  {},
  ...schema.examples,
  (JSON.parse(readFileSync(new URL('../bench.json', import.meta.url), 'utf8')) as { config: unknown }).config,
  { metrics: { enabled: false, prefix: '', labels: [], labelEncoding: 'istio', maxSeries: 1 }, requestId: { generate: false }, traceparent: { inject: false } },
  { metrics: { labels: ['path', 'destination_service', 'source_principal', 'request_protocol', 'route', { name: 'host', header: ':authority' }, { name: 'region', property: 'node.metadata.REGION' }] } },
  { accessLog: { logLine: false, fields: [{ name: 'route', property: 'xds.route_name' }, { name: 'status', responseHeader: ':status' }] } },
];
// Uniqueness by name is checked by the filter only: JSON Schema cannot say it.
const notInSchema = new Set(['a label given twice (as objects)', 'an access-log field name given twice']);

test('config.schema.json accepts what the filter accepts and refuses what it refuses', async (t) => {
  const validate = new Ajv2020({ strict: true, allErrors: true }).compile(schema);
  for (const config of validConfigs) {
    t.true(validate(config), `${JSON.stringify(config)}: ${JSON.stringify(validate.errors)}`);
    const h = await load(config);
    h.close();
  }
  for (const [what, config] of invalid) {
    if (notInSchema.has(what)) continue;
    t.false(validate(config), `the schema accepts ${what}: ${JSON.stringify(config)}`);
  }
  const duplicates = { metrics: { labels: [{ name: 'u', header: 'x-a' }, { name: 'u', header: 'x-b' }] } };
  t.true(validate(duplicates));
  await t.throwsAsync(load(duplicates), { code: 'SLUICE_ERR_PLUGIN_CONFIGURE' });
});
