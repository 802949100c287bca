// Contexts and the rest of the ABI: proxy_set_effective_context, proxy_done,
// proxy_call_foreign_function, proxy_get_status, the gRPC functions Sluice links but refuses.
import test from 'ava';
import { GET, Probe, Status, WILD, settle } from '../helpers/probe.ts';

function getValue(p: Probe, type: number, key: string) {
  const slots = p.slots();
  const status = p.call('proxy_get_header_map_value', type, ...p.put(key), ...slots);
  return { status, text: p.out(slots).text };
}

test('set_effective_context to an unknown id is BAD_ARGUMENT and keeps the current context', async (t) => {
  const p = await Probe.load();
  const inHeaders = p.once('proxy_on_request_headers', () => [
    p.call('proxy_set_effective_context', 999),
    p.call('proxy_set_effective_context', 0),
    p.call('proxy_set_effective_context', -1),
    getValue(p, 0, ':path'),
  ]);
  await p.h.stream().requestHeaders(GET);
  t.deepEqual(inHeaders.result, [Status.BAD_ARGUMENT, Status.BAD_ARGUMENT, Status.BAD_ARGUMENT, { status: Status.OK, text: '/p?q=1' }]);
});

test('set_effective_context switches between the root and a live stream context', async (t) => {
  const p = await Probe.load();
  p.returning('proxy_on_request_headers', 1);
  const s = p.h.stream();
  void s.requestHeaders(GET);
  await settle();
  const value = p.inRoot(() => [
    getValue(p, 0, ':path').status,
    p.call('proxy_set_effective_context', 2),
    getValue(p, 0, ':path'),
    p.call('proxy_set_effective_context', 1),
    getValue(p, 0, ':path').status,
  ]);
  t.deepEqual(value, [Status.BAD_ARGUMENT, Status.OK, { status: Status.OK, text: '/p?q=1' }, Status.OK, Status.BAD_ARGUMENT]);
});

test('the effective context goes back to the callback context when the callback returns', async (t) => {
  const p = await Probe.load();
  p.returning('proxy_on_request_headers', 1);
  void p.h.stream().requestHeaders(GET);
  await settle();
  p.inRoot(() => p.call('proxy_set_effective_context', 2));
  t.is(
    p.inRoot(() => getValue(p, 0, ':path').status),
    Status.BAD_ARGUMENT,
  );
});

test('a stream context is gone after proxy_on_delete: set_effective_context to it is BAD_ARGUMENT', async (t) => {
  const p = await Probe.load();
  const s = p.h.stream();
  await s.requestHeaders(GET, { endOfStream: true });
  t.is(
    p.inRoot(() => p.call('proxy_set_effective_context', 2)),
    Status.OK,
  );
  await s.end();
  t.is(
    p.inRoot(() => p.call('proxy_set_effective_context', 2)),
    Status.BAD_ARGUMENT,
  );
});

test('proxy_done when nothing waits for it is NOT_FOUND', async (t) => {
  const p = await Probe.load();
  t.is(
    p.inRoot(() => p.call('proxy_done')),
    Status.NOT_FOUND,
  );
});

test('proxy_call_foreign_function calls a host function by name and copies its result out', async (t) => {
  const seen: string[] = [];
  const p = await Probe.load({
    foreignFunctions: {
      reverse: (args) => {
        seen.push(Buffer.from(args).toString());
        return Buffer.from(Buffer.from(args).toString().split('').reverse().join(''));
      },
      refuse: () => ({ status: Status.BAD_ARGUMENT }),
      nothing: () => new Uint8Array(0),
    },
  });
  const value = p.inRoot(() => {
    const call = (name: string, args: string) => {
      const slots = p.slots();
      const status = p.call('proxy_call_foreign_function', ...p.put(name), ...p.put(args), ...slots);
      return { status, ...p.out(slots) };
    };
    return [call('reverse', 'abc'), call('refuse', ''), call('nothing', 'x'), call('missing', '')];
  });
  t.like(value[0], { status: Status.OK, text: 'cba', size: 3 });
  t.like(value[1], { status: Status.BAD_ARGUMENT, ptr: 0, size: 0 });
  t.like(value[2], { status: Status.OK, ptr: 0, size: 0 });
  t.like(value[3], { status: Status.NOT_FOUND, ptr: 0, size: 0 });
  t.deepEqual(seen, ['abc']);
});

test('proxy_call_foreign_function with wild pointers is INVALID_MEMORY_ACCESS and does not call the function', async (t) => {
  let calls = 0;
  const p = await Probe.load({ foreignFunctions: { f: () => (calls++, new Uint8Array(1)) } });
  const value = p.inRoot(() => {
    const [n, nl] = p.put('f');
    const slots = p.slots();
    return [
      p.call('proxy_call_foreign_function', WILD, 1, 0, 0, ...slots),
      p.call('proxy_call_foreign_function', n, nl, WILD, 4, ...slots),
      p.call('proxy_call_foreign_function', n, nl, 0, 0, WILD, slots[1]),
      p.call('proxy_call_foreign_function', n, nl, 0, 0, slots[0], WILD),
    ];
  });
  t.deepEqual(value, Array(4).fill(Status.INVALID_MEMORY_ACCESS));
  t.is(calls, 0);
});

test('a foreign function that throws is INTERNAL_FAILURE for the guest and a logged host error', async (t) => {
  const p = await Probe.load({
    foreignFunctions: {
      boom: () => {
        throw new Error('kaboom');
      },
    },
  });
  const value = p.inRoot(() => p.call('proxy_call_foreign_function', ...p.put('boom'), 0, 0, ...p.slots()));
  t.is(value, Status.INTERNAL_FAILURE);
  t.true(p.logLines(4).some((l) => l.startsWith('error: host error in proxy_call_foreign_function: Error: kaboom')));
  t.is(p.h.plugins[0].vm !== undefined, true, 'the VM is still healthy');
});

test('proxy_get_status has no status to report (no gRPC calls): NOT_FOUND', async (t) => {
  const p = await Probe.load();
  t.is(
    p.inRoot(() => p.call('proxy_get_status', p.zeroed(4), ...p.slots())),
    Status.NOT_FOUND,
  );
});

test('the gRPC functions link and answer UNIMPLEMENTED, each logged once', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [
    p.call('proxy_grpc_call', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1000, p.zeroed(4)),
    p.call('proxy_grpc_call', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1000, p.zeroed(4)),
    p.call('proxy_grpc_stream', 0, 0, 0, 0, 0, 0, 0, 0, p.zeroed(4)),
    p.call('proxy_grpc_send', 1, 0, 0, 0),
    p.call('proxy_grpc_cancel', 1),
    p.call('proxy_grpc_close', 1),
  ]);
  t.deepEqual(value, Array(6).fill(Status.UNIMPLEMENTED));
  t.deepEqual(
    p.logLines(3).map((l) => l.split(' ')[1]),
    ['proxy_grpc_call', 'proxy_grpc_stream', 'proxy_grpc_send', 'proxy_grpc_cancel', 'proxy_grpc_close'],
  );
});

test('with foreignFunctions refused, proxy_call_foreign_function is UNIMPLEMENTED (and the probe falls back to its defaults)', async (t) => {
  const p = await Probe.load({ capabilities: { foreignFunctions: false }, foreignFunctions: { f: () => new Uint8Array(0) } });
  // The probe's own hook is refused too, so no callback is recorded.
  t.deepEqual(p.log(), []);
  const r = await p.h.stream().requestHeaders(GET);
  t.deepEqual(r, { kind: 'continue' });
  t.deepEqual(p.logLines(3), ['warn: proxy_call_foreign_function is not allowed for this filter (capabilities in its plugin config); the call returned UNIMPLEMENTED']);
});
