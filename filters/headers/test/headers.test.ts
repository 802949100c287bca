// The headers filter in the real host through the SDK harness: add, set and remove on requests and
// responses, the order they apply in, every template variable, values it refuses to write at run
// time, and the configurations it refuses (naming the field).

import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';
import { FilterHarness } from '../../../sdk/harness/index.ts';
import { buildFilters } from '../../../scripts/build-filters.js';
import type { StreamInfo } from '../../../runtime/index.ts';

const wasm = fileURLToPath(new URL('../../../build/filters/headers.wasm', import.meta.url));
const schema = JSON.parse(readFileSync(new URL('../config.schema.json', import.meta.url), 'utf8'));
const bench = JSON.parse(readFileSync(new URL('../bench.json', import.meta.url), 'utf8'));

const request = (extra: Record<string, string> = {}) => ({ ':method': 'GET', ':path': '/items?page=2', ':authority': 'shop.example', ':scheme': 'http', ...extra });

test.before(async () => {
  await buildFilters({ only: ['headers'] });
});

async function load(configuration: unknown) {
  return FilterHarness.load(wasm, { name: 'headers', rootId: 'headers', configuration: JSON.stringify(configuration) });
}

const INFO: StreamInfo = {
  source: { address: '10.1.2.3', port: 51234 },
  destination: { address: '10.9.8.7', port: 15001 },
  protocol: 'HTTP/1.1',
  startTime: Date.UTC(2026, 2, 4, 5, 6, 7, 89),
  clusterName: 'reviews',
  upstream: { address: '10.0.0.5', port: 9080 },
};

/** One exchange; returns the request and response header lists as the filter left them. */
async function exchange(h: FilterHarness, req: Record<string, string> = request(), res: Record<string, string> = { ':status': '200' }, info: StreamInfo = INFO) {
  const s = h.stream(info);
  t_continue(await s.requestHeaders(req, { endOfStream: true }));
  const upstream = s.request.headers!.raw().slice();
  t_continue(await s.responseHeaders(res, { endOfStream: true }));
  const client = s.response.headers!.raw().slice();
  await s.end();
  return { request: pairs(upstream), response: pairs(client), stream: s };
}

function t_continue(r: { kind: string }) {
  if (r.kind !== 'continue') throw new Error(`expected continue, got ${r.kind}`);
}

function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}

const all = (list: Array<[string, string]>, name: string) => list.filter(([k]) => k === name).map(([, v]) => v);

test('request: add appends, set replaces, remove removes every value', async (t) => {
  const h = await load({
    request: {
      add: [{ name: 'x-tag', value: 'b' }, { name: 'x-new', value: 'one' }],
      set: [{ name: 'x-env', value: 'prod' }],
      remove: ['x-debug', 'x-absent'],
    },
  });
  const { request: r } = await exchange(h, request({ 'x-tag': 'a', 'x-env': 'dev', 'x-debug': '1' }));
  t.deepEqual(all(r, 'x-tag'), ['a', 'b']);
  t.deepEqual(all(r, 'x-new'), ['one']);
  t.deepEqual(all(r, 'x-env'), ['prod']);
  t.deepEqual(all(r, 'x-debug'), []);
  t.deepEqual(all(r, ':path'), ['/items?page=2'], 'the rest is untouched');
});

test('set adds a header that was absent, and replaces every value of a repeated one', async (t) => {
  const h = await load({ request: { set: [{ name: 'x-a', value: '1' }, { name: 'x-b', value: '2' }] } });
  const s = h.stream(INFO);
  t_continue(await s.requestHeaders([[':method', 'GET'], [':path', '/'], [':authority', 'a'], ['x-b', 'old'], ['x-b', 'older']], { endOfStream: true }));
  t.deepEqual(s.request.headers!.getAll('x-a'), ['1']);
  t.deepEqual(s.request.headers!.getAll('x-b'), ['2']);
  await s.end();
});

test('response: add, set and remove, on upstream answers and local replies alike', async (t) => {
  const h = await load({ response: { add: [{ name: 'x-served-by', value: 'sluice' }], set: [{ name: 'cache-control', value: 'no-store' }], remove: ['server', 'x-powered-by'] } });
  for (const status of ['200', '503']) {
    const { response: r } = await exchange(h, request(), { ':status': status, server: 'nginx', 'x-powered-by': 'php', 'cache-control': 'max-age=60' });
    t.deepEqual(all(r, 'x-served-by'), ['sluice']);
    t.deepEqual(all(r, 'cache-control'), ['no-store']);
    t.deepEqual(all(r, 'server'), []);
    t.deepEqual(all(r, 'x-powered-by'), []);
    t.deepEqual(all(r, ':status'), [status]);
  }
});

test('values are computed from the message as it arrived, before any change', async (t) => {
  const h = await load({ request: { remove: ['x-user'], set: [{ name: 'x-was-user', value: 'user=%REQ(x-user)%' }, { name: 'x-tenant', value: 'new' }], add: [{ name: 'x-old-tenant', value: '%REQ(x-tenant)%' }] } });
  const { request: r } = await exchange(h, request({ 'x-user': 'alice', 'x-tenant': 'old' }));
  t.deepEqual(all(r, 'x-user'), []);
  t.deepEqual(all(r, 'x-was-user'), ['user=alice']);
  t.deepEqual(all(r, 'x-tenant'), ['new']);
  t.deepEqual(all(r, 'x-old-tenant'), ['old']);
});

test('pseudo-headers: :path and :authority may be set on the request (a rewrite)', async (t) => {
  const h = await load({ request: { set: [{ name: ':path', value: '/v2%REQ(:path)%' }, { name: ':authority', value: 'internal.%REQ(:authority)%' }] } });
  const { request: r } = await exchange(h);
  t.deepEqual(all(r, ':path'), ['/v2/items?page=2']);
  t.deepEqual(all(r, ':authority'), ['internal.shop.example']);
});

test('every variable, on the request', async (t) => {
  const h = await load({
    request: {
      set: [
        { name: 'x-remote', value: '%DOWNSTREAM_REMOTE_ADDRESS%' },
        { name: 'x-remote-ip', value: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%' },
        { name: 'x-local', value: '%DOWNSTREAM_LOCAL_ADDRESS%' },
        { name: 'x-local-ip', value: '%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%' },
        { name: 'x-protocol', value: '%PROTOCOL%' },
        { name: 'x-user-copy', value: '%REQ(X-User)%' },
        { name: 'x-start', value: '%START_TIME%' },
        { name: 'x-host', value: '%HOSTNAME%' },
        { name: 'x-url-path', value: '%PROPERTY(request.url_path)%' },
        { name: 'x-port', value: '%PROPERTY(source.port)%' },
        { name: 'x-mtls', value: '%PROPERTY(connection.mtls)%' },
        { name: 'x-time', value: '%PROPERTY(request.time)%' },
        { name: 'x-plugin', value: '%PROPERTY(plugin_name)%/%PROPERTY(node.cluster)%' },
        { name: 'x-header-prop', value: '%PROPERTY(request.headers.x-user)%' },
        { name: 'x-mixed', value: '100%% %PROTOCOL% from %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%!' },
      ],
    },
  });
  const { request: r } = await exchange(h, request({ 'x-user': 'alice' }), { ':status': '200' }, { ...INFO, connection: { id: 7, mtls: true } });
  const got = Object.fromEntries(r.filter(([k]) => k.startsWith('x-')));
  t.deepEqual(got, {
    'x-user': 'alice',
    'x-remote': '10.1.2.3:51234',
    'x-remote-ip': '10.1.2.3',
    'x-local': '10.9.8.7:15001',
    'x-local-ip': '10.9.8.7',
    'x-protocol': 'HTTP/1.1',
    'x-user-copy': 'alice',
    'x-start': '2026-03-04T05:06:07.089Z',
    'x-host': 'sluice-local',
    'x-url-path': '/items',
    'x-port': '51234',
    'x-mtls': 'true',
    'x-time': '2026-03-04T05:06:07.089Z',
    'x-plugin': 'headers/sluice',
    'x-header-prop': 'alice',
    'x-mixed': '100% HTTP/1.1 from 10.1.2.3!',
  });
});

test('every variable, on the response', async (t) => {
  const h = await load({
    response: {
      add: [
        { name: 'x-cluster', value: '%UPSTREAM_CLUSTER%' },
        { name: 'x-upstream', value: '%UPSTREAM_HOST%' },
        { name: 'x-code', value: '%RESPONSE_CODE%' },
        { name: 'x-type', value: '%RESP(content-type)%' },
        { name: 'x-req-id', value: '%REQ(x-request-id)%' },
        { name: 'x-code-prop', value: '%PROPERTY(response.code)%' },
        { name: 'x-started', value: '%START_TIME%' },
      ],
    },
  });
  const { response: r } = await exchange(h, request({ 'x-request-id': 'r-1' }), { ':status': '201', 'content-type': 'text/plain' });
  t.deepEqual(Object.fromEntries(r.filter(([k]) => k.startsWith('x-'))), {
    'x-cluster': 'reviews',
    'x-upstream': '10.0.0.5:9080',
    'x-code': '201',
    'x-type': 'text/plain',
    'x-req-id': 'r-1',
    'x-code-prop': '201',
    'x-started': '2026-03-04T05:06:07.089Z',
  });
});

test('a value that comes out empty is not written, and an existing header stays as it was', async (t) => {
  const h = await load({
    request: { add: [{ name: 'x-user-copy', value: '%REQ(x-user)%' }], set: [{ name: 'x-remote', value: '%DOWNSTREAM_REMOTE_ADDRESS%' }, { name: 'x-count', value: '%PROPERTY(connection.id)%' }] },
    response: { set: [{ name: 'x-cluster', value: '%UPSTREAM_CLUSTER%' }] },
  });
  const { request: r, response: res } = await exchange(h, request({ 'x-remote': 'kept' }), { ':status': '404', 'x-cluster': 'kept-too' }, {});
  t.deepEqual(all(r, 'x-user-copy'), []);
  t.deepEqual(all(r, 'x-remote'), ['kept']);
  t.deepEqual(all(r, 'x-count'), []);
  t.deepEqual(all(res, 'x-cluster'), ['kept-too']);
});

test('dates before 1970 and in leap years format right', async (t) => {
  const h = await load({ request: { set: [{ name: 'x-start', value: '%START_TIME%' }] } });
  for (const ms of [Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(1969, 11, 31, 23, 59, 59, 1), Date.UTC(2000, 0, 1), 0, Date.UTC(2100, 2, 1, 12)]) {
    const { request: r } = await exchange(h, request(), { ':status': '200' }, { startTime: ms });
    t.deepEqual(all(r, 'x-start'), [new Date(ms).toISOString()], String(ms));
  }
});

test('a value with CR, LF or NUL from a header or property is not written: counted, logged once', async (t) => {
  const h = await load({ request: { set: [{ name: 'x-copy', value: 'v=%REQ(x-bad)%' }, { name: 'x-good', value: '%REQ(x-ok)%' }] } });
  for (let i = 0; i < 3; i++) {
    const s = h.stream(INFO);
    t_continue(await s.requestHeaders(request({ 'x-bad': 'a\r\nx-injected: 1', 'x-ok': 'fine' }), { endOfStream: true }));
    t.is(s.request.header('x-copy'), undefined);
    t.is(s.request.header('x-good'), 'fine');
    await s.end();
  }
  t.is(Number(h.metric('headers_values_refused_total')), 3);
  const warnings = h.logLines(3).filter((l) => l.includes('not writing'));
  t.deepEqual(warnings, ["warn: headers: request.set[0]: not writing 'x-copy': its value contains CR, LF or NUL (counted in headers_values_refused_total; logged once)"]);
});

test('a templated :path that does not start with / is not written', async (t) => {
  const h = await load({ request: { set: [{ name: ':path', value: '%REQ(x-target)%' }] } });
  const { request: r } = await exchange(h, request({ 'x-target': 'no-slash' }));
  t.deepEqual(all(r, ':path'), ['/items?page=2']);
  const { request: r2 } = await exchange(h, request({ 'x-target': '/moved' }));
  t.deepEqual(all(r2, ':path'), ['/moved']);
  t.is(Number(h.metric('headers_values_refused_total')), 1);
});

test('a configuration for one direction leaves the other alone', async (t) => {
  const h = await load({ response: { set: [{ name: 'x-a', value: '1' }] } });
  const { request: r } = await exchange(h, request({ 'x-a': 'client' }));
  t.deepEqual(all(r, 'x-a'), ['client']);
});

test('the bench configuration does what its README says', async (t) => {
  const h = await load(bench.config);
  const { request: r, response: res } = await exchange(h, request({ 'x-user': 'alice', 'x-debug': '1' }), { ':status': '200', server: 'upstream' });
  t.deepEqual(all(r, 'x-forwarded-user'), ['alice']);
  t.deepEqual(all(r, 'x-debug'), []);
  t.deepEqual(all(res, 'x-served-by'), ['sluice-local']);
  t.deepEqual(all(res, 'server'), []);
});

const invalid: Array<[string, unknown, RegExp]> = [
  ['an empty configuration', '', /field 'request': nothing to do/],
  ['empty operation lists', { request: { add: [] }, response: {} }, /nothing to do/],
  ['a configuration that is not an object', [1], /must be a JSON object, got array/],
  ['an unknown top-level field', { requests: {} }, /unknown field 'requests'/],
  ['an unknown operation', { request: { append: [] } }, /unknown field 'request.append'/],
  ['request that is not an object', { request: [] }, /field 'request': expected an object, got array/],
  ['add that is not a list', { request: { add: {} } }, /field 'request.add': expected an array, got object/],
  ['an entry that is not an object', { request: { add: ['x-a: 1'] } }, /field 'request.add\[0\]': expected an object \{ name, value \}, got string/],
  ['an entry without a name', { request: { set: [{ value: 'x' }] } }, /field 'request.set\[0\].name': is required/],
  ['an entry without a value', { response: { add: [{ name: 'x-a' }] } }, /field 'response.add\[0\].value': is required/],
  ['a value that is not a string', { request: { set: [{ name: 'x-a', value: 1 }] } }, /field 'request.set\[0\].value': expected a string, got number/],
  ['an unknown entry field', { request: { set: [{ name: 'x-a', value: '1', append: true }] } }, /unknown field 'request.set\[0\].append'/],
  ['an upper-case name', { request: { add: [{ name: 'X-Env', value: '1' }] } }, /field 'request.add\[0\].name': header names are written in lower case: 'x-env', not 'X-Env'/],
  ['a name with a space', { request: { add: [{ name: 'x env', value: '1' }] } }, /field 'request.add\[0\].name': 'x env' is not a header name/],
  ['an empty name', { request: { add: [{ name: '', value: '1' }] } }, /field 'request.add\[0\].name': '' is not a header name/],
  ['a value with CR LF', { request: { add: [{ name: 'x-a', value: 'a\r\nb' }] } }, /field 'request.add\[0\].value': must not contain CR, LF or NUL/],
  ['a value with NUL', { response: { set: [{ name: 'x-a', value: 'a\u0000b' }] } }, /field 'response.set\[0\].value': must not contain CR, LF or NUL/],
  ['an empty value', { request: { set: [{ name: 'x-a', value: '' }] } }, /field 'request.set\[0\].value': is empty/],
  ['an unknown variable', { request: { add: [{ name: 'x-a', value: 'v=%FOO%' }] } }, /field 'request.add\[0\].value': at 2: unknown variable %FOO% \(known: %DOWNSTREAM_REMOTE_ADDRESS%/],
  ['an unknown variable with an argument', { request: { add: [{ name: 'x-a', value: '%ENV(HOME)%' }] } }, /at 0: unknown variable %ENV\(HOME\)%/],
  ['a lower-case variable', { request: { add: [{ name: 'x-a', value: '%protocol%' }] } }, /at 0: a lone '%': write %% for a literal percent sign/],
  ['a lone percent sign', { request: { add: [{ name: 'x-a', value: '50% off' }] } }, /field 'request.add\[0\].value': at 2: a lone '%'/],
  ['an unclosed variable', { request: { add: [{ name: 'x-a', value: '%PROTOCOL' }] } }, /at 0: '%PROTOCOL' is not closed by '%'/],
  ['an unclosed argument', { request: { add: [{ name: 'x-a', value: '%REQ(x-a%' }] } }, /at 0: '\(' without '\)'/],
  ['a length limit', { request: { add: [{ name: 'x-a', value: '%REQ(x-a):10%' }] } }, /at 9: length limits/],
  ['REQ without an argument', { request: { add: [{ name: 'x-a', value: '%REQ%' }] } }, /%REQ\(...\)% needs an argument/],
  ['PROPERTY without an argument', { request: { add: [{ name: 'x-a', value: '%PROPERTY%' }] } }, /%PROPERTY\(...\)% needs an argument, e.g. %PROPERTY\(request.host\)%/],
  ['an argument to a plain variable', { request: { add: [{ name: 'x-a', value: '%PROTOCOL(x)%' }] } }, /%PROTOCOL% takes no argument/],
  ['a START_TIME format', { request: { add: [{ name: 'x-a', value: '%START_TIME(%s)%' }] } }, /%START_TIME% takes no argument \(only the default format/],
  ['REQ of something that is not a header name', { request: { add: [{ name: 'x-a', value: '%REQ(a b)%' }] } }, /%REQ\(a b\)%: 'a b' is not a header name/],
  ['RESP on the request', { request: { add: [{ name: 'x-a', value: '%RESP(server)%' }] } }, /%RESP\(server\)% is only known on the response; use it under 'response'/],
  ['RESPONSE_CODE on the request', { request: { add: [{ name: 'x-a', value: '%RESPONSE_CODE%' }] } }, /%RESPONSE_CODE% is only known on the response/],
  ['UPSTREAM_CLUSTER on the request', { request: { add: [{ name: 'x-a', value: '%UPSTREAM_CLUSTER%' }] } }, /%UPSTREAM_CLUSTER% is only known on the response/],
  ['UPSTREAM_HOST on the request', { request: { add: [{ name: 'x-a', value: '%UPSTREAM_HOST%' }] } }, /%UPSTREAM_HOST% is only known on the response/],
  ['a response property on the request', { request: { add: [{ name: 'x-a', value: '%PROPERTY(response.code)%' }] } }, /%PROPERTY\(response.code\)% is only known on the response/],
  ['a whole header map property', { response: { add: [{ name: 'x-a', value: '%PROPERTY(request.headers)%' }] } }, /is a whole header map; name one header/],
  ['a malformed property path', { request: { add: [{ name: 'x-a', value: '%PROPERTY(request..path)%' }] } }, /not a property path like 'request.host'/],
  ['a constant :path without a slash', { request: { set: [{ name: ':path', value: 'v2' }] } }, /field 'request.set\[0\].value': a :path must start with '\/'/],
  ['removing :path', { request: { remove: [':path'] } }, /field 'request.remove\[0\]': pseudo-headers \(:path\) cannot be removed; set it instead/],
  ['removing :method', { request: { remove: [':method'] } }, /field 'request.remove\[0\]': of the pseudo-headers only :path and :authority may be set, not :method/],
  ['adding :path', { request: { add: [{ name: ':path', value: '/x' }] } }, /field 'request.add\[0\].name': pseudo-headers have one value: use 'set' for :path/],
  ['setting :method', { request: { set: [{ name: ':method', value: 'POST' }] } }, /only :path and :authority may be set, not :method/],
  ['setting :status', { response: { set: [{ name: ':status', value: '200' }] } }, /field 'response.set\[0\].name': response pseudo-headers \(:status\) cannot be changed/],
  ['removing a response pseudo-header', { response: { remove: [':status'] } }, /response pseudo-headers \(:status\) cannot be changed/],
  ['setting host', { request: { set: [{ name: 'host', value: 'x' }] } }, /'host' frames the message and is managed by the proxy; set ':authority' to change the host/],
  ['removing content-length', { response: { remove: ['content-length'] } }, /field 'response.remove\[0\]': 'content-length' frames the message/],
  ['adding transfer-encoding', { response: { add: [{ name: 'transfer-encoding', value: 'chunked' }] } }, /'transfer-encoding' frames the message/],
  ['a remove entry that is not a string', { request: { remove: [1] } }, /field 'request.remove\[0\]': expected a header name, got number/],
  ['a header removed twice', { request: { remove: ['x-a', 'x-a'] } }, /field 'request.remove\[1\]': 'x-a' is listed twice/],
  ['a header set twice', { request: { set: [{ name: 'x-a', value: '1' }, { name: 'x-a', value: '2' }] } }, /field 'request.set\[1\].name': 'x-a' is set twice/],
  ['a header both set and added', { response: { set: [{ name: 'x-a', value: '1' }], add: [{ name: 'x-a', value: '2' }] } }, /field 'response.add\[0\].name': 'x-a' is also in 'set'/],
  ['a header both removed and set', { request: { remove: ['x-a'], set: [{ name: 'x-a', value: '1' }] } }, /field 'request.remove\[0\]': 'x-a' is also in 'set', which replaces it anyway/],
  ['a header both removed and added', { request: { remove: ['x-a'], add: [{ name: 'x-a', value: '1' }] } }, /field 'request.remove\[0\]': 'x-a' is also in 'add': to replace a header, use 'set'/],
];

function errorText(error: unknown): string {
  const e = error as { message?: string; logs?: Array<{ message: string }> } | undefined;
  return [e?.message ?? '', ...(e?.logs ?? []).map((l) => l.message)].join('\n');
}

for (const [what, configuration, message] of invalid) {
  test(`rejects ${what}, naming the field`, async (t) => {
    const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'headers', rootId: 'headers', configuration: typeof configuration === 'string' ? configuration : JSON.stringify(configuration) }));
    t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
    t.regex(errorText(error), message);
  });
}

test('reports every problem at once', async (t) => {
  const error = await t.throwsAsync(load({ request: { add: [{ name: 'X', value: '%NOPE%' }], remove: [':path'] }, response: { set: [{ name: 'x-a', value: '' }] } }));
  const text = errorText(error);
  t.regex(text, /request.add\[0\].name/);
  t.regex(text, /request.add\[0\].value/);
  t.regex(text, /request.remove\[0\]/);
  t.regex(text, /response.set\[0\].value/);
});

test('config.schema.json accepts the bench and README configurations and refuses what it can express', (t) => {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
  const validate = ajv.compile(schema);
  t.true(validate(bench.config), JSON.stringify(validate.errors));
  for (const example of schema.examples) t.true(validate(example), JSON.stringify(validate.errors));
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const json = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]));
  // The `config:` of each filter entry in the README's sluice.yaml examples.
  const yaml = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].flatMap((m) => ((parseYaml(m[1]) as { filters?: Array<{ module: string; config: unknown }> }).filters ?? []).filter((f) => f.module.includes('headers.wasm')).map((f) => f.config));
  t.true(json.length > 0 && yaml.length > 0);
  for (const example of [...json, ...yaml]) t.true(validate(example), JSON.stringify(validate.errors));
  // Shape, names and constant values; template syntax and cross-entry conflicts only the filter checks.
  const schemaCatches = invalid.filter(([what, c]) => typeof c !== 'string' && !/variable|percent|argument|REQ|RESP|PROPERTY|START_TIME|UPSTREAM|RESPONSE_CODE|property|length limit|twice|both|constant :path|empty operation/.test(what));
  t.true(schemaCatches.length > 20);
  for (const [what, configuration] of schemaCatches) t.false(validate(configuration), `the schema accepts ${what}`);
});
