// Span export over OTLP/HTTP: a real collector endpoint on loopback receives the proxy's span of
// each request, with the trace id and parent from the incoming traceparent and the span id the
// upstream saw; a collector that is down costs no request and is counted.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { request } from 'undici';
import type { Snapshot } from '../../runtime/config/snapshot.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { cluster } from '../helpers/snapshot.ts';
import { until } from '../helpers/sluice-run.ts';

async function server(t: ExecutionContext, onRequest: (path: string, headers: IncomingHttpHeaders, body: string) => void, answer = 200): Promise<number> {
  const s = createServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    onRequest(req.url!, req.headers, body);
    res.writeHead(answer, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    s.closeAllConnections();
    s.close();
  });
  return (s.address() as AddressInfo).port;
}

function snapshot(upstream: number, collector: number): Snapshot {
  return {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [
      {
        name: 'main',
        host: '127.0.0.1',
        port: 0,
        protocol: 'http',
        filters: [],
        routes: [{ name: 'api', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'up', weight: 1 }] }, timeoutMs: 5000 }],
      },
    ],
    clusters: [cluster('up', [upstream])],
    filters: [],
    tracing: { otlp: { endpoint: `http://127.0.0.1:${collector}/v1/traces`, serviceName: 'sluice-test', flushIntervalMs: 50, maxBatch: 512 } },
  };
}

type OtlpSpan = { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; startTimeUnixNano: string; endTimeUnixNano: string; attributes: Array<{ key: string; value: Record<string, string> }>; status: { code: number } };

test('each request\'s span reaches the collector with the trace context the upstream saw', async (t) => {
  const seenByUpstream: string[] = [];
  const upstream = await server(t, (_p, h) => seenByUpstream.push(String(h.traceparent)));
  const posts: Array<{ path: string; type: string; body: any }> = [];
  const collector = await server(t, (path, h, body) => posts.push({ path, type: String(h['content-type']), body: JSON.parse(body) }));
  const proxy = await NodeProxy.start(snapshot(upstream, collector), { log: () => {} });
  t.teardown(() => proxy.stop(100));
  const base = `http://127.0.0.1:${proxy.addresses().main.port}`;

  const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  await (await request(`${base}/items/1?x=y`, { headers: { traceparent: incoming } })).body.dump();
  await (await request(`${base}/fresh`)).body.dump();
  const spans = await until('two spans at the collector', () => {
    const all = posts.flatMap((p) => p.body.resourceSpans[0].scopeSpans[0].spans as OtlpSpan[]);
    return all.length >= 2 ? all : undefined;
  });
  t.is(posts[0]!.path, '/v1/traces');
  t.is(posts[0]!.type, 'application/json');
  t.deepEqual(posts[0]!.body.resourceSpans[0].resource.attributes, [{ key: 'service.name', value: { stringValue: 'sluice-test' } }]);

  const [first, second] = spans;
  t.is(seenByUpstream[0], `00-4bf92f3577b34da6a3ce929d0e0e4736-${first!.spanId}-01`);
  t.is(first!.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  t.is(first!.parentSpanId, '00f067aa0ba902b7');
  t.is(first!.name, 'GET api');
  t.is(first!.kind, 2);
  t.deepEqual(first!.status, { code: 0 });
  t.true(BigInt(first!.endTimeUnixNano) >= BigInt(first!.startTimeUnixNano));
  const attrs = Object.fromEntries(first!.attributes.map((a) => [a.key, Object.values(a.value)[0]]));
  t.like(attrs, { 'http.request.method': 'GET', 'url.path': '/items/1', 'http.response.status_code': '200', 'sluice.listener': 'main', 'sluice.route': 'api', 'sluice.upstream_cluster': 'up', 'server.address': `127.0.0.1:${upstream}` });

  // Without an incoming traceparent the span starts a trace: no parent.
  t.is(second!.parentSpanId, undefined);
  t.is(seenByUpstream[1], `00-${second!.traceId}-${second!.spanId}-01`);
  const metrics = await (await request(`http://127.0.0.1:${proxy.addresses().admin.port}/stats/prometheus`)).body.text();
  t.true(metrics.includes('\nsluice_tracing_spans_exported_total 2\n'), metrics);
});

test('a collector that fails costs no request; its spans are dropped and counted', async (t) => {
  const upstream = await server(t, () => {});
  let posted = 0;
  const collector = await server(t, () => posted++, 503);
  const proxy = await NodeProxy.start(snapshot(upstream, collector), { log: () => {} });
  t.teardown(() => proxy.stop(100));
  const base = `http://127.0.0.1:${proxy.addresses().main.port}`;
  for (let i = 0; i < 3; i++) t.is((await request(`${base}/x`)).statusCode, 200);
  const admin = `http://127.0.0.1:${proxy.addresses().admin.port}/stats/prometheus`;
  let text = '';
  for (let i = 0; i < 100 && !text.includes('sluice_tracing_spans_dropped_total 3\n'); i++) {
    await new Promise((r) => setTimeout(r, 50));
    text = await (await request(admin)).body.text();
  }
  t.true(text.includes('\nsluice_tracing_spans_dropped_total 3\n'), text);
  t.true(text.includes('\nsluice_tracing_spans_exported_total 0\n'));
  t.true(posted >= 1);
});
