// Capture's HTTP hand-off without namespaces: which first bytes count as HTTP/1.1, and a
// cluster whose connections a connector makes (what capture uses to dial from a pod's netns).

import { createServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import test from 'ava';
import { sniffedProtocol } from '../../runtime/capture/index.ts';
import { Cluster } from '../../runtime/proxy/upstreams.ts';
import { originalDestinationState } from '../../runtime/capture/capture-http.ts';
import { createEnvironment } from '../../runtime/host/environment.ts';

test('HTTP/1.x request lines and the HTTP/2 preface go to the HTTP stack; TLS and other protocols do not', (t) => {
  for (const h1 of ['GET / HTTP/1.1\r\n', 'POST /x HTTP/1.0\r\n', 'CONNECT a:443 HTTP/1.1\r\n', 'DELETE /a']) t.is(sniffedProtocol(Buffer.from(h1)), 'http1', h1);
  t.is(sniffedProtocol(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'http2');
  for (const no of ['\x16\x03\x01\x02\x00', 'ping\n', 'get / HTTP/1.1\r\n', 'GET', 'PRI * HTTP/2', '']) t.is(sniffedProtocol(Buffer.from(no, 'latin1')), undefined, JSON.stringify(no));
});

test('the original-destination state routes every request to a cluster whose connections the connector makes', async (t) => {
  const upstream = createServer((req, res) => res.end(`${req.method} ${req.url} xff=${req.headers['x-forwarded-for'] ?? ''}`));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => upstream.close());
  const port = (upstream.address() as AddressInfo).port;
  const dialled: string[] = [];
  const state = originalDestinationState('capture-outbound', '127.0.0.1', port, 'http1', createEnvironment({}), (host, p): Socket => {
    dialled.push(`${host}:${p}`);
    return connect(p, host);
  });
  t.is(state.config.name, 'capture-outbound');
  t.deepEqual([...state.clusters.keys()], [`127.0.0.1:${port}`]);
  const cluster = state.clusters.get(`127.0.0.1:${port}`)!;
  t.true(cluster instanceof Cluster);
  const res = await cluster.pick()!.pool.request({ method: 'GET', path: '/x', headers: ['host', 'b'] });
  t.is(res.statusCode, 200);
  // An HTTP/1.1 body comes as the chunks the response filters get (upstream-body.ts).
  const parts: Buffer[] = [];
  for await (const chunk of res.body as AsyncIterable<{ data: Buffer }>) parts.push(chunk.data);
  t.is(Buffer.concat(parts).toString(), 'GET /x xff=');
  t.deepEqual(dialled, [`127.0.0.1:${port}`]);
  await cluster.destroy();
});
