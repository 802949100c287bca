// Containment: a filter that loops, traps, reads out of bounds, grows past its memory ceiling,
// overflows its stack or exits is stopped; its stream gets the fail strategy; other streams go
// on; repeated failures quarantine the plugin for a backoff, after which it comes back.
import test from 'ava';
import { FilterHarness } from '../../sdk/harness/index.ts';
import { fixture } from '../helpers/fixtures.ts';

const req = (path: string) => ({ ':method': 'GET', ':path': path, ':authority': 'example', ':scheme': 'http' });
const misbehave = fixture('containment/misbehave');

async function load(options: Parameters<typeof FilterHarness.load>[1] = {}) {
  return FilterHarness.load(misbehave, { name: 'misbehave', failStrategy: 'FAIL_RELOAD', ...options });
}

test('a well-behaved request goes through the filter', async (t) => {
  const h = await load();
  const s = h.stream();
  t.deepEqual(await s.requestHeaders(req('/fine'), { endOfStream: true }), { kind: 'continue' });
  t.is(s.request.header('x-misbehave'), 'ok');
});

for (const [path, kind, text] of [
  ['/loop', 'budget', 'ms budget, and was stopped'],
  ['/trap', 'trap', 'unreachable'],
  ['/oob', 'memory', 'out of bounds'],
  ['/deep', 'stack', 'stack'],
  ['/exit', 'abort', 'proc_exit(3)'],
] as const) {
  test(`${path}: the filter is stopped, its stream gets 503 naming it, and the next stream runs on a fresh VM`, async (t) => {
    const h = await load({ limits: { callBudgetMs: 20 } });
    const r = await h.stream().requestHeaders(req(path), { endOfStream: true });
    t.is(r.kind, 'local-reply');
    t.is(r.status, 503);
    t.is(r.headers?.['x-sluice-filter-failed'], 'misbehave');
    t.true(r.body!.startsWith('sluice: filter "misbehave" failed: '), r.body);
    t.true(r.body!.toLowerCase().includes(text), r.body);
    t.true(r.body!.endsWith('the request was refused (failStrategy FAIL_RELOAD)\n'));
    const plugin = h.plugins[0];
    t.is(plugin.stats.failures, 1);
    t.is(plugin.stats.lastFailure?.kind, kind);
    t.is(plugin.stats.lastFailure?.callback, 'proxy_on_request_headers');

    const next = h.stream();
    t.deepEqual(await next.requestHeaders(req('/fine'), { endOfStream: true }), { kind: 'continue' });
    t.is(next.request.header('x-misbehave'), 'ok');
    t.is(plugin.stats.vmsStarted, 2);
  });
}

test('a filter growing memory past its ceiling is refused memory and fails alone', async (t) => {
  const h = await load({ limits: { memoryBytes: 1024 * 1024 } });
  const other = await FilterHarness.load(misbehave, { name: 'neighbour' });
  const r = await h.stream().requestHeaders(req('/grow'), { endOfStream: true });
  t.is(r.status, 503);
  t.is(h.plugins[0].stats.lastFailure?.kind, 'trap');
  const s = other.stream();
  t.deepEqual(await s.requestHeaders(req('/fine'), { endOfStream: true }), { kind: 'continue' });
});

test('FAIL_OPEN: the failing stream goes on without the filter, and says so in the log', async (t) => {
  const h = await load({ failStrategy: 'FAIL_OPEN' });
  const s = h.stream();
  t.deepEqual(await s.requestHeaders(req('/trap'), { endOfStream: true }), { kind: 'continue' });
  t.is(s.request.header('x-misbehave'), undefined);
  t.true(h.logLines().some((l) => l.startsWith('warn: filter failed: ') && l.endsWith('skipping it for this stream (FAIL_OPEN)')));
  const next = h.stream();
  await next.requestHeaders(req('/fine'), { endOfStream: true });
  t.is(next.request.header('x-misbehave'), 'ok');
});

test('FAIL_CLOSE: after a failure the filter answers 503 until its backoff ends, then comes back', async (t) => {
  const h = await load({ failStrategy: 'FAIL_CLOSE', quarantine: { backoffMs: 1000 } });
  t.is((await h.stream().requestHeaders(req('/trap'), { endOfStream: true })).status, 503);
  const during = await h.stream().requestHeaders(req('/fine'), { endOfStream: true });
  t.is(during.status, 503);
  t.is(during.body, 'sluice: filter "misbehave" is quarantined after repeated failures; the request was refused (failStrategy FAIL_CLOSE)\n');
  t.is(h.plugins[0].state, 'quarantined');
  await h.advanceTime(1000);
  t.is(h.plugins[0].state, 'active');
  const after = h.stream();
  t.deepEqual(await after.requestHeaders(req('/fine'), { endOfStream: true }), { kind: 'continue' });
  t.is(h.plugins[0].stats.quarantines, 1);
});

test('FAIL_RELOAD: a filter that keeps failing is quarantined, with a backoff that doubles', async (t) => {
  const h = await load({ quarantine: { failures: 3, backoffMs: 1000, windowMs: 60_000 } });
  for (let i = 0; i < 2; i++) t.is((await h.stream().requestHeaders(req('/trap'), { endOfStream: true })).status, 503);
  t.deepEqual(await h.stream().requestHeaders(req('/fine'), { endOfStream: true }), { kind: 'continue' });
  t.is((await h.stream().requestHeaders(req('/trap'), { endOfStream: true })).status, 503);
  t.is(h.plugins[0].state, 'quarantined');
  t.is((await h.stream().requestHeaders(req('/fine'), { endOfStream: true })).status, 503);
  await h.advanceTime(1000);
  // Three more failures right after the first quarantine: the next one lasts twice as long.
  for (let i = 0; i < 3; i++) await h.stream().requestHeaders(req('/trap'), { endOfStream: true });
  t.is(h.plugins[0].stats.quarantines, 2);
  await h.advanceTime(1000);
  t.is(h.plugins[0].state, 'quarantined');
  await h.advanceTime(1000);
  t.is(h.plugins[0].state, 'active');
});

test('a stream already open when its VM fails gets the fail strategy at its next phase', async (t) => {
  const h = await load();
  const open = h.stream();
  await open.requestHeaders(req('/fine'), { endOfStream: true });
  await h.stream().requestHeaders(req('/trap'), { endOfStream: true });
  const r = await open.responseHeaders({ ':status': '200' }, { endOfStream: true });
  t.is(r.status, 503);
});
