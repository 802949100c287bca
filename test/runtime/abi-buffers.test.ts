// Buffers: request/response bodies (read, prepend, append, replace, -1 sizes), configuration
// buffers, foreign-function arguments, HTTP-call bodies; buffers not available in the current
// callback, unknown buffer types, wild pointers.
import test from 'ava';
import { ALL, GET, Probe, Status, WILD, pairsBytes } from '../helpers/probe.ts';

function getBytes(p: Probe, type: number, start: number, max: number) {
  const slots = p.slots();
  const status = p.call('proxy_get_buffer_bytes', type, start, max, ...slots);
  return { status, ...p.out(slots) };
}

function bufferStatus(p: Probe, type: number) {
  const len = p.zeroed(4);
  const flags = p.zeroed(4);
  const status = p.call('proxy_get_buffer_status', type, len, flags);
  return { status, length: p.u32(len), flags: p.u32(flags) };
}

/** Runs `fn` in proxy_on_request_body for a body `body`; returns its value and the data passed on. */
async function inRequestBody<T>(body: string, fn: (p: Probe) => T, endOfStream = true) {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders({ ...GET, ':method': 'POST' });
  const captured = p.once('proxy_on_request_body', () => fn(p));
  const outcome = await s.requestBody(body, { endOfStream });
  return { p, s, outcome, value: captured.result };
}

test('proxy_get_buffer_status reports the body size and end_of_stream', async (t) => {
  const last = await inRequestBody('hello', (p) => bufferStatus(p, 0));
  t.deepEqual(last.value, { status: Status.OK, length: 5, flags: 1 });
  const more = await inRequestBody('hey', (p) => bufferStatus(p, 0), false);
  t.deepEqual(more.value, { status: Status.OK, length: 3, flags: 0 });
});

test('proxy_get_buffer_bytes reads whole (-1), a window, past the end (clamped), and at the end (empty)', async (t) => {
  const { value } = await inRequestBody('hello world', (p) => [
    getBytes(p, 0, 0, ALL),
    getBytes(p, 0, 6, 3),
    getBytes(p, 0, 6, 100),
    getBytes(p, 0, 11, ALL),
    getBytes(p, 0, 0, 0),
  ]);
  t.like(value[0], { status: Status.OK, text: 'hello world', size: 11 });
  t.like(value[1], { status: Status.OK, text: 'wor', size: 3 });
  t.like(value[2], { status: Status.OK, text: 'world', size: 5 });
  t.like(value[3], { status: Status.OK, ptr: 0, size: 0 });
  t.like(value[4], { status: Status.OK, ptr: 0, size: 0 });
});

test('an empty read is OK and writes address 0, size 0 over whatever the slots held, without allocating (cpp-host #303)', async (t) => {
  const { value } = await inRequestBody('abc', (p) => {
    let allocations = 0;
    const read = (start: number, max: number) => {
      const slots = p.slots();
      p.vm().mem.putU32(slots[0], 0xdeadbeef);
      p.vm().mem.putU32(slots[1], 0xfeedface);
      const before = p.allocCount;
      const status = p.call('proxy_get_buffer_bytes', 0, start, max, ...slots);
      allocations += p.allocCount - before;
      return [status, p.u32(slots[0]), p.u32(slots[1])];
    };
    return { atEnd: read(3, ALL), none: read(0, 0), pastEnd: read(4, 1), allocations };
  });
  t.deepEqual(value, { atEnd: [Status.OK, 0, 0], none: [Status.OK, 0, 0], pastEnd: [Status.OK, 0, 0], allocations: 0 });
});

test('an empty read into slots outside memory is INVALID_MEMORY_ACCESS, as cpp-host', async (t) => {
  const { value } = await inRequestBody('abc', (p) => {
    const [ptrSlot] = p.slots();
    return [p.call('proxy_get_buffer_bytes', 0, 3, 10, WILD, WILD), p.call('proxy_get_buffer_bytes', 0, 0, 0, ptrSlot, WILD)];
  });
  t.deepEqual(value, [Status.INVALID_MEMORY_ACCESS, Status.INVALID_MEMORY_ACCESS]);
});

test('proxy_get_buffer_bytes starting past the end is OK and empty, as Envoy', async (t) => {
  const { value } = await inRequestBody('abc', (p) => [getBytes(p, 0, 4, 1), getBytes(p, 0, ALL, ALL)].map((r) => [r.status, r.ptr, r.size]));
  t.deepEqual(value, [
    [Status.OK, 0, 0],
    [Status.OK, 0, 0],
  ]);
});

test('proxy_set_buffer_bytes at (0, 0) prepends', async (t) => {
  const { value, outcome } = await inRequestBody('body', (p) => p.call('proxy_set_buffer_bytes', 0, 0, 0, ...p.put('pre-')));
  t.is(value, Status.OK);
  t.is(outcome.data, 'pre-body');
});

test('proxy_set_buffer_bytes at a start ≥ the length, or -1, appends', async (t) => {
  const { value, outcome } = await inRequestBody('body', (p) => [
    p.call('proxy_set_buffer_bytes', 0, 4, 0, ...p.put('-a')),
    p.call('proxy_set_buffer_bytes', 0, ALL, 0, ...p.put('-b')),
    p.call('proxy_set_buffer_bytes', 0, 1000, ALL, ...p.put('-c')),
  ]);
  t.deepEqual(value, [Status.OK, Status.OK, Status.OK]);
  t.is(outcome.data, 'body-a-b-c');
});

test('proxy_set_buffer_bytes at 0 with a size ≥ the length, or -1, replaces the whole body', async (t) => {
  const a = await inRequestBody('body', (p) => p.call('proxy_set_buffer_bytes', 0, 0, ALL, ...p.put('new')));
  t.is(a.value, Status.OK);
  t.is(a.outcome.data, 'new');
  const b = await inRequestBody('body', (p) => p.call('proxy_set_buffer_bytes', 0, 0, 4, ...p.put('')));
  t.is(b.value, Status.OK);
  t.is(b.outcome.data, '');
});

test('proxy_set_buffer_bytes at 0 with a smaller size replaces that prefix', async (t) => {
  const { value, outcome } = await inRequestBody('hello world', (p) => p.call('proxy_set_buffer_bytes', 0, 0, 5, ...p.put('HOWDY')));
  t.is(value, Status.OK);
  t.is(outcome.data, 'HOWDY world');
});

test('proxy_set_buffer_bytes inside the body replaces [start, start+size) (Sluice also splices; Envoy answers BAD_ARGUMENT)', async (t) => {
  const { value, outcome } = await inRequestBody('hello world', (p) => [
    p.call('proxy_set_buffer_bytes', 0, 5, 1, ...p.put('_')),
    p.call('proxy_set_buffer_bytes', 0, 6, 0, ...p.put('big ')),
  ]);
  t.deepEqual(value, [Status.OK, Status.OK]);
  t.is(outcome.data, 'hello_big world');
});

test('writes are seen by later reads in the same callback', async (t) => {
  const { value } = await inRequestBody('ab', (p) => {
    p.call('proxy_set_buffer_bytes', 0, 0, 0, ...p.put('<'));
    p.call('proxy_set_buffer_bytes', 0, ALL, 0, ...p.put('>'));
    return [getBytes(p, 0, 0, ALL).text, bufferStatus(p, 0).length];
  });
  t.deepEqual(value, ['<ab>', 4]);
});

test('a body held with StopIterationAndBuffer grows: the next call sees the total size and all the bytes', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders({ ...GET, ':method': 'POST' });
  p.returning('proxy_on_request_body', 1); // StopIterationAndBuffer
  const first = p.once('proxy_on_request_body', () => getBytes(p, 0, 0, ALL).text);
  const held = await s.requestBody('ab', { endOfStream: false });
  p.returning('proxy_on_request_body', 0);
  const second = p.once('proxy_on_request_body', () => [getBytes(p, 0, 0, ALL).text, bufferStatus(p, 0)]);
  const last = await s.requestBody('cd', { endOfStream: true });
  t.is(first.result, 'ab');
  t.is(held.data, '');
  t.deepEqual(second.result, ['abcd', { status: Status.OK, length: 4, flags: 1 }]);
  t.is(last.data, 'abcd');
  t.deepEqual(p.log({ only: ['proxy_on_request_body'] }), ['proxy_on_request_body(2,2,0)', 'proxy_on_request_body(2,4,1)']);
});

test('the response body (type 1) is read and written in proxy_on_response_body', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders(GET, { endOfStream: true });
  await s.responseHeaders({ ':status': '200' });
  const inBody = p.once('proxy_on_response_body', () => {
    const read = getBytes(p, 1, 0, ALL).text;
    p.call('proxy_set_buffer_bytes', 1, 0, ALL, ...p.put(read.toUpperCase()));
    return [read, getBytes(p, 0, 0, ALL).status];
  });
  const r = await s.responseBody('payload', { endOfStream: true });
  t.deepEqual(inBody.result, ['payload', Status.NOT_FOUND]);
  t.is(r.data, 'PAYLOAD');
});

test('bodies are NOT_FOUND outside their body callbacks', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  const inHeaders = p.once('proxy_on_request_headers', () => [0, 1].map((type) => [getBytes(p, type, 0, ALL).status, bufferStatus(p, type).status, p.call('proxy_set_buffer_bytes', type, 0, 0, ...p.put('x'))]));
  await s.requestHeaders(GET);
  const inRoot = p.inRoot(() => [0, 1].map((type) => getBytes(p, type, 0, ALL).status));
  t.deepEqual(inHeaders.result, Array(2).fill([Status.NOT_FOUND, Status.NOT_FOUND, Status.NOT_FOUND]));
  t.deepEqual(inRoot, [Status.NOT_FOUND, Status.NOT_FOUND]);
});

test('known buffer types that an HTTP filter never has (2, 3, 5) and ones not available now (4, 8) are NOT_FOUND', async (t) => {
  const { value } = await inRequestBody('x', (p) => [2, 3, 4, 5, 8].map((type) => [getBytes(p, type, 0, ALL).status, bufferStatus(p, type).status]));
  t.deepEqual(value, Array(5).fill([Status.NOT_FOUND, Status.NOT_FOUND]));
});

test('unknown buffer types (9, -1) are BAD_ARGUMENT', async (t) => {
  const { value } = await inRequestBody('x', (p) =>
    [9, -1].map((type) => [getBytes(p, type, 0, ALL).status, bufferStatus(p, type).status, p.call('proxy_set_buffer_bytes', type, 0, 0, ...p.put('x'))]),
  );
  t.deepEqual(value, Array(2).fill([Status.BAD_ARGUMENT, Status.BAD_ARGUMENT, Status.BAD_ARGUMENT]));
});

test('the plugin configuration (7) and VM configuration (6) are readable, read-only buffers', async (t) => {
  const p = await Probe.load({ configuration: { greeting: 'hi' }, vmConfiguration: 'vm-config' });
  const value = p.inRoot(() => [
    getBytes(p, 7, 0, ALL).text,
    getBytes(p, 6, 0, ALL).text,
    getBytes(p, 7, 1, 8).text,
    bufferStatus(p, 7),
    p.call('proxy_set_buffer_bytes', 7, 0, 0, ...p.put('x')),
    p.call('proxy_set_buffer_bytes', 6, ALL, 0, ...p.put('x')),
  ]);
  t.deepEqual(value, ['{"greeting":"hi"}', 'vm-config', '"greetin', { status: Status.OK, length: 17, flags: 0 }, Status.BAD_ARGUMENT, Status.BAD_ARGUMENT]);
});

test('an empty configuration reads as OK with address 0 and size 0 written back', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const slots = p.slots();
    p.vm().mem.putU32(slots[0], 77);
    p.vm().mem.putU32(slots[1], 99);
    return [p.call('proxy_get_buffer_bytes', 7, 0, ALL, ...slots), p.u32(slots[0]), p.u32(slots[1]), bufferStatus(p, 7)];
  });
  t.deepEqual(value, [Status.OK, 0, 0, { status: Status.OK, length: 0, flags: 0 }]);
});

test('proxy_get_configuration returns the plugin configuration', async (t) => {
  const p = await Probe.load({ configuration: 'plain text' });
  const value = p.inRoot(() => {
    const slots = p.slots();
    return [p.call('proxy_get_configuration', ...slots), p.out(slots).text, p.call('proxy_get_configuration', WILD, slots[1])];
  });
  t.deepEqual(value, [Status.OK, 'plain text', Status.INVALID_MEMORY_ACCESS]);
});

test('the foreign function arguments (8) are readable in proxy_on_foreign_function', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [getBytes(p, 8, 0, ALL).text, bufferStatus(p, 8)], 'call-args');
  t.deepEqual(value, ['call-args', { status: Status.OK, length: 9, flags: 0 }]);
});

test('the HTTP call response body (4) is readable, read-only, in proxy_on_http_call_response', async (t) => {
  const p = await Probe.load();
  p.inRoot(() => {
    const headers = pairsBytes([[':method', 'GET'], [':path', '/'], [':authority', 'a']]);
    t.is(p.call('proxy_http_call', ...p.put('c'), ...p.put(headers), 0, 0, 0, 0, 100, p.zeroed(4)), Status.OK);
  });
  const inResponse = p.once('proxy_on_http_call_response', () => [
    getBytes(p, 4, 0, ALL).text,
    getBytes(p, 4, 2, 2).text,
    bufferStatus(p, 4),
    p.call('proxy_set_buffer_bytes', 4, 0, 0, ...p.put('x')),
  ]);
  p.h.pendingHttpCalls[0].respond(200, { body: 'response body' });
  t.deepEqual(inResponse.result, ['response body', 'sp', { status: Status.OK, length: 13, flags: 0 }, Status.BAD_ARGUMENT]);
  // Outside the callback the answer is gone.
  t.is(p.inRoot(() => getBytes(p, 4, 0, ALL).status), Status.NOT_FOUND);
});

test('wild pointers are INVALID_MEMORY_ACCESS for buffer reads, writes and status', async (t) => {
  const { value, outcome } = await inRequestBody('body', (p) => {
    const slots = p.slots();
    return [
      p.call('proxy_get_buffer_bytes', 0, 0, ALL, WILD, slots[1]),
      p.call('proxy_get_buffer_bytes', 0, 0, ALL, slots[0], WILD),
      p.call('proxy_set_buffer_bytes', 0, 0, 0, WILD, 4),
      p.call('proxy_set_buffer_bytes', 0, 0, 0, slots[0], ALL),
      p.call('proxy_get_buffer_status', 0, WILD, p.zeroed(4)),
      p.call('proxy_get_buffer_status', 0, p.zeroed(4), WILD),
    ];
  });
  t.deepEqual(value, Array(6).fill(Status.INVALID_MEMORY_ACCESS));
  t.is(outcome.data, 'body');
});
