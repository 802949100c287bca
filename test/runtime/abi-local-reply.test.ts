// proxy_send_local_response, proxy_continue_stream / continue_request / continue_response,
// proxy_close_stream and proxy_clear_route_cache: what the stream does, and invalid arguments.
import test from 'ava';
import { ALL, GET, Probe, Status, WILD, pairsBytes, settle } from '../helpers/probe.ts';

function localReply(p: Probe, status: number, details: string, body: string, headers: Array<[string, string]>, grpc = -1): number {
  const [d, dl] = details ? p.put(details) : [0, 0];
  const [b, bl] = body ? p.put(body) : [0, 0];
  const [h, hl] = headers.length ? p.put(pairsBytes(headers)) : [0, 0];
  return p.call('proxy_send_local_response', status, d, dl, b, bl, h, hl, grpc);
}

test('a local reply from request headers answers with its status, details, body and extra headers', async (t) => {
  const p = await Probe.load();
  const sent = p.once('proxy_on_request_headers', () => localReply(p, 403, 'denied_by_probe', 'go away', [['x-reason', 'policy'], ['content-type', 'text/plain']]));
  const r = await p.h.stream().requestHeaders(GET);
  t.is(sent.result, Status.OK);
  t.deepEqual(r, {
    kind: 'local-reply',
    status: 403,
    headers: { ':status': '403', 'x-reason': 'policy', 'content-type': 'text/plain' },
    body: 'go away',
    bodyBytes: r.bodyBytes,
    details: 'denied_by_probe',
    filter: 'probe',
  });
});

const GRPC = { ':method': 'POST', ':path': '/pkg.Svc/Call', ':authority': 'example.test', ':scheme': 'http', 'content-type': 'application/grpc+proto', te: 'trailers' };

test('on a gRPC request, a gRPC status 0..16 becomes a grpc-status header; -1 adds none', async (t) => {
  const p = await Probe.load();
  p.once('proxy_on_request_headers', () => localReply(p, 200, '', '', [['content-type', 'application/grpc']], 7));
  const r = await p.h.stream().requestHeaders(GRPC);
  t.deepEqual(r.headers, { ':status': '200', 'content-type': 'application/grpc', 'grpc-status': '7' });
  const q = await Probe.load();
  q.once('proxy_on_request_headers', () => localReply(q, 403, '', '', [], -1));
  t.deepEqual((await q.h.stream().requestHeaders(GRPC)).headers, { ':status': '403' });
});

test('on a plain HTTP request, a gRPC status passed to proxy_send_local_response adds no grpc-status (Envoy: gRPC requests only)', async (t) => {
  const p = await Probe.load();
  p.once('proxy_on_request_headers', () => localReply(p, 403, 'denied', 'no', [['content-type', 'text/plain']], 7));
  const r = await p.h.stream().requestHeaders({ ...GET, 'content-type': 'application/json' });
  t.deepEqual(r.headers, { ':status': '403', 'content-type': 'text/plain' });
});

test('a local reply from the request body replaces the upstream answer', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders({ ...GET, ':method': 'POST' });
  p.once('proxy_on_request_body', () => localReply(p, 413, 'too_big', 'no', []));
  const r = await s.requestBody('xxxx', { endOfStream: true });
  t.like(r, { kind: 'local-reply', status: 413, body: 'no', details: 'too_big' });
});

test('a local reply from response headers replaces the upstream response', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders(GET, { endOfStream: true });
  p.once('proxy_on_response_headers', () => localReply(p, 502, 'bad_upstream', 'upstream said no', []));
  const r = await s.responseHeaders({ ':status': '500' });
  t.like(r, { kind: 'local-reply', status: 502, body: 'upstream said no' });
});

test('status codes outside 200..599 are BAD_ARGUMENT and the request goes on', async (t) => {
  const p = await Probe.load();
  const sent = p.once('proxy_on_request_headers', () => [100, 199, 600, -1].map((code) => localReply(p, code, '', 'x', [])));
  const r = await p.h.stream().requestHeaders(GET);
  t.deepEqual(sent.result, Array(4).fill(Status.BAD_ARGUMENT));
  t.deepEqual(r, { kind: 'continue' });
});

test('wild details, body or header pointers are INVALID_MEMORY_ACCESS; malformed headers BAD_ARGUMENT', async (t) => {
  const p = await Probe.load();
  const sent = p.once('proxy_on_request_headers', () => {
    const bad = Buffer.from(pairsBytes([['a', 'b']]));
    bad.writeUInt32LE(50, 0);
    return [
      p.call('proxy_send_local_response', 403, WILD, 4, 0, 0, 0, 0, -1),
      p.call('proxy_send_local_response', 403, 0, 0, WILD, 4, 0, 0, -1),
      p.call('proxy_send_local_response', 403, 0, 0, 16, ALL, 0, 0, -1),
      p.call('proxy_send_local_response', 403, 0, 0, 0, 0, WILD, 12, -1),
      p.call('proxy_send_local_response', 403, 0, 0, 0, 0, ...p.put(bad), -1),
    ];
  });
  const r = await p.h.stream().requestHeaders(GET);
  t.deepEqual(sent.result, [...Array(4).fill(Status.INVALID_MEMORY_ACCESS), Status.BAD_ARGUMENT]);
  t.deepEqual(r, { kind: 'continue' });
});

test('outside a stream (root context) local replies, continue and close are NOT_FOUND', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [
    localReply(p, 403, '', '', []),
    p.call('proxy_continue_stream', 0),
    p.call('proxy_continue_request'),
    p.call('proxy_continue_response'),
    p.call('proxy_close_stream', 0),
  ]);
  t.deepEqual(value, Array(5).fill(Status.NOT_FOUND));
});

test('continue_stream and close_stream take 0 (request) and 1 (response); other stream types are BAD_ARGUMENT', async (t) => {
  const p = await Probe.load();
  const value = p.once('proxy_on_request_headers', () => [2, 3, 9, -1].flatMap((type) => [p.call('proxy_continue_stream', type), p.call('proxy_close_stream', type)]));
  const r = await p.h.stream().requestHeaders(GET);
  t.deepEqual(value.result, Array(8).fill(Status.BAD_ARGUMENT));
  t.deepEqual(r, { kind: 'continue' });
});

test('proxy_close_stream(0) resets the stream naming the filter', async (t) => {
  const p = await Probe.load();
  const closed = p.once('proxy_on_request_headers', () => p.call('proxy_close_stream', 0));
  const r = await p.h.stream().requestHeaders(GET);
  t.is(closed.result, Status.OK);
  t.deepEqual(r, { kind: 'reset', filter: 'probe' });
});

test('a request paused at its headers resumes when a tick continues it with proxy_continue_request', async (t) => {
  const p = await Probe.load();
  p.returning('proxy_on_request_headers', 1); // StopIteration
  p.once('proxy_on_request_headers', () => p.call('proxy_set_tick_period_milliseconds', 10));
  const s = p.h.stream();
  let settled = false;
  const pending = s.requestHeaders(GET).then((r) => ((settled = true), r));
  await settle();
  t.false(settled);
  const resumed = p.once('proxy_on_tick', () => [p.call('proxy_set_effective_context', 2), p.call('proxy_continue_request'), p.call('proxy_set_tick_period_milliseconds', 0)]);
  await p.h.advanceTime(10);
  t.deepEqual(resumed.result, [Status.OK, Status.OK, Status.OK]);
  t.deepEqual(await pending, { kind: 'continue' });
});

test('a response paused at its headers resumes with proxy_continue_response from another callback', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders(GET, { endOfStream: true });
  p.returning('proxy_on_response_headers', 1);
  let settled = false;
  const pending = s.responseHeaders({ ':status': '200' }).then((r) => ((settled = true), r));
  await settle();
  t.false(settled);
  const resumed = p.inRoot(() => [p.call('proxy_set_effective_context', 2), p.call('proxy_continue_response')]);
  t.deepEqual(resumed, [Status.OK, Status.OK]);
  t.deepEqual(await pending, { kind: 'continue' });
});

test('a local reply sent from another callback answers a paused request', async (t) => {
  const p = await Probe.load();
  p.returning('proxy_on_request_headers', 1);
  const s = p.h.stream();
  const pending = s.requestHeaders(GET);
  await settle();
  p.inRoot(() => [p.call('proxy_set_effective_context', 2), localReply(p, 429, 'rate_limited', 'slow down', [])]);
  t.like(await pending, { kind: 'local-reply', status: 429, body: 'slow down', details: 'rate_limited' });
});

test('proxy_clear_route_cache is OK in a stream and in the root context', async (t) => {
  const p = await Probe.load();
  const inHeaders = p.once('proxy_on_request_headers', () => p.call('proxy_clear_route_cache'));
  await p.h.stream().requestHeaders(GET);
  t.is(inHeaders.result, Status.OK);
  t.is(
    p.inRoot(() => p.call('proxy_clear_route_cache')),
    Status.OK,
  );
});
