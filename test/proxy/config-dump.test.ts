// /config_dump shows the active snapshot without its secrets: secret-named members of filter
// configurations, configurations that are not JSON, and credentials in URLs.
import test from 'ava';
import { request } from 'undici';
import type { FilterConfig, Snapshot } from '../../runtime/config/snapshot.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { fixture } from '../helpers/fixtures.ts';

const filter = (name: string, configuration: string): FilterConfig => ({
  name,
  module: fixture('set-properties'),
  rootId: 'set-properties',
  vmId: '',
  configuration,
  failStrategy: 'FAIL_CLOSE',
  limits: DEFAULT_LIMITS,
  capabilities: DEFAULT_CAPABILITIES,
  quarantine: DEFAULT_QUARANTINE,
});

test('secrets in filter configurations and URLs are redacted; the rest is shown as it is', async (t) => {
  const config = {
    header: 'x-user',
    apiKey: 'k-123',
    upstream: { url: 'http://auth', password: 'hunter2', tokens: ['a', 'b'] },
    rules: [{ name: 'r', client_secret: 's' }],
    limits: { rps: 10 },
  };
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [{ name: 'main', host: '127.0.0.1', port: 0, protocol: 'http', filters: ['json', 'raw'], routes: [{ name: 'ok', match: { prefix: '/' }, action: { kind: 'direct', status: 200, body: '', headers: {} }, timeoutMs: 0 }] }],
    clusters: [],
    filters: [filter('json', JSON.stringify(config)), filter('raw', 'token=abcdef')],
    tracing: { otlp: { endpoint: 'http://collector:pa55@127.0.0.1:4318/v1/traces', serviceName: 'sluice', flushIntervalMs: 60_000, maxBatch: 512 } },
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => proxy.stop(100));
  const dump = (await (await request(`http://127.0.0.1:${proxy.addresses().admin.port}/config_dump`)).body.json()) as Snapshot;
  t.deepEqual(JSON.parse(dump.filters[0]!.configuration), {
    header: 'x-user',
    apiKey: '[redacted]',
    upstream: { url: 'http://auth', password: '[redacted]', tokens: '[redacted]' },
    rules: [{ name: 'r', client_secret: '[redacted]' }],
    limits: { rps: 10 },
  });
  t.is(dump.filters[1]!.configuration, '[redacted] (12 bytes, not JSON)');
  t.is(dump.tracing!.otlp.endpoint, 'http://127.0.0.1:4318/v1/traces (credentials [redacted])');
  t.deepEqual(dump.listeners, snapshot.listeners);
  // The proxy itself still runs on the real values.
  t.is(proxy.snapshot.filters[0]!.configuration, JSON.stringify(config));
});
