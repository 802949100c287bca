// The hello filter in the real host through the SDK harness: response header, 403 under the
// denied prefix, the request counter, and configurations it must refuse (naming the field).

import test from 'ava';
import { fileURLToPath } from 'node:url';
import { FilterHarness } from '../../../sdk/harness/index.ts';
import { buildFilters } from '../../../scripts/build-filters.js';

const wasm = fileURLToPath(new URL('../../../build/filters/hello.wasm', import.meta.url));
const config = { header: 'x-hello', value: 'world', denyPath: '/forbidden' };
const GET = (path: string) => ({ ':method': 'GET', ':path': path, ':authority': 'example.test', ':scheme': 'http' });

// Compiles hello.wasm when it is missing or older than its sources (a no-op after `npm run build`).
test.before(async () => {
  await buildFilters({ only: ['hello'] });
});

async function load(configuration: unknown = config) {
  return FilterHarness.load(wasm, { name: 'hello', rootId: 'hello', configuration: JSON.stringify(configuration) });
}

test('adds the configured header to responses and lets requests through', async (t) => {
  const h = await load();
  const s = h.stream();
  const req = await s.requestHeaders(GET('/x'), { endOfStream: true });
  t.is(req.kind, 'continue');
  const res = await s.responseHeaders({ ':status': '200', 'content-type': 'text/plain' }, { endOfStream: true });
  t.is(res.kind, 'continue');
  t.is(s.response.header('x-hello'), 'world');
  t.is(s.response.header('content-type'), 'text/plain');
  await s.end();
  t.is(Number(h.metric('hello_requests_total')), 1);
});

test('uses a custom header name and value', async (t) => {
  const h = await load({ header: 'x-greeting', value: 'hi there' });
  const s = h.stream();
  await s.requestHeaders(GET('/forbidden'), { endOfStream: true }); // no denyPath: nothing is denied
  await s.responseHeaders({ ':status': '204' }, { endOfStream: true });
  t.is(s.response.header('x-greeting'), 'hi there');
  t.is(s.response.header('x-hello'), undefined);
  await s.end();
});

test('answers 403 under denyPath, naming the reason, and still counts the request', async (t) => {
  const h = await load();
  const s = h.stream();
  const r = await s.requestHeaders(GET('/forbidden/secret'), { endOfStream: true });
  t.is(r.kind, 'local-reply');
  t.is(r.status, 403);
  t.is(r.body, "hello: access to '/forbidden/secret' is denied (path starts with '/forbidden')\n");
  t.is(r.headers?.['content-type'], 'text/plain; charset=utf-8');
  t.is(r.details, 'hello_denied_path');
  await s.end();

  const ok = h.stream();
  t.is((await ok.requestHeaders(GET('/allowed'), { endOfStream: true })).kind, 'continue');
  await ok.end();
  t.is(Number(h.metric('hello_requests_total')), 2);
});

test('counts every request across streams', async (t) => {
  const h = await load();
  for (let i = 0; i < 5; i++) {
    const s = h.stream();
    await s.requestHeaders(GET(`/n/${i}`), { endOfStream: true });
    await s.responseHeaders({ ':status': '200' }, { endOfStream: true });
    await s.end();
  }
  t.is(Number(h.metric('hello_requests_total')), 5);
});

test('an empty configuration means the defaults', async (t) => {
  const h = await FilterHarness.load(wasm, { name: 'hello', rootId: 'hello', configuration: '' });
  const s = h.stream();
  await s.requestHeaders(GET('/'), { endOfStream: true });
  await s.responseHeaders({ ':status': '200' }, { endOfStream: true });
  t.is(s.response.header('x-hello'), 'world');
  await s.end();
});

const invalid: Array<[string, unknown, RegExp]> = [
  ['a header that is not a string', { header: 5 }, /field 'header': expected a string, got number/],
  ['an upper-case header name', { header: 'X Hello' }, /field 'header': must be a lower-case header name/],
  ['a value with a line break', { value: 'a\r\nb' }, /field 'value': must not contain CR, LF or NUL/],
  ['a denyPath without a leading slash', { denyPath: 'admin' }, /field 'denyPath': must start with '\/'/],
  ['an unknown field', { headr: 'x-typo' }, /unknown field 'headr'/],
  ['a configuration that is not an object', [1, 2], /must be a JSON object, got array/],
];

/** The error's message plus any filter log lines the harness attached to it. */
function errorText(error: unknown): string {
  const e = error as { message?: string; logs?: Array<{ message: string }> } | undefined;
  return [e?.message ?? '', ...(e?.logs ?? []).map((l) => l.message)].join('\n');
}

for (const [what, configuration, message] of invalid) {
  test(`rejects ${what}, naming the field`, async (t) => {
    const error = await t.throwsAsync(load(configuration));
    t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
    t.regex(errorText(error), message);
  });
}

test('rejects configuration text that is not JSON, saying where', async (t) => {
  const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'hello', rootId: 'hello', configuration: '{"header": "x-a",' }));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
  t.regex(errorText(error), /invalid JSON: line 1, column 18: expected a member name/);
});
