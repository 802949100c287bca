// The request_protocol label of Istio's request metrics: HTTP/1.0 and HTTP/1.1 share one `http`
// series, h2c is `http2`, gRPC `grpc` (docs/proxy.md), and no two series carry the same labels.
import { createServer, request as httpRequest } from 'node:http';
import http2 from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import test from 'ava';
import type { Snapshot } from '../../runtime/config/snapshot.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { cluster } from '../helpers/snapshot.ts';

async function start(t: { teardown(fn: () => unknown): void }) {
  const upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [{ name: 'web', host: '127.0.0.1', port: 0, protocol: 'http', filters: [], routes: [{ name: 'all', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'up', weight: 1 }] }, timeoutMs: 5000 }] }],
    clusters: [cluster('up', [(upstream.address() as AddressInfo).port])],
    filters: [],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(async () => {
    await proxy.stop(100);
    upstream.closeAllConnections();
    upstream.close();
  });
  return { proxy, port: proxy.addresses().web.port };
}

/** An HTTP/1.0 request on a raw socket (node's client only speaks 1.1); resolves with the status line. */
function http10(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    socket.on('data', (d) => (out += d));
    socket.on('close', () => resolve(out.split('\r\n')[0]!));
    socket.on('error', reject);
    socket.write('GET /one HTTP/1.0\r\nHost: a\r\n\r\n');
  });
}

function http11(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/two', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

function h2c(port: number, headers: http2.OutgoingHttpHeaders): Promise<number> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request(headers);
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('error', reject);
    req.resume();
    req.on('end', () => {
      session.close();
      resolve(status);
    });
    req.end();
  });
}

test('HTTP/1.0 and HTTP/1.1 count in one http series, h2c in http2, gRPC in grpc; every series is unique', async (t) => {
  const { proxy, port } = await start(t);
  t.is(await http10(port), 'HTTP/1.1 200 OK');
  t.is(await http11(port), 200);
  t.is(await h2c(port, { ':path': '/three' }), 200);
  t.is(await h2c(port, { ':path': '/demo.Echo/Say', ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' }), 200);

  const text = proxy.metrics();
  const block = text.slice(text.indexOf('# TYPE istio_requests_total'), text.indexOf('# TYPE istio_request_duration_milliseconds'));
  const labels = (protocol: string) => `reporter="source",request_protocol="${protocol}",response_code="200",destination_service="up",sluice_listener="web"`;
  t.is(
    block,
    '# TYPE istio_requests_total counter\n' +
      `istio_requests_total{${labels('http')}} 2\n` +
      `istio_requests_total{${labels('http2')}} 1\n` +
      `istio_requests_total{${labels('grpc')}} 1\n`,
  );
  t.true(text.includes(`istio_request_duration_milliseconds_count{${labels('http')}} 2\n`));
  // No two lines name the same series.
  const series = text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).map((line) => line.slice(0, line.lastIndexOf(' ')));
  t.deepEqual(series.filter((s, i) => series.indexOf(s) !== i), []);
});
