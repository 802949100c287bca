// proxy_define_metric / increment / record / get with Envoy's semantics: record adds to a
// counter, sets a gauge, observes a histogram; increment and get on a histogram are BAD_ARGUMENT.
import test from 'ava';
import { Probe, Status, WILD } from '../helpers/probe.ts';

const COUNTER = 0;
const GAUGE = 1;
const HISTOGRAM = 2;

function define(p: Probe, type: number, name: string): { status: number; id: number } {
  const ret = p.zeroed(4);
  const status = p.call('proxy_define_metric', type, ...p.put(name), ret);
  return { status, id: p.u32(ret) };
}

function get(p: Probe, id: number): { status: number; value: bigint } {
  const ret = p.zeroed(8);
  const status = p.call('proxy_get_metric', id, ret);
  return { status, value: p.u64(ret) };
}

test('defining a metric returns an id; the same name and type returns the same id', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [define(p, COUNTER, 'requests'), define(p, GAUGE, 'inflight'), define(p, HISTOGRAM, 'latency'), define(p, COUNTER, 'requests')]);
  t.true(value.every((d) => d.status === Status.OK && d.id > 0));
  t.is(new Set(value.map((d) => d.id)).size, 3);
  t.is(value[3].id, value[0].id);
});

test('the same name with another type, an unknown type and an empty name are BAD_ARGUMENT and write no id', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    define(p, COUNTER, 'taken');
    return [define(p, GAUGE, 'taken'), define(p, 3, 'other'), define(p, -1, 'other'), define(p, COUNTER, '')];
  });
  t.deepEqual(value, Array(4).fill({ status: Status.BAD_ARGUMENT, id: 0 }));
});

test('a counter: increment adds, record adds, get reads it as u64; a negative increment is BAD_ARGUMENT', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const { id } = define(p, COUNTER, 'hits');
    return [
      p.call('proxy_increment_metric', id, 5n),
      p.call('proxy_record_metric', id, 3n),
      p.call('proxy_increment_metric', id, -1n),
      get(p, id),
    ];
  });
  t.deepEqual(value, [Status.OK, Status.OK, Status.BAD_ARGUMENT, { status: Status.OK, value: 8n }]);
  t.is(p.h.metric('hits'), 8);
});

test('a gauge: increment adds and subtracts, record sets', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const { id } = define(p, GAUGE, 'level');
    const out = [p.call('proxy_increment_metric', id, 5n), p.call('proxy_increment_metric', id, -2n), get(p, id)];
    out.push(p.call('proxy_record_metric', id, 42n), get(p, id));
    return out;
  });
  t.deepEqual(value, [Status.OK, Status.OK, { status: Status.OK, value: 3n }, Status.OK, { status: Status.OK, value: 42n }]);
  t.is(p.h.metric('level'), 42);
});

test('a histogram: record observes; increment and get are BAD_ARGUMENT', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const { id } = define(p, HISTOGRAM, 'latency_ms');
    return [p.call('proxy_record_metric', id, 7n), p.call('proxy_record_metric', id, 300n), p.call('proxy_increment_metric', id, 1n), get(p, id).status];
  });
  t.deepEqual(value, [Status.OK, Status.OK, Status.BAD_ARGUMENT, Status.BAD_ARGUMENT]);
  const h = p.h.metric('latency_ms') as { count: number; sum: number; buckets: number[] };
  t.is(h.count, 2);
  t.is(h.sum, 307);
  // Buckets (non-cumulative) 0.5 1 5 10 25 50 100 250 500 ...: 7 falls in "≤10", 300 in "≤500".
  t.is(h.buckets[3], 1);
  t.is(h.buckets[8], 1);
  t.is(h.buckets.reduce((a, b) => a + b, 0), 2);
});

test('unknown metric ids are NOT_FOUND for increment, record and get', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => [0, 999, -1].flatMap((id) => [p.call('proxy_increment_metric', id, 1n), p.call('proxy_record_metric', id, 1n), get(p, id).status]));
  t.deepEqual(value, Array(9).fill(Status.NOT_FOUND));
});

test('metrics are shared by contexts: a stream increments what the root defined', async (t) => {
  const p = await Probe.load();
  const { id } = p.inRoot(() => define(p, COUNTER, 'streams'));
  p.once('proxy_on_request_headers', () => p.call('proxy_increment_metric', id, 1n));
  await p.h.stream().requestHeaders({ ':path': '/' });
  t.is(p.h.metric('streams'), 1);
});

test('wild pointers are INVALID_MEMORY_ACCESS for define and get', async (t) => {
  const p = await Probe.load();
  const value = p.inRoot(() => {
    const { id } = define(p, GAUGE, 'g');
    return [p.call('proxy_define_metric', COUNTER, WILD, 4, p.zeroed(4)), p.call('proxy_define_metric', COUNTER, ...p.put('n'), WILD), p.call('proxy_get_metric', id, WILD)];
  });
  t.deepEqual(value, Array(3).fill(Status.INVALID_MEMORY_ACCESS));
});
