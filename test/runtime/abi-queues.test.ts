// Shared queues: register, resolve by (vm id, name), enqueue wakes the owner's
// proxy_on_queue_ready, dequeue until EMPTY; unknown ids, the capability refused, wild pointers.
import test from 'ava';
import { Probe, Status, WILD, settle } from '../helpers/probe.ts';

function register(p: Probe, name: string) {
  const ret = p.zeroed(4);
  const status = p.call('proxy_register_shared_queue', ...p.put(name), ret);
  return { status, id: p.u32(ret) };
}

function resolve(p: Probe, vmId: string, name: string) {
  const ret = p.zeroed(4);
  const status = p.call('proxy_resolve_shared_queue', ...p.put(vmId), ...p.put(name), ret);
  return { status, id: p.u32(ret) };
}

function dequeue(p: Probe, id: number) {
  const slots = p.slots();
  const status = p.call('proxy_dequeue_shared_queue', id, ...slots);
  return { status, ...p.out(slots) };
}

test('register returns an id; registering again and resolving with the vm id return the same id', async (t) => {
  const p = await Probe.load({ vmId: 'vm-q' });
  const value = p.inRoot(() => [register(p, 'jobs'), register(p, 'jobs'), resolve(p, 'vm-q', 'jobs'), register(p, 'other')]);
  t.is(value[0].status, Status.OK);
  t.true(value[0].id > 0);
  t.deepEqual(value[1], value[0]);
  t.deepEqual(value[2], value[0]);
  t.not(value[3].id, value[0].id);
});

test('resolving an unknown name, or a known name under another vm id, is NOT_FOUND and writes no id', async (t) => {
  const p = await Probe.load({ vmId: 'vm-q' });
  const value = p.inRoot(() => {
    register(p, 'jobs');
    return [resolve(p, 'vm-q', 'nope'), resolve(p, 'other-vm', 'jobs'), resolve(p, '', 'jobs')];
  });
  t.deepEqual(value, Array(3).fill({ status: Status.NOT_FOUND, id: 0 }));
});

test('dequeue on an empty queue is EMPTY; enqueue wakes proxy_on_queue_ready(root, id) once per item; dequeue is FIFO', async (t) => {
  const p = await Probe.load();
  const id = p.inRoot(() => {
    const q = register(p, 'jobs').id;
    t.like(dequeue(p, q), { status: Status.EMPTY, ptr: 0, size: 0 });
    t.is(p.call('proxy_enqueue_shared_queue', q, ...p.put('first')), Status.OK);
    t.is(p.call('proxy_enqueue_shared_queue', q, ...p.put('second')), Status.OK);
    return q;
  });
  // The wake-up comes after the guest call that enqueued has returned.
  t.deepEqual(p.log({ only: ['proxy_on_queue_ready'] }), []);
  const ready = p.once('proxy_on_queue_ready', () => [dequeue(p, id).text, dequeue(p, id).text, dequeue(p, id).status]);
  await settle();
  t.deepEqual(p.log({ only: ['proxy_on_queue_ready'] }), [`proxy_on_queue_ready(1,${id})`, `proxy_on_queue_ready(1,${id})`]);
  t.deepEqual(ready.result, ['first', 'second', Status.EMPTY]);
});

test('an item enqueued from a stream context wakes the root context that registered the queue', async (t) => {
  const p = await Probe.load({ vmId: 'vm-q' });
  const id = p.inRoot(() => register(p, 'events').id);
  p.once('proxy_on_request_headers', () => {
    const q = resolve(p, 'vm-q', 'events').id;
    return p.call('proxy_enqueue_shared_queue', q, ...p.put('request seen'));
  });
  await p.h.stream().requestHeaders({ ':path': '/' });
  const ready = p.once('proxy_on_queue_ready', () => dequeue(p, id).text);
  await settle();
  t.is(ready.result, 'request seen');
});

test('an empty item is OK and dequeues as pointer 0, size 0', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const q = register(p, 'q').id;
    return [p.call('proxy_enqueue_shared_queue', q, 0, 0), dequeue(p, q)];
  });
  t.is(value[0], Status.OK);
  t.like(value[1], { status: Status.OK, ptr: 0, size: 0 });
});

test('enqueue and dequeue on an unknown id are NOT_FOUND', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [p.call('proxy_enqueue_shared_queue', 4242, ...p.put('x')), dequeue(p, 4242).status, dequeue(p, 0).status]);
  t.deepEqual(value, [Status.NOT_FOUND, Status.NOT_FOUND, Status.NOT_FOUND]);
});

test('wild pointers are INVALID_MEMORY_ACCESS; a dequeue with bad return slots does not lose the item', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const q = register(p, 'q').id;
    p.call('proxy_enqueue_shared_queue', q, ...p.put('kept'));
    const slots = p.slots();
    return [
      p.call('proxy_register_shared_queue', WILD, 1, p.zeroed(4)),
      p.call('proxy_register_shared_queue', ...p.put('q2'), WILD),
      p.call('proxy_resolve_shared_queue', WILD, 1, ...p.put('q'), p.zeroed(4)),
      p.call('proxy_resolve_shared_queue', ...p.put(''), WILD, 1, p.zeroed(4)),
      p.call('proxy_resolve_shared_queue', ...p.put(''), ...p.put('q'), WILD),
      p.call('proxy_enqueue_shared_queue', q, WILD, 4),
      p.call('proxy_dequeue_shared_queue', q, WILD, slots[1]),
      p.call('proxy_dequeue_shared_queue', q, slots[0], WILD),
      dequeue(p, q).text,
    ];
  });
  t.deepEqual(value, [...Array(8).fill(Status.INVALID_MEMORY_ACCESS), 'kept']);
});

test('with sharedQueues refused, every queue function is UNIMPLEMENTED and logged once', async (t) => {
  const p = await Probe.load({ capabilities: { sharedQueues: false } });
  const value = p.inRoot(() => [
    register(p, 'q').status,
    register(p, 'q').status,
    resolve(p, '', 'q').status,
    p.call('proxy_enqueue_shared_queue', 1, ...p.put('x')),
    dequeue(p, 1).status,
  ]);
  t.deepEqual(value, Array(5).fill(Status.UNIMPLEMENTED));
  t.deepEqual(
    p.logLines(3).map((l) => l.split(' ')[1]),
    ['proxy_register_shared_queue', 'proxy_resolve_shared_queue', 'proxy_enqueue_shared_queue', 'proxy_dequeue_shared_queue'],
  );
});
