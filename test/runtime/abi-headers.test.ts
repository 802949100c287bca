// Header and trailer maps: get/add/replace/remove one value, get/set all pairs, the serialized
// size; map types 0..7 where they exist and where they do not, unknown types, wild pointers and a
// failing allocator.
import test from 'ava';
import { ALL, GET, Probe, Status, WILD, pairsBytes } from '../helpers/probe.ts';

const REQUEST: Array<[string, string]> = [
  [':method', 'GET'],
  [':path', '/p?q=1'],
  [':authority', 'example.test'],
  [':scheme', 'http'],
  ['x-one', '1'],
  ['x-dup', 'a'],
  ['x-dup', 'b'],
  ['x-empty', ''],
];

/** Opens a stream and runs `fn` inside proxy_on_request_headers. */
async function inRequestHeaders<T>(fn: (p: Probe) => T, headers: Array<[string, string]> = REQUEST) {
  const p = await Probe.load();
  const captured = p.once('proxy_on_request_headers', () => fn(p));
  const s = p.h.stream();
  const outcome = await s.requestHeaders(headers);
  return { p, s, outcome, value: captured.result };
}

function getValue(p: Probe, type: number, key: string) {
  const slots = p.slots();
  const status = p.call('proxy_get_header_map_value', type, ...p.put(key), ...slots);
  return { status, ...p.out(slots) };
}

function getPairs(p: Probe, type: number) {
  const slots = p.slots();
  const status = p.call('proxy_get_header_map_pairs', type, ...slots);
  return { status, ...p.out(slots) };
}

test('proxy_get_header_map_value returns the first value of a key, case-insensitively, in fresh guest memory', async (t) => {
  const { value } = await inRequestHeaders((p) => [getValue(p, 0, ':path'), getValue(p, 0, 'X-DUP'), getValue(p, 0, 'x-one')]);
  t.like(value[0], { status: Status.OK, size: 6, text: '/p?q=1' });
  t.like(value[1], { status: Status.OK, size: 1, text: 'a' });
  t.like(value[2], { status: Status.OK, size: 1, text: '1' });
  t.true(value[0].ptr >= 65536, 'the value was copied into memory the probe allocated');
});

test('proxy_get_header_map_value of a missing key is NOT_FOUND with address 0 and size 0 written', async (t) => {
  const { value } = await inRequestHeaders((p) => getValue(p, 0, 'x-missing'));
  t.deepEqual({ status: value.status, ptr: value.ptr, size: value.size }, { status: Status.NOT_FOUND, ptr: 0, size: 0 });
});

test('proxy_get_header_map_value of an empty value is OK with pointer 0 and size 0, without allocating', async (t) => {
  const { value } = await inRequestHeaders((p) => {
    const slots = p.slots();
    const [k, kl] = p.put('x-empty');
    const before = p.allocCount;
    const status = p.call('proxy_get_header_map_value', 0, k, kl, ...slots);
    return { status, allocations: p.allocCount - before, ...p.out(slots) };
  });
  t.like(value, { status: Status.OK, ptr: 0, size: 0, allocations: 0 });
});

test('proxy_get_header_map_pairs returns the whole map in the pairs format, in order, duplicates included', async (t) => {
  const { value } = await inRequestHeaders((p) => getPairs(p, 0));
  t.is(value.status, Status.OK);
  t.deepEqual(value.bytes, pairsBytes(REQUEST));
});

test('proxy_get_header_map_size is the size of the serialized pairs', async (t) => {
  const { value } = await inRequestHeaders((p) => {
    const ret = p.zeroed(4);
    return [p.call('proxy_get_header_map_size', 0, ret), p.u32(ret)];
  });
  t.deepEqual(value, [Status.OK, pairsBytes(REQUEST).byteLength]);
});

test('proxy_add_header_map_value appends a value (lower-casing the key), keeping existing ones', async (t) => {
  const { s, value } = await inRequestHeaders((p) => [
    p.call('proxy_add_header_map_value', 0, ...p.put('X-Dup'), ...p.put('c')),
    p.call('proxy_add_header_map_value', 0, ...p.put('x-new'), ...p.put('')),
  ]);
  t.deepEqual(value, [Status.OK, Status.OK]);
  t.deepEqual(s.request.headers!.getAll('x-dup'), ['a', 'b', 'c']);
  t.is(s.request.header('x-new'), '');
  t.deepEqual(s.request.headers!.entries().slice(-2), [['x-dup', 'c'], ['x-new', '']]);
});

test('a header that could not be sent is refused with BAD_ARGUMENT and nothing is written', async (t) => {
  const { s, value } = await inRequestHeaders((p) => [
    p.call('proxy_add_header_map_value', 0, ...p.put('x-split'), ...p.put('a\r\nx-injected: 1')),
    p.call('proxy_replace_header_map_value', 0, ...p.put('x-nul'), ...p.put('a\u0000b')),
    p.call('proxy_add_header_map_value', 0, ...p.put('x bad name'), ...p.put('v')),
    p.call('proxy_replace_header_map_value', 0, ...p.put(''), ...p.put('v')),
    p.call('proxy_set_header_map_pairs', 0, ...p.put(pairsBytes([['x-ok', '1'], ['x-lf', 'a\nb']]))),
    p.call('proxy_add_header_map_value', 0, ...p.put('x-fine'), ...p.put('tab\tand "quotes" ok')),
  ]);
  t.deepEqual(value, [Status.BAD_ARGUMENT, Status.BAD_ARGUMENT, Status.BAD_ARGUMENT, Status.BAD_ARGUMENT, Status.BAD_ARGUMENT, Status.OK]);
  t.deepEqual(s.request.headers!.entries(), [...REQUEST, ['x-fine', 'tab\tand "quotes" ok']]);
});

test('proxy_replace_header_map_value replaces every value of a key with one, or adds it', async (t) => {
  const { s, value } = await inRequestHeaders((p) => [
    p.call('proxy_replace_header_map_value', 0, ...p.put('x-dup'), ...p.put('z')),
    p.call('proxy_replace_header_map_value', 0, ...p.put('X-Added'), ...p.put('v')),
    p.call('proxy_replace_header_map_value', 0, ...p.put(':path'), ...p.put('/rewritten')),
  ]);
  t.deepEqual(value, [Status.OK, Status.OK, Status.OK]);
  t.deepEqual(s.request.headers!.getAll('x-dup'), ['z']);
  t.is(s.request.header('x-added'), 'v');
  t.is(s.request.header(':path'), '/rewritten');
});

test('proxy_remove_header_map_value removes every value of a key; a missing key is OK', async (t) => {
  const { s, value } = await inRequestHeaders((p) => [
    p.call('proxy_remove_header_map_value', 0, ...p.put('X-DUP')),
    p.call('proxy_remove_header_map_value', 0, ...p.put('x-missing')),
  ]);
  t.deepEqual(value, [Status.OK, Status.OK]);
  t.deepEqual(s.request.headers!.getAll('x-dup'), []);
  t.is(s.request.headers!.size, REQUEST.length - 2);
});

test('proxy_set_header_map_pairs replaces the map; pseudo-headers left out keep their values', async (t) => {
  const { s, value } = await inRequestHeaders((p) =>
    p.call('proxy_set_header_map_pairs', 0, ...p.put(pairsBytes([[':path', '/new'], ['x-a', '1'], ['x-a', '2']]))),
  );
  t.is(value, Status.OK);
  t.deepEqual(s.request.headers!.entries(), [
    [':method', 'GET'],
    [':authority', 'example.test'],
    [':scheme', 'http'],
    [':path', '/new'],
    ['x-a', '1'],
    ['x-a', '2'],
  ]);
});

test('proxy_set_header_map_pairs with size 0 leaves only the pseudo-headers', async (t) => {
  const { s, value } = await inRequestHeaders((p) => p.call('proxy_set_header_map_pairs', 0, 0, 0));
  t.is(value, Status.OK);
  t.deepEqual(Object.keys(s.request.headersObject()), [':method', ':path', ':authority', ':scheme']);
});

test('proxy_set_header_map_pairs with malformed pairs is BAD_ARGUMENT and changes nothing', async (t) => {
  const truncated = pairsBytes([['x-a', '1']]).subarray(0, 14); // sizes say 3+1 bytes of data, 2 are there
  const lying = Buffer.from(pairsBytes([['x-a', '1']]));
  lying.writeUInt32LE(1000, 0); // count larger than the buffer
  const { s, value } = await inRequestHeaders((p) => [
    p.call('proxy_set_header_map_pairs', 0, ...p.put(truncated)),
    p.call('proxy_set_header_map_pairs', 0, ...p.put(lying)),
    p.call('proxy_set_header_map_pairs', 0, ...p.put(Buffer.of(1, 0))),
  ]);
  t.deepEqual(value, [Status.BAD_ARGUMENT, Status.BAD_ARGUMENT, Status.BAD_ARGUMENT]);
  t.deepEqual(s.request.headers!.entries(), REQUEST);
});

test('header changes made in request headers are what the stream forwards', async (t) => {
  const { s, outcome } = await inRequestHeaders((p) => {
    p.call('proxy_add_header_map_value', 0, ...p.put('x-added'), ...p.put('yes'));
    p.call('proxy_remove_header_map_value', 0, ...p.put('x-one'));
  });
  t.deepEqual(outcome, { kind: 'continue' });
  t.is(s.request.header('x-added'), 'yes');
  t.is(s.request.header('x-one'), undefined);
});

test('response headers (map 2) and response trailers (map 3) are available in their callbacks; request trailers (map 1) in theirs', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders(GET);
  const reqTrailers = p.once('proxy_on_request_trailers', () => [getPairs(p, 1).bytes, getValue(p, 0, ':method').text]);
  await s.requestTrailers({ 'x-rt': '1' });
  const resHeaders = p.once('proxy_on_response_headers', () => {
    const before = getPairs(p, 2).bytes;
    p.call('proxy_replace_header_map_value', 2, ...p.put(':status'), ...p.put('201'));
    return before;
  });
  await s.responseHeaders({ ':status': '200', server: 'up' });
  const resTrailers = p.once('proxy_on_response_trailers', () => {
    p.call('proxy_add_header_map_value', 3, ...p.put('x-tt'), ...p.put('2'));
    return getValue(p, 3, 'grpc-status');
  });
  await s.responseTrailers({ 'grpc-status': '0' });
  t.deepEqual(reqTrailers.result, [pairsBytes([['x-rt', '1']]), 'GET']);
  t.deepEqual(resHeaders.result, pairsBytes([[':status', '200'], ['server', 'up']]));
  t.like(resTrailers.result, { status: Status.OK, text: '0' });
  t.is(s.response.header(':status'), '201');
  t.is(s.response.trailer('x-tt'), '2');
});

test('proxy_on_log can read request and response headers', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders(GET, { endOfStream: true });
  await s.responseHeaders({ ':status': '404' }, { endOfStream: true });
  const inLog = p.once('proxy_on_log', () => [getValue(p, 0, ':path').text, getValue(p, 2, ':status').text]);
  await s.end();
  t.deepEqual(inLog.result, ['/p?q=1', '404']);
});

test('maps that do not exist in the current callback are BAD_ARGUMENT for every header function', async (t) => {
  // In request headers: no request trailers (1), no response yet (2, 3), no gRPC (4, 5), no HTTP-call answer (6, 7).
  const { value } = await inRequestHeaders((p) => {
    const out: Record<number, number[]> = {};
    for (const type of [1, 2, 3, 4, 5, 6, 7]) out[type] = allHeaderFunctions(p, type);
    return out;
  });
  for (const type of [1, 2, 3, 4, 5, 6, 7]) t.deepEqual(value[type], Array(7).fill(Status.BAD_ARGUMENT), `map ${type}`);
});

test('unknown map types (8, -1) are BAD_ARGUMENT for every header function, whatever the pointers', async (t) => {
  const { value } = await inRequestHeaders((p) => [
    allHeaderFunctions(p, 8),
    allHeaderFunctions(p, -1),
    [
      p.call('proxy_get_header_map_value', 8, WILD, 4, WILD, WILD),
      p.call('proxy_add_header_map_value', -1, WILD, 4, WILD, 4),
      p.call('proxy_set_header_map_pairs', 8, WILD, 16),
      p.call('proxy_get_header_map_size', 8, WILD),
    ],
  ]);
  t.deepEqual(value, [Array(7).fill(Status.BAD_ARGUMENT), Array(7).fill(Status.BAD_ARGUMENT), Array(4).fill(Status.BAD_ARGUMENT)]);
});

test('in the root context there are no stream maps: 0..3 are BAD_ARGUMENT', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [0, 1, 2, 3].map((type) => allHeaderFunctions(p, type)));
  t.deepEqual(value, Array(4).fill(Array(7).fill(Status.BAD_ARGUMENT)));
});

test('keys, values and pairs outside memory are INVALID_MEMORY_ACCESS', async (t) => {
  const { s, value } = await inRequestHeaders((p) => {
    const [k, kl] = p.put('x-one');
    const [v, vl] = p.put('v');
    const slots = p.slots();
    return [
      p.call('proxy_get_header_map_value', 0, WILD, 8, ...slots),
      p.call('proxy_get_header_map_value', 0, k, ALL, ...slots),
      p.call('proxy_get_header_map_value', 0, k, kl, WILD, slots[1]),
      p.call('proxy_get_header_map_value', 0, k, kl, slots[0], WILD),
      p.call('proxy_add_header_map_value', 0, WILD, 1, v, vl),
      p.call('proxy_add_header_map_value', 0, k, kl, v, ALL),
      p.call('proxy_replace_header_map_value', 0, k, kl, WILD, 1),
      p.call('proxy_remove_header_map_value', 0, WILD, 1),
      p.call('proxy_get_header_map_pairs', 0, WILD, slots[1]),
      p.call('proxy_get_header_map_pairs', 0, slots[0], -1),
      p.call('proxy_set_header_map_pairs', 0, WILD, 12),
      p.call('proxy_get_header_map_size', 0, WILD),
    ];
  });
  t.deepEqual(value, Array(12).fill(Status.INVALID_MEMORY_ACCESS));
  t.deepEqual(s.request.headers!.entries(), REQUEST);
});

test('an allocator that returns 0 or a pointer outside memory makes value and pairs reads INVALID_MEMORY_ACCESS', async (t) => {
  const { value } = await inRequestHeaders((p) => {
    const [k, kl] = p.put(':path');
    const slots = p.slots();
    const out: number[] = [];
    for (const mode of ['null', 'wild'] as const) {
      p.allocMode(mode);
      out.push(p.call('proxy_get_header_map_value', 0, k, kl, ...slots), p.call('proxy_get_header_map_pairs', 0, ...slots));
      p.allocMode('ok');
    }
    return { out, slots: p.out(slots) };
  });
  t.deepEqual(value.out, Array(4).fill(Status.INVALID_MEMORY_ACCESS));
  t.like(value.slots, { ptr: 0, size: 0 });
});

test('an allocator that traps fails the VM; the stream gets the FAIL_CLOSE 503', async (t) => {
  const p = await Probe.load();
  p.once('proxy_on_request_headers', () => {
    const [k, kl] = p.put(':path');
    p.allocMode('trap');
    p.call('proxy_get_header_map_value', 0, k, kl, ...p.slots());
  });
  const r = await p.h.stream().requestHeaders(REQUEST);
  t.is(r.kind, 'local-reply');
  t.is(r.status, 503);
  t.is(r.filter, 'probe');
  t.like(p.h.plugins[0].stats.lastFailure, { kind: 'trap', callback: 'proxy_on_request_headers' });
});

/** Status of each of the seven header functions for map `type`, with valid memory everywhere. */
function allHeaderFunctions(p: Probe, type: number): number[] {
  const [k, kl] = p.put('x-one');
  const [v, vl] = p.put('v');
  const slots = p.slots();
  const [pairs, pl] = p.put(pairsBytes([['x', 'y']]));
  return [
    p.call('proxy_get_header_map_value', type, k, kl, ...slots),
    p.call('proxy_add_header_map_value', type, k, kl, v, vl),
    p.call('proxy_replace_header_map_value', type, k, kl, v, vl),
    p.call('proxy_remove_header_map_value', type, k, kl),
    p.call('proxy_get_header_map_pairs', type, ...slots),
    p.call('proxy_set_header_map_pairs', type, pairs, pl),
    p.call('proxy_get_header_map_size', type, p.zeroed(4)),
  ];
}
