// The node proxy on loopback against a real upstream: routing, the filter chain on real HTTP
// traffic, upstream failures, admin pages and metric text after known traffic, hot apply, stop.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { request } from 'undici';
import type { FilterConfig, ListenerConfig, Snapshot } from '../../runtime/config/snapshot.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { filterWasm } from '../helpers/fixtures.ts';
import { cluster } from '../helpers/snapshot.ts';

interface Seen {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

async function echoUpstream(): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'echo' }).end(`echo ${req.method} ${req.url} ${body}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

function hello(config: object = { header: 'x-hello', value: 'world', denyPath: '/forbidden' }): FilterConfig {
  return {
    name: 'hello',
    module: filterWasm('hello'),
    rootId: 'hello',
    vmId: '',
    configuration: JSON.stringify(config),
    failStrategy: 'FAIL_CLOSE',
    limits: DEFAULT_LIMITS,
    capabilities: DEFAULT_CAPABILITIES,
    quarantine: DEFAULT_QUARANTINE,
  };
}

function snapshot(upstreamPort: number, filter = hello(), accessLog?: string): Snapshot {
  const listener: ListenerConfig = {
    name: 'main',
    host: '127.0.0.1',
    port: 0,
    protocol: 'http',
    filters: ['hello'],
    ...(accessLog ? { accessLog: { path: accessLog, fields: ['method', 'path', 'status', 'route', 'upstream_cluster', 'request_id', 'trace_id', 'span_id', 'response_bytes'] as const } } : {}),
    routes: [
      { name: 'health', match: { path: '/healthz' }, action: { kind: 'direct', status: 200, body: 'ok\n', headers: { 'content-type': 'text/plain' } }, timeoutMs: 0 },
      { name: 'old', match: { prefix: '/old' }, action: { kind: 'redirect', status: 301, location: 'http://example.test/new' }, timeoutMs: 0 },
      { name: 'api', match: { prefix: '/api/', methods: ['GET', 'POST'] }, action: { kind: 'cluster', clusters: [{ cluster: 'echo', weight: 1 }], prefixRewrite: '/v1/' }, timeoutMs: 5000 },
      { name: 'down', match: { prefix: '/down' }, action: { kind: 'cluster', clusters: [{ cluster: 'nowhere', weight: 1 }] }, timeoutMs: 5000 },
      { name: 'canary', match: { prefix: '/', headers: [{ name: 'x-canary', exact: '1' }] }, action: { kind: 'direct', status: 200, body: 'canary\n', headers: {} }, timeoutMs: 0 },
      { name: 'only-get', match: { prefix: '/', methods: ['GET', 'POST'] }, action: { kind: 'cluster', clusters: [{ cluster: 'echo', weight: 1 }] }, timeoutMs: 5000 },
    ],
  };
  return {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [listener],
    clusters: [cluster('echo', [upstreamPort]), cluster('nowhere', [1])],
    filters: [filter],
  };
}

async function setup(t: { teardown(fn: () => unknown): void }, accessLog?: string) {
  const upstream = await echoUpstream();
  const proxy = await NodeProxy.start(snapshot(upstream.port, hello(), accessLog), { log: () => {} });
  t.teardown(async () => {
    await proxy.stop(100);
    upstream.server.closeAllConnections();
    upstream.server.close();
  });
  const a = proxy.addresses();
  const base = `http://127.0.0.1:${a.main.port}`;
  const admin = `http://127.0.0.1:${a.admin.port}`;
  const get = async (path: string, init: Parameters<typeof request>[1] = {}) => {
    const r = await request(base + path, init);
    return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
  };
  return { proxy, upstream, base, admin, get };
}

test('a request passes the filter chain to the upstream and back', async (t) => {
  const { get, upstream } = await setup(t);
  const r = await get('/anything?q=1', { headers: { 'x-request-id': 'req-1', connection: 'keep-alive' } });
  t.is(r.status, 200);
  t.is(r.text, 'echo GET /anything?q=1 ');
  t.is(r.headers['x-hello'], 'world');
  t.is(r.headers['x-upstream'], 'echo');
  t.is(upstream.seen.length, 1);
  const h = upstream.seen[0].headers;
  t.is(h['x-request-id'], 'req-1');
  t.is(h['x-forwarded-for'], '127.0.0.1');
  t.is(h['x-forwarded-proto'], 'http');
  t.regex(String(h.host), /^127\.0\.0\.1:\d+$/);
});

test('a filter answering locally keeps the request from the upstream', async (t) => {
  const { get, upstream } = await setup(t);
  const r = await get('/forbidden/x');
  t.is(r.status, 403);
  t.is(r.text, "hello: access to '/forbidden/x' is denied (path starts with '/forbidden')\n");
  t.is(r.headers['x-hello'], 'world');
  t.is(upstream.seen.length, 0);
});

test('routes: direct response, redirect, prefix rewrite, header match, no match, a request body', async (t) => {
  const { get, upstream } = await setup(t);
  const health = await get('/healthz');
  t.deepEqual([health.status, health.text, health.headers['x-hello']], [200, 'ok\n', 'world']);
  const old = await get('/old/page');
  t.deepEqual([old.status, old.headers.location], [301, 'http://example.test/new']);
  t.is((await get('/api/items')).text, 'echo GET /v1/items ');
  t.is((await get('/x', { headers: { 'x-canary': '1' } })).text, 'canary\n');
  const del = await get('/x', { method: 'DELETE' });
  t.is(del.status, 404);
  t.is(del.text, 'sluice: no route matches DELETE /x on listener "main"\n');
  const post = await get('/api/upload', { method: 'POST', body: 'a'.repeat(100_000) });
  t.is(post.text, `echo POST /v1/upload ${'a'.repeat(100_000)}`);
  t.is(upstream.seen.at(-1)!.body.length, 100_000);
});

test('an upstream that is down answers 503 naming it', async (t) => {
  const { get } = await setup(t);
  const r = await get('/down');
  t.is(r.status, 503);
  t.is(r.text, 'sluice: upstream connect error to 127.0.0.1:1 of cluster "nowhere" (ECONNREFUSED); is the service running and listening there?\n');
});

test('admin: ready, metrics after known traffic, filters, config dump', async (t) => {
  const { get, admin, proxy } = await setup(t);
  for (let i = 0; i < 3; i++) await get('/anything');
  await get('/forbidden');
  t.is((await request(`${admin}/ready`)).statusCode, 200);
  const metrics = await (await request(`${admin}/stats/prometheus`)).body.text();
  t.true(metrics.includes('istio_requests_total{reporter="source",request_protocol="http",response_code="200",destination_service="echo",sluice_listener="main"} 3\n'), metrics);
  t.true(metrics.includes('istio_requests_total{reporter="source",request_protocol="http",response_code="403",destination_service="unknown",sluice_listener="main"} 1\n'));
  t.true(metrics.includes('istio_request_duration_milliseconds_count{reporter="source",request_protocol="http",response_code="200",destination_service="echo",sluice_listener="main"} 3\n'));
  t.true(metrics.includes('\nhello_requests_total 4\n'));
  t.true(metrics.includes('\nsluice_filter_streams_total{filter="hello"} 4\n'));
  t.true(metrics.includes('\nsluice_filter_failures_total{filter="hello"} 0\n'));
  // Every callback's calls are counted; the time is measured on a sample and scaled.
  t.true(metrics.includes('\nsluice_filter_callback_calls_total{filter="hello",callback="proxy_on_request_headers"} 4\n'), metrics);
  t.true(metrics.includes('\nsluice_filter_callback_calls_total{filter="hello",callback="proxy_on_response_headers"} 4\n'));
  t.true(metrics.includes('\nsluice_filter_callback_calls_total{filter="hello",callback="proxy_on_configure"} 1\n'));
  t.regex(metrics, /\nsluice_filter_callback_seconds_total\{filter="hello",callback="proxy_on_request_headers"\} \d+(\.\d+)?(e-\d+)?\n/);

  // A filter's metric name may carry Prometheus labels; series of one name share one TYPE line.
  const a = proxy.env.metrics.define(0, 'demo_total{code="200"}').id;
  const b = proxy.env.metrics.define(0, 'demo_total{code="503"}').id;
  proxy.env.metrics.increment(a, 2);
  proxy.env.metrics.increment(b, 1);
  proxy.env.metrics.define(0, 'odd.name-with.dots');
  const labelled = await (await request(`${admin}/stats/prometheus`)).body.text();
  t.true(labelled.includes('# TYPE demo_total counter\ndemo_total{code="200"} 2\ndemo_total{code="503"} 1\n'), labelled);
  t.true(labelled.includes('# TYPE odd_name_with_dots counter\nodd_name_with_dots 0\n'));
  const filters = (await (await request(`${admin}/filters`)).body.json()) as Array<Record<string, unknown>>;
  t.is(filters.length, 1);
  t.like(filters[0], { name: 'hello', state: 'active', failStrategy: 'FAIL_CLOSE', failures: 0, streams: 4 });
  const dump = (await (await request(`${admin}/config_dump`)).body.json()) as Snapshot;
  t.deepEqual(dump.listeners.map((l) => l.name), ['main']);
  await proxy.stop(100);
  t.false(proxy.ready);
});

test('apply: a new filter config takes effect; a rejected one leaves the running one serving', async (t) => {
  const { proxy, get, upstream } = await setup(t);
  await proxy.apply(snapshot(upstream.port, hello({ header: 'x-hello', value: 'again' })));
  t.is((await get('/anything')).headers['x-hello'], 'again');
  const error = await t.throwsAsync(proxy.apply(snapshot(upstream.port, hello({ header: 42 }))));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
  t.regex(error!.message, /field 'header'/);
  t.is((await get('/anything')).headers['x-hello'], 'again');
});

test('trace context: the upstream sees the proxy\'s span as parent, and the access log line says so', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-log-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'access.log');
  const { get, upstream, proxy } = await setup(t, file);
  const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  await get('/anything', { headers: { traceparent: incoming, 'x-request-id': 'r-42' } });
  await get('/forbidden', { headers: { 'x-request-id': 'r-43' } });
  const forwarded = String(upstream.seen[0].headers.traceparent);
  const m = /^00-4bf92f3577b34da6a3ce929d0e0e4736-([0-9a-f]{16})-01$/.exec(forwarded);
  t.truthy(m, forwarded);
  t.not(m![1], '00f067aa0ba902b7');
  await proxy.stop(100);
  const lines = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  t.deepEqual(lines[0], {
    method: 'GET', path: '/anything', status: 200, route: 'only-get', upstream_cluster: 'echo', request_id: 'r-42',
    trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', span_id: m![1], response_bytes: 'echo GET /anything '.length,
  });
  t.like(lines[1], { method: 'GET', path: '/forbidden', status: 403, route: null, upstream_cluster: null, request_id: 'r-43' });
  t.regex(lines[1].trace_id, /^[0-9a-f]{32}$/);
});

test('applying new snapshots under load fails no request', async (t) => {
  const { proxy, get, upstream } = await setup(t);
  const total = 200;
  const results: number[] = [];
  let started = 0;
  // 8 clients in a loop; a new snapshot is applied after every 40 requests started.
  const applies: Array<Promise<void>> = [];
  const client = async () => {
    while (started < total) {
      if (++started % 40 === 0) applies.push(proxy.apply(snapshot(upstream.port, hello({ header: 'x-hello', value: `v${started / 40}` }))));
      results.push((await get('/anything')).status);
    }
  };
  await Promise.all(Array.from({ length: 8 }, client));
  await Promise.all(applies);
  t.is(applies.length, 5);
  t.is(results.length, total);
  t.deepEqual([...new Set(results)], [200]);
  t.is((await get('/anything')).headers['x-hello'], 'v5');
});

test('stop: /ready turns false at once, in-flight requests finish, then listeners close', async (t) => {
  const upstream = await echoUpstream();
  let release!: () => void;
  let arrived!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const atUpstream = new Promise<void>((r) => (arrived = r));
  upstream.server.removeAllListeners('request');
  upstream.server.on('request', (_req, res) => {
    arrived();
    void held.then(() => res.end('late but whole'));
  });
  const proxy = await NodeProxy.start(snapshot(upstream.port), { log: () => {} });
  t.teardown(() => {
    upstream.server.closeAllConnections();
    upstream.server.close();
  });
  const { main, admin } = proxy.addresses();
  const inFlight = request(`http://127.0.0.1:${main.port}/slow`).then(async (r) => [r.statusCode, await r.body.text()]);
  await atUpstream;
  const stopped = proxy.stop(5000);
  t.false(proxy.ready);
  t.is((await request(`http://127.0.0.1:${admin.port}/ready`)).statusCode, 503);
  release();
  t.deepEqual(await inFlight, [200, 'late but whole']);
  await stopped;
  await t.throwsAsync(request(`http://127.0.0.1:${main.port}/after`), { code: 'ECONNREFUSED' });
});
