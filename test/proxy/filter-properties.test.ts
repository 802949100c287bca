// The properties through which filters steer the proxy, on real traffic: the request timeout
// (sluice.timeout_ms), the upstream endpoint (sluice.upstream_host), extra access-log fields
// (sluice.access_log.<name>), and the route name filters read on a direct response.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { request } from 'undici';
import type { FilterConfig, Snapshot } from '../../runtime/config/snapshot.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { fixture } from '../helpers/fixtures.ts';
import { cluster } from '../helpers/snapshot.ts';

const filter = (name: string, rootId: string, configuration = ''): FilterConfig => ({
  name,
  module: fixture(rootId),
  rootId,
  vmId: '',
  configuration,
  failStrategy: 'FAIL_CLOSE',
  limits: DEFAULT_LIMITS,
  capabilities: DEFAULT_CAPABILITIES,
  quarantine: DEFAULT_QUARANTINE,
});

async function upstream(t: ExecutionContext, name: string, held?: ServerResponse[]): Promise<number> {
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/slow') && held) return void held.push(res);
    res.end(name);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

async function start(t: ExecutionContext, ports: number[], accessLog?: string) {
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [
      {
        name: 'main',
        host: '127.0.0.1',
        port: 0,
        protocol: 'http',
        filters: ['set', 'show'],
        ...(accessLog ? { accessLog: { path: accessLog, fields: ['path', 'status'] as const } } : {}),
        routes: [
          { name: 'hello', match: { path: '/hello' }, action: { kind: 'direct', status: 200, body: 'hi', headers: {} }, timeoutMs: 0 },
          { name: 'up', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'up', weight: 1 }] }, timeoutMs: 10_000 },
        ],
      },
    ],
    clusters: [cluster('up', ports)],
    filters: [filter('set', 'set-properties'), filter('show', 'show-properties', JSON.stringify({ properties: ['xds.route_name'] }))],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => proxy.stop(100));
  return `http://127.0.0.1:${proxy.addresses().main.port}`;
}

test('sluice.timeout_ms shortens this request\'s timeout', async (t) => {
  const held: ServerResponse[] = [];
  const base = await start(t, [await upstream(t, 'a', held)]);
  const r = await request(`${base}/slow`, { headers: { 'x-set-property': 'sluice.timeout_ms=300' } });
  t.is(r.statusCode, 504);
  t.regex(await r.body.text(), /timed out: the upstream did not answer within the route's timeout of 300 ms\n$/);
});

test('sluice.upstream_host pins the endpoint; one that is not in the cluster is refused naming it', async (t) => {
  const a = await upstream(t, 'a');
  const b = await upstream(t, 'b');
  const base = await start(t, [a, b]);
  const pinned = { 'x-set-property': `sluice.upstream_host=127.0.0.1:${b}` };
  const names = [];
  for (let i = 0; i < 4; i++) names.push(await (await request(`${base}/x`, { headers: pinned })).body.text());
  t.deepEqual(names, ['b', 'b', 'b', 'b']);
  const bad = await request(`${base}/x`, { headers: { 'x-set-property': 'sluice.upstream_host=10.9.9.9:80' } });
  t.is(bad.statusCode, 503);
  t.is(await bad.body.text(), 'sluice: a filter pinned the upstream host "10.9.9.9:80" (sluice.upstream_host), which is not an endpoint of cluster "up"\n');
});

test('sluice.access_log.<name> adds a field to the access-log line; filters see the route of a direct response', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-props-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'access.log');
  const base = await start(t, [await upstream(t, 'a')], file);
  const r = await request(`${base}/hello`, { headers: { 'x-set-property': 'sluice.access_log.tenant=acme' } });
  t.is(r.headers['x-prop-xds-route-name'], 'hello');
  await r.body.dump();
  await request(`${base}/x`, { headers: { 'x-set-property': 'sluice.access_log.status=spoofed' } }).then((x) => x.body.dump());
  let lines: string[] = [];
  for (let i = 0; i < 100 && lines.length < 2; i++) {
    await new Promise((res) => setTimeout(res, 20));
    lines = (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  }
  t.deepEqual(lines.map((l) => JSON.parse(l)), [
    { path: '/hello', status: 200, tenant: 'acme' },
    { path: '/x', status: 200 }, // the listener's own field wins a clash
  ]);
});
