// The fault filter in the real host through the SDK harness, with the harness's clock: aborts
// (HTTP and gRPC statuses, body, details), delays resumed from onTick at their time, both in
// Envoy's order, exact percentages, the header match, Envoy's header-controlled faults,
// maxActiveFaults, streams that end while held, metrics, and every configuration it must refuse.

import { readFileSync } from 'node:fs';
import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { fileURLToPath } from 'node:url';
import { FilterHarness, type HarnessStream, type PhaseResult } from '../../../sdk/harness/index.ts';
import { buildFilters } from '../../../scripts/build-filters.js';

const wasm = fileURLToPath(new URL('../../../build/filters/fault.wasm', import.meta.url));
const schema = JSON.parse(readFileSync(new URL('../config.schema.json', import.meta.url), 'utf8'));
const validate = new Ajv2020({ allErrors: true, strict: true, strictRequired: false }).compile(schema);

const req = (extra: Record<string, string> = {}) => ({ ':method': 'GET', ':path': '/x', ':authority': 'shop.test', ':scheme': 'http', ...extra });

test.before(async () => {
  await buildFilters({ only: ['fault'] });
});

async function load(configuration: unknown) {
  return FilterHarness.load(wasm, { name: 'fault', rootId: 'fault', configuration: JSON.stringify(configuration) });
}

const metric = (h: FilterHarness, name: string) => Number(h.metric(name) ?? 0);

/** Tick timers the filter has running (the harness keeps them privately; ticks must stop when nothing is held). */
const activeTicks = (h: FilterHarness) => (h as unknown as { timers: Array<{ cancelled: boolean }> }).timers.filter((t) => !t.cancelled).length;

/** Starts request headers without waiting: `done()` tells whether the filter let go of them yet. */
function start(s: HarnessStream, headers: Record<string, string>) {
  let result: PhaseResult | undefined;
  const promise = s.requestHeaders(headers, { endOfStream: true }).then((r) => (result = r));
  return { promise, done: () => result !== undefined, result: () => result };
}

/** Sends one request through; the outcome's kind, or 'held' when a delay holds it. */
async function outcome(h: FilterHarness, headers: Record<string, string> = req()): Promise<string> {
  const s = h.stream();
  const r = start(s, headers);
  await new Promise((resolve) => setImmediate(resolve));
  const kind = r.done() ? (r.result()!.kind === 'local-reply' ? `abort ${r.result()!.status}` : r.result()!.kind) : 'held';
  await s.end();
  return kind;
}

test('logs what it will inject once configured', async (t) => {
  const h = await load({ delay: { fixedDelayMs: 200, percentage: 25 }, abort: { httpStatus: 503, percentage: 0.125 }, match: { headers: [{ name: 'x-chaos' }] } });
  t.deepEqual(h.logLines(2), ['info: fault: delay 200 ms for 25 %, abort for 0.125 % of the requests matching 1 header condition(s)']);
  const hc = await load({ delay: { percentage: 100 }, headerControlled: true });
  t.deepEqual(hc.logLines(2), ['info: fault: delay from the header for 100 % of the requests (all match); header-controlled']);
});

test('abort at 100 %: the status, body, content type and details, counted', async (t) => {
  const h = await load({ abort: { httpStatus: 503, percentage: 100, body: 'injected failure\n' } });
  const s = h.stream();
  const r = await s.requestHeaders(req(), { endOfStream: true });
  t.is(r.kind, 'local-reply');
  t.is(r.status, 503);
  t.is(r.body, 'injected failure\n');
  t.is(r.headers?.['content-type'], 'text/plain');
  t.is(r.headers?.['grpc-status'], undefined);
  t.is(r.details, 'fault_abort');
  await s.end();
  t.is(metric(h, 'fault_aborts_injected_total'), 1);
  t.is(metric(h, 'fault_delays_injected_total'), 0);
});

test("abort: Envoy's body by default; a gRPC status with or without an HTTP status", async (t) => {
  const plain = await load({ abort: { httpStatus: 429, percentage: 100 } });
  const r1 = await plain.stream().requestHeaders(req(), { endOfStream: true });
  t.like(r1, { status: 429, body: 'fault filter abort' });

  const grpc = await load({ abort: { grpcStatus: 14, percentage: 100 } });
  const r2 = await grpc.stream().requestHeaders(req({ 'content-type': 'application/grpc' }), { endOfStream: true });
  t.is(r2.status, 200);
  t.is(r2.headers?.['grpc-status'], '14');

  const both = await load({ abort: { httpStatus: 503, grpcStatus: 8, percentage: 100 } });
  const r3 = await both.stream().requestHeaders(req({ 'content-type': 'application/grpc' }), { endOfStream: true });
  t.is(r3.status, 503);
  t.is(r3.headers?.['grpc-status'], '8');
  // As in Envoy, the gRPC status is for gRPC requests only.
  const r4 = await both.stream().requestHeaders(req(), { endOfStream: true });
  t.is(r4.status, 503);
  t.is(r4.headers?.['grpc-status'], undefined);
});

test('percentages are exact: 25 % aborts the 4th, 8th, ... request, 25 of every 100', async (t) => {
  const h = await load({ abort: { httpStatus: 503, percentage: 25 } });
  const kinds: string[] = [];
  for (let i = 0; i < 100; i++) kinds.push(await outcome(h));
  t.is(kinds.filter((k) => k === 'abort 503').length, 25);
  t.deepEqual(kinds.slice(0, 8), ['continue', 'continue', 'continue', 'abort 503', 'continue', 'continue', 'continue', 'abort 503']);
  t.is(metric(h, 'fault_aborts_injected_total'), 25);
});

test('fractional, zero and full percentages', async (t) => {
  const count = async (percentage: number, n: number) => {
    const h = await load({ abort: { httpStatus: 500, percentage } });
    let aborted = 0;
    for (let i = 0; i < n; i++) if ((await outcome(h)) === 'abort 500') aborted++;
    return aborted;
  };
  t.is(await count(12.5, 80), 10);
  t.is(await count(0.5, 400), 2);
  t.is(await count(0, 50), 0);
  t.is(await count(100, 20), 20);
});

test('a delay holds the request until a tick at or after its time, then lets it go on', async (t) => {
  const h = await load({ delay: { fixedDelayMs: 50, percentage: 100 } });
  const s = h.stream();
  const r = start(s, req());
  await h.advanceTime(0);
  t.false(r.done());
  t.is(metric(h, 'fault_delays_injected_total'), 1);
  t.is(metric(h, 'fault_active_delays'), 1);
  t.is(activeTicks(h), 1);
  await h.advanceTime(40);
  t.false(r.done());
  await h.advanceTime(10);
  t.true(r.done());
  t.is(r.result()!.kind, 'continue');
  t.is(metric(h, 'fault_active_delays'), 0);
  t.is(activeTicks(h), 0); // no ticks while nothing is held
  await s.responseHeaders({ ':status': '200' }, { endOfStream: true });
  await s.end();
  t.deepEqual(h.logLines(3), []);
});

test('a delay ends on the first 10 ms tick at or after its time', async (t) => {
  const h = await load({ delay: { fixedDelayMs: 25, percentage: 100 } });
  const r = start(h.stream(), req());
  await h.advanceTime(29);
  t.false(r.done());
  await h.advanceTime(1);
  t.true(r.done());
});

test('several held streams each go on at their own time; the tick keeps running until the last', async (t) => {
  const h = await load({ delay: { percentage: 100 }, headerControlled: true });
  const a = start(h.stream(), req({ 'x-envoy-fault-delay-request': '50' }));
  await h.advanceTime(10);
  const b = start(h.stream(), req({ 'x-envoy-fault-delay-request': '20' }));
  await h.advanceTime(0);
  t.is(metric(h, 'fault_active_delays'), 2);
  await h.advanceTime(20); // t = 30: b's time (10 + 20) has come, a's (50) not
  t.false(a.done());
  t.true(b.done());
  t.is(metric(h, 'fault_active_delays'), 1);
  t.is(activeTicks(h), 1);
  await h.advanceTime(20);
  t.true(a.done());
  t.is(activeTicks(h), 0);
});

test('delay and abort on one request: the abort answers once the delay is over', async (t) => {
  const h = await load({ delay: { fixedDelayMs: 30, percentage: 100 }, abort: { httpStatus: 504, percentage: 100, body: 'late and failed' } });
  const s = h.stream();
  const r = start(s, req());
  await h.advanceTime(20);
  t.false(r.done());
  t.is(metric(h, 'fault_aborts_injected_total'), 0);
  await h.advanceTime(10);
  t.like(r.result(), { kind: 'local-reply', status: 504, body: 'late and failed', details: 'fault_abort' });
  t.is(metric(h, 'fault_aborts_injected_total'), 1);
  t.is(metric(h, 'fault_delays_injected_total'), 1);
  await s.end();
});

test('delays and aborts are picked independently, each exactly', async (t) => {
  const h = await load({ delay: { fixedDelayMs: 10, percentage: 50 }, abort: { httpStatus: 503, percentage: 25 } });
  const kinds: string[] = [];
  for (let i = 0; i < 8; i++) kinds.push(await outcome(h));
  // The 2nd, 4th, 6th, 8th are delayed; the 4th and 8th would also abort after their delay.
  t.deepEqual(kinds, ['continue', 'held', 'continue', 'held', 'continue', 'held', 'continue', 'held']);
  t.is(metric(h, 'fault_delays_injected_total'), 4);
});

test('a held stream that ends early is forgotten: the gauge drops, ticks stop, nothing is resumed', async (t) => {
  const h = await load({ delay: { fixedDelayMs: 100, percentage: 100 } });
  const gone = h.stream();
  const r = start(gone, req());
  const kept = h.stream();
  const k = start(kept, req());
  await h.advanceTime(10);
  t.is(metric(h, 'fault_active_delays'), 2);
  await gone.end(); // the client left
  t.is(metric(h, 'fault_active_delays'), 1);
  t.is(r.result()?.kind, 'reset');
  await kept.end();
  t.is(metric(h, 'fault_active_delays'), 0);
  t.is(activeTicks(h), 0);
  t.is(k.result()?.kind, 'reset');
  await h.advanceTime(200);
  t.deepEqual(h.logLines(3), []);
});

test('only requests the header match selects are faulted, and only they count toward the percentage', async (t) => {
  const h = await load({ abort: { httpStatus: 503, percentage: 50 }, match: { headers: [{ name: 'x-fault', exact: 'on' }, { name: 'x-user', prefix: 'test-' }] } });
  const on = req({ 'x-fault': 'on', 'x-user': 'test-1' });
  const kinds: string[] = [];
  for (let i = 0; i < 4; i++) {
    kinds.push(await outcome(h, on));
    kinds.push(await outcome(h, req({ 'x-fault': 'on' })));
    kinds.push(await outcome(h));
  }
  t.deepEqual(kinds, ['continue', 'continue', 'continue', 'abort 503', 'continue', 'continue', 'continue', 'continue', 'continue', 'abort 503', 'continue', 'continue']);
});

test('header-controlled: the request names the abort status, gRPC status and delay', async (t) => {
  const h = await load({ delay: { percentage: 100 }, abort: { percentage: 100 }, headerControlled: true });
  t.is(await outcome(h), 'continue'); // neither configured nor asked
  t.is(await outcome(h, req({ 'x-envoy-fault-abort-request': '429' })), 'abort 429');
  const grpc = await h.stream().requestHeaders(req({ 'x-envoy-fault-abort-grpc-request': '5', 'content-type': 'application/grpc' }), { endOfStream: true });
  t.like(grpc, { status: 200, headers: { 'grpc-status': '5', 'content-type': 'text/plain' } });
  const s = h.stream();
  const r = start(s, req({ 'x-envoy-fault-delay-request': '40' }));
  await h.advanceTime(30);
  t.false(r.done());
  await h.advanceTime(10);
  t.is(r.result()?.kind, 'continue');
});

test('header-controlled: headers override configured values; percentage headers can only lower the share', async (t) => {
  const h = await load({ abort: { httpStatus: 503, percentage: 50 }, headerControlled: true });
  const kinds: string[] = [];
  for (let i = 0; i < 4; i++) kinds.push(await outcome(h, req({ 'x-envoy-fault-abort-request': '418', 'x-envoy-fault-abort-request-percentage': '100' })));
  t.deepEqual(kinds, ['continue', 'abort 418', 'continue', 'abort 418']); // capped at the configured 50 %

  const low = await load({ abort: { httpStatus: 503, percentage: 100 }, headerControlled: true });
  const lowKinds: string[] = [];
  for (let i = 0; i < 8; i++) lowKinds.push(await outcome(low, req({ 'x-envoy-fault-abort-request-percentage': '12.5' })));
  t.is(lowKinds.filter((k) => k === 'abort 503').length, 1);
  t.is(await outcome(low, req({ 'x-envoy-fault-abort-request-percentage': '0' })), 'continue');
});

test('header-controlled: malformed header values are ignored', async (t) => {
  const h = await load({ delay: { fixedDelayMs: 20, percentage: 100 }, abort: { httpStatus: 503, percentage: 100 }, headerControlled: true });
  const abort = (headers: Record<string, string>) => outcome(h, req({ 'x-envoy-fault-delay-request': '0', ...headers }));
  t.is(await abort({ 'x-envoy-fault-abort-request': '42' }), 'abort 503'); // out of 200–599: the configured status
  t.is(await abort({ 'x-envoy-fault-abort-request': '5xx' }), 'abort 503');
  t.is(await abort({ 'x-envoy-fault-abort-request': '' }), 'abort 503');
  t.is(await abort({ 'x-envoy-fault-abort-request-percentage': 'all' }), 'abort 503');
  t.is(await abort({ 'x-envoy-fault-abort-request-percentage': '101' }), 'abort 503');
  t.is(await abort({ 'x-envoy-fault-abort-request-percentage': '1.23456' }), 'abort 503');
  t.is(await abort({ 'x-envoy-fault-abort-request-percentage': '25.' }), 'abort 503');
  // A delay header of 0 asks for no delay; one that is not a number leaves the configured 20 ms.
  t.is(await outcome(h, req({ 'x-envoy-fault-delay-request': 'soon' })), 'held');
});

test('without headerControlled the fault headers are ignored', async (t) => {
  const h = await load({ abort: { httpStatus: 503, percentage: 100 } });
  t.is(await outcome(h, req({ 'x-envoy-fault-abort-request': '429', 'x-envoy-fault-abort-request-percentage': '0' })), 'abort 503');
  const d = await load({ delay: { fixedDelayMs: 10, percentage: 100 } });
  t.is(await outcome(d, req({ 'x-envoy-fault-delay-request': '0' })), 'held');
});

test('maxActiveFaults: a delay beyond it is skipped and counted, the request goes on (or aborts) at once', async (t) => {
  const h = await load({ delay: { fixedDelayMs: 100, percentage: 100 }, maxActiveFaults: 1 });
  const first = start(h.stream(), req());
  await h.advanceTime(0);
  t.is(await outcome(h), 'continue');
  t.is(metric(h, 'fault_delays_overflow_total'), 1);
  t.is(metric(h, 'fault_delays_injected_total'), 1);
  t.false(first.done());
  await h.advanceTime(100);
  t.true(first.done());

  const both = await load({ delay: { fixedDelayMs: 100, percentage: 100 }, abort: { httpStatus: 503, percentage: 100 }, maxActiveFaults: 0 });
  t.is(await outcome(both), 'abort 503');
});

const valid: unknown[] = [
  { delay: { fixedDelayMs: 1, percentage: 0.0001 } },
  { abort: { httpStatus: 200, percentage: 0 }, match: { headers: [] } },
  { abort: { grpcStatus: 0, percentage: 100, body: '' }, maxActiveFaults: 0 },
  { delay: { percentage: 100 }, abort: { percentage: 100 }, headerControlled: true, maxActiveFaults: 2147483647 },
  ...(schema.examples as unknown[]),
];

for (const [i, configuration] of valid.entries()) {
  test(`accepts valid configuration #${i}, as its schema does`, async (t) => {
    await t.notThrowsAsync(load(configuration));
    t.true(validate(configuration), JSON.stringify(validate.errors));
  });
}

/** [what, configuration, the error the filter logs, whether config.schema.json can tell too]. */
const invalid: Array<[string, unknown, RegExp, boolean]> = [
  ['nothing to inject', {}, /field 'delay': give delay, abort or both/, true],
  ['a match alone', { match: { headers: [{ name: 'x-fault' }] } }, /give delay, abort or both/, true],
  ['a delay without fixedDelayMs', { delay: { percentage: 10 } }, /field 'delay\.fixedDelayMs': is required \(milliseconds, at least 1\) unless headerControlled is true/, true],
  ['a zero delay', { delay: { fixedDelayMs: 0, percentage: 10 } }, /field 'delay\.fixedDelayMs': must be between 1 and 2147483647, got 0/, true],
  ['a delay above the timer limit', { delay: { fixedDelayMs: 2147483648, percentage: 10 } }, /field 'delay\.fixedDelayMs': must be between 1 and 2147483647/, true],
  ['a fractional delay', { delay: { fixedDelayMs: 1.5, percentage: 10 } }, /field 'delay\.fixedDelayMs': expected an integer, got number/, true],
  ['a delay without percentage', { delay: { fixedDelayMs: 10 } }, /field 'delay\.percentage': is required \(0 to 100\)/, true],
  ['a percentage above 100', { delay: { fixedDelayMs: 10, percentage: 101 } }, /field 'delay\.percentage': must be a number from 0 to 100 with at most 4 decimals, got 101/, true],
  ['a negative percentage', { abort: { httpStatus: 503, percentage: -1 } }, /field 'abort\.percentage': must be a number from 0 to 100/, true],
  ['a percentage finer than 0.0001', { abort: { httpStatus: 503, percentage: 0.00001 } }, /field 'abort\.percentage': must be a number from 0 to 100 with at most 4 decimals/, false],
  ['a percentage given as a string', { abort: { httpStatus: 503, percentage: '25%' } }, /field 'abort\.percentage': expected a number, got string/, true],
  ['an abort without a status', { abort: { percentage: 10 } }, /field 'abort\.httpStatus': is required \(200 to 599\), or grpcStatus, unless headerControlled is true/, true],
  ['an HTTP status out of range', { abort: { httpStatus: 600, percentage: 10 } }, /field 'abort\.httpStatus': must be between 200 and 599, got 600/, true],
  ['a gRPC status out of range', { abort: { grpcStatus: 17, percentage: 10 } }, /field 'abort\.grpcStatus': must be between 0 and 16, got 17/, true],
  ['a body with NUL', { abort: { httpStatus: 503, percentage: 10, body: 'a\u0000b' } }, /field 'abort\.body': must not contain NUL/, true],
  ['a body that is not a string', { abort: { httpStatus: 503, percentage: 10, body: 5 } }, /field 'abort\.body': expected a string, got number/, true],
  ['an unknown delay field', { delay: { fixedDelay: '1s', percentage: 10 } }, /unknown field 'delay\.fixedDelay' \(known: fixedDelayMs, percentage\)/, true],
  ['an unknown abort field', { abort: { httpStatus: 503, percentage: 10, status: 1 } }, /unknown field 'abort\.status' \(known: httpStatus, grpcStatus, body, percentage\)/, true],
  ['a delay that is not an object', { delay: 100 }, /invalid configuration: field 'delay': expected an object, got number$/m, true],
  ['headerControlled that is not a boolean', { abort: { httpStatus: 503, percentage: 10 }, headerControlled: 'yes' }, /field 'headerControlled': expected true or false, got string/, true],
  ['a negative maxActiveFaults', { abort: { httpStatus: 503, percentage: 10 }, maxActiveFaults: -1 }, /field 'maxActiveFaults': must be between 0 and 2147483647, got -1/, true],
  ['an unknown match field', { abort: { httpStatus: 503, percentage: 10 }, match: { path: '/x' } }, /unknown field 'match\.path' \(known: headers\)/, true],
  ['a header condition without a name', { abort: { httpStatus: 503, percentage: 10 }, match: { headers: [{ exact: '1' }] } }, /field 'match\.headers\[0\]\.name': is required/, true],
  ['an upper-case header name', { abort: { httpStatus: 503, percentage: 10 }, match: { headers: [{ name: 'X-Fault' }] } }, /field 'match\.headers\[0\]\.name': must be a lower-case header name/, true],
  ['two header operators', { abort: { httpStatus: 503, percentage: 10 }, match: { headers: [{ name: 'x-a', exact: '1', suffix: '1' }] } }, /header 'x-a' gives more than one of exact, prefix, suffix, contains, present/, true],
  ['a header condition that is not an object', { abort: { httpStatus: 503, percentage: 10 }, match: { headers: ['x-a'] } }, /field 'match\.headers\[0\]': expected an object/, true],
  ['an unknown top-level field', { abort: { httpStatus: 503, percentage: 10 }, headers: [] }, /unknown field 'headers' \(known: headerControlled, maxActiveFaults, delay, abort, match\)/, true],
];

function errorText(error: unknown): string {
  const e = error as { message?: string; logs?: Array<{ message: string }> } | undefined;
  return [e?.message ?? '', ...(e?.logs ?? []).map((l) => l.message)].join('\n');
}

for (const [what, configuration, message, schemaTells] of invalid) {
  test(`rejects ${what}, naming the field`, async (t) => {
    const error = await t.throwsAsync(load(configuration));
    t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
    t.regex(errorText(error), message);
    if (schemaTells) t.false(validate(configuration), 'config.schema.json should refuse it too');
  });
}

test('rejects configuration text that is not JSON, saying where', async (t) => {
  const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'fault', rootId: 'fault', configuration: '{"abort": {' }));
  t.regex(errorText(error), /fault: invalid configuration: invalid JSON: line 1/);
});
