// The ratelimit filter in the real host through the SDK harness, with the harness's clock for
// exact refills: buckets per header, peer identity, path or none; keyMissing; match prefixes;
// several rules at once; the default bucket; 429s and x-ratelimit-* headers; buckets shared by
// VMs with compare-and-swap (a concurrent writer injected between read and write); bounded slots;
// the counters; and every configuration it must refuse.

import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { FilterHarness, type HarnessOptions } from '../../../sdk/harness/index.ts';
import { buildFilters } from '../../../scripts/build-filters.js';

const wasm = fileURLToPath(new URL('../../../build/filters/ratelimit.wasm', import.meta.url));
const schema = JSON.parse(readFileSync(new URL('../config.schema.json', import.meta.url), 'utf8'));
const validate = new Ajv2020({ allErrors: true, strict: true }).compile(schema);

const CAS_MISMATCH = 8;

test.before(async () => {
  await buildFilters({ only: ['ratelimit'] });
});

async function load(configuration: unknown, options: HarnessOptions = {}): Promise<FilterHarness> {
  if (typeof configuration === 'object' && !validate(configuration)) throw new Error(`schema refuses ${JSON.stringify(configuration)}: ${JSON.stringify(validate.errors)}`);
  return FilterHarness.load(wasm, { name: 'ratelimit', rootId: 'ratelimit', configuration: JSON.stringify(configuration), ...options });
}

type Headers = Record<string, string>;
interface Outcome {
  status: number;
  /** x-ratelimit-limit / -remaining / -reset and retry-after, when present. */
  limit?: string;
  remaining?: string;
  reset?: string;
  retryAfter?: string;
  body?: string;
}

/** One request through the filter: its request headers, then (unless answered locally) a 200 response. */
async function send(h: FilterHarness, path = '/api/items', extra: Headers = {}, identity?: string): Promise<Outcome> {
  const s = h.stream(identity === undefined ? {} : { connection: { id: 1, mtls: true, peerUriSans: [identity] } });
  const r = await s.requestHeaders({ ':method': 'GET', ':path': path, ':authority': 'shop.svc', ':scheme': 'http', ...extra }, { endOfStream: true });
  let out: Outcome;
  if (r.kind === 'local-reply') {
    const headers = r.headers!;
    out = { status: r.status!, limit: headers['x-ratelimit-limit'], remaining: headers['x-ratelimit-remaining'], reset: headers['x-ratelimit-reset'], retryAfter: headers['retry-after'], body: r.body };
    if (r.details !== 'ratelimit_limited' || headers['content-type'] !== 'text/plain; charset=utf-8') throw new Error(`unexpected local reply ${JSON.stringify(r)}`);
  } else {
    await s.responseHeaders({ ':status': '200', 'content-type': 'application/json' }, { endOfStream: true });
    const v = s.response;
    out = { status: 200, limit: v.header('x-ratelimit-limit'), remaining: v.header('x-ratelimit-remaining'), reset: v.header('x-ratelimit-reset'), retryAfter: v.header('retry-after') };
  }
  await s.end();
  for (const k of Object.keys(out) as Array<keyof Outcome>) if (out[k] === undefined) delete out[k];
  return out;
}

const ok = (remaining: number, limit: number, reset = 1): Outcome => ({ status: 200, limit: String(limit), remaining: String(remaining), reset: String(reset) });
const limited = (rule: string, limit: number, reset = 1): Outcome => ({
  status: 429,
  limit: String(limit),
  remaining: '0',
  reset: String(reset),
  retryAfter: String(reset),
  body: `ratelimit: too many requests (rule '${rule}'); retry after ${reset}s\n`,
});
const metric = (h: FilterHarness, name: string) => Number(h.metric(name) ?? 0);

/** The buckets in shared data: key → { owner, lastFillMs, tokens }. */
function buckets(h: FilterHarness): Map<string, { owner: bigint; lastFillMs: number; tokens: number }> {
  const out = new Map<string, { owner: bigint; lastFillMs: number; tokens: number }>();
  for (const key of h.env.sharedData.keys('')) {
    const { value } = h.env.sharedData.get('', key);
    if (!key.endsWith(':format') && value) {
      const dv = new DataView(value.buffer, value.byteOffset, value.byteLength);
      out.set(key, { owner: dv.getBigUint64(0, true), lastFillMs: Number(dv.getBigUint64(8, true)), tokens: dv.getUint32(16, true) });
    }
  }
  return out;
}

const perUser = (extra: object = {}) => ({ rules: [{ name: 'per-user', key: { header: 'x-user' }, maxTokens: 3, fillIntervalMs: 1000, ...extra }] });

test('a bucket of 3: exactly 3 requests pass, counting down, then 429 with Retry-After and the x-ratelimit-* headers', async (t) => {
  const h = await load(perUser());
  const alice = { 'x-user': 'alice' };
  t.deepEqual(await send(h, '/a', alice), ok(2, 3));
  t.deepEqual(await send(h, '/a', alice), ok(1, 3));
  t.deepEqual(await send(h, '/a', alice), ok(0, 3));
  t.deepEqual(await send(h, '/a', alice), limited('per-user', 3));
  t.deepEqual(await send(h, '/a', alice), limited('per-user', 3));
  t.is(metric(h, 'ratelimit_allowed_total'), 3);
  t.is(metric(h, 'ratelimit_limited_total'), 2);
  t.is(h.metric('ratelimit_fail_open_total'), undefined);
});

test('buckets refill lazily from the host clock: tokensPerFill every fillIntervalMs, up to maxTokens', async (t) => {
  const h = await load(perUser({ maxTokens: 3, tokensPerFill: 2, fillIntervalMs: 2500 }));
  const alice = { 'x-user': 'alice' };
  for (let i = 2; i >= 0; i--) t.deepEqual(await send(h, '/a', alice), ok(i, 3, 3)); // 2.5 s to the next fill: 3 s rounded up
  t.deepEqual(await send(h, '/a', alice), limited('per-user', 3, 3));
  await h.advanceTime(1000);
  t.deepEqual(await send(h, '/a', alice), limited('per-user', 3, 2)); // 1.5 s left
  await h.advanceTime(1499);
  t.deepEqual(await send(h, '/a', alice), limited('per-user', 3, 1)); // 1 ms left rounds up to 1 s
  await h.advanceTime(1);
  // One fill: 2 tokens.
  t.deepEqual(await send(h, '/a', alice), ok(1, 3, 3));
  t.deepEqual(await send(h, '/a', alice), ok(0, 3, 3));
  t.deepEqual(await send(h, '/a', alice), limited('per-user', 3, 3));
  // Many fills later the bucket is full again, not fuller; a full bucket restarts its clock.
  await h.advanceTime(60_000);
  await h.advanceTime(1234);
  t.deepEqual(await send(h, '/a', alice), ok(2, 3, 3));
  await h.advanceTime(2499);
  t.deepEqual(await send(h, '/a', alice), ok(1, 3, 1));
  await h.advanceTime(1);
  t.deepEqual(await send(h, '/a', alice), ok(2, 3, 3)); // +2 from the fill, capped at 3, minus this one
});

test('a fill interval below a second reports 1 second', async (t) => {
  const h = await load(perUser({ maxTokens: 1, fillIntervalMs: 100 }));
  t.deepEqual(await send(h, '/', { 'x-user': 'a' }), ok(0, 1, 1));
  t.deepEqual(await send(h, '/', { 'x-user': 'a' }), limited('per-user', 1, 1));
  await h.advanceTime(100);
  t.deepEqual(await send(h, '/', { 'x-user': 'a' }), ok(0, 1, 1));
});

test('a header key: each value has its own bucket', async (t) => {
  const h = await load(perUser({ maxTokens: 1 }));
  t.is((await send(h, '/', { 'x-user': 'alice' })).status, 200);
  t.is((await send(h, '/', { 'x-user': 'bob' })).status, 200);
  t.is((await send(h, '/', { 'x-user': 'alice' })).status, 429);
  t.is((await send(h, '/', { 'x-user': 'bob' })).status, 429);
  t.is((await send(h, '/', { 'x-user': 'carol' })).status, 200);
});

test('keyMissing skip (the default): a request without the key is not limited by the rule', async (t) => {
  const h = await load(perUser({ maxTokens: 1 }));
  for (let i = 0; i < 3; i++) t.deepEqual(await send(h, '/'), { status: 200 });
  t.deepEqual(await send(h, '/', { 'x-user': '' }), { status: 200 }); // an empty value is no key
  t.is(h.metric('ratelimit_allowed_total'), undefined);
});

test('keyMissing shared: requests without the key (or with an empty one) share one bucket', async (t) => {
  const h = await load(perUser({ maxTokens: 2, keyMissing: 'shared' }));
  t.deepEqual(await send(h, '/'), ok(1, 2));
  t.deepEqual(await send(h, '/', { 'x-user': '' }), ok(0, 2));
  t.deepEqual(await send(h, '/'), limited('per-user', 2));
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), ok(1, 2));
});

test('a peer-identity key: one bucket per SPIFFE ID of the mTLS peer; no identity is a missing key', async (t) => {
  const h = await load({ rules: [{ name: 'per-peer', key: { peerIdentity: true }, maxTokens: 1, fillIntervalMs: 1000 }] });
  const web = 'spiffe://cluster.local/ns/shop/sa/web';
  const admin = 'spiffe://cluster.local/ns/shop/sa/admin';
  t.deepEqual(await send(h, '/', {}, web), ok(0, 1));
  t.deepEqual(await send(h, '/', {}, web), limited('per-peer', 1));
  t.deepEqual(await send(h, '/', {}, admin), ok(0, 1));
  t.deepEqual(await send(h, '/'), { status: 200 });
  t.deepEqual(await send(h, '/'), { status: 200 });
});

test('a path key: one bucket per path, without the query', async (t) => {
  const h = await load({ rules: [{ name: 'per-path', key: { path: true }, maxTokens: 1, fillIntervalMs: 1000 }] });
  t.is((await send(h, '/items?page=1')).status, 200);
  t.is((await send(h, '/items?page=2')).status, 429);
  t.is((await send(h, '/items')).status, 429);
  t.is((await send(h, '/items/1')).status, 200);
});

test('no key: one bucket for every request the rule applies to', async (t) => {
  const h = await load({ rules: [{ name: 'all', maxTokens: 2, fillIntervalMs: 1000 }] });
  t.deepEqual(await send(h, '/a', { 'x-user': 'alice' }), ok(1, 2));
  t.deepEqual(await send(h, '/b', { 'x-user': 'bob' }), ok(0, 2));
  t.deepEqual(await send(h, '/c'), limited('all', 2));
  t.deepEqual([...buckets(h).keys()], ['ratelimit:ratelimit:all:0']);
});

test('match.prefix: the rule applies only under that path prefix', async (t) => {
  const h = await load({ rules: [{ name: 'search', match: { prefix: '/search' }, maxTokens: 1, fillIntervalMs: 1000 }] });
  t.deepEqual(await send(h, '/search?q=a'), ok(0, 1));
  t.deepEqual(await send(h, '/search/more'), limited('search', 1));
  t.deepEqual(await send(h, '/items'), { status: 200 });
});

test('every rule that applies takes a token; a 429 takes none from any bucket; headers show the rule closest to its limit', async (t) => {
  const h = await load({
    rules: [
      { name: 'per-user', key: { header: 'x-user' }, maxTokens: 5, fillIntervalMs: 1000 },
      { name: 'search', match: { prefix: '/search' }, maxTokens: 2, fillIntervalMs: 10_000 },
    ],
  });
  const alice = { 'x-user': 'alice' };
  t.deepEqual(await send(h, '/items', alice), ok(4, 5)); // only per-user applies
  t.deepEqual(await send(h, '/search', alice), ok(1, 2, 10)); // search: 1 left of 2, closer than per-user's 3 of 5
  t.deepEqual(await send(h, '/search', alice), ok(0, 2, 10));
  t.deepEqual(await send(h, '/search', alice), limited('search', 2, 10));
  t.deepEqual(await send(h, '/search', alice), limited('search', 2, 10));
  // The two refused requests took nothing from alice's per-user bucket: 2 left, this takes one.
  t.deepEqual(await send(h, '/items', alice), ok(1, 5));
  t.is(metric(h, 'ratelimit_allowed_total'), 4);
  t.is(metric(h, 'ratelimit_limited_total'), 2);
});

test('an empty per-user bucket refuses before the search bucket is touched', async (t) => {
  const h = await load({
    rules: [
      { name: 'per-user', key: { header: 'x-user' }, maxTokens: 1, fillIntervalMs: 1000 },
      { name: 'search', match: { prefix: '/search' }, maxTokens: 5, fillIntervalMs: 1000 },
    ],
  });
  t.deepEqual(await send(h, '/search', { 'x-user': 'a' }), ok(0, 1));
  t.deepEqual(await send(h, '/search', { 'x-user': 'a' }), limited('per-user', 1));
  t.deepEqual(await send(h, '/search', { 'x-user': 'b' }), ok(0, 1));
  t.is(buckets(h).get('ratelimit:ratelimit:search:0')?.tokens, 3);
});

test('defaultBucket: one bucket for the requests no rule applies to', async (t) => {
  const h = await load({ ...perUser({ maxTokens: 5 }), defaultBucket: { maxTokens: 2, fillIntervalMs: 1000 } });
  t.deepEqual(await send(h, '/'), ok(1, 2));
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), ok(4, 5)); // a rule applies: not the default bucket
  t.deepEqual(await send(h, '/'), ok(0, 2));
  t.deepEqual(await send(h, '/'), limited('default', 2));
  t.true(h.logLines().includes('info: ratelimit: 1 rule(s) and a default bucket'));
});

test('an empty configuration limits nothing', async (t) => {
  const h = await FilterHarness.load(wasm, { name: 'ratelimit', rootId: 'ratelimit', configuration: '' });
  for (let i = 0; i < 3; i++) t.deepEqual(await send(h, '/'), { status: 200 });
  t.true(h.logLines().includes('info: ratelimit: 0 rule(s), no default bucket'));
});

test('rateLimitHeaders false: no x-ratelimit-* headers, but 429s keep Retry-After', async (t) => {
  const h = await load({ ...perUser({ maxTokens: 1 }), rateLimitHeaders: false });
  t.deepEqual(await send(h, '/', { 'x-user': 'a' }), { status: 200 });
  t.deepEqual(await send(h, '/', { 'x-user': 'a' }), { status: 429, retryAfter: '1', body: "ratelimit: too many requests (rule 'per-user'); retry after 1s\n" });
});

test('upstream x-ratelimit-* headers are replaced, not duplicated', async (t) => {
  const h = await load(perUser());
  const s = h.stream();
  await s.requestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'a', 'x-user': 'a' }, { endOfStream: true });
  await s.responseHeaders({ ':status': '200', 'x-ratelimit-remaining': '999', 'x-ratelimit-limit': '1000' }, { endOfStream: true });
  t.deepEqual(s.response.headers!.getAll('x-ratelimit-remaining'), ['2']);
  t.deepEqual(s.response.headers!.getAll('x-ratelimit-limit'), ['3']);
  await s.end();
});

test('buckets live in shared data under ratelimit:<plugin>:<rule>:<slot>, 20 bytes each', async (t) => {
  const h = await load(perUser());
  await send(h, '/', { 'x-user': 'alice' });
  const all = buckets(h);
  t.is(all.size, 1);
  const [key, bucket] = [...all][0];
  t.regex(key, /^ratelimit:ratelimit:per-user:\d+$/);
  t.is(bucket.tokens, 2);
  t.is(bucket.lastFillMs, Date.UTC(2026, 0, 1));
  t.is(h.env.sharedData.get('', key).value!.byteLength, 20);
  t.is(h.sharedData('ratelimit:ratelimit:format'), 'v1: 20-byte buckets (owner u64, lastFillMs u64, tokens u32)');
});

test('two VMs of the plugin draw from the same buckets', async (t) => {
  // Two plugins with the same name and vm id in one host: each request passes both, so takes two
  // tokens from alice's one bucket. (The response passes them in reverse order, so it shows the
  // first VM's count: 3 left after its token, before the second VM took one.)
  const configuration = JSON.stringify(perUser({ maxTokens: 4 }));
  const source = { module: wasm, name: 'ratelimit', rootId: 'ratelimit', configuration };
  const h = await FilterHarness.chain([source, source]);
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), ok(3, 4));
  t.is([...buckets(h).values()][0].tokens, 2);
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), ok(1, 4));
  t.is([...buckets(h).values()][0].tokens, 0);
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), limited('per-user', 4));
  t.is(buckets(h).size, 1);
});

test('plugins with different names keep separate buckets', async (t) => {
  const configuration = JSON.stringify(perUser({ maxTokens: 1 }));
  const h = await FilterHarness.chain([
    { module: wasm, name: 'edge', rootId: 'ratelimit', configuration },
    { module: wasm, name: 'api', rootId: 'ratelimit', configuration },
  ]);
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), ok(0, 1));
  t.deepEqual([...buckets(h).keys()].map((k) => k.replace(/\d+$/, 'N')).sort(), ['ratelimit:api:per-user:N', 'ratelimit:edge:per-user:N']);
});

/** Makes the store run `before` right before the filter's next write to a bucket (another VM, say). */
function interleave(h: FilterHarness, before: (key: string) => void, times = 1): void {
  const store = h.env.sharedData;
  const set = store.set.bind(store);
  let left = times;
  store.set = (vmId, key, value, cas) => {
    if (left > 0 && !key.endsWith(':format')) {
      left--;
      before(key);
    }
    return set(vmId, key, value, cas);
  };
}

test('compare-and-swap: a write by another VM between read and write is read again, and both tokens count', async (t) => {
  const h = await load(perUser({ maxTokens: 5 }));
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), ok(4, 5));
  // Another VM takes a token from alice's bucket (4 → 3) while this one is between its read and its write.
  interleave(h, (key) => {
    const { value } = h.env.sharedData.get('', key);
    const next = Uint8Array.from(value!);
    new DataView(next.buffer).setUint32(16, 3, true);
    h.env.sharedData.set('', key, next, 0);
  });
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), ok(2, 5));
  t.is([...buckets(h).values()][0].tokens, 2);
  t.is(h.metric('ratelimit_fail_open_total'), undefined);
});

test('compare-and-swap: a bucket another VM emptied meanwhile refuses the request', async (t) => {
  const h = await load(perUser({ maxTokens: 2 }));
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), ok(1, 2));
  interleave(h, (key) => {
    const next = Uint8Array.from(h.env.sharedData.get('', key).value!);
    new DataView(next.buffer).setUint32(16, 0, true);
    h.env.sharedData.set('', key, next, 0);
  });
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), limited('per-user', 2));
});

test('compare-and-swap: after 4 lost races the request passes, counted in ratelimit_fail_open_total and logged', async (t) => {
  const h = await load(perUser());
  const store = h.env.sharedData;
  store.set = () => CAS_MISMATCH;
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), { status: 200 });
  t.is(metric(h, 'ratelimit_fail_open_total'), 1);
  t.is(h.metric('ratelimit_allowed_total'), undefined);
  t.true(h.logLines().includes("warn: ratelimit: rule 'per-user': could not update its bucket (CAS_MISMATCH(8)); the request passes without taking a token"));
});

test('memory stays bounded: a rule keeps at most maxKeys buckets whatever keys clients send', async (t) => {
  const h = await load(perUser({ maxKeys: 8, maxTokens: 2 }));
  const statuses = new Map<number, number>();
  for (let i = 0; i < 200; i++) {
    const { status } = await send(h, '/', { 'x-user': `user-${i}` });
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
  }
  const keys = [...buckets(h).keys()];
  t.true(keys.length <= 8, `${keys.length} buckets`);
  t.true(keys.every((k) => /^ratelimit:ratelimit:per-user:[0-7]$/.test(k)));
  // With 8 slots of 2 tokens, 200 keys inside one fill interval end up sharing: at least the
  // first 8 distinct slots' worth pass, and the rest are limited together, never let through free.
  t.true((statuses.get(200) ?? 0) >= 8 && (statuses.get(200) ?? 0) <= 16, JSON.stringify([...statuses]));
  t.is((statuses.get(200) ?? 0) + (statuses.get(429) ?? 0), 200);
});

test('keys beyond maxKeys share a bucket while it is in use, and take it over once it has refilled', async (t) => {
  const h = await load(perUser({ maxKeys: 1, maxTokens: 2 }));
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), ok(1, 2));
  // The one slot holds alice's partly used bucket: bob is limited together with alice.
  t.deepEqual(await send(h, '/', { 'x-user': 'bob' }), ok(0, 2));
  t.deepEqual(await send(h, '/', { 'x-user': 'alice' }), limited('per-user', 2));
  t.deepEqual(await send(h, '/', { 'x-user': 'bob' }), limited('per-user', 2));
  // Once full again, the slot is free: carol gets a fresh bucket of her own.
  await h.advanceTime(2000);
  t.deepEqual(await send(h, '/', { 'x-user': 'carol' }), ok(1, 2));
  const [bucket] = buckets(h).values();
  t.deepEqual(await send(h, '/', { 'x-user': 'carol' }), ok(0, 2));
  t.not([...buckets(h).values()][0].owner, 0n);
  t.is([...buckets(h).values()][0].owner, bucket.owner);
});

test('a slot with a value that is not a bucket is taken over', async (t) => {
  const h = await load({ rules: [{ name: 'all', maxTokens: 2, fillIntervalMs: 1000 }] });
  h.env.sharedData.set('', 'ratelimit:ratelimit:all:0', new TextEncoder().encode('garbage'), 0);
  t.deepEqual(await send(h, '/'), ok(1, 2));
  t.is(buckets(h).get('ratelimit:ratelimit:all:0')?.tokens, 1);
});

test('a clock that goes back adds no tokens', async (t) => {
  const h = await load(perUser({ maxTokens: 1 }));
  t.deepEqual(await send(h, '/', { 'x-user': 'a' }), ok(0, 1));
  const key = [...buckets(h).keys()][0];
  const next = Uint8Array.from(h.env.sharedData.get('', key).value!);
  new DataView(next.buffer).setBigUint64(8, BigInt(Date.UTC(2026, 0, 1) + 60_000), true); // last fill in the future
  h.env.sharedData.set('', key, next, 0);
  t.is((await send(h, '/', { 'x-user': 'a' })).status, 429);
});

test('without the sharedData capability the configuration is refused, saying what to grant', async (t) => {
  const error = await t.throwsAsync(load(perUser(), { capabilities: { sharedData: false } }));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
  t.regex(errorText(error), /ratelimit: invalid configuration: shared data refused a write \(UNIMPLEMENTED\(12\)\); the filter keeps its buckets there: grant it the sharedData capability/);
});

// [what, configuration, message, whether config.schema.json also refuses it]
const bucket = { maxTokens: 1, fillIntervalMs: 1000 };
const invalid: Array<[string, unknown, RegExp, boolean]> = [
  ['a configuration that is not an object', 'x', /the configuration must be a JSON object, got string/, true],
  ['an unknown top-level field', { rule: [] }, /unknown field 'rule'/, true],
  ['rules that are not an array', { rules: 1 }, /field 'rules': expected an array, got number/, true],
  ['a rule that is not an object', { rules: [null] }, /field 'rules\[0\]': expected an object, got null/, true],
  ['a rule without maxTokens', { rules: [{ fillIntervalMs: 1000 }] }, /field 'rules\[0\]\.maxTokens': is required/, true],
  ['a rule without fillIntervalMs', { rules: [{ maxTokens: 1 }] }, /field 'rules\[0\]\.fillIntervalMs': is required/, true],
  ['a maxTokens of 0', { rules: [{ ...bucket, maxTokens: 0 }] }, /field 'rules\[0\]\.maxTokens': must be between 1 and 1000000000, got 0/, true],
  ['a fractional maxTokens', { rules: [{ ...bucket, maxTokens: 1.5 }] }, /field 'rules\[0\]\.maxTokens': expected an integer, got number/, true],
  ['a tokensPerFill of 0', { rules: [{ ...bucket, tokensPerFill: 0 }] }, /field 'rules\[0\]\.tokensPerFill': must be between 1 and 1000000000/, true],
  ['a fillIntervalMs over a day', { rules: [{ ...bucket, fillIntervalMs: 86_400_001 }] }, /field 'rules\[0\]\.fillIntervalMs': must be between 1 and 86400000/, true],
  ['a fillIntervalMs as a string', { rules: [{ ...bucket, fillIntervalMs: '1s' }] }, /field 'rules\[0\]\.fillIntervalMs': expected an integer, got string/, true],
  ['a rule name with a space', { rules: [{ ...bucket, name: 'per user' }] }, /field 'rules\[0\]\.name': must be 1 to 128 letters/, true],
  ['a rule named default', { rules: [{ ...bucket, name: 'default' }] }, /field 'rules\[0\]\.name': 'default' is the name of defaultBucket's bucket/, true],
  ['two rules with one name', { rules: [{ ...bucket, name: 'a' }, { ...bucket, name: 'a' }] }, /field 'rules\[1\]\.name': 'a' is already the name of another rule/, false],
  ['a key with two kinds', { rules: [{ ...bucket, key: { header: 'x-user', path: true } }] }, /field 'rules\[0\]\.key': must have exactly one of header, peerIdentity, path/, true],
  ['an empty key', { rules: [{ ...bucket, key: {} }] }, /field 'rules\[0\]\.key': must have exactly one of header, peerIdentity, path/, true],
  ['an unknown key kind', { rules: [{ ...bucket, key: { cookie: 'session' } }] }, /unknown field 'rules\[0\]\.key\.cookie'/, true],
  ['an upper-case key header', { rules: [{ ...bucket, key: { header: 'X-User' } }] }, /field 'rules\[0\]\.key\.header': must be a lower-case header name like 'x-user', got 'X-User'/, true],
  ['peerIdentity false', { rules: [{ ...bucket, key: { peerIdentity: false } }] }, /field 'rules\[0\]\.key\.peerIdentity': must be true/, true],
  ['path that is not a boolean', { rules: [{ ...bucket, key: { path: 'yes' } }] }, /field 'rules\[0\]\.key\.path': expected true or false, got string/, true],
  ['a match without prefix', { rules: [{ ...bucket, match: {} }] }, /field 'rules\[0\]\.match\.prefix': is required/, true],
  ['a prefix without a slash', { rules: [{ ...bucket, match: { prefix: 'api' } }] }, /field 'rules\[0\]\.match\.prefix': must start with '\/', got 'api'/, true],
  ['an unknown match field', { rules: [{ ...bucket, match: { prefix: '/', methods: ['GET'] } }] }, /unknown field 'rules\[0\]\.match\.methods'/, true],
  ['an unknown keyMissing', { rules: [{ ...bucket, key: { path: true }, keyMissing: 'deny' }] }, /field 'rules\[0\]\.keyMissing': must be skip or shared, got 'deny'/, true],
  ['keyMissing without a key', { rules: [{ ...bucket, keyMissing: 'shared' }] }, /field 'rules\[0\]\.keyMissing': applies only to a rule with a key/, true],
  ['maxKeys without a key', { rules: [{ ...bucket, maxKeys: 10 }] }, /field 'rules\[0\]\.maxKeys': applies only to a rule with a key/, true],
  ['a maxKeys of 0', { rules: [{ ...bucket, key: { path: true }, maxKeys: 0 }] }, /field 'rules\[0\]\.maxKeys': must be between 1 and 1000000, got 0/, true],
  ['an unknown rule field', { rules: [{ ...bucket, burst: 5 }] }, /unknown field 'rules\[0\]\.burst'/, true],
  ['a defaultBucket without maxTokens', { defaultBucket: { fillIntervalMs: 1000 } }, /field 'defaultBucket\.maxTokens': is required/, true],
  ['a defaultBucket with a key', { defaultBucket: { ...bucket, key: { path: true } } }, /unknown field 'defaultBucket\.key'/, true],
  ['a defaultBucket that is not an object', { defaultBucket: 100 }, /field 'defaultBucket': expected an object, got number/, true],
  ['rateLimitHeaders that is not a boolean', { rateLimitHeaders: 'on' }, /field 'rateLimitHeaders': expected true or false, got string/, true],
];

/** The error's message plus any filter log lines the harness attached to it. */
function errorText(error: unknown): string {
  const e = error as { message?: string; logs?: Array<{ message: string }> } | undefined;
  return [e?.message ?? '', ...(e?.logs ?? []).map((l) => l.message)].join('\n');
}

for (const [what, configuration, message, schemaRefuses] of invalid) {
  test(`rejects ${what}, naming the field`, async (t) => {
    const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'ratelimit', rootId: 'ratelimit', configuration: JSON.stringify(configuration) }));
    t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
    t.regex(errorText(error), message);
    t.is(validate(configuration), !schemaRefuses, 'config.schema.json should agree');
  });
}

test('reports every problem of a configuration at once', async (t) => {
  const configuration = { rules: [{ maxTokens: 0, fillIntervalMs: 1000 }, { key: { header: 'X' }, maxTokens: 1 }], defaultBucket: {} };
  const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'ratelimit', rootId: 'ratelimit', configuration: JSON.stringify(configuration) }));
  const text = errorText(error);
  t.regex(text, /field 'rules\[0\]\.maxTokens': must be between 1/);
  t.regex(text, /field 'rules\[1\]\.key\.header': must be a lower-case header name/);
  t.regex(text, /field 'rules\[1\]\.fillIntervalMs': is required/);
  t.regex(text, /field 'defaultBucket\.maxTokens': is required/);
});

test('rejects configuration text that is not JSON, saying where', async (t) => {
  const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'ratelimit', rootId: 'ratelimit', configuration: '{"rules": [}' }));
  t.regex(errorText(error), /ratelimit: invalid configuration: invalid JSON: line 1, column 12/);
});

test("the schema's example and the bench configuration load", async (t) => {
  for (const configuration of [...schema.examples, JSON.parse(readFileSync(new URL('../bench.json', import.meta.url), 'utf8')).config]) {
    await t.notThrowsAsync(load(configuration));
  }
});
