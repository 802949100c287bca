// The request path as composed layers: compose() refuses a malformed layer when the path is built,
// layers run in order, and a request's start and end are published on diagnostics_channel.
import diagnostics from 'node:diagnostics_channel';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { request } from 'undici';
import type { Snapshot } from '../../runtime/config/snapshot.ts';
import { SluiceError } from '../../runtime/errors.ts';
import { compose, type Handler, type Layer } from '../../runtime/proxy/layers/compose.ts';
import { buildRequestPath } from '../../runtime/proxy/http-proxy.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { cluster } from '../helpers/snapshot.ts';

type Ctx = { seen: string[] };
const mark = (name: string): Layer<Ctx> => (next) => async (ctx) => {
  ctx.seen.push(`>${name}`);
  await next(ctx);
  ctx.seen.push(`<${name}`);
};

test('layers run outermost first, around the last handler', async (t) => {
  const path = compose<Ctx>([{ name: 'a', layer: mark('a') }, { name: 'b', layer: mark('b') }], async (ctx) => void ctx.seen.push('last'));
  const ctx = { seen: [] as string[] };
  await path(ctx);
  t.deepEqual(ctx.seen, ['>a', '>b', 'last', '<b', '<a']);
});

test('compose refuses a malformed layer when the path is built', (t) => {
  const last: Handler<Ctx> = async () => {};
  const refused = (layers: Parameters<typeof compose<Ctx>>[0]) => t.throws(() => compose<Ctx>(layers, last), { instanceOf: SluiceError });
  t.is((refused([{ name: 'a', layer: mark('a') }, { name: 'a', layer: mark('a') }]) as SluiceError).message, 'request path layer #1 "a" appears twice: give each layer its own name');
  t.is((refused([{ name: '', layer: mark('a') }]) as SluiceError).code, 'SLUICE_ERR_PROXY_LAYER');
  t.is(
    (refused([{ name: 'x', layer: (() => async () => {}) as unknown as Layer<Ctx> }]) as SluiceError).message,
    'request path layer "x" is not a function of the next handler: a layer is (next) => handler',
  );
  t.is(
    (refused([{ name: 'y', layer: ((_next: unknown) => 'nope') as unknown as Layer<Ctx> }]) as SluiceError).message,
    'request path layer "y" did not return a handler: a layer is (next) => (ctx) => Promise<void>',
  );
});

test("the proxy's own path composes", (t) => {
  t.is(typeof buildRequestPath(), 'function');
});

test('sluice:proxy:request-start and request-end report each request, with the failure class of one that got no response', async (t) => {
  const upstream = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => upstream.close());
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [
      {
        name: 'main',
        host: '127.0.0.1',
        port: 0,
        protocol: 'http',
        filters: [],
        routes: [
          { name: 'down', match: { prefix: '/down' }, action: { kind: 'cluster', clusters: [{ cluster: 'nowhere', weight: 1 }] }, timeoutMs: 5000 },
          { name: 'up', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'echo', weight: 1 }] }, timeoutMs: 5000 },
        ],
      },
    ],
    clusters: [cluster('echo', [(upstream.address() as AddressInfo).port]), cluster('nowhere', [1])],
    filters: [],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => proxy.stop(100));
  const starts: Array<{ listener: string; path: string }> = [];
  const ends: Array<{ listener: string; status: number; route: string; cluster: string; errorCode?: string; path: string }> = [];
  const onStart = (m: unknown) => {
    const e = m as { listener: string; request: { url: string } };
    starts.push({ listener: e.listener, path: e.request.url });
  };
  const onEnd = (m: unknown) => {
    const e = m as { listener: string; status: number; route: string; cluster: string; errorCode?: string; request: { url: string }; durationMs: number };
    ends.push({ listener: e.listener, status: e.status, route: e.route, cluster: e.cluster, errorCode: e.errorCode, path: e.request.url });
  };
  diagnostics.subscribe('sluice:proxy:request-start', onStart);
  diagnostics.subscribe('sluice:proxy:request-end', onEnd);
  t.teardown(() => {
    diagnostics.unsubscribe('sluice:proxy:request-start', onStart);
    diagnostics.unsubscribe('sluice:proxy:request-end', onEnd);
  });
  const base = `http://127.0.0.1:${proxy.addresses().main!.port}`;
  const ok = await request(`${base}/a`);
  t.is(await ok.body.text(), 'ok');
  const down = await request(`${base}/down`);
  t.is(down.statusCode, 503);
  await down.body.text();
  // request-end follows the response's last byte: wait for it, boundedly.
  for (let i = 0; i < 200 && ends.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(starts, [
    { listener: 'main', path: '/a' },
    { listener: 'main', path: '/down' },
  ]);
  t.deepEqual(ends, [
    { listener: 'main', status: 200, route: 'up', cluster: 'echo', errorCode: undefined, path: '/a' },
    { listener: 'main', status: 503, route: 'down', cluster: 'nowhere', errorCode: 'SLUICE_ERR_UPSTREAM_CONNECT', path: '/down' },
  ]);
  const metrics = await (await request(`http://127.0.0.1:${proxy.addresses().admin!.port}/stats/prometheus`)).body.text();
  t.true(metrics.includes('sluice_cluster_upstream_rq_failures_total{cluster="nowhere",code="SLUICE_ERR_UPSTREAM_CONNECT"} 1\n'), metrics);
});
