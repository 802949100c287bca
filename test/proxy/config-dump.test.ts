// /config_dump shows the active snapshot without what can carry a secret: secret-named members of
// filter configurations, header values, configurations that are not JSON, credentials in URLs;
// admin.configDump.show opts places back in.
import test from 'ava';
import { request } from 'undici';
import type { FilterConfig, Snapshot } from '../../runtime/config/snapshot.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { fixture } from '../helpers/fixtures.ts';
import { runSluice } from '../helpers/sluice-run.ts';

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

// Issue 8 item 11: every leak found by attacking /config_dump of a real `sluice run`.
const leaky = (show = '') => `
admin:
  address: 127.0.0.1:0
${show}
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [headers, vault]
    routes:
      - name: internal
        match: { prefix: /internal, headers: [{ name: authorization, exact: "Bearer s3cr3t-route" }, { name: x-key, regex: "^k-[0-9]+$" }], query: [{ name: sig, exact: q-s3cr3t }] }
        directResponse: { status: 200, body: "ok", headers: { set-cookie: "session=s3cr3t-cookie", x-plain: "visible?" } }
      - name: old
        match: { prefix: /old }
        redirect: { location: "https://bob:s3cr3t-redirect@example.com/new" }
filters:
  - name: headers
    module: \${repo}/build/filters/headers.wasm
    config:
      request:
        set: [{ name: authorization, value: "Bearer s3cr3t-header" }, { name: x-api, value: "k-s3cr3t-plain" }]
  - name: vault
    module: \${repo}/build/fixtures/set-properties.wasm
    config:
      token: { value: s3cr3t-object, rotate: true }
      upstream: "https://u:s3cr3t-url@auth.example/v1"
      database: "postgres://app:s3cr3t-pg@db:5432/app"
      note: "fallback is redis://:s3cr3t-redis@cache:6379 then nothing"
      default: "Basic czNjcjN0LWJhc2lj"
      plain: { rps: 10, url: "https://auth.example/v1" }
      headers: { x-tenant-key: s3cr3t-map, retries: 2 }
`;

async function dumpOf(yaml: string): Promise<{ text: string; dump: Snapshot }> {
  const run = await runSluice(yaml);
  try {
    const res = await request(`http://127.0.0.1:${await run.adminPort()}/config_dump`);
    const text = await res.body.text();
    return { text, dump: JSON.parse(text) as Snapshot };
  } finally {
    await run.stop();
  }
}

test('sluice run: header values, secret-named objects, URL credentials, route header matches and direct-response headers are redacted', async (t) => {
  const { text, dump } = await dumpOf(leaky());
  t.false(/s3cr3t|czNjcjN0/.test(text), text);
  t.deepEqual(JSON.parse(dump.filters[0]!.configuration), {
    request: { set: [{ name: 'authorization', value: '[redacted]' }, { name: 'x-api', value: '[redacted]' }] },
  });
  t.deepEqual(JSON.parse(dump.filters[1]!.configuration), {
    token: '[redacted]',
    upstream: 'https://auth.example/v1 (credentials [redacted])',
    database: 'postgres://db:5432/app (credentials [redacted])',
    note: 'fallback is redis://[redacted]@cache:6379 then nothing',
    default: '[redacted]',
    plain: { rps: 10, url: 'https://auth.example/v1' },
    headers: { 'x-tenant-key': '[redacted]', retries: 2 },
  });
  const [internal, old] = dump.listeners[0]!.routes;
  t.deepEqual(internal!.match, {
    prefix: '/internal',
    headers: [{ name: 'authorization', exact: '[redacted]', invert: false }, { name: 'x-key', regex: '[redacted]', invert: false }],
    query: [{ name: 'sig', exact: '[redacted]', invert: false }],
  });
  t.deepEqual(internal!.action, { kind: 'direct', status: 200, body: 'ok', headers: { 'set-cookie': '[redacted]', 'x-plain': '[redacted]' } });
  t.deepEqual(old!.action, { kind: 'redirect', status: 302, location: 'https://example.com/new (credentials [redacted])' });
});

test('sluice run: admin.configDump.show opts places into showing, by name, index or *', async (t) => {
  const show = `  configDump:
    show:
      - filters.headers.configuration.request.set.x-api
      - filters.1.configuration.token
      - listeners.*.routes.internal.match.headers
      - listeners.web.routes.internal.action.headers.x-plain`;
  const { dump } = await dumpOf(leaky(show));
  t.deepEqual(JSON.parse(dump.filters[0]!.configuration).request.set, [{ name: 'authorization', value: '[redacted]' }, { name: 'x-api', value: 'k-s3cr3t-plain' }]);
  t.deepEqual(JSON.parse(dump.filters[1]!.configuration).token, { value: 's3cr3t-object', rotate: true });
  t.is(JSON.parse(dump.filters[1]!.configuration).database, 'postgres://db:5432/app (credentials [redacted])');
  const internal = dump.listeners[0]!.routes[0]!;
  t.deepEqual(internal.match.headers, [{ name: 'authorization', exact: 'Bearer s3cr3t-route', invert: false }, { name: 'x-key', regex: '^k-[0-9]+$', invert: false }]);
  t.deepEqual(internal.match.query, [{ name: 'sig', exact: '[redacted]', invert: false }]);
  t.deepEqual(internal.action, { kind: 'direct', status: 200, body: 'ok', headers: { 'set-cookie': '[redacted]', 'x-plain': 'visible?' } });
  t.deepEqual(dump.admin.configDump, { show: show.split('\n').slice(2).map((l) => l.trim().slice(2)) });
});
