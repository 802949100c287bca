// proxy_log, proxy_get_log_level, proxy_get_current_time_nanoseconds and
// proxy_set_tick_period_milliseconds, with valid and invalid arguments; a plugin's own log level.
import { readFile } from 'node:fs/promises';
import test from 'ava';
import { LOG_LEVEL_NAMES } from '../../runtime/abi/constants.ts';
import { createEnvironment } from '../../runtime/host/environment.ts';
import { Plugin } from '../../runtime/host/plugin.ts';
import { pluginSpec } from '../../runtime/host/plugin-spec.ts';
import { fixture } from '../helpers/fixtures.ts';
import { ALL, Probe, Status, WILD } from '../helpers/probe.ts';

const START = Date.UTC(2026, 0, 1);

test('proxy_log logs UTF-8 messages at each of the six levels', async (t) => {
  const p = await Probe.load();
  p.inRoot(() => {
    for (let level = 0; level <= 5; level++) t.is(p.call('proxy_log', level, ...p.put(`héllo ${level}`)), Status.OK);
  });
  t.deepEqual(p.logLines(), ['trace: héllo 0', 'debug: héllo 1', 'info: héllo 2', 'warn: héllo 3', 'error: héllo 4', 'critical: héllo 5']);
});

test('proxy_log below the host log level is OK and dropped', async (t) => {
  const p = await Probe.load({ logLevel: 3 });
  p.inRoot(() => {
    t.is(p.call('proxy_log', 2, ...p.put('dropped')), Status.OK);
    t.is(p.call('proxy_log', 3, ...p.put('kept')), Status.OK);
  });
  t.deepEqual(p.logLines(), ['warn: kept']);
});

test('proxy_log with an empty message logs an empty line', async (t) => {
  const p = await Probe.load();
  p.inRoot(() => t.is(p.call('proxy_log', 2, 0, 0), Status.OK));
  t.deepEqual(p.logLines(), ['info: ']);
});

test('proxy_log with an unknown level is BAD_ARGUMENT, even with a wild pointer, and logs nothing', async (t) => {
  const p = await Probe.load();
  p.inRoot(() => {
    const [m, ml] = p.put('x');
    t.is(p.call('proxy_log', 6, m, ml), Status.BAD_ARGUMENT);
    t.is(p.call('proxy_log', -1, m, ml), Status.BAD_ARGUMENT);
    t.is(p.call('proxy_log', 6, WILD, 4), Status.BAD_ARGUMENT);
  });
  t.deepEqual(p.logLines(), []);
});

test('proxy_log with a message outside memory is INVALID_MEMORY_ACCESS', async (t) => {
  const p = await Probe.load();
  p.inRoot(() => {
    t.is(p.call('proxy_log', 2, WILD, 64), Status.INVALID_MEMORY_ACCESS);
    t.is(p.call('proxy_log', 2, 16, ALL), Status.INVALID_MEMORY_ACCESS);
    t.is(p.call('proxy_log', 2, -1, 1), Status.INVALID_MEMORY_ACCESS);
  });
  t.deepEqual(p.logLines(), []);
});

test('proxy_get_log_level writes the host log level; a wild pointer is INVALID_MEMORY_ACCESS', async (t) => {
  const p = await Probe.load({ logLevel: 1 });
  p.inRoot(() => {
    const ret = p.zeroed(4);
    t.is(p.call('proxy_get_log_level', ret), Status.OK);
    t.is(p.u32(ret), 1);
    t.is(p.call('proxy_get_log_level', WILD), Status.INVALID_MEMORY_ACCESS);
    t.is(p.call('proxy_get_log_level', -2), Status.INVALID_MEMORY_ACCESS);
  });
});

test('proxy_get_current_time_nanoseconds writes the host clock as u64 nanoseconds, and follows it', async (t) => {
  const p = await Probe.load({ startTime: START });
  const read = () =>
    p.inRoot(() => {
      const ret = p.zeroed(8);
      t.is(p.call('proxy_get_current_time_nanoseconds', ret), Status.OK);
      return p.u64(ret);
    });
  t.is(read(), 1_767_225_600_000_000_000n);
  await p.h.advanceTime(1500);
  t.is(read(), 1_767_225_601_500_000_000n);
  p.inRoot(() => t.is(p.call('proxy_get_current_time_nanoseconds', WILD), Status.INVALID_MEMORY_ACCESS));
});

test('proxy_set_tick_period_milliseconds makes proxy_on_tick run every period on the root context; 0 stops it', async (t) => {
  const p = await Probe.load();
  p.inRoot(() => t.is(p.call('proxy_set_tick_period_milliseconds', 100), Status.OK));
  await p.h.advanceTime(250);
  t.deepEqual(p.log({ only: ['proxy_on_tick'] }), ['proxy_on_tick(1)', 'proxy_on_tick(1)']);
  p.inRoot(() => t.is(p.call('proxy_set_tick_period_milliseconds', 0), Status.OK));
  await p.h.advanceTime(1000);
  t.is(p.log({ only: ['proxy_on_tick'] }).length, 2);
});

test('a new tick period replaces the old one', async (t) => {
  const p = await Probe.load();
  p.inRoot(() => p.call('proxy_set_tick_period_milliseconds', 100));
  p.inRoot(() => p.call('proxy_set_tick_period_milliseconds', 1000));
  await p.h.advanceTime(999);
  t.is(p.log({ only: ['proxy_on_tick'] }).length, 0);
  await p.h.advanceTime(1);
  t.is(p.log({ only: ['proxy_on_tick'] }).length, 1);
});

test('the tick period set from a stream context still ticks the root context', async (t) => {
  const p = await Probe.load();
  p.once('proxy_on_request_headers', () => p.call('proxy_set_tick_period_milliseconds', 10));
  await p.h.stream().requestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'a' });
  await p.h.advanceTime(10);
  t.deepEqual(p.log({ only: ['proxy_on_tick'] }), ['proxy_on_tick(1)']);
});

test('a plugin\'s own logLevel is what proxy_get_log_level returns to it and decides which of its lines are kept; without one, the host\'s', async (t) => {
  const bytes = new Uint8Array(await readFile(fixture('log-levels')));
  const lines: string[] = [];
  const env = createEnvironment({ logLevel: 2, log: (e) => lines.push(`${e.plugin} ${LOG_LEVEL_NAMES[e.level]}: ${e.message}`) });
  const plugins = [
    await Plugin.load(bytes, { name: 'host-level', rootId: 'log-levels' }, env),
    await Plugin.load(bytes, { name: 'trace', rootId: 'log-levels', logLevel: 0 }, env),
    await Plugin.load(bytes, { name: 'error', rootId: 'log-levels', logLevel: 4 }, env),
  ];
  t.teardown(() => plugins.forEach((p) => p.close()));
  t.deepEqual(lines, [
    'host-level critical: level 2',
    'host-level info: configure info',
    'trace critical: level 0',
    'trace trace: configure trace',
    'trace debug: configure debug',
    'trace info: configure info',
    'error critical: level 4',
  ]);
  t.throws(() => pluginSpec({ name: 'x', logLevel: 6 }), { message: 'filter "x": logLevel must be 0 (trace) to 5 (critical), got 6' });
});
