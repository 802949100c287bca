// proxy_get_property / proxy_set_property: NUL-joined paths, the encodings (strings raw, integers
// int64 LE, booleans one byte, timestamps int64 ns, maps as pairs), root vs stream scope,
// unknown paths, wild pointers.
import test from 'ava';
import { GET, Probe, Status, WILD, int64le, pairsBytes } from '../helpers/probe.ts';

const START = Date.UTC(2026, 0, 1);

function get(p: Probe, path: string) {
  const slots = p.slots();
  const status = p.call('proxy_get_property', ...p.put(path.split('.').join('\0')), ...slots);
  return { status, ...p.out(slots) };
}

function set(p: Probe, path: string, value: string | Uint8Array): number {
  return p.call('proxy_set_property', ...p.put(path.split('.').join('\0')), ...p.put(value));
}

test('the root context sees the plugin and node properties', async (t) => {
  const p = await Probe.load({ name: 'my-filter', rootId: 'root-a', vmId: 'vm-a' });
  const value = p.inRoot(() => ['plugin_name', 'plugin_root_id', 'plugin_vm_id', 'node.id', 'node.cluster'].map((path) => get(p, path).text));
  t.deepEqual(value, ['my-filter', 'root-a', 'vm-a', 'sluice-local', 'sluice']);
});

test('an empty root id reads as OK with pointer 0 and size 0', async (t) => {
  const p = await Probe.load();
  t.like(
    p.inRoot(() => get(p, 'plugin_root_id')),
    { status: Status.OK, ptr: 0, size: 0 },
  );
});

test('the root context has no request: request.* is NOT_FOUND', async (t) => {
  const p = await Probe.load();
  t.deepEqual(
    p.inRoot(() => ['request.path', 'request.headers', 'source.address', 'response.code'].map((path) => get(p, path).status)),
    Array(4).fill(Status.NOT_FOUND),
  );
});

test('a stream context sees request properties as strings, integers, booleans and timestamps', async (t) => {
  const p = await Probe.load({ startTime: START });
  const inHeaders = p.once('proxy_on_request_headers', () => {
    const read = (path: string) => get(p, path).bytes;
    return {
      path: read('request.path').toString(),
      urlPath: read('request.url_path').toString(),
      query: read('request.query').toString(),
      method: read('request.method').toString(),
      host: read('request.host').toString(),
      scheme: read('request.scheme').toString(),
      userAgent: read('request.useragent').toString(),
      header: read('request.headers.user-agent').toString(),
      protocol: read('request.protocol').toString(),
      time: read('request.time'),
      source: read('source.address').toString(),
      sourcePort: read('source.port'),
      destinationPort: read('destination.port'),
      connectionId: read('connection.id'),
      mtls: read('connection.mtls'),
      peer: read('connection.uri_san_peer_certificate').toString(),
    };
  });
  const s = p.h.stream({
    source: { address: '10.0.0.1', port: 40000 },
    destination: { address: '10.0.0.2', port: 8080 },
    connection: { id: 7, mtls: true, peerUriSans: ['spiffe://cluster.local/ns/a/sa/b'] },
    protocol: 'HTTP/1.1',
  });
  await s.requestHeaders({ ...GET, 'user-agent': 'probe/1' });
  t.deepEqual(inHeaders.result, {
    path: '/p?q=1',
    urlPath: '/p',
    query: 'q=1',
    method: 'GET',
    host: 'example.test',
    scheme: 'http',
    userAgent: 'probe/1',
    header: 'probe/1',
    protocol: 'HTTP/1.1',
    time: int64le(1_767_225_600_000_000_000n),
    source: '10.0.0.1:40000',
    sourcePort: int64le(40000),
    destinationPort: int64le(8080),
    connectionId: int64le(7),
    mtls: Buffer.of(1),
    peer: 'spiffe://cluster.local/ns/a/sa/b',
  });
});

test('request.headers is the header map in the pairs format', async (t) => {
  const p = await Probe.load();
  const inHeaders = p.once('proxy_on_request_headers', () => get(p, 'request.headers').bytes);
  await p.h.stream().requestHeaders({ ':method': 'GET', ':path': '/', 'x-a': '1' });
  t.deepEqual(inHeaders.result, pairsBytes([[':method', 'GET'], [':path', '/'], ['x-a', '1']]));
});

test('response properties are readable once the response headers are there', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders(GET, { endOfStream: true });
  const inResponse = p.once('proxy_on_response_headers', () => [get(p, 'response.code').bytes, get(p, 'response.headers.content-type').text]);
  await s.responseHeaders({ ':status': '418', 'content-type': 'text/teapot' });
  t.deepEqual(inResponse.result, [int64le(418), 'text/teapot']);
});

test('a missing header property and an unknown path are NOT_FOUND, leaving the return slots alone', async (t) => {
  const p = await Probe.load();
  const inHeaders = p.once('proxy_on_request_headers', () => [get(p, 'request.headers.x-missing'), get(p, 'no.such.thing'), get(p, '')]);
  await p.h.stream().requestHeaders(GET);
  for (const r of inHeaders.result) t.like(r, { status: Status.NOT_FOUND, ptr: 0, size: 0 });
});

test('a property set on a stream is read back there and is visible to the proxy, not to other streams', async (t) => {
  const p = await Probe.load();
  const first = p.once('proxy_on_request_headers', () => [set(p, 'sluice.cluster', 'canary'), set(p, 'my.value', Buffer.of(0, 1, 2)), get(p, 'my.value').bytes]);
  const s1 = p.h.stream();
  await s1.requestHeaders(GET);
  const second = p.once('proxy_on_request_headers', () => get(p, 'my.value').status);
  await p.h.stream().requestHeaders(GET);
  t.deepEqual(first.result, [Status.OK, Status.OK, Buffer.of(0, 1, 2)]);
  t.is(s1.property('sluice.cluster'), 'canary');
  t.is(second.result, Status.NOT_FOUND);
});

test('a property set on the root context is read back in the root and in streams', async (t) => {
  const p = await Probe.load();
  t.is(
    p.inRoot(() => set(p, 'shared.flag', 'on')),
    Status.OK,
  );
  t.is(
    p.inRoot(() => get(p, 'shared.flag').text),
    'on',
  );
  const inHeaders = p.once('proxy_on_request_headers', () => get(p, 'shared.flag').text);
  await p.h.stream().requestHeaders(GET);
  t.is(inHeaders.result, 'on');
});

test('a property set on a stream overrides a built-in one for that stream only', async (t) => {
  const p = await Probe.load();
  const inHeaders = p.once('proxy_on_request_headers', () => [set(p, 'request.path', '/shadow'), get(p, 'request.path').text]);
  const s = p.h.stream();
  await s.requestHeaders(GET);
  t.deepEqual(inHeaders.result, [Status.OK, '/shadow']);
  t.is(s.request.header(':path'), '/p?q=1');
});

test('proxy_set_property with an empty path is BAD_ARGUMENT', async (t) => {
  const p = await Probe.load();
  t.deepEqual(
    p.inRoot(() => [p.call('proxy_set_property', 0, 0, ...p.put('v')), set(p, '', 'v')]),
    [Status.BAD_ARGUMENT, Status.BAD_ARGUMENT],
  );
});

test('wild pointers are INVALID_MEMORY_ACCESS for property reads and writes', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const [path, pl] = p.put('plugin_name');
    const slots = p.slots();
    return [
      p.call('proxy_get_property', WILD, 4, ...slots),
      p.call('proxy_get_property', path, -1, ...slots),
      p.call('proxy_get_property', path, pl, WILD, slots[1]),
      p.call('proxy_get_property', path, pl, slots[0], WILD),
      p.call('proxy_set_property', WILD, 4, ...p.put('v')),
      p.call('proxy_set_property', path, pl, WILD, 1),
    ];
  });
  t.deepEqual(value, Array(6).fill(Status.INVALID_MEMORY_ACCESS));
});
