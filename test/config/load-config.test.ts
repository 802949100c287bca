// The configuration loader: the example file's exact snapshot, defaults, freezing, JSON input, how
// a filter's config reaches it, and the exact text of every kind of problem it reports.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import test from 'ava';
import { ConfigError, configSchema, loadConfig, parseConfig, type Snapshot } from '../../runtime/config/index.ts';
import { SluiceError } from '../../runtime/errors.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { repoRoot } from '../helpers/fixtures.ts';

// Filter modules are only checked to exist here; empty files stand in for them.
const dir = mkdtempSync(join(tmpdir(), 'sluice-config-'));
writeFileSync(join(dir, 'hello.wasm'), '');
writeFileSync(join(dir, 'authz.wasm'), '');
mkdirSync(join(dir, 'modules'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const parse = (text: string): Snapshot => parseConfig(text, 'test.yaml', dir);

/** The problems parseConfig reports for `text` (the test fails when it does not throw). */
function problemsOf(t: { throws: (fn: () => unknown, expectations: object) => unknown }, text: string): readonly string[] {
  const error = t.throws(() => parse(text), { instanceOf: ConfigError }) as ConfigError;
  return error.problems;
}

// A valid configuration the error tests change one thing in.
const listener = (routes = '[{ cluster: echo }]', extra = '') => `
listeners:
  - name: outbound
    address: 127.0.0.1:15001
    routes: ${routes}${extra}
clusters:
  - name: echo
    endpoints: [127.0.0.1:18080]
`;

// ---- the example -------------------------------------------------------------------------------

test('the example file loads into the exact snapshot', async (t) => {
  const file = `${repoRoot}examples/local/sluice.yaml`;
  const snapshot = await loadConfig(file);
  t.is(snapshot.source, file);
  t.deepEqual(snapshot.admin, { host: '127.0.0.1', port: 15000 });
  t.deepEqual(snapshot.listeners, [
    {
      name: 'outbound',
      host: '127.0.0.1',
      port: 15001,
      protocol: 'http',
      filters: ['telemetry', 'authz', 'ratelimit', 'fault', 'headers', 'router', 'retry', 'hello'],
      streamIdleTimeoutMs: 300000,
      accessLog: { path: 'stdout', fields: ['time', 'method', 'path', 'status', 'duration_ms', 'route', 'upstream_cluster', 'request_id', 'trace_id'] },
      bufferLimitBytes: 1048576,
      routes: [
        {
          name: 'healthz',
          match: { path: '/healthz' },
          action: { kind: 'direct', status: 200, body: 'ok\n', headers: { 'content-type': 'text/plain' } },
          timeoutMs: 15000,
        },
        { name: 'old', match: { prefix: '/old' }, action: { kind: 'redirect', status: 302, location: '/anything' }, timeoutMs: 15000 },
        { name: 'default', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'echo', weight: 1 }] }, timeoutMs: 15000 },
      ],
      upgrades: ['websocket'],
      maxRequestHeaders: 100,
    },
  ]);
  t.deepEqual(snapshot.clusters, [
    {
      name: 'echo',
      endpoints: [{ host: '127.0.0.1', port: 18080 }],
      loadBalancing: 'round-robin',
      protocol: 'http1',
      connectTimeoutMs: 1000,
      requestTimeoutMs: 15000,
      idleTimeoutMs: 60000,
      maxConnections: 1024,
      circuitBreakers: { maxRequests: 1024, maxRetries: 3, maxPendingRequests: 1024 },
      outlierDetection: { consecutive5xx: 5, consecutiveGatewayFailure: 0, baseEjectionTimeMs: 30000, maxEjectionPercent: 10 },
    },
    {
      name: 'echo-canary',
      endpoints: [{ host: '127.0.0.1', port: 18081 }],
      loadBalancing: 'round-robin',
      protocol: 'http1',
      connectTimeoutMs: 1000,
      requestTimeoutMs: 15000,
      idleTimeoutMs: 60000,
      maxConnections: 1024,
      circuitBreakers: { maxRequests: 1024, maxRetries: 3, maxPendingRequests: 1024 },
      outlierDetection: { consecutive5xx: 5, consecutiveGatewayFailure: 0, baseEjectionTimeMs: 30000, maxEjectionPercent: 10 },
    },
  ]);
  // The built-in filters, each with its config as JSON and the defaults; then hello in full.
  t.deepEqual(
    snapshot.filters.map((f) => [f.name, f.module, f.rootId, f.failStrategy]),
    ['telemetry', 'authz', 'ratelimit', 'fault', 'headers', 'router', 'retry', 'hello'].map((n) => [n, `${repoRoot}build/filters/${n}.wasm`, '', 'FAIL_CLOSE']),
  );
  t.is(snapshot.filters[1]!.configuration, '{"defaultAction":"ALLOW","rules":[{"name":"no-admin","action":"DENY","to":{"paths":["/admin","/admin/*"]}}]}');
  t.deepEqual(snapshot.filters.slice(-1), [
    {
      name: 'hello',
      module: `${repoRoot}build/filters/hello.wasm`,
      rootId: '',
      vmId: '',
      configuration: '{"header":"x-hello","value":"world","denyPath":"/forbidden"}',
      failStrategy: 'FAIL_CLOSE',
      limits: { callBudgetMs: 50, memoryBytes: 67108864, bodyBytes: 1048576 },
      capabilities: { httpCalls: true, sharedData: true, sharedQueues: true, foreignFunctions: true },
      quarantine: { failures: 5, windowMs: 60000, backoffMs: 5000, maxBackoffMs: 300000 },
      environment: {},
    },
  ]);
});

test('a relative path is resolved; modules resolve against the file, not the working directory', async (t) => {
  const sub = join(dir, 'conf');
  mkdirSync(sub, { recursive: true });
  writeFileSync(join(sub, 'sluice.yaml'), `${listener()}filters: [{ name: hello, module: ../hello.wasm }]\n`);
  const snapshot = await loadConfig(relative(process.cwd(), join(sub, 'sluice.yaml')));
  t.is(snapshot.source, join(sub, 'sluice.yaml'));
  t.is(snapshot.filters[0]!.module, join(dir, 'hello.wasm'));
});

// ---- the format ------------------------------------------------------------------------------

test('defaults are filled in; filter defaults are the host plugin-spec ones', (t) => {
  const snapshot = parse(`
listeners:
  - name: l
    address: 0.0.0.0:8080
    routes: [{ cluster: c }]
clusters: [{ name: c, endpoints: [svc.ns.svc.cluster.local:80] }]
filters: [{ name: f, module: hello.wasm }]
`);
  t.deepEqual(snapshot, {
    source: 'test.yaml',
    admin: { host: '127.0.0.1', port: 15000 },
    listeners: [
      {
        name: 'l',
        host: '0.0.0.0',
        port: 8080,
        protocol: 'http',
        filters: [],
        routes: [{ name: 'route-0', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'c', weight: 1 }] }, timeoutMs: 15000 }],
        upgrades: ['websocket'],
        maxRequestHeaders: 100,
        bufferLimitBytes: 1048576,
        streamIdleTimeoutMs: 300000,
      },
    ],
    clusters: [
      {
        name: 'c',
        endpoints: [{ host: 'svc.ns.svc.cluster.local', port: 80 }],
        loadBalancing: 'round-robin',
        protocol: 'http1',
        connectTimeoutMs: 1000,
        requestTimeoutMs: 15000,
        idleTimeoutMs: 60000,
        maxConnections: 1024,
        circuitBreakers: { maxRequests: 1024, maxRetries: 3, maxPendingRequests: 1024 },
        outlierDetection: { consecutive5xx: 5, consecutiveGatewayFailure: 0, baseEjectionTimeMs: 30000, maxEjectionPercent: 10 },
      },
    ],
    filters: [
      {
        name: 'f',
        module: join(dir, 'hello.wasm'),
        // Envoy's and Istio's default, not the filter's name.
        rootId: '',
        vmId: '',
        configuration: '',
        failStrategy: 'FAIL_CLOSE',
        limits: DEFAULT_LIMITS,
        capabilities: DEFAULT_CAPABILITIES,
        quarantine: DEFAULT_QUARANTINE,
        environment: {},
      },
    ],
  });
});

test('every route form: matchers, weights, rewrites, redirects, direct responses', (t) => {
  const snapshot = parse(`
listeners:
  - name: l
    address: "[::1]:15001"
    routes:
      - name: api
        match:
          prefix: /api
          methods: [GET, POST]
          headers: [{ name: x-canary, exact: "1" }, { name: ":authority", regex: "^shop\\\\.", invert: true }, { name: x-debug }]
          query: [{ name: debug, present: true }, { name: trace, present: false }]
        cluster: echo
        prefixRewrite: /v1
        hostRewrite: api.internal:8080
        timeoutMs: 0
      - match: { regex: "^/items/[0-9]+$" }
        weightedClusters: [{ cluster: echo, weight: 90 }, { cluster: canary, weight: 10 }]
      - match: { prefix: /old }
        redirect: { status: 301, location: https://example.com/new }
      - directResponse: { status: 404 }
clusters:
  - { name: echo, endpoints: ["127.0.0.1:18080", "[fd00::1]:80"], loadBalancing: least-request, maxConnections: 8 }
  - { name: canary, endpoints: [localhost:18081], idleTimeoutMs: 1, requestTimeoutMs: 0 }
`);
  const [listener] = snapshot.listeners;
  t.is(listener!.host, '::1');
  t.is(listener!.port, 15001);
  t.deepEqual(listener!.routes, [
    {
      name: 'api',
      match: {
        prefix: '/api',
        methods: ['GET', 'POST'],
        headers: [
          { name: 'x-canary', exact: '1', invert: false },
          { name: ':authority', regex: '^shop\\.', invert: true },
          { name: 'x-debug', present: true, invert: false },
        ],
        query: [
          { name: 'debug', present: true, invert: false },
          { name: 'trace', present: false, invert: false },
        ],
      },
      action: { kind: 'cluster', clusters: [{ cluster: 'echo', weight: 1 }], prefixRewrite: '/v1', hostRewrite: 'api.internal:8080' },
      timeoutMs: 0,
    },
    {
      name: 'route-1',
      match: { regex: '^/items/[0-9]+$' },
      action: { kind: 'cluster', clusters: [{ cluster: 'echo', weight: 90 }, { cluster: 'canary', weight: 10 }] },
      timeoutMs: 15000,
    },
    { name: 'route-2', match: { prefix: '/old' }, action: { kind: 'redirect', status: 301, location: 'https://example.com/new' }, timeoutMs: 15000 },
    { name: 'route-3', match: { prefix: '/' }, action: { kind: 'direct', status: 404, body: '', headers: {} }, timeoutMs: 15000 },
  ]);
  t.deepEqual(snapshot.clusters[0]!.endpoints, [
    { host: '127.0.0.1', port: 18080 },
    { host: 'fd00::1', port: 80 },
  ]);
  t.is(snapshot.clusters[0]!.loadBalancing, 'least-request');
  t.deepEqual(snapshot.clusters[1]!.endpoints, [{ host: 'localhost', port: 18081 }]);
});

test('filter settings given override the defaults field by field', (t) => {
  const snapshot = parse(`${listener()}
filters:
  - name: authz
    module: ./authz.wasm
    rootId: authz_root
    vmId: shared
    failStrategy: FAIL_OPEN
    limits: { callBudgetMs: 5 }
    capabilities: { httpCalls: [echo], sharedQueues: false }
    quarantine: { failures: 2, maxBackoffMs: 10000 }
`);
  const [filter] = snapshot.filters;
  t.is(filter!.rootId, 'authz_root');
  t.is(filter!.vmId, 'shared');
  t.is(filter!.failStrategy, 'FAIL_OPEN');
  t.deepEqual(filter!.limits, { ...DEFAULT_LIMITS, callBudgetMs: 5 });
  t.deepEqual(filter!.capabilities, { ...DEFAULT_CAPABILITIES, httpCalls: ['echo'], sharedQueues: false });
  t.deepEqual(filter!.quarantine, { ...DEFAULT_QUARANTINE, failures: 2, maxBackoffMs: 10000 });
});

test('the snapshot is deep-frozen: mutation throws', (t) => {
  const snapshot = parse(`
listeners:
  - name: l
    address: 127.0.0.1:0
    filters: [f]
    routes:
      - { match: { prefix: /a, headers: [{ name: x }] }, weightedClusters: [{ cluster: c, weight: 1 }] }
      - directResponse: { headers: { x-a: b } }
clusters: [{ name: c, endpoints: [127.0.0.1:1] }]
filters: [{ name: f, module: hello.wasm, capabilities: { httpCalls: [c] } }]
`) as any;
  const mutations: [string, () => void][] = [
    ['snapshot', () => (snapshot.source = 'x')],
    ['admin', () => (snapshot.admin.port = 1)],
    ['listeners', () => snapshot.listeners.push({})],
    ['listener', () => (snapshot.listeners[0].name = 'x')],
    ['listener filters', () => snapshot.listeners[0].filters.pop()],
    ['route', () => (snapshot.listeners[0].routes[0].timeoutMs = 1)],
    ['match', () => (snapshot.listeners[0].routes[0].match.prefix = '/')],
    ['header matcher', () => (snapshot.listeners[0].routes[0].match.headers[0].exact = 'y')],
    ['weighted cluster', () => (snapshot.listeners[0].routes[0].action.clusters[0].weight = 2)],
    ['direct response headers', () => (snapshot.listeners[0].routes[1].action.headers['x-b'] = 'c')],
    ['endpoint', () => (snapshot.clusters[0].endpoints[0].port = 2)],
    ['limits', () => (snapshot.filters[0].limits.callBudgetMs = 1)],
    ['capabilities list', () => snapshot.filters[0].capabilities.httpCalls.push('d')],
    ['quarantine', () => (snapshot.filters[0].quarantine.failures = 1)],
  ];
  for (const [what, mutate] of mutations) t.throws(mutate, { instanceOf: TypeError }, what);
});

test('JSON input gives the same snapshot as the same YAML', (t) => {
  const yaml = `${listener('[{ match: { path: /x }, cluster: echo }]')}filters: [{ name: hello, module: hello.wasm, config: { a: [1, 2] } }]\n`;
  const json = JSON.stringify(
    {
      listeners: [{ name: 'outbound', address: '127.0.0.1:15001', routes: [{ match: { path: '/x' }, cluster: 'echo' }] }],
      clusters: [{ name: 'echo', endpoints: ['127.0.0.1:18080'] }],
      filters: [{ name: 'hello', module: 'hello.wasm', config: { a: [1, 2] } }],
    },
    null,
    2,
  );
  t.deepEqual(parse(json), parse(yaml));
});

test("a filter's config: a string verbatim, any other value as JSON, none as empty", (t) => {
  const configOf = (config: string): string => parse(`${listener()}filters:\n  - name: hello\n    module: hello.wasm\n${config}`).filters[0]!.configuration;
  t.is(configOf('    config: "{ not: json }"\n'), '{ not: json }');
  t.is(configOf('    config: |\n      line one\n      line two\n'), 'line one\nline two\n');
  t.is(configOf('    config: { header: x-hello, value: world }\n'), '{"header":"x-hello","value":"world"}');
  t.is(configOf('    config: [1, "two", true, null]\n'), '[1,"two",true,null]');
  t.is(configOf('    config: 42\n'), '42');
  t.is(configOf('    config: false\n'), 'false');
  t.is(configOf('    config:\n'), '');
  t.is(configOf(''), '');
});

test('YAML anchors and merge keys write shared settings once', (t) => {
  const snapshot = parse(`
listeners: [{ name: l, address: 127.0.0.1:1, routes: [{ cluster: a }] }]
clusters:
  - &upstream { name: a, endpoints: [127.0.0.1:1], connectTimeoutMs: 250, maxConnections: 8 }
  - { <<: *upstream, name: b, endpoints: [127.0.0.1:2] }
`);
  t.deepEqual(
    snapshot.clusters.map((c) => [c.name, c.endpoints[0]!.port, c.connectTimeoutMs, c.maxConnections]),
    [
      ['a', 1, 250, 8],
      ['b', 2, 250, 8],
    ],
  );
});

test('port 0 (any free port) may repeat; the same port on another address is fine', (t) => {
  const snapshot = parse(`
admin: { address: 127.0.0.1:0 }
listeners:
  - { name: a, address: 127.0.0.1:0, routes: [{ directResponse: {} }] }
  - { name: b, address: 127.0.0.1:0, routes: [{ directResponse: {} }] }
  - { name: c, address: 127.0.0.2:15001, routes: [{ directResponse: {} }] }
  - { name: d, address: 127.0.0.1:15001, routes: [{ directResponse: {} }] }
`);
  t.deepEqual(
    snapshot.listeners.map((l) => `${l.host}:${l.port}`),
    ['127.0.0.1:0', '127.0.0.1:0', '127.0.0.2:15001', '127.0.0.1:15001'],
  );
});

// ---- problems, exactly as reported ------------------------------------------------------------

test('an unknown property', (t) => {
  t.deepEqual(problemsOf(t, listener('[{ cluster: echo }, { cluster: echo }, { match: { prefx: /api }, cluster: echo }]')), [
    'listeners[0].routes[2].match: unknown property "prefx"',
  ]);
  t.deepEqual(problemsOf(t, `${listener()}extra: 1\n`), ['(top level): unknown property "extra"']);
});

test('an endpoint that is not host:port, and ports out of range', (t) => {
  const text = `
listeners: [{ name: l, address: "127.0.0.1:65536", routes: [{ cluster: b }] }]
clusters:
  - { name: a, endpoints: [127.0.0.1:1] }
  - { name: b, endpoints: [localhost, "127.0.0.1:0", "::1:80", "[::1]", "10.0.0.256:80", "host:http", "bad_host:80"] }
`;
  t.deepEqual(problemsOf(t, text), [
    'listeners[0].address: port 65536 is out of range (0-65535)',
    'clusters[1].endpoints[0]: "localhost" is not host:port',
    'clusters[1].endpoints[1]: port 0 is out of range (1-65535)',
    'clusters[1].endpoints[2]: "::1:80" is not host:port (put an IPv6 address in brackets, as in [::1]:15001)',
    'clusters[1].endpoints[3]: "[::1]" is not host:port (as in [::1]:15001)',
    'clusters[1].endpoints[4]: "10.0.0.256" in "10.0.0.256:80" is not an IPv4 address',
    'clusters[1].endpoints[5]: "host:http" is not host:port (the port must be a number)',
    'clusters[1].endpoints[6]: "bad_host" in "bad_host:80" is not an IP address or host name',
  ]);
});

test('a filter name a listener uses that is not defined', (t) => {
  const text = `${listener('[{ cluster: echo }]', '\n    filters: [hello, helo]')}filters: [{ name: hello, module: hello.wasm }, { name: authz, module: authz.wasm }]\n`;
  t.deepEqual(problemsOf(t, text), ['listeners[0].filters[1]: no filter named "helo" (filters are: hello, authz)']);
  t.deepEqual(problemsOf(t, listener('[{ cluster: echo }]', '\n    filters: [hello]')), [
    'listeners[0].filters[0]: no filter named "hello" (no filters are defined)',
  ]);
});

test('a cluster name that is not defined, in a route, a weighted route and a filter capability', (t) => {
  const text = `${listener('[{ cluster: ech }, { weightedClusters: [{ cluster: echo, weight: 1 }, { cluster: canary, weight: 1 }] }]')}filters: [{ name: f, module: hello.wasm, capabilities: { httpCalls: [authz] } }]\n`;
  t.deepEqual(problemsOf(t, text), [
    'listeners[0].routes[0].cluster: no cluster named "ech" (clusters are: echo)',
    'listeners[0].routes[1].weightedClusters[1].cluster: no cluster named "canary" (clusters are: echo)',
    'filters[0].capabilities.httpCalls[0]: no cluster named "authz" (clusters are: echo)',
  ]);
});

test('a route with no action, or two', (t) => {
  const text = listener(
    '[{ cluster: echo }, { match: { path: /a } }, { cluster: echo, directResponse: {} }, { redirect: { location: /x }, weightedClusters: [{ cluster: echo, weight: 1 }] }]',
  );
  t.deepEqual(problemsOf(t, text), [
    'listeners[0].routes[1]: give exactly one of cluster, weightedClusters, redirect, directResponse',
    'listeners[0].routes[2]: give exactly one of cluster, weightedClusters, redirect, directResponse',
    'listeners[0].routes[3]: give exactly one of cluster, weightedClusters, redirect, directResponse',
  ]);
});

test('a module that is not there', (t) => {
  t.deepEqual(problemsOf(t, `${listener()}filters: [{ name: x, module: ../x.wasm }, { name: y, module: modules }]\n`), [
    `filters[0].module: ../x.wasm not found (resolved to ${join(dir, '..', 'x.wasm')})`,
    `filters[1].module: modules is not a file (resolved to ${join(dir, 'modules')})`,
  ]);
});

test('YAML syntax errors say line and column', (t) => {
  t.deepEqual(problemsOf(t, 'listeners:\n  - name: a\n   address: x\n'), ['3:1: Sequence item without - indicator']);
  t.deepEqual(problemsOf(t, 'listeners:\n  - name: a\n    address: [x\n'), ['4:1: Flow sequence in block collection must be sufficiently indented and end with a ]']);
  t.deepEqual(problemsOf(t, 'listeners:\n  - name: "a\n'), ['3:1: Missing closing "quote']);
  t.deepEqual(problemsOf(t, 'admin: {}\nadmin: {}\n'), ['2:1: Map keys must be unique']);
  t.deepEqual(problemsOf(t, 'listeners: *nowhere\n'), ['(top level): Unresolved alias (the anchor must be set before the alias): nowhere']);
});

test('duplicate names: listeners, clusters, filters, routes within a listener', (t) => {
  const text = `
listeners:
  - name: a
    address: 127.0.0.1:1
    routes: [{ name: r, cluster: c }, { name: route-3, cluster: c }, { name: r, cluster: c }, { cluster: c }]
  - { name: a, address: 127.0.0.1:2, routes: [{ name: r, cluster: c }] }
clusters: [{ name: c, endpoints: [127.0.0.1:1] }, { name: c, endpoints: [127.0.0.1:2] }]
filters: [{ name: f, module: hello.wasm }, { name: f, module: authz.wasm }]
`;
  t.deepEqual(problemsOf(t, text), [
    'clusters[1].name: "c" is already used by clusters[0]',
    'filters[1].name: "f" is already used by filters[0]',
    'listeners[1].name: "a" is already used by listeners[0]',
    'listeners[0].routes[2].name: "r" is already used by listeners[0].routes[0]',
    'listeners[0].routes[3]: its default name "route-3" is already used by listeners[0].routes[1]; give it a name',
  ]);
});

test('duplicate addresses: listeners and admin', (t) => {
  const text = `
admin: { address: 127.0.0.1:15000 }
listeners:
  - { name: a, address: 127.0.0.1:15001, routes: [{ directResponse: {} }] }
  - { name: b, address: 127.0.0.1:15001, routes: [{ directResponse: {} }] }
  - { name: c, address: 127.0.0.1:15000, routes: [{ directResponse: {} }] }
  - { name: d, address: 0.0.0.0:15001, routes: [{ directResponse: {} }] }
  - { name: e, address: "[::]:15002", routes: [{ directResponse: {} }] }
  - { name: f, address: "10.0.0.1:15002", routes: [{ directResponse: {} }] }
`;
  t.deepEqual(problemsOf(t, text), [
    'listeners[1].address: 127.0.0.1:15001 is already used by listeners[0] ("a")',
    'listeners[2].address: 127.0.0.1:15000 is already used by admin.address',
    'listeners[3].address: 0.0.0.0:15001 overlaps 127.0.0.1:15001 of listeners[0] ("a")',
    'listeners[5].address: 10.0.0.1:15002 overlaps [::]:15002 of listeners[4] ("e")',
  ]);
});

test('a regex that does not compile', (t) => {
  t.deepEqual(problemsOf(t, listener('[{ match: { regex: "^/items/[0-9+$" }, cluster: echo }, { match: { headers: [{ name: x, regex: "(" }] }, cluster: echo }]')), [
    'listeners[0].routes[0].match.regex: "^/items/[0-9+$" does not compile (Unterminated character class)',
    'listeners[0].routes[1].match.headers[0].regex: "(" does not compile (Unterminated group)',
  ]);
});

test('missing properties, wrong types, values not allowed', (t) => {
  const text = `
admin: 15000
listeners:
  - name: l
    routes:
      - { cluster: c, timeoutMs: "15s", match: { methods: [get], path: api } }
      - { redirect: { status: 200 } }
clusters: [{ name: c, endpoints: [127.0.0.1:1], loadBalancing: random, connectTimeoutMs: 0, maxConnections: 1.5 }]
filters: [{ name: "my filter", module: hello.wasm, failStrategy: fail_close, limits: { memoryBytes: 1024 }, capabilities: { httpCalls: "yes" }, config: ok }]
`;
  t.deepEqual(problemsOf(t, text), [
    'admin: must be a mapping, got 15000',
    'listeners[0]: missing required property "address"',
    'listeners[0].routes[0].match.path: "api" must start with "/"',
    'listeners[0].routes[0].match.methods[0]: HTTP methods are written in upper case: "GET", not "get"',
    'listeners[0].routes[0].timeoutMs: must be an integer, got "15s"',
    'listeners[0].routes[1].redirect: missing required property "location"',
    'listeners[0].routes[1].redirect.status: 200 is not one of 301, 302, 303, 307, 308',
    'clusters[0].loadBalancing: "random" is not one of round-robin, least-request, ring-hash',
    'clusters[0].connectTimeoutMs: must be at least 1, got 0',
    'clusters[0].maxConnections: must be an integer, got 1.5',
    'filters[0].name: "my filter" is not a valid name (up to 128 letters, digits, ".", "_" and "-", starting with a letter or digit)',
    'filters[0].failStrategy: "fail_close" is not one of FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD',
    'filters[0].limits.memoryBytes: must be at least 65536, got 1024',
    'filters[0].capabilities.httpCalls: must be a boolean or a list, got "yes"',
  ]);
});

test('lists with an entry twice, and one problem per value', (t) => {
  const text = `
listeners:
  - name: l
    address: 127.0.0.1:1
    filters: [f, f]
    routes: [{ match: { methods: [GET, GET] }, redirect: { status: "301", location: "//elsewhere" }, timeoutMs: -1 }]
clusters: [{ name: c, endpoints: [a:1, a:1], loadBalancing: 5, idleTimeoutMs: 99999999999 }]
filters: [{ name: f, module: hello.wasm, capabilities: { httpCalls: [c, c] } }]
`;
  t.deepEqual(problemsOf(t, text), [
    'listeners[0].filters: lists "f" twice',
    'listeners[0].routes[0].match.methods: lists "GET" twice',
    'listeners[0].routes[0].redirect.status: "301" is not one of 301, 302, 303, 307, 308',
    'listeners[0].routes[0].redirect.location: "//elsewhere" is neither a path ("/...") nor an http(s) URL',
    'listeners[0].routes[0].timeoutMs: must be at least 0, got -1',
    'clusters[0].endpoints: lists "a:1" twice',
    'clusters[0].loadBalancing: 5 is not one of round-robin, least-request, ring-hash',
    'clusters[0].idleTimeoutMs: must be at most 2147483647, got 99999999999',
    'filters[0].capabilities.httpCalls: lists "c" twice',
  ]);
});

test('rules between fields: one path matcher, one value matcher, rewrites, weights, backoff', (t) => {
  const text = `${listener(`
      - { match: { path: /a, prefix: /a }, cluster: echo }
      - { match: { headers: [{ name: x, exact: "1", present: true }] }, cluster: echo }
      - { match: { prefix: /b }, directResponse: {}, prefixRewrite: /c, hostRewrite: h }
      - { match: { regex: "^/d" }, cluster: echo, prefixRewrite: /e }
      - { match: { path: /f }, cluster: echo, prefixRewrite: /g }
      - { weightedClusters: [{ cluster: echo, weight: 0 }] }
      - { weightedClusters: [{ cluster: echo, weight: 1 }, { cluster: echo, weight: 2 }] }
      - { directResponse: { headers: { Content-Type: text/plain, x-a: "b\\nc" } } }`)}filters: [{ name: f, module: hello.wasm, quarantine: { backoffMs: 10000, maxBackoffMs: 5000 } }]\n`;
  t.deepEqual(problemsOf(t, text), [
    'listeners[0].routes[7].directResponse.headers["Content-Type"]: header names are written in lower case: "content-type", not "Content-Type"',
    'listeners[0].routes[7].directResponse.headers["x-a"]: "b\\nc" must not contain CR, LF or NUL',
    'listeners[0].routes[0].match: give only one of path, prefix, regex',
    'listeners[0].routes[1].match.headers[0]: give at most one of exact, regex, present',
    'listeners[0].routes[2].prefixRewrite: only applies to routes with cluster or weightedClusters',
    'listeners[0].routes[2].hostRewrite: only applies to routes with cluster or weightedClusters',
    'listeners[0].routes[3].prefixRewrite: needs a prefix match to replace (this route matches a regex)',
    'listeners[0].routes[4].prefixRewrite: needs a prefix match to replace (this route matches a path)',
    'listeners[0].routes[5].weightedClusters: the weights add up to 0; give at least one a positive weight',
    'listeners[0].routes[6].weightedClusters[1].cluster: "echo" is already listed at listeners[0].routes[6].weightedClusters[0]',
    'filters[0].quarantine.maxBackoffMs: 5000 is below backoffMs (10000)',
  ]);
});

test('ConfigError: code, source, every problem in the message', (t) => {
  const error = t.throws(() => parseConfig('listeners: []\nclusters: [{ name: c, endpoints: [x] }]\n', 'from-controller v7', dir), { instanceOf: ConfigError })!;
  t.true(error instanceof SluiceError);
  t.is(error.code, 'SLUICE_ERR_CONFIG');
  t.is(error.source, 'from-controller v7');
  t.deepEqual(error.problems, ['listeners: must not be empty', 'clusters[0].endpoints[0]: "x" is not host:port']);
  t.is(error.message, 'from-controller v7: invalid configuration:\n  - listeners: must not be empty\n  - clusters[0].endpoints[0]: "x" is not host:port');
  t.true(Object.isFrozen(error.problems));
});

test('an empty file, and a file that is not a mapping', (t) => {
  t.deepEqual(problemsOf(t, ''), ['(top level): must be a mapping, got nothing']);
  t.deepEqual(problemsOf(t, '- a\n'), ['(top level): must be a mapping, got a list']);
});

test('loadConfig: a file that is not there', async (t) => {
  const file = join(dir, 'missing.yaml');
  const error = await t.throwsAsync(loadConfig(file), { instanceOf: ConfigError });
  t.is(error!.message, `${file}: invalid configuration:\n  - cannot read the file (no such file; check the path)`);
  t.is((error!.cause as NodeJS.ErrnoException).code, 'ENOENT');
});

// ---- docs ------------------------------------------------------------------------------------

test('docs/configuration.md describes every property of the schema', (t) => {
  const doc = readFileSync(`${repoRoot}docs/configuration.md`, 'utf8');
  const names = new Set<string>();
  const walk = (schema: unknown): void => {
    if (typeof schema !== 'object' || schema === null) return;
    const properties = (schema as { properties?: Record<string, unknown> }).properties;
    if (properties) for (const name of Object.keys(properties)) names.add(name);
    for (const child of Object.values(schema)) walk(child);
  };
  walk(configSchema);
  t.true(names.size > 40);
  for (const name of names) t.true(doc.includes(`\`${name}\``), `document \`${name}\` in docs/configuration.md`);
});

test('the complete example in docs/configuration.md is valid', (t) => {
  const doc = readFileSync(`${repoRoot}docs/configuration.md`, 'utf8');
  const example = /## A complete example\n\n```yaml\n([\s\S]*?)```/.exec(doc)![1]!;
  // Its modules, ../../build/filters/hello.wasm and ./authz.wasm, as stand-ins.
  const base = join(dir, 'docs', 'example');
  mkdirSync(join(dir, 'build', 'filters'), { recursive: true });
  mkdirSync(base, { recursive: true });
  writeFileSync(join(dir, 'build', 'filters', 'hello.wasm'), '');
  writeFileSync(join(base, 'authz.wasm'), '');
  const snapshot = parseConfig(example, 'docs', base);
  t.deepEqual(snapshot.filters.map((f) => [f.name, f.configuration]), [
    ['hello', '{"header":"x-hello","value":"world"}'],
    ['authz', 'mode=enforce\n'],
  ]);
  t.deepEqual(snapshot.clusters[1]!.endpoints, [{ host: 'fd00::7', port: 8080 }]);
});

test('admin.allowedHosts and admin.configDump.show: given, kept (hosts lower case, IPv6 unbracketed); bad ones named', (t) => {
  const snapshot = parse(`${listener()}admin: { address: "0.0.0.0:15000", allowedHosts: [Sluice-Admin.svc, "[fd00::1]", 10.0.0.7], configDump: { show: [filters.*.configuration, listeners.outbound.routes] } }\n`);
  t.deepEqual(snapshot.admin, { host: '0.0.0.0', port: 15000, allowedHosts: ['sluice-admin.svc', 'fd00::1', '10.0.0.7'], configDump: { show: ['filters.*.configuration', 'listeners.outbound.routes'] } });
  t.deepEqual(problemsOf(t, `${listener()}admin: { allowedHosts: ["evil example", "localhost:15000"], configDump: { show: [secrets, "filters..x"] } }\n`), [
    'admin.allowedHosts[0]: "evil example" is not a host name or IP address (give no port: the admin answers to its host on any port)',
    'admin.allowedHosts[1]: "localhost:15000" is not a host name or IP address (give no port: the admin answers to its host on any port)',
    'admin.configDump.show[0]: "secrets" must start with one of admin, listeners, clusters, filters, tracing (or *)',
    'admin.configDump.show[1]: "filters..x" has an empty step; write steps separated by single dots, as in filters.headers.configuration.request',
  ]);
});

test('upgrades: names in any case, kept lower case; h2c and non-tokens refused', (t) => {
  t.deepEqual(parse(listener('[{ cluster: echo }]', '\n    upgrades: [WebSocket, Foo]')).listeners[0]!.upgrades, ['websocket', 'foo']);
  t.deepEqual(parse(listener('[{ cluster: echo }]', '\n    upgrades: []')).listeners[0]!.upgrades, []);
  t.deepEqual(problemsOf(t, listener('[{ cluster: echo }]', '\n    upgrades: [websocket, H2C]')), [
    'listeners[0].upgrades[1]: h2c is never honoured as an upgrade: HTTP/2 clients speak it with prior knowledge on the same port (or h2 over TLS); remove it',
  ]);
  t.deepEqual(problemsOf(t, listener('[{ cluster: echo }]', '\n    upgrades: ["web socket"]')), [
    'listeners[0].upgrades[0]: "web socket" is not an Upgrade protocol name (letters, digits and !#$%&\'*+.^_`|~-, as in websocket)',
  ]);
});

test('maxRequestHeaders: 1 to 8192', (t) => {
  t.is(parse(listener('[{ cluster: echo }]', '\n    maxRequestHeaders: 200')).listeners[0]!.maxRequestHeaders, 200);
  t.deepEqual(problemsOf(t, listener('[{ cluster: echo }]', '\n    maxRequestHeaders: 0')), ['listeners[0].maxRequestHeaders: must be at least 1, got 0']);
  t.deepEqual(problemsOf(t, listener('[{ cluster: echo }]', '\n    maxRequestHeaders: 8193')), ['listeners[0].maxRequestHeaders: must be at most 8192, got 8193']);
});

test('bufferLimitBytes: read on http listeners, refused out of range and on tcp listeners', (t) => {
  const http = (value: string) => `
listeners: [{ name: l, address: "127.0.0.1:0", bufferLimitBytes: ${value}, routes: [{ cluster: c }] }]
clusters: [{ name: c, endpoints: [127.0.0.1:1] }]
`;
  t.is(parse(http('65536')).listeners[0]!.bufferLimitBytes, 65536);
  t.deepEqual(problemsOf(t, http('100')), ['listeners[0].bufferLimitBytes: must be at least 1024, got 100']);
  t.deepEqual(problemsOf(t, `
listeners: [{ name: t, address: "127.0.0.1:0", protocol: tcp, cluster: c, bufferLimitBytes: 65536 }]
clusters: [{ name: c, endpoints: [127.0.0.1:1] }]
`), ["listeners[0].bufferLimitBytes: applies to http listeners only; a tcp listener passes bytes through with the socket's own flow control"]);
});

test('streamIdleTimeoutMs: set on an http listener, a duration, and refused on a tcp listener', (t) => {
  const listeners = parse(listener('[{ cluster: echo }]', '\n    streamIdleTimeoutMs: 0')).listeners;
  t.is(listeners[0]!.streamIdleTimeoutMs, 0);
  t.is(parse(listener()).listeners[0]!.streamIdleTimeoutMs, 300000);
  t.deepEqual(problemsOf(t, listener('[{ cluster: echo }]', '\n    streamIdleTimeoutMs: -1')), ['listeners[0].streamIdleTimeoutMs: must be at least 0, got -1']);
  t.deepEqual(problemsOf(t, 'listeners:\n  - { name: t, address: 127.0.0.1:0, protocol: tcp, cluster: echo, streamIdleTimeoutMs: 1000 }\nclusters: [{ name: echo, endpoints: [127.0.0.1:1] }]\n'), [
    'listeners[0].streamIdleTimeoutMs: a tcp listener has no HTTP streams; its connections stay open until either side closes them',
  ]);
});

test('workloads (node mode): read with defaults; bad identities, addresses, unknown filters and duplicates are refused', (t) => {
  const base = { listeners: [{ name: 'l', address: '127.0.0.1:0', routes: [{ directResponse: { status: 200 } }] }], filters: [{ name: 'hello', module: 'hello.wasm' }] };
  const ok = parse(JSON.stringify({ ...base, workloads: [{ namespace: 'a', name: 'p', identity: 'spiffe://cluster.local/ns/a/sa/default', addresses: ['10.0.0.1', 'fd00::1'], filters: { inbound: ['hello'] } }] }));
  t.deepEqual(ok.workloads, [{ namespace: 'a', name: 'p', identity: 'spiffe://cluster.local/ns/a/sa/default', labels: {}, addresses: ['10.0.0.1', 'fd00::1'], filters: { outbound: [], inbound: ['hello'] } }]);
  t.is(parse(JSON.stringify(base)).workloads, undefined);
  const bad = { ...base, workloads: [{ namespace: 'a', name: 'p', identity: 'http://x', addresses: ['1.2.3'], filters: { outbound: ['nope'] } }, { namespace: 'a', name: 'p', identity: 'spiffe://cluster.local/ns/a/sa/b' }] };
  t.deepEqual(problemsOf(t, JSON.stringify(bad)), [
    'workloads[0].identity: "http://x" is not a SPIFFE ID (spiffe://<trust-domain>/<path>, as in spiffe://cluster.local/ns/default/sa/default)',
    'workloads[0].addresses[0]: "1.2.3" is not an IPv4 or IPv6 address',
    'workloads[0].filters.outbound[0]: no filter named "nope" (filters are: hello)',
    'workloads[1].name: "a/p" is already described by workloads[0]',
  ]);
  // Port limits: read per direction; a filter named that is not in that direction's chain is refused.
  const limited = parse(JSON.stringify({ ...base, workloads: [{ namespace: 'a', name: 'p', identity: 'spiffe://cluster.local/ns/a/sa/default', filters: { inbound: ['hello'], ports: { inbound: { hello: [8080, 9090] } } } }] }));
  t.deepEqual(limited.workloads![0]!.filters, { outbound: [], inbound: ['hello'], ports: { inbound: { hello: [8080, 9090] } } });
  t.deepEqual(problemsOf(t, JSON.stringify({ ...base, workloads: [{ namespace: 'a', name: 'p', identity: 'spiffe://cluster.local/ns/a/sa/default', filters: { inbound: ['hello'], ports: { outbound: { hello: [80] } } } }] })), [
    'workloads[0].filters.ports.outbound.hello: "hello" is not in filters.outbound; name a filter of that direction',
  ]);
});

test('tunnel.remoteWorkloads (node mode): read with the tunnel address parsed; bad identities, addresses and an address owned twice are refused', (t) => {
  const base = { listeners: [{ name: 'l', address: '127.0.0.1:0', routes: [{ directResponse: { status: 200 } }] }] };
  const w = { namespace: 'b', name: 'q', identity: 'spiffe://cluster.local/ns/b/sa/api', addresses: ['10.0.1.7', 'fd00::7'], tunnel: '192.168.1.2:15008' };
  const ok = parse(JSON.stringify({ ...base, tunnel: { remoteWorkloads: [w] } }));
  t.deepEqual(ok.tunnel, { remoteWorkloads: [{ ...w, tunnel: { host: '192.168.1.2', port: 15008 } }] });
  t.is(parse(JSON.stringify(base)).tunnel, undefined);
  const bad = { ...base, tunnel: { remoteWorkloads: [{ ...w, identity: 'b/api', tunnel: '192.168.1.2' }, { ...w, name: 'r', addresses: ['10.0.1.7'] }, { ...w, name: 's', addresses: [] }] } };
  t.deepEqual(problemsOf(t, JSON.stringify(bad)), [
    'tunnel.remoteWorkloads[0].identity: "b/api" is not a SPIFFE ID (spiffe://<trust-domain>/<path>, as in spiffe://cluster.local/ns/default/sa/default)',
    'tunnel.remoteWorkloads[0].tunnel: "192.168.1.2" is not host:port',
    'tunnel.remoteWorkloads[2].addresses: must not be empty',
    'tunnel.remoteWorkloads[1].addresses[0]: 10.0.1.7 is already the address of tunnel.remoteWorkloads[0]',
  ]);
});

test('a filter is a module or unavailable (node mode: the controller has no version of it), never both or neither', (t) => {
  const snapshot = parse(`${listener()}filters:\n  - { name: guard, unavailable: "the controller has not validated it yet", failStrategy: FAIL_RELOAD }\n`);
  t.like(snapshot.filters[0], { name: 'guard', module: '', unavailable: 'the controller has not validated it yet', failStrategy: 'FAIL_RELOAD' });
  t.is(parse(`${listener()}filters: [{ name: hello, module: hello.wasm }]\n`).filters[0]!.unavailable, undefined);
  t.deepEqual(problemsOf(t, `${listener()}filters:\n  - { name: a, module: hello.wasm, unavailable: why }\n  - { name: b }\n  - { name: c, unavailable: "" }\n`), [
    'filters[2].unavailable: must not be empty',
    'filters[0]: give module or unavailable, not both',
    'filters[1]: missing required property "module" (the path of the .wasm)',
  ]);
});

test('a filter\'s environment: names NAME-shaped, values strings', (t) => {
  t.deepEqual(parse(`${listener()}filters: [{ name: hello, module: hello.wasm, environment: { MODE: enforce, _X1: "" } }]\n`).filters[0]!.environment, { MODE: 'enforce', _X1: '' });
  t.deepEqual(problemsOf(t, `${listener()}filters: [{ name: hello, module: hello.wasm, environment: { 1BAD: x, OK: 3, NUL: "a\\0b" } }]\n`), [
    'filters[0].environment["1BAD"]: "1BAD" is not a variable name (a letter or "_", then letters, digits and "_")',
    'filters[0].environment.OK: must be a string, got 3',
    'filters[0].environment.NUL: must not contain NUL characters',
  ]);
});
