// proxy_get_shared_data / proxy_set_shared_data: compare-and-swap tokens, vm id scoping, the
// capability being refused, wild pointers.
import test from 'ava';
import { Probe, Status, WILD } from '../helpers/probe.ts';

function get(p: Probe, key: string) {
  const slots = p.slots();
  const cas = p.zeroed(4);
  const status = p.call('proxy_get_shared_data', ...p.put(key), ...slots, cas);
  return { status, cas: p.u32(cas), ...p.out(slots) };
}

function set(p: Probe, key: string, value: string, cas: number): number {
  return p.call('proxy_set_shared_data', ...p.put(key), ...p.put(value), cas);
}

test('a missing key is NOT_FOUND with address 0 and size 0 written', async (t) => {
  const p = await Probe.load();
  t.like(
    p.inRoot(() => get(p, 'nothing')),
    { status: Status.NOT_FOUND, ptr: 0, size: 0, cas: 0 },
  );
});

test('set with cas 0 writes; get returns the value and a non-zero CAS token', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [set(p, 'k', 'v1', 0), get(p, 'k')]);
  t.is(value[0], Status.OK);
  t.like(value[1], { status: Status.OK, text: 'v1' });
  t.true((value[1] as { cas: number }).cas >= 1);
});

test('compare-and-swap: the current token writes and changes the token; a stale one is CAS_MISMATCH and writes nothing', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    set(p, 'k', 'v1', 0);
    const first = get(p, 'k').cas;
    const swapped = set(p, 'k', 'v2', first);
    const second = get(p, 'k');
    const stale = set(p, 'k', 'v3', first);
    const after = get(p, 'k');
    const forced = set(p, 'k', 'v4', 0);
    return { first, swapped, second, stale, after, forced, last: get(p, 'k') };
  });
  t.is(value.swapped, Status.OK);
  t.is(value.second.text, 'v2');
  t.not(value.second.cas, value.first);
  t.is(value.stale, Status.CAS_MISMATCH);
  t.like(value.after, { text: 'v2', cas: value.second.cas });
  t.is(value.forced, Status.OK);
  t.is(value.last.text, 'v4');
  t.not(value.last.cas, value.second.cas);
});

test('setting a key that does not exist yet with a non-zero cas creates it (as cpp-host does)', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [set(p, 'fresh', 'x', 12345), get(p, 'fresh').text]);
  t.deepEqual(value, [Status.OK, 'x']);
});

test('an empty value reads back as OK with pointer 0 and size 0, and its token', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    set(p, 'empty', '', 0);
    return get(p, 'empty');
  });
  t.like(value, { status: Status.OK, ptr: 0, size: 0 });
  t.true(value.cas >= 1);
});

test('shared data is scoped by vm id and shared between stream and root contexts', async (t) => {
  const p = await Probe.load({ vmId: 'vm-a' });
  p.inRoot(() => set(p, 'k', 'from-root', 0));
  const inHeaders = p.once('proxy_on_request_headers', () => get(p, 'k').text);
  await p.h.stream().requestHeaders({ ':path': '/' });
  t.is(inHeaders.result, 'from-root');
  t.is(p.h.sharedData('k', 'vm-a'), 'from-root');
  t.is(p.h.sharedData('k', ''), undefined);
});

test('wild pointers are INVALID_MEMORY_ACCESS', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    set(p, 'k', 'v', 0);
    const [k, kl] = p.put('k');
    const slots = p.slots();
    const cas = p.zeroed(4);
    return [
      p.call('proxy_get_shared_data', WILD, 1, ...slots, cas),
      p.call('proxy_get_shared_data', k, kl, WILD, slots[1], cas),
      p.call('proxy_get_shared_data', k, kl, slots[0], WILD, cas),
      p.call('proxy_get_shared_data', k, kl, ...slots, WILD),
      p.call('proxy_set_shared_data', WILD, 1, ...p.put('v'), 0),
      p.call('proxy_set_shared_data', k, kl, WILD, 1, 0),
      p.call('proxy_set_shared_data', k, kl, 0, -1, 0),
    ];
  });
  t.deepEqual(value, Array(7).fill(Status.INVALID_MEMORY_ACCESS));
});

test('with sharedData refused, get and set are UNIMPLEMENTED and each is logged once', async (t) => {
  const p = await Probe.load({ capabilities: { sharedData: false } });
  const value = p.inRoot(() => [set(p, 'k', 'v', 0), set(p, 'k', 'v', 0), get(p, 'k').status, get(p, 'k').status]);
  t.deepEqual(value, Array(4).fill(Status.UNIMPLEMENTED));
  t.deepEqual(p.logLines(3), [
    'warn: proxy_set_shared_data is not allowed for this filter (capabilities in its plugin config); the call returned UNIMPLEMENTED',
    'warn: proxy_get_shared_data is not allowed for this filter (capabilities in its plugin config); the call returned UNIMPLEMENTED',
  ]);
  t.is(p.h.sharedData('k'), undefined);
});
