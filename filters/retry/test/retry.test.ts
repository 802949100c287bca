// The retry filter in the real host through the SDK harness: which rule applies (path, prefix,
// methods, every header condition, first match, default), the exact policy JSON it sets and that
// Sluice's retry layer accepts it, the metric, every configuration it must refuse (naming the
// field), and its config.schema.json agreeing with it.

import { readFileSync } from 'node:fs';
import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { fileURLToPath } from 'node:url';
import { FilterHarness } from '../../../sdk/harness/index.ts';
import { buildFilters } from '../../../scripts/build-filters.js';
import { effectivePolicy } from '../../../runtime/proxy/retry.ts';

const wasm = fileURLToPath(new URL('../../../build/filters/retry.wasm', import.meta.url));
const schema = JSON.parse(readFileSync(new URL('../config.schema.json', import.meta.url), 'utf8'));
const validate = new Ajv2020({ allErrors: true, strict: true, strictRequired: false }).compile(schema);

const req = (path: string, method = 'GET', extra: Record<string, string> = {}) => ({ ':method': method, ':path': path, ':authority': 'shop.test', ':scheme': 'http', ...extra });

/** The JSON the filter sends: the fields given, in the order numRetries, retryOn, retriableStatusCodes, perTryTimeoutMs, baseIntervalMs, maxIntervalMs. */
const policyJson = (p: Record<string, unknown>) => JSON.stringify(p);

test.before(async () => {
  await buildFilters({ only: ['retry'] });
});

async function load(configuration: unknown) {
  return FilterHarness.load(wasm, { name: 'retry', rootId: 'retry', configuration: JSON.stringify(configuration) });
}

/** The policy the filter set for one request (undefined: none), and the stream's outcome. */
async function policyFor(h: FilterHarness, headers: Record<string, string>): Promise<string | undefined> {
  const s = h.stream();
  const r = await s.requestHeaders(headers, { endOfStream: true });
  if (r.kind !== 'continue') throw new Error(`the filter answered ${r.kind}`);
  const policy = s.property('sluice.retry_policy');
  await s.end();
  return policy;
}

/** retry_policies_applied_total for one rule (its name, else its index) or "default". */
const applied = (h: FilterHarness, rule: string) => Number(h.metric(`retry_policies_applied_total{rule="${rule}"}`) ?? 0);

test('logs its rules once configured', async (t) => {
  t.deepEqual((await load({ rules: [{ match: { prefix: '/a' }, policy: {} }, { policy: {} }] })).logLines(2), ['info: retry: 2 rule(s), no default policy']);
  t.deepEqual((await load({ defaultPolicy: {} })).logLines(2), ['info: retry: 0 rule(s) and a default policy']);
});

test('a prefix rule sets its policy as JSON and the metric counts it', async (t) => {
  const h = await load({
    rules: [{ match: { prefix: '/api' }, policy: { numRetries: 3, retryOn: ['gateway-error', 'reset'], perTryTimeoutMs: 500, baseIntervalMs: 10, maxIntervalMs: 80 } }],
  });
  const expected = '{"numRetries":3,"retryOn":["gateway-error","reset"],"perTryTimeoutMs":500,"baseIntervalMs":10,"maxIntervalMs":80}';
  t.is(await policyFor(h, req('/api/v1/items?page=2')), expected);
  t.is(await policyFor(h, req('/apiary')), expected); // a prefix of the string, as Sluice's routes do
  t.is(await policyFor(h, req('/other')), undefined);
  t.is(applied(h, '0'), 2);
  t.deepEqual(h.logLines(3), []);
});

test('Sluice applies the policy it sets: every field given replaces the route\'s, the others stay', async (t) => {
  const h = await load({
    rules: [
      { match: { prefix: '/full' }, policy: { numRetries: 4, retryOn: ['retriable-status-codes', 'retriable-4xx', 'connect-failure'], retriableStatusCodes: [429, 503], perTryTimeoutMs: 250, baseIntervalMs: 5, maxIntervalMs: 50 } },
      { match: { prefix: '/some' }, policy: { perTryTimeoutMs: 200, baseIntervalMs: 0 } },
      { match: { prefix: '/none' }, policy: {} },
    ],
  });
  const route = { numRetries: 2, retryOn: ['5xx' as const], retriableStatusCodes: [500], perTryTimeoutMs: 900, baseIntervalMs: 9, maxIntervalMs: 99 };
  const warnings: string[] = [];
  const applyTo = async (path: string, r: typeof route | undefined) => effectivePolicy(r, await policyFor(h, req(path)), (m) => warnings.push(m));
  t.deepEqual(await applyTo('/full', route), {
    numRetries: 4,
    retryOn: ['retriable-status-codes', 'retriable-4xx', 'connect-failure'],
    retriableStatusCodes: [429, 503],
    perTryTimeoutMs: 250,
    baseIntervalMs: 5,
    maxIntervalMs: 50,
  });
  t.deepEqual(await applyTo('/some', route), { ...route, perTryTimeoutMs: 200, baseIntervalMs: 0 });
  t.deepEqual(await applyTo('/none', route), route);
  // A route without a policy: Sluice's defaults (one retry on 5xx, reset, connect-failure) are the base.
  t.deepEqual(await applyTo('/some', undefined), { numRetries: 1, retryOn: ['5xx', 'reset', 'connect-failure'], retriableStatusCodes: [], perTryTimeoutMs: 200, baseIntervalMs: 0, maxIntervalMs: 250 });
  t.deepEqual(warnings, []);
});

test('only the fields given are sent', async (t) => {
  const h = await load({
    rules: [
      { match: { prefix: '/a' }, policy: {} },
      { match: { prefix: '/b' }, policy: { maxIntervalMs: 100, numRetries: 2 } },
      { match: { prefix: '/c' }, policy: { numRetries: 0, retryOn: [] } },
      { match: { prefix: '/d' }, policy: { retriableStatusCodes: [429] } },
    ],
  });
  t.is(await policyFor(h, req('/a')), '{}');
  t.is(await policyFor(h, req('/b')), '{"numRetries":2,"maxIntervalMs":100}');
  t.is(await policyFor(h, req('/c')), '{"numRetries":0,"retryOn":[]}');
  t.is(await policyFor(h, req('/d')), '{"retriableStatusCodes":[429]}');
});

test('an exact path ignores the query and matches nothing longer', async (t) => {
  const h = await load({ rules: [{ match: { path: '/pay' }, policy: { numRetries: 0 } }] });
  const none = policyJson({ numRetries: 0 });
  t.is(await policyFor(h, req('/pay')), none);
  t.is(await policyFor(h, req('/pay?id=7')), none);
  t.is(await policyFor(h, req('/pay/7')), undefined);
  t.is(await policyFor(h, req('/payments')), undefined);
  t.is(await policyFor(h, req('/pa')), undefined);
});

test('methods: any of the listed ones', async (t) => {
  const h = await load({ rules: [{ match: { methods: ['GET', 'HEAD'] }, policy: { numRetries: 2 } }] });
  t.is(await policyFor(h, req('/x', 'GET')), policyJson({ numRetries: 2 }));
  t.is(await policyFor(h, req('/x', 'HEAD')), policyJson({ numRetries: 2 }));
  t.is(await policyFor(h, req('/x', 'POST')), undefined);
});

test('header conditions: exact, prefix, suffix, contains, present, absent, invert, pseudo-headers; all must hold', async (t) => {
  const rule = (header: Record<string, unknown>, n: number) => ({ match: { headers: [header] }, policy: { numRetries: n } });
  const h = await load({
    rules: [
      rule({ name: 'x-exact', exact: 'yes' }, 1),
      rule({ name: 'x-prefix', prefix: 'can' }, 2),
      rule({ name: 'x-suffix', suffix: '.internal' }, 3),
      rule({ name: 'x-contains', contains: 'beta' }, 4),
      rule({ name: 'x-present' }, 5),
      rule({ name: 'x-present-explicit', present: true }, 6),
      rule({ name: ':authority', exact: 'pay.test' }, 7),
      { match: { headers: [{ name: 'x-both-a', exact: '1' }, { name: 'x-both-b', exact: '2' }] }, policy: { numRetries: 8 } },
      { match: { prefix: '/inv', headers: [{ name: 'x-user', exact: 'bot', invert: true }] }, policy: { numRetries: 9 } },
      { match: { prefix: '/abs', headers: [{ name: 'x-debug', present: false }] }, policy: { numRetries: 10 } },
    ],
  });
  const n = async (path: string, headers: Record<string, string> = {}) => {
    const json = await policyFor(h, req(path, 'GET', headers));
    return json === undefined ? undefined : (JSON.parse(json) as { numRetries: number }).numRetries;
  };
  t.is(await n('/', { 'x-exact': 'yes' }), 1);
  t.is(await n('/', { 'x-exact': 'yes!' }), undefined);
  t.is(await n('/', { 'x-prefix': 'canary-7' }), 2);
  t.is(await n('/', { 'x-prefix': 'scan' }), undefined);
  t.is(await n('/', { 'x-suffix': 'db.internal' }), 3);
  t.is(await n('/', { 'x-suffix': 'internal.db' }), undefined);
  t.is(await n('/', { 'x-contains': 'a-beta-b' }), 4);
  t.is(await n('/', { 'x-present': '' }), 5);
  t.is(await n('/', { 'x-present-explicit': 'v' }), 6);
  t.is(await n('/', { ':authority': 'pay.test' }), 7);
  t.is(await n('/', { 'x-both-a': '1' }), undefined);
  t.is(await n('/', { 'x-both-a': '1', 'x-both-b': '2' }), 8);
  t.is(await n('/inv', { 'x-user': 'alice' }), 9);
  t.is(await n('/inv'), 9); // absent: not 'bot', so the inverted condition holds
  t.is(await n('/inv', { 'x-user': 'bot' }), undefined);
  t.is(await n('/abs'), 10);
  t.is(await n('/abs', { 'x-debug': '1' }), undefined);
});

test('rules are tried in order and the first match wins; otherwise the default policy', async (t) => {
  const h = await load({
    rules: [
      { name: 'payments', match: { prefix: '/api/pay', methods: ['POST'] }, policy: { numRetries: 0 } },
      { match: { prefix: '/api' }, policy: { numRetries: 3 } },
    ],
    defaultPolicy: { numRetries: 1, retryOn: ['connect-failure'] },
  });
  t.is(await policyFor(h, req('/api/pay', 'POST')), policyJson({ numRetries: 0 }));
  t.is(await policyFor(h, req('/api/pay', 'GET')), policyJson({ numRetries: 3 }));
  t.is(await policyFor(h, req('/api/other', 'POST')), policyJson({ numRetries: 3 }));
  t.is(await policyFor(h, req('/static/app.js')), policyJson({ numRetries: 1, retryOn: ['connect-failure'] }));
  t.is(applied(h, 'payments'), 1);
  t.is(applied(h, '1'), 2);
  t.is(applied(h, 'default'), 1);
});

test('a default policy alone applies to every request', async (t) => {
  const h = await load({ defaultPolicy: { numRetries: 2, retryOn: ['5xx'] } });
  for (let i = 0; i < 3; i++) t.is(await policyFor(h, req(`/n/${i}`, 'DELETE')), policyJson({ numRetries: 2, retryOn: ['5xx'] }));
  t.is(applied(h, 'default'), 3);
});

test('a rule with an empty match is a catch-all', async (t) => {
  const h = await load({ rules: [{ match: { headers: [{ name: 'x-canary' }] }, policy: { numRetries: 0 } }, { policy: { numRetries: 5 } }] });
  t.is(await policyFor(h, req('/', 'GET', { 'x-canary': '1' })), policyJson({ numRetries: 0 }));
  t.is(await policyFor(h, req('/'))!, policyJson({ numRetries: 5 }));
});

const valid: unknown[] = [
  { defaultPolicy: {} },
  { rules: [{ name: 'Pay_v2.post-1', match: { prefix: '/pay' }, policy: { numRetries: 0 } }] },
  { rules: [{ match: { prefix: '/api', methods: ['GET'], headers: [{ name: 'x-a', exact: '' }] }, policy: { numRetries: 100, perTryTimeoutMs: 2147483647 } }] },
  { rules: [{ match: { path: '/a' }, policy: { retryOn: ['retriable-status-codes'], retriableStatusCodes: [100, 599], baseIntervalMs: 0 } }] },
  ...(schema.examples as unknown[]),
];

for (const [i, configuration] of valid.entries()) {
  test(`accepts valid configuration #${i}, as its schema does`, async (t) => {
    await t.notThrowsAsync(load(configuration));
    t.true(validate(configuration), JSON.stringify(validate.errors));
  });
}

const rule = (policy: unknown, match: unknown = { prefix: '/' }) => ({ rules: [{ match, policy }] });

/** [what, configuration, the error the filter logs, whether config.schema.json can tell too]. */
const invalid: Array<[string, unknown, RegExp, boolean]> = [
  ['an unknown retryOn value', rule({ retryOn: ['5xx', '5XX'] }), /field 'rules\[0\]\.policy\.retryOn\[1\]': unknown retry condition '5XX' \(known: 5xx, gateway-error, reset, connect-failure, retriable-status-codes, retriable-4xx\)/, true],
  ['an unknown retryOn value in the default policy', { defaultPolicy: { retryOn: ['timeout'] } }, /field 'defaultPolicy\.retryOn\[0\]': unknown retry condition 'timeout'/, true],
  ['retryOn given as a string', rule({ retryOn: '5xx,reset' }), /field 'rules\[0\]\.policy\.retryOn': expected an array of strings, got string/, true],
  ['a retryOn value listed twice', rule({ retryOn: ['reset', 'reset'] }), /field 'rules\[0\]\.policy\.retryOn\[1\]': 'reset' is listed twice/, true],
  ['no retry condition while retrying', rule({ numRetries: 2, retryOn: [] }), /field 'rules\[0\]\.policy\.retryOn': must name at least one condition when numRetries is above 0/, false],
  ['a negative numRetries', rule({ numRetries: -1 }), /field 'rules\[0\]\.policy\.numRetries': must be between 0 and 100, got -1/, true],
  ['too many retries', rule({ numRetries: 101 }), /field 'rules\[0\]\.policy\.numRetries': must be between 0 and 100, got 101/, true],
  ['a fractional numRetries', rule({ numRetries: 1.5 }), /field 'rules\[0\]\.policy\.numRetries': expected an integer, got number/, true],
  ['a perTryTimeoutMs above the timer limit', rule({ perTryTimeoutMs: 2147483648 }), /field 'rules\[0\]\.policy\.perTryTimeoutMs': must be between 0 and 2147483647/, true],
  ['a negative baseIntervalMs', rule({ baseIntervalMs: -5 }), /field 'rules\[0\]\.policy\.baseIntervalMs': must be between 0/, true],
  ['a maxIntervalMs below the base', rule({ baseIntervalMs: 100, maxIntervalMs: 50 }), /field 'rules\[0\]\.policy\.maxIntervalMs': must be at least baseIntervalMs \(100\), got 50/, false],
  ['status codes without retriable-status-codes', rule({ retryOn: ['5xx'], retriableStatusCodes: [429] }), /field 'rules\[0\]\.policy\.retriableStatusCodes': has no effect unless retryOn includes 'retriable-status-codes'/, false],
  ['retriable-status-codes with no codes', rule({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [] }), /field 'rules\[0\]\.policy\.retriableStatusCodes': must list at least one status code/, false],
  ['a status code out of range', rule({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [503, 600] }), /field 'rules\[0\]\.policy\.retriableStatusCodes\[1\]': must be an HTTP status code from 100 to 599, got 600/, true],
  ['a status code that is a string', rule({ retryOn: ['retriable-status-codes'], retriableStatusCodes: ['503'] }), /field 'rules\[0\]\.policy\.retriableStatusCodes\[0\]': must be an HTTP status code from 100 to 599, got "503"/, true],
  ['an unknown policy field', rule({ retries: 3 }), /unknown field 'rules\[0\]\.policy\.retries' \(known: numRetries, retryOn, retriableStatusCodes, perTryTimeoutMs, baseIntervalMs, maxIntervalMs\)/, true],
  ['a rule without a policy', { rules: [{ match: { prefix: '/' } }] }, /field 'rules\[0\]\.policy': is required/, true],
  ['a rule that is not an object', { rules: ['/api'] }, /field 'rules\[0\]': expected an object with match and policy, got string/, true],
  ['rules that are not a list', { rules: { match: {} } }, /field 'rules': expected an array, got object/, true],
  ['a path without a leading slash', rule({}, { path: 'api' }), /field 'rules\[0\]\.match\.path': must start with '\/', got 'api'/, true],
  ['a prefix with a query', rule({}, { prefix: '/api?x=1' }), /field 'rules\[0\]\.match\.prefix': is matched against the path without its query/, true],
  ['both path and prefix', rule({}, { path: '/a', prefix: '/a' }), /field 'rules\[0\]\.match\.path': give path or prefix, not both/, true],
  ['a lower-case method', rule({}, { methods: ['get'] }), /field 'rules\[0\]\.match\.methods\[0\]': must be an upper-case method name like GET, got 'get'/, true],
  ['an empty method list', rule({}, { methods: [] }), /field 'rules\[0\]\.match\.methods': must list at least one method/, true],
  ['a route name', rule({}, { route: 'payments' }), /field 'rules\[0\]\.match\.route': sluice\.route_name is not known during request headers/, true],
  ['an unknown match field', rule({}, { query: [] }), /unknown field 'rules\[0\]\.match\.query' \(known: path, prefix, methods, headers\)/, true],
  ['a header condition without a name', rule({}, { headers: [{ exact: 'x' }] }), /field 'rules\[0\]\.match\.headers\[0\]\.name': is required/, true],
  ['an upper-case header name', rule({}, { headers: [{ name: 'X-Canary' }] }), /field 'rules\[0\]\.match\.headers\[0\]\.name': must be a lower-case header name like 'x-canary'/, true],
  ['two header operators', rule({}, { headers: [{ name: 'x-a', exact: '1', prefix: '1' }] }), /header 'x-a' gives more than one of exact, prefix, suffix, contains, present/, true],
  ['an empty header prefix', rule({}, { headers: [{ name: 'x-a', prefix: '' }] }), /field 'rules\[0\]\.match\.headers\[0\]\.prefix': must not be empty/, true],
  ['a header value with a line break', rule({}, { headers: [{ name: 'x-a', exact: 'a\nb' }] }), /field 'rules\[0\]\.match\.headers\[0\]\.exact': must not contain CR, LF or NUL/, true],
  ['an unknown header condition field', rule({}, { headers: [{ name: 'x-a', regex: '.*' }] }), /unknown field 'rules\[0\]\.match\.headers\[0\]\.regex'/, true],
  ['a header condition that is not an object', rule({}, { headers: ['x-a'] }), /field 'rules\[0\]\.match\.headers\[0\]': expected an object/, true],
  ['a rule after a catch-all', { rules: [{ policy: {} }, { match: { prefix: '/a' }, policy: {} }] }, /field 'rules\[1\]\.match': can never match: rules\[0\] before it matches every request/, false],
  ['a default policy after a catch-all', { rules: [{ match: {}, policy: {} }], defaultPolicy: {} }, /field 'defaultPolicy': is never used: rules\[0\] matches every request/, false],
  ['a rule name with a space', { rules: [{ name: 'my rule', policy: {} }] }, /field 'rules\[0\]\.name': must be 1 to 64 letters, digits, '-', '_' or '\.' \(it labels the metric\), got 'my rule'/, true],
  ['a rule named default', { rules: [{ name: 'default', policy: {} }] }, /field 'rules\[0\]\.name': 'default' labels the defaultPolicy's metric/, true],
  ['two rules with one name', { rules: [{ name: 'a', match: { prefix: '/a' }, policy: {} }, { name: 'a', match: { prefix: '/b' }, policy: {} }] }, /field 'rules\[1\]\.name': 'a' names two rules/, false],
  ['nothing to apply', {}, /field 'rules': give at least one rule or a defaultPolicy/, true],
  ['an unknown top-level field', { rules: [], default: {} }, /unknown field 'default' \(known: rules, defaultPolicy\)/, true],
];

/** The error's message plus the filter's log lines the harness attached to it. */
function errorText(error: unknown): string {
  const e = error as { message?: string; logs?: Array<{ message: string }> } | undefined;
  return [e?.message ?? '', ...(e?.logs ?? []).map((l) => l.message)].join('\n');
}

for (const [what, configuration, message, schemaTells] of invalid) {
  test(`rejects ${what}, naming the field`, async (t) => {
    const error = await t.throwsAsync(load(configuration));
    t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
    t.regex(errorText(error), message);
    if (schemaTells) t.false(validate(configuration), 'config.schema.json should refuse it too');
  });
}

test('reports every problem at once', async (t) => {
  const error = await t.throwsAsync(load({ rules: [{ match: { methods: ['get'] }, policy: { retryOn: ['nope'] } }, 'x'], extra: 1 }));
  const text = errorText(error);
  t.regex(text, /unknown field 'extra'/);
  t.regex(text, /rules\[0\]\.match\.methods\[0\]/);
  t.regex(text, /rules\[0\]\.policy\.retryOn\[0\]/);
  t.regex(text, /field 'rules\[1\]': expected an object/);
});

test('rejects configuration text that is not JSON, saying where', async (t) => {
  const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'retry', rootId: 'retry', configuration: '{"rules": [' }));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
  t.regex(errorText(error), /retry: invalid configuration: invalid JSON: line 1/);
});
