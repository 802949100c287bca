// A client that leaves while a filter holds its request (here the fault filter's delay): the
// stream ends at once, so the filter lets go of it, and the upstream never gets the request.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { request } from 'undici';
import type { Snapshot } from '../../runtime/config/snapshot.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { filterWasm } from '../helpers/fixtures.ts';
import { cluster } from '../helpers/snapshot.ts';

test('a client that leaves during a filter\'s pause ends the stream; the upstream never sees it', async (t) => {
  const seen: string[] = [];
  const upstream = createServer((req, res) => {
    seen.push(req.url!);
    res.end('ok');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => upstream.close());
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [{ name: 'main', host: '127.0.0.1', port: 0, protocol: 'http', filters: ['fault'], routes: [{ name: 'up', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'up', weight: 1 }] }, timeoutMs: 10_000 }] }],
    clusters: [cluster('up', [(upstream.address() as AddressInfo).port])],
    filters: [
      {
        name: 'fault',
        module: filterWasm('fault'),
        rootId: 'fault',
        vmId: '',
        configuration: JSON.stringify({ delay: { fixedDelayMs: 1000, percentage: 100 } }),
        failStrategy: 'FAIL_CLOSE',
        limits: DEFAULT_LIMITS,
        capabilities: DEFAULT_CAPABILITIES,
        quarantine: DEFAULT_QUARANTINE,
      },
    ],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => proxy.stop(100));
  const metrics = async () => (await request(`http://127.0.0.1:${proxy.addresses().admin.port}/stats/prometheus`)).body.text();

  const gone = request(`http://127.0.0.1:${proxy.addresses().main.port}/held`, { signal: AbortSignal.timeout(200) });
  await t.throwsAsync(gone.catch((e: unknown) => {
    throw new Error(String(e));
  }));
  let text = '';
  for (let i = 0; i < 100 && !text.includes('\nfault_active_delays 0\n'); i++) {
    await new Promise((r) => setTimeout(r, 20));
    text = await metrics();
  }
  t.true(text.includes('\nfault_delays_injected_total 1\n'), text);
  t.true(text.includes('\nfault_active_delays 0\n'), text);
  // Past the delay: the request was never sent on.
  await new Promise((r) => setTimeout(r, 1200));
  t.deepEqual(seen, []);
});
