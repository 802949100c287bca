// Calls that answer with no data (an empty buffer, a missing header or property, an empty map, an
// empty queue, a foreign function without a result) write address 0 and size 0 into the guest's
// (pointer, size) slots, as cpp-host does since 2022 (#303): SDKs read the slots after the call,
// and stale values there were garbage configuration strings and headers not added. Each slot
// pair is filled with garbage first.
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import test from 'ava';
import { ALL, GET, Probe, Status } from '../helpers/probe.ts';
import { fixture } from '../helpers/fixtures.ts';

const GARBAGE = [0xdeadbeef, 0xfeedface];

/** Calls `name` with `args` then a (pointer, size) slot pair full of garbage: [status, pointer, size]. */
function noData(p: Probe, name: string, ...args: number[]): [number, number, number] {
  const [ptrSlot, sizeSlot] = p.slots();
  p.vm().mem.putU32(ptrSlot, GARBAGE[0]);
  p.vm().mem.putU32(sizeSlot, GARBAGE[1]);
  const status = p.call(name, ...args, ptrSlot, sizeSlot);
  return [status, p.u32(ptrSlot), p.u32(sizeSlot)];
}

test('root context: empty configurations, missing and empty properties, an empty queue, foreign functions without a result, get_status', async (t) => {
  const p = await Probe.load({ vmId: 'vm-x', foreignFunctions: { nothing: () => new Uint8Array(0), refuses: () => ({ status: Status.BAD_ARGUMENT }) } });
  const value = p.inRoot(() => {
    const queue = p.zeroed(4);
    p.call('proxy_register_shared_queue', ...p.put('jobs'), queue);
    const code = p.zeroed(4);
    return {
      pluginConfiguration: noData(p, 'proxy_get_buffer_bytes', 7, 0, ALL),
      vmConfiguration: noData(p, 'proxy_get_buffer_bytes', 6, 0, ALL),
      configuration: noData(p, 'proxy_get_configuration'),
      requestBodyInRoot: noData(p, 'proxy_get_buffer_bytes', 0, 0, ALL),
      missingProperty: noData(p, 'proxy_get_property', ...p.put('no\u0000such')),
      emptyProperty: noData(p, 'proxy_get_property', ...p.put('plugin_root_id')),
      emptyQueue: noData(p, 'proxy_dequeue_shared_queue', p.u32(queue)),
      unknownQueue: noData(p, 'proxy_dequeue_shared_queue', 999),
      foreignEmpty: noData(p, 'proxy_call_foreign_function', ...p.put('nothing'), ...p.put('')),
      foreignFailing: noData(p, 'proxy_call_foreign_function', ...p.put('refuses'), ...p.put('')),
      foreignUnknown: noData(p, 'proxy_call_foreign_function', ...p.put('unknown'), ...p.put('')),
      grpcStatus: noData(p, 'proxy_get_status', code),
    };
  });
  t.deepEqual(value, {
    pluginConfiguration: [Status.OK, 0, 0],
    vmConfiguration: [Status.OK, 0, 0],
    configuration: [Status.OK, 0, 0],
    requestBodyInRoot: [Status.NOT_FOUND, 0, 0],
    missingProperty: [Status.NOT_FOUND, 0, 0],
    emptyProperty: [Status.OK, 0, 0],
    emptyQueue: [Status.EMPTY, 0, 0],
    unknownQueue: [Status.NOT_FOUND, 0, 0],
    foreignEmpty: [Status.OK, 0, 0],
    foreignFailing: [Status.BAD_ARGUMENT, 0, 0],
    foreignUnknown: [Status.NOT_FOUND, 0, 0],
    grpcStatus: [Status.NOT_FOUND, 0, 0],
  });
});

test('proxy_get_shared_data of a missing key: NOT_FOUND with address 0 and size 0 written', async (t) => {
  // Its cas slot comes after the (pointer, size) pair, so it is called here directly.
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const [ptrSlot, sizeSlot] = p.slots();
    p.vm().mem.putU32(ptrSlot, GARBAGE[0]);
    p.vm().mem.putU32(sizeSlot, GARBAGE[1]);
    const status = p.call('proxy_get_shared_data', ...p.put('absent'), ptrSlot, sizeSlot, p.zeroed(4));
    return [status, p.u32(ptrSlot), p.u32(sizeSlot)];
  });
  t.deepEqual(value, [Status.NOT_FOUND, 0, 0]);
});

test('stream: an empty body, a missing header, an empty trailer map', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  const inHeaders = p.once('proxy_on_request_headers', () => noData(p, 'proxy_get_header_map_value', 0, ...p.put('x-missing')));
  await s.requestHeaders({ ...GET, ':method': 'POST' });
  const inBody = p.once('proxy_on_request_body', () => noData(p, 'proxy_get_buffer_bytes', 0, 0, ALL));
  await s.requestBody('', { endOfStream: false });
  const inTrailers = p.once('proxy_on_request_trailers', () => noData(p, 'proxy_get_header_map_pairs', 1));
  await s.requestTrailers({});
  t.deepEqual(
    { header: inHeaders.result, body: inBody.result, trailers: inTrailers.result },
    { header: [Status.NOT_FOUND, 0, 0], body: [Status.OK, 0, 0], trailers: [Status.OK, 0, 0] },
  );
});

test('ABI 0.1.0: a missing header is OK with address 0 and size 0 written', async (t) => {
  // The probe with its ABI marker renamed to 0.1.0 (same length, so nothing else moves).
  const bytes = readFileSync(fixture('abi/probe'));
  const at = bytes.indexOf('proxy_abi_version_0_2_1');
  t.true(at > 0);
  const v01 = Buffer.from(bytes);
  v01.write('proxy_abi_version_0_1_0', at);
  const p = await Probe.load({ module: new Uint8Array(v01) });
  t.is(p.vm().abiVersion, '0.1.0');
  const inHeaders = p.once('proxy_on_request_headers', () => noData(p, 'proxy_get_header_map_value', 0, ...p.put('x-missing')));
  await p.h.stream().requestHeaders(GET);
  t.deepEqual(inHeaders.result, [Status.OK, 0, 0]);
});
