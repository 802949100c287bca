// TCP passthrough on a port declared tcp: bytes both ways untouched, Istio's TCP metrics, and the
// config rules of a tcp listener.
import { connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { request } from 'undici';
import { ConfigError, parseConfig } from '../../runtime/config/index.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';

test('a tcp listener passes bytes through to its cluster and counts them', async (t) => {
  const upstream = createServer((s) => s.on('data', (d) => s.write(d.toString().toUpperCase())));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => upstream.close());
  const snapshot = parseConfig(
    `
admin: { address: 127.0.0.1:0 }
listeners:
  - { name: db, address: 127.0.0.1:0, protocol: tcp, cluster: upper }
clusters:
  - { name: upper, endpoints: [127.0.0.1:${(upstream.address() as AddressInfo).port}] }
`,
    'test.yaml',
    '/',
  );
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => proxy.stop(100));
  const { db, admin } = proxy.addresses();
  const answer = await new Promise<string>((resolve, reject) => {
    const s = connect(db.port, '127.0.0.1', () => s.write('hello\n'));
    s.on('data', (d) => {
      resolve(d.toString());
      s.end();
    });
    s.on('error', reject);
  });
  t.is(answer, 'HELLO\n');
  await new Promise((r) => setTimeout(r, 100));
  const metrics = await (await request(`http://127.0.0.1:${admin.port}/stats/prometheus`)).body.text();
  const labels = '{reporter="source",destination_service="upper",sluice_listener="db"}';
  for (const line of [
    `istio_tcp_connections_opened_total${labels} 1`,
    `istio_tcp_connections_closed_total${labels} 1`,
    `istio_tcp_received_bytes_total${labels} 6`,
    `istio_tcp_sent_bytes_total${labels} 6`,
  ]) t.true(metrics.includes(`\n${line}\n`), line);
});

test('a tcp listener needs a cluster and takes no routes or filters', (t) => {
  const error = t.throws(
    () =>
      parseConfig(
        `
listeners:
  - { name: a, address: 127.0.0.1:0, protocol: tcp, filters: [], routes: [{ cluster: c }] }
  - { name: b, address: 127.0.0.1:0, protocol: tcp, cluster: nope }
  - { name: c, address: 127.0.0.1:0, protocol: http, cluster: c }
clusters: [{ name: c, endpoints: [127.0.0.1:1] }]
`,
        'bad.yaml',
        '/',
      ),
    { instanceOf: ConfigError },
  );
  t.deepEqual((error as ConfigError).problems, [
    'listeners[0].routes: a tcp listener passes bytes through: it has no routes, filters, access log or TLS',
    'listeners[0].filters: a tcp listener passes bytes through: it has no routes, filters, access log or TLS',
    'listeners[0]: a tcp listener needs a cluster to send connections to',
    'listeners[1].cluster: no cluster named "nope" (clusters are: c)',
    'listeners[2]: an http listener needs routes',
    'listeners[2].cluster: only tcp listeners have a cluster; http listeners route with routes',
  ]);
});
