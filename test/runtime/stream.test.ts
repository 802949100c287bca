// A stream through the filter chain: pause at headers and resume after an HTTP call, local
// replies, body buffering and streaming, trailers, body limits, phase-order errors.
import test from 'ava';
import { FilterHarness } from '../../sdk/harness/index.ts';
import { fixture } from '../helpers/fixtures.ts';

const GET = { ':method': 'GET', ':path': '/x', ':authority': 'example', ':scheme': 'http' };

test('a filter pauses the request at its headers until its HTTP call is answered 200', async (t) => {
  const h = await FilterHarness.load(fixture('stream/auth-call'), { name: 'auth' });
  const s = h.stream();
  let settled = false;
  const pending = s.requestHeaders(GET, { endOfStream: true }).then((r) => ((settled = true), r));
  await new Promise((r) => setImmediate(r));
  t.false(settled);
  t.is(h.pendingHttpCalls.length, 1);
  const call = h.pendingHttpCalls[0];
  t.is(call.cluster, 'auth');
  t.deepEqual(call.headers, { ':method': 'GET', ':path': '/check', ':authority': 'auth' });
  t.is(call.timeoutMs, 1000);
  call.respond(200);
  t.deepEqual(await pending, { kind: 'continue' });
  await s.end();
});

test('a filter answers 403 locally after its HTTP call says no', async (t) => {
  const h = await FilterHarness.load(fixture('stream/auth-call'), { name: 'auth' });
  const s = h.stream();
  const pending = s.requestHeaders(GET, { endOfStream: true });
  h.pendingHttpCalls[0].respond(401, { body: 'no' });
  const r = await pending;
  t.is(r.kind, 'local-reply');
  t.is(r.status, 403);
  t.is(r.body, 'denied by auth');
  t.is(r.details, 'auth_denied');
  t.is(r.filter, 'auth');
  t.is(r.headers?.[':status'], '403');
});

test('a failed HTTP call reaches the filter with zero headers', async (t) => {
  const h = await FilterHarness.load(fixture('stream/auth-call'), { name: 'auth' });
  const s = h.stream();
  const pending = s.requestHeaders(GET, { endOfStream: true });
  h.pendingHttpCalls[0].fail();
  const r = await pending;
  t.is(r.status, 503);
  t.is(r.body, 'auth unavailable');
});

test('an HTTP call to an unknown cluster is refused with BAD_ARGUMENT and logged', async (t) => {
  const h = await FilterHarness.load(fixture('stream/auth-call'), { name: 'auth', clusters: ['other'] });
  const r = await h.stream().requestHeaders(GET, { endOfStream: true });
  t.deepEqual(r, { kind: 'continue' });
  t.is(h.httpCalls.length, 0);
  t.true(h.logLines().includes('warn: proxy_http_call to unknown cluster "auth": define it under clusters in the config'));
});

test('a filter that buffers the body sees it whole at the end and rewrites it', async (t) => {
  const h = await FilterHarness.load(fixture('stream/brackets'));
  const s = h.stream();
  t.deepEqual(await s.requestHeaders({ ...GET, ':method': 'POST' }), { kind: 'continue' });
  t.deepEqual(await s.requestBody('ab', { endOfStream: false }), { kind: 'continue', data: '', dataBytes: new Uint8Array(0) });
  const last = await s.requestBody('cd', { endOfStream: true });
  t.is(last.data, '[abcd]');
  t.deepEqual(await s.responseHeaders({ ':status': '200' }), { kind: 'continue' });
  t.is((await s.responseBody('ok', { endOfStream: true })).data, '[ok]');
});

test('a streaming filter sees and rewrites each chunk as it passes', async (t) => {
  const h = await FilterHarness.load(fixture('stream/brackets'));
  const s = h.stream();
  await s.requestHeaders({ ...GET, 'x-no-buffer': '1' });
  t.is((await s.requestBody('ab', { endOfStream: false })).data, 'ab!');
  t.is((await s.requestBody('cd', { endOfStream: true })).data, 'cd!');
});

test('two buffering filters in a chain each wrap the body once', async (t) => {
  const h = await FilterHarness.chain([
    { module: fixture('stream/brackets'), name: 'outer' },
    { module: fixture('stream/brackets'), name: 'inner' },
  ]);
  const s = h.stream();
  await s.requestHeaders(GET);
  t.is((await s.requestBody('x', { endOfStream: false })).data, '');
  t.is((await s.requestBody('y', { endOfStream: true })).data, '[[xy]]');
});

test('trailers release the body a filter was holding', async (t) => {
  const h = await FilterHarness.load(fixture('stream/brackets'));
  const s = h.stream();
  await s.requestHeaders(GET);
  t.is((await s.requestBody('held', { endOfStream: false })).data, '');
  const r = await s.requestTrailers({ 'x-checksum': '1' });
  t.is(r.data, 'held');
  t.is(s.request.trailer('x-checksum'), '1');
});

test('a request body buffered past the limit is answered 413 naming the filter and the limit', async (t) => {
  const h = await FilterHarness.load(fixture('stream/brackets'), { name: 'brackets', limits: { bodyBytes: 4 } });
  const s = h.stream();
  await s.requestHeaders(GET);
  const r = await s.requestBody('abcdef', { endOfStream: false });
  t.is(r.kind, 'local-reply');
  t.is(r.status, 413);
  // The local reply passes through the filters' response callbacks, as in Envoy: brackets wraps it too.
  t.is(r.body, '[sluice: filter "brackets" buffered more than its body limit of 4 bytes (limits.bodyBytes)\n]');
});

test('a response body buffered past the limit is answered 500', async (t) => {
  const h = await FilterHarness.load(fixture('stream/brackets'), { limits: { bodyBytes: 2 } });
  const s = h.stream();
  await s.requestHeaders(GET, { endOfStream: true });
  await s.responseHeaders({ ':status': '200' });
  const r = await s.responseBody('abc', { endOfStream: false });
  t.is(r.status, 500);
});

test('phases driven out of order throw SLUICE_ERR_STREAM_STATE', async (t) => {
  const h = await FilterHarness.load(fixture('stream/brackets'));
  const s = h.stream();
  t.throws(() => s.stream.requestBody(new Uint8Array(1), true), { code: 'SLUICE_ERR_STREAM_STATE', message: 'requestBody was called before requestHeaders' } as never);
  await s.requestHeaders(GET, { endOfStream: true });
  t.throws(() => s.stream.requestHeaders(s.request.headers!, true), { code: 'SLUICE_ERR_STREAM_STATE' } as never);
  await s.end();
  t.throws(() => s.stream.responseHeaders(s.request.headers!, true), { message: 'responseHeaders was called after the stream ended' });
});
