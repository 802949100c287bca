// proxy_http_call: dispatch, the answer delivered to the root context with its maps and body,
// failed calls, unknown clusters, missing required headers, refused capability, wild pointers.
import test from 'ava';
import { ALL, GET, Probe, Status, WILD, pairsBytes } from '../helpers/probe.ts';

const HEADERS: Array<[string, string]> = [
  [':method', 'POST'],
  [':path', '/check'],
  [':authority', 'auth.internal'],
  ['x-api-key', 'k'],
];

function httpCall(p: Probe, cluster: string, headers: Array<[string, string]> = HEADERS, body = '', trailers: Array<[string, string]> = [], timeout = 500) {
  const token = p.zeroed(4);
  const [tp, tl] = trailers.length ? p.put(pairsBytes(trailers)) : [0, 0];
  const status = p.call('proxy_http_call', ...p.put(cluster), ...p.put(pairsBytes(headers)), ...(body ? p.put(body) : [0, 0]), tp, tl, timeout, token);
  return { status, token: p.u32(token) };
}

function getPairs(p: Probe, type: number) {
  const slots = p.slots();
  const status = p.call('proxy_get_header_map_pairs', type, ...slots);
  return { status, ...p.out(slots) };
}

test('an HTTP call is dispatched with its cluster, headers, body and timeout, and a token is written', async (t) => {
  const p = await Probe.load();
  const call = p.inRoot(() => httpCall(p, 'auth', HEADERS, 'payload', [['x-trailer', '1']], 1234));
  t.is(call.status, Status.OK);
  t.true(call.token > 0);
  t.is(p.h.pendingHttpCalls.length, 1);
  const pending = p.h.pendingHttpCalls[0];
  t.is(pending.plugin, 'probe');
  t.is(pending.cluster, 'auth');
  t.deepEqual(pending.headers, Object.fromEntries(HEADERS));
  t.is(pending.body, 'payload');
  t.is(pending.timeoutMs, 1234);
});

test('the answer reaches proxy_on_http_call_response(root, token, headers, body size, trailers) with maps 6, 7 and buffer 4', async (t) => {
  const p = await Probe.load();
  const { token } = p.inRoot(() => httpCall(p, 'auth'));
  const inResponse = p.once('proxy_on_http_call_response', () => {
    const status = p.slots();
    p.call('proxy_get_header_map_value', 6, ...p.put(':status'), ...status);
    const body = p.slots();
    p.call('proxy_get_buffer_bytes', 4, 0, ALL, ...body);
    return { headers: getPairs(p, 6).bytes, trailers: getPairs(p, 7).bytes, status: p.out(status).text, body: p.out(body).text };
  });
  p.h.pendingHttpCalls[0].respond(201, { headers: { 'x-a': 'b' }, body: 'hello', trailers: { 'grpc-status': '0' } });
  t.deepEqual(p.log({ only: ['proxy_on_http_call_response'] }), [`proxy_on_http_call_response(1,${token},2,5,1)`]);
  t.deepEqual(inResponse.result, {
    headers: pairsBytes([[':status', '201'], ['x-a', 'b']]),
    trailers: pairsBytes([['grpc-status', '0']]),
    status: '201',
    body: 'hello',
  });
});

test('a failed call reaches the filter with 0 headers, 0 body bytes and 0 trailers', async (t) => {
  const p = await Probe.load();
  const { token } = p.inRoot(() => httpCall(p, 'auth'));
  const inResponse = p.once('proxy_on_http_call_response', () => {
    const { status, ptr, size } = getPairs(p, 6);
    return { status, ptr, size };
  });
  p.h.pendingHttpCalls[0].fail();
  t.deepEqual(p.log({ only: ['proxy_on_http_call_response'] }), [`proxy_on_http_call_response(1,${token},0,0,0)`]);
  // No pairs is address 0, size 0, as Envoy answers for an empty map.
  t.deepEqual(inResponse.result, { status: Status.OK, ptr: 0, size: 0 });
});

test('two calls get distinct tokens and each answer names its own', async (t) => {
  const p = await Probe.load();
  const [a, b] = p.inRoot(() => [httpCall(p, 'one').token, httpCall(p, 'two').token]);
  t.not(a, b);
  p.h.pendingHttpCalls[1].respond(200);
  p.h.pendingHttpCalls[0].respond(200);
  t.deepEqual(p.log({ only: ['proxy_on_http_call_response'] }), [`proxy_on_http_call_response(1,${b},1,0,0)`, `proxy_on_http_call_response(1,${a},1,0,0)`]);
});

test('a call made from a stream is answered on the root context, which resumes the stream through set_effective_context', async (t) => {
  const p = await Probe.load();
  p.returning('proxy_on_request_headers', 1); // StopIteration until the answer
  const dispatched = p.once('proxy_on_request_headers', () => httpCall(p, 'auth'));
  const s = p.h.stream();
  let settled = false;
  const pending = s.requestHeaders(GET).then((r) => ((settled = true), r));
  await new Promise((r) => setImmediate(r));
  t.false(settled);
  t.is(dispatched.result.status, Status.OK);
  const resumed = p.once('proxy_on_http_call_response', (args) => [args[0], p.call('proxy_set_effective_context', 2), p.call('proxy_continue_stream', 0)]);
  p.h.pendingHttpCalls[0].respond(200);
  t.deepEqual(resumed.result, [1, Status.OK, Status.OK]);
  t.deepEqual(await pending, { kind: 'continue' });
});

test('an unknown cluster is BAD_ARGUMENT, logged, and nothing is dispatched', async (t) => {
  const p = await Probe.load({ clusters: ['known'] });
  const value = p.inRoot(() => [httpCall(p, 'unknown'), httpCall(p, 'known').status]);
  t.deepEqual(value, [{ status: Status.BAD_ARGUMENT, token: 0 }, Status.OK]);
  t.is(p.h.httpCalls.length, 1);
  t.true(p.logLines().includes('warn: proxy_http_call to unknown cluster "unknown": define it under clusters in the config'));
});

test('a call without :method, :path or :authority is BAD_ARGUMENT', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [':method', ':path', ':authority'].map((missing) => httpCall(p, 'auth', HEADERS.filter(([k]) => k !== missing)).status));
  t.deepEqual(value, [Status.BAD_ARGUMENT, Status.BAD_ARGUMENT, Status.BAD_ARGUMENT]);
  t.is(p.h.httpCalls.length, 0);
});

test('malformed header or trailer pairs are BAD_ARGUMENT', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const bad = Buffer.from(pairsBytes(HEADERS));
    bad.writeUInt32LE(99, 0);
    const [c, cl] = p.put('auth');
    const [h, hl] = p.put(pairsBytes(HEADERS));
    return [
      p.call('proxy_http_call', c, cl, ...p.put(bad), 0, 0, 0, 0, 100, p.zeroed(4)),
      p.call('proxy_http_call', c, cl, h, hl, 0, 0, ...p.put(Buffer.of(1, 0, 0, 0)), 100, p.zeroed(4)),
    ];
  });
  t.deepEqual(value, [Status.BAD_ARGUMENT, Status.BAD_ARGUMENT]);
  t.is(p.h.httpCalls.length, 0);
});

test('wild pointers for the cluster, headers, body, trailers or token are INVALID_MEMORY_ACCESS', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const [c, cl] = p.put('auth');
    const [h, hl] = p.put(pairsBytes(HEADERS));
    const token = p.zeroed(4);
    return [
      p.call('proxy_http_call', WILD, 4, h, hl, 0, 0, 0, 0, 100, token),
      p.call('proxy_http_call', c, cl, WILD, hl, 0, 0, 0, 0, 100, token),
      p.call('proxy_http_call', c, cl, h, ALL, 0, 0, 0, 0, 100, token),
      p.call('proxy_http_call', c, cl, h, hl, WILD, 4, 0, 0, 100, token),
      p.call('proxy_http_call', c, cl, h, hl, 0, 0, WILD, 8, 100, token),
      p.call('proxy_http_call', c, cl, h, hl, 0, 0, 0, 0, 100, WILD),
    ];
  });
  t.deepEqual(value, Array(6).fill(Status.INVALID_MEMORY_ACCESS));
  t.is(p.h.httpCalls.length, 0);
});

test('with httpCalls and sharedData refused, those calls are UNIMPLEMENTED and each function is logged once', async (t) => {
  const p = await Probe.load({ capabilities: { httpCalls: false, sharedData: false } });
  const value = p.inRoot(() => [
    httpCall(p, 'auth'),
    httpCall(p, 'auth'),
    p.call('proxy_set_shared_data', ...p.put('k'), ...p.put('v'), 0),
    p.call('proxy_get_shared_data', ...p.put('k'), ...p.slots(), p.zeroed(4)),
    p.call('proxy_get_shared_data', ...p.put('k'), ...p.slots(), p.zeroed(4)),
  ]);
  t.deepEqual(value, [{ status: Status.UNIMPLEMENTED, token: 0 }, { status: Status.UNIMPLEMENTED, token: 0 }, Status.UNIMPLEMENTED, Status.UNIMPLEMENTED, Status.UNIMPLEMENTED]);
  t.deepEqual(p.logLines(3), [
    'warn: proxy_http_call is not allowed for this filter (capabilities in its plugin config); the call returned UNIMPLEMENTED',
    'warn: proxy_set_shared_data is not allowed for this filter (capabilities in its plugin config); the call returned UNIMPLEMENTED',
    'warn: proxy_get_shared_data is not allowed for this filter (capabilities in its plugin config); the call returned UNIMPLEMENTED',
  ]);
  t.is(p.h.httpCalls.length, 0);
  // Other capabilities stay: shared queues still work.
  t.is(
    p.inRoot(() => p.call('proxy_register_shared_queue', ...p.put('q'), p.zeroed(4))),
    Status.OK,
  );
});

test('with httpCalls limited to a list, other clusters are BAD_ARGUMENT', async (t) => {
  const p = await Probe.load({ capabilities: { httpCalls: ['auth'] } });
  const value = p.inRoot(() => [httpCall(p, 'auth').status, httpCall(p, 'billing').status]);
  t.deepEqual(value, [Status.OK, Status.BAD_ARGUMENT]);
  t.is(p.h.httpCalls.length, 1);
});

test('the call-response maps and body exist only during proxy_on_http_call_response', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [getPairs(p, 6).status, getPairs(p, 7).status]);
  t.deepEqual(value, [Status.BAD_ARGUMENT, Status.BAD_ARGUMENT]);
});
