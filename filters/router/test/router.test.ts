// The router filter in the real host through the SDK harness: every match kind (path exact,
// prefix, regex; methods; headers present, absent, exact, prefix), every action (cluster,
// weighted round-robin with exact counts, sticky by header and cookie, route), the decision
// header, the metrics, the regex engine against JavaScript's, and the configurations it refuses.

import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';
import { FilterHarness } from '../../../sdk/harness/index.ts';
import { buildFilters } from '../../../scripts/build-filters.js';

const wasm = fileURLToPath(new URL('../../../build/filters/router.wasm', import.meta.url));
const schema = JSON.parse(readFileSync(new URL('../config.schema.json', import.meta.url), 'utf8'));
const bench = JSON.parse(readFileSync(new URL('../bench.json', import.meta.url), 'utf8'));

const request = (path: string, extra: Record<string, string> = {}, method = 'GET') => ({
  ':method': method,
  ':path': path,
  ':authority': 'shop.example',
  ':scheme': 'http',
  ...extra,
});

test.before(async () => {
  await buildFilters({ only: ['router'] });
});

async function load(configuration: unknown) {
  return FilterHarness.load(wasm, { name: 'router', rootId: 'router', configuration: JSON.stringify(configuration) });
}

interface Routed {
  cluster?: string;
  route?: string;
  header?: string;
}

/** One request through the filter: what it set, and the decision header on a 200 response. */
async function route(h: FilterHarness, headers: Record<string, string>, upstreamCluster?: string): Promise<Routed> {
  const s = h.stream(upstreamCluster ? { clusterName: upstreamCluster } : {});
  const r = await s.requestHeaders(headers, { endOfStream: true });
  if (r.kind !== 'continue') throw new Error(`expected continue, got ${r.kind}`);
  const routed: Routed = { cluster: s.property('sluice.cluster'), route: s.property('sluice.route') };
  await s.responseHeaders({ ':status': '200' }, { endOfStream: true });
  routed.header = s.response.header('x-sluice-cluster');
  await s.end();
  return routed;
}

const counter = (h: FilterHarness, name: string) => Number(h.metric(name) ?? 0);

// The README's sticky hash, FNV-1a over UTF-8 then MurmurHash3's finalizer: where a key lands.
function stickyHash(key: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(key)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

function expectedFor(key: string, clusters: Array<{ cluster: string; weight: number }>): string {
  let point = stickyHash(key) % clusters.reduce((n, c) => n + c.weight, 0);
  for (const c of clusters) {
    if (point < c.weight) return c.cluster;
    point -= c.weight;
  }
  throw new Error('unreachable');
}

test('path: exact, prefix and regex, matched without the query', async (t) => {
  const h = await load({
    rules: [
      { match: { path: '/healthz' }, cluster: 'exact' },
      { match: { prefix: '/api/' }, cluster: 'prefix' },
      { match: { regex: '^/items/[0-9]+$' }, cluster: 'regex' },
    ],
  });
  t.is((await route(h, request('/healthz'))).cluster, 'exact');
  t.is((await route(h, request('/healthz?full=1'))).cluster, 'exact');
  t.is((await route(h, request('/healthz/x'))).cluster, undefined);
  t.is((await route(h, request('/api/users'))).cluster, 'prefix');
  t.is((await route(h, request('/api'))).cluster, undefined, 'shorter than the prefix');
  t.is((await route(h, request('/items/42'))).cluster, 'regex');
  t.is((await route(h, request('/items/42?x=/items/1'))).cluster, 'regex', 'the query is not part of the path');
  t.is((await route(h, request('/items/4x'))).cluster, undefined);
  t.is((await route(h, request('/x?/api/'))).cluster, undefined, 'a prefix is not looked for in the query');
});

test('methods: any listed method, case-insensitive in the config', async (t) => {
  const h = await load({ rules: [{ match: { methods: ['get', 'HEAD'] }, cluster: 'reads' }, { cluster: 'writes' }] });
  t.is((await route(h, request('/', {}, 'GET'))).cluster, 'reads');
  t.is((await route(h, request('/', {}, 'HEAD'))).cluster, 'reads');
  t.is((await route(h, request('/', {}, 'POST'))).cluster, 'writes');
});

test('headers: present, absent, exact, prefix, pseudo-headers; every match of a rule must hold', async (t) => {
  const h = await load({
    rules: [
      { match: { headers: [{ name: 'x-canary', exact: '1' }, { name: 'x-debug', present: false }] }, cluster: 'canary' },
      { match: { headers: [{ name: 'x-user', prefix: 'test-' }] }, cluster: 'testers' },
      { match: { headers: [{ name: 'x-beta' }] }, cluster: 'beta' },
      { match: { headers: [{ name: 'x-tenant', present: true }, { name: ':authority', exact: 'admin.example' }] }, cluster: 'admin' },
    ],
  });
  t.is((await route(h, request('/', { 'x-canary': '1' }))).cluster, 'canary');
  t.is((await route(h, request('/', { 'x-canary': '1', 'x-debug': 'on' }))).cluster, undefined, 'x-debug must be absent');
  t.is((await route(h, request('/', { 'x-canary': '10' }))).cluster, undefined, 'exact is exact');
  t.is((await route(h, request('/', { 'x-user': 'test-alice' }))).cluster, 'testers');
  t.is((await route(h, request('/', { 'x-user': 'alice' }))).cluster, undefined);
  t.is((await route(h, request('/', { 'x-beta': '' }))).cluster, 'beta', 'an empty header is present');
  t.is((await route(h, request('/', { 'x-tenant': 'a', ':authority': 'admin.example' }))).cluster, 'admin');
  t.is((await route(h, request('/', { 'x-tenant': 'a' }))).cluster, undefined);
});

test('first match wins; a rule without match takes everything', async (t) => {
  const h = await load({
    rules: [
      { match: { prefix: '/a' }, cluster: 'first' },
      { match: { prefix: '/ab' }, cluster: 'second' },
      { cluster: 'rest' },
    ],
  });
  t.is((await route(h, request('/abc'))).cluster, 'first');
  t.is((await route(h, request('/zzz'))).cluster, 'rest');
  t.is(counter(h, 'router_decisions_total{cluster="first"}'), 1);
  t.is(counter(h, 'router_decisions_total{cluster="second"}'), 0);
  t.is(counter(h, 'router_decisions_total{cluster="rest"}'), 1);
});

test('no match: no property set, no decision header, counted as unmatched', async (t) => {
  const h = await load({ rules: [{ match: { prefix: '/api' }, cluster: 'api' }], decisionHeader: 'x-sluice-cluster' });
  const r = await route(h, request('/web'), 'host-picked');
  t.deepEqual(r, { cluster: undefined, route: undefined, header: undefined });
  t.is(counter(h, 'router_unmatched_total'), 1);
  t.is(counter(h, 'router_decisions_total{cluster="api"}'), 0);
});

test('route action: sets sluice.route; the decision header names the cluster Sluice then used', async (t) => {
  const h = await load({ rules: [{ match: { prefix: '/legacy' }, route: 'legacy' }], decisionHeader: 'x-sluice-cluster' });
  const r = await route(h, request('/legacy/x'), 'old-backend');
  t.deepEqual(r, { cluster: undefined, route: 'legacy', header: 'old-backend' });
  // A route without a cluster (a direct response, say): no header.
  t.is((await route(h, request('/legacy/y'))).header, undefined);
  t.is(counter(h, 'router_decisions_total{route="legacy"}'), 2);
});

test('the decision header is off by default', async (t) => {
  const h = await load({ rules: [{ cluster: 'a' }] });
  const s = h.stream();
  await s.requestHeaders(request('/'), { endOfStream: true });
  await s.responseHeaders({ ':status': '200', 'content-type': 'text/plain' }, { endOfStream: true });
  t.deepEqual(Object.keys(s.response.headersObject()).sort(), [':status', 'content-type']);
  await s.end();
});

test('the decision header replaces an upstream value and is set on error responses too', async (t) => {
  const h = await load({ rules: [{ cluster: 'missing' }], decisionHeader: 'x-routed-to' });
  const s = h.stream();
  await s.requestHeaders(request('/'), { endOfStream: true });
  await s.responseHeaders({ ':status': '503', 'x-routed-to': 'spoofed' }, { endOfStream: true });
  t.is(s.response.header('x-routed-to'), 'missing');
  t.is(s.response.headers?.getAll('x-routed-to').length, 1);
  await s.end();
});

test('weighted clusters without stickiness: a smooth round-robin with exact counts', async (t) => {
  const h = await load({
    rules: [{ weightedClusters: [{ cluster: 'stable', weight: 90 }, { cluster: 'canary', weight: 10 }, { cluster: 'off', weight: 0 }] }],
  });
  const counts: Record<string, number> = {};
  const firstHundred: string[] = [];
  for (let i = 0; i < 1000; i++) {
    const cluster = (await route(h, request(`/r/${i}`))).cluster!;
    counts[cluster] = (counts[cluster] ?? 0) + 1;
    if (i < 100) firstHundred.push(cluster);
  }
  t.deepEqual(counts, { stable: 900, canary: 100 });
  // Smooth: canary requests are spread out, not sent as a burst of ten.
  const canaryAt = firstHundred.flatMap((c, i) => (c === 'canary' ? [i] : []));
  t.is(canaryAt.length, 10);
  for (let i = 1; i < canaryAt.length; i++) t.is(canaryAt[i] - canaryAt[i - 1], 10);
  t.is(counter(h, 'router_decisions_total{cluster="stable"}'), 900);
  t.is(counter(h, 'router_decisions_total{cluster="canary"}'), 100);
  t.is(counter(h, 'router_decisions_total{cluster="off"}'), 0);
});

test('weighted round-robin interleaves three clusters exactly within each cycle', async (t) => {
  const h = await load({ rules: [{ weightedClusters: [{ cluster: 'a', weight: 5 }, { cluster: 'b', weight: 1 }, { cluster: 'c', weight: 1 }] }] });
  const order: string[] = [];
  for (let i = 0; i < 14; i++) order.push((await route(h, request('/'))).cluster!);
  // nginx's smooth weighted round-robin for {5, 1, 1}: a a b a c a a, repeated.
  t.deepEqual(order, ['a', 'a', 'b', 'a', 'c', 'a', 'a', 'a', 'a', 'b', 'a', 'c', 'a', 'a']);
});

const stickyClusters = [
  { cluster: 'v1', weight: 70 },
  { cluster: 'v2', weight: 30 },
];

test('sticky by header: a key always lands on the same cluster, where the documented hash puts it', async (t) => {
  const h = await load({ rules: [{ weightedClusters: stickyClusters, stickyBy: { header: 'x-user' } }] });
  const seen: Record<string, number> = { v1: 0, v2: 0 };
  for (let i = 0; i < 200; i++) {
    const user = `user-${i}`;
    const first = (await route(h, request('/', { 'x-user': user }))).cluster!;
    const again = (await route(h, request('/other', { 'x-user': user }))).cluster!;
    t.is(first, again);
    t.is(first, expectedFor(user, stickyClusters), user);
    seen[first]++;
  }
  // 200 keys split roughly 70/30 (the exact split is the hash's; this only guards against a constant).
  t.true(seen.v1 > 110 && seen.v1 < 170, JSON.stringify(seen));
  // Non-ASCII keys hash over their UTF-8 bytes (2-, 3- and 4-byte sequences).
  for (const user of ['ünïcødé', 'ユーザー', 'emoji-🙂', 'mixed-é-ユ-🙂']) {
    t.is((await route(h, request('/', { 'x-user': user }))).cluster, expectedFor(user, stickyClusters), user);
  }
});

test('sticky by header: without the header (or with it empty) the round-robin takes over', async (t) => {
  const h = await load({ rules: [{ weightedClusters: [{ cluster: 'a', weight: 1 }, { cluster: 'b', weight: 1 }], stickyBy: { header: 'x-user' } }] });
  const picks: string[] = [];
  for (let i = 0; i < 4; i++) picks.push((await route(h, request('/'))).cluster!);
  picks.push((await route(h, request('/', { 'x-user': '' }))).cluster!);
  picks.push((await route(h, request('/', { 'x-user': '' }))).cluster!);
  t.deepEqual(picks, ['a', 'b', 'a', 'b', 'a', 'b']);
});

test('sticky by cookie: finds the cookie among others, exactly by name', async (t) => {
  const h = await load({ rules: [{ weightedClusters: stickyClusters, stickyBy: { cookie: 'session' } }] });
  for (const id of ['abc123', 'zz9', 'q', 'session-7']) {
    const want = expectedFor(id, stickyClusters);
    t.is((await route(h, request('/', { cookie: `session=${id}` }))).cluster, want, id);
    t.is((await route(h, request('/', { cookie: `theme=dark; session=${id}; lang=en` }))).cluster, want, id);
    t.is((await route(h, request('/', { cookie: `sessionx=nope;session=${id}  ` }))).cluster, want, id);
  }
  // No such cookie, or a cookie whose name only starts the same: the round-robin.
  const h2 = await load({ rules: [{ weightedClusters: [{ cluster: 'a', weight: 1 }, { cluster: 'b', weight: 1 }], stickyBy: { cookie: 'session' } }] });
  const picks: string[] = [];
  for (const cookie of ['theme=dark', 'sessions=1', 'session=', 'x=session=1']) picks.push((await route(h2, request('/', { cookie }))).cluster!);
  picks.push((await route(h2, request('/'))).cluster!);
  t.deepEqual(picks, ['a', 'b', 'a', 'b', 'a']);
});

test('rules read each header once and share it: a mixed rule set routes as specified', async (t) => {
  const h = await load(bench.config);
  t.is((await route(h, request('/api/v1/items?page=2', { 'x-canary': '1' }))).cluster, 'reviews-canary');
  t.is((await route(h, request('/api/v1/items', { 'x-canary': '0', cookie: 'session=abc123' }))).cluster, expectedFor('abc123', bench.config.rules[1].weightedClusters));
  t.is((await route(h, request('/static/app.js'))).route, 'static');
  t.is((await route(h, request('/other'))).cluster, undefined);
});

// The regex engine against JavaScript's on the supported syntax: each pattern is a rule selected
// by a header, so one filter instance checks them all.
const patterns: Array<[string, string[]]> = [
  ['^/items/[0-9]+$', ['/items/1', '/items/123', '/items/', '/items/12a', '/x/items/1']],
  ['/v[12]/', ['/v1/a', '/api/v2/b', '/v3/c', '/v1']],
  ['^/(users|groups)/\\d{2,4}(/.*)?$', ['/users/12', '/groups/1234/x', '/users/1', '/users/12345', '/teams/12']],
  ['^/a.c$', ['/abc', '/a/c', '/ac', '/abbc']],
  ['^/[^/]+/?$', ['/one', '/one/', '/one/two', '/']],
  ['\\.(png|jpe?g|gif)$', ['/img/a.png', '/a.jpg', '/a.jpeg', '/a.gif', '/a.pngx', '/apng']],
  ['^/x*y+z?$', ['/y', '/xxy', '/xyyz', '/xz', '/xyzz']],
  ['^/(?:ab)+$', ['/ab', '/abab', '/aba', '/']],
  ['^/(?<ver>v\\d)/[\\w-]+$', ['/v1/some-thing_1', '/v1/a.b', '/vx/a']],
  ['^/a{3}$', ['/aaa', '/aa', '/aaaa']],
  ['^/a{2,}$', ['/aa', '/aaaaa', '/a']],
  ['^/\\s?\\S+\\W\\D$', ['/ab-c', '/ab-1', '/a']],
  ['^$|^/$', ['/', '/a']],
  ['[\\]\\-]', ['/a]', '/a-', '/ab']],
  ['^/(a|b|)c$', ['/ac', '/bc', '/c', '/dc']],
  ['(a*)*b', ['/aaaaaaaac', '/aab']],
  ['^/[a-c-]+$', ['/abc-', '/abd']],
  ['^/\\$\\^\\(\\)$', ['/$^()', '/x']],
  ['^/caf.$', ['/café', '/cafe', '/caf']],
  ['$', ['/', '/a']],
  ['(^/a|^/b)x', ['/ax', '/bx', '/cx', '/a/ax']],
  ['q(^|/)$', ['/q', '/q/', '/qx']],
  ['/b', ['/a/b', '/aaaa', '/aaab', '/b']],
  ['ab+c', ['/xxabbbc', '/xxac', '/aabc']],
  // The same reading positions with and without a thread waiting on `$`.
  ['a$|b', ['/xa', '/ax', '/b', '/a/']],
  ['(a$|b)c?', ['/xa', '/ax', '/bc']],
  ['[^/]*\\.json$', ['/a.json', '/a.json/x', '/x/.json', '/a.jsonx.json']],
  ['^/ä+ö$', ['/ääö', '/aö', '/ö']],
];

test('regex paths agree with JavaScript on the supported syntax, and never backtrack', async (t) => {
  const rules: unknown[] = patterns.map(([regex], i) => ({ match: { regex, headers: [{ name: 'x-case', exact: String(i) }] }, cluster: `case-${i}` }));
  rules.push({ cluster: 'none' });
  const h = await load({ rules });
  for (const [i, [regex, paths]] of patterns.entries()) {
    for (const path of paths) {
      const want = new RegExp(regex).test(path) ? `case-${i}` : 'none';
      t.is((await route(h, request(path, { 'x-case': String(i) }))).cluster, want, `${regex} on ${path}`);
    }
  }
  // A pattern backtracking engines (V8's included) take exponential time on: answered within
  // the filter's call budget (a call that overran it would end in a local reply, not 'continue').
  t.is((await route(h, request(`/${'a'.repeat(5000)}c`, { 'x-case': String(patterns.findIndex(([p]) => p === '(a*)*b')) }))).cluster, 'none');
});

test('regex paths agree with JavaScript on random paths, the DFA cache overflowing included', async (t) => {
  // [ab]*a[ab]{9}$ needs over 1000 DFA states: the cache (256) starts over several times.
  const randomPatterns = ['[ab]*a[ab]{9}$', '^/(a|b)*abb$', 'a[^b]?b', '^/([ab]{2})+$', '(ab|ba)+a?$', 'b{2,3}a*$'];
  const rules: unknown[] = randomPatterns.map((regex, i) => ({ match: { regex, headers: [{ name: 'x-case', exact: String(i) }] }, cluster: `case-${i}` }));
  rules.push({ cluster: 'none' });
  const h = await load({ rules });
  let seed = 42;
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const disagreements: string[] = [];
  let checked = 0;
  for (const [i, regex] of randomPatterns.entries()) {
    const js = new RegExp(regex);
    for (let n = 0; n < 150; n++) {
      const path = '/' + Array.from({ length: Math.floor(random() * 24) }, () => 'abc/'[Math.floor(random() * (random() < 0.9 ? 2 : 4))]).join('');
      const want = js.test(path) ? `case-${i}` : 'none';
      const got = (await route(h, request(path, { 'x-case': String(i) }))).cluster;
      checked++;
      if (got !== want) disagreements.push(`${regex} on ${path}: got ${got}, want ${want}`);
    }
  }
  t.is(checked, randomPatterns.length * 150);
  t.deepEqual(disagreements, []);
});

const invalid: Array<[string, unknown, RegExp]> = [
  ['an empty configuration', '', /field 'rules': is required/],
  ['rules that are not a list', { rules: {} }, /field 'rules': expected an array, got object/],
  ['an empty rule list', { rules: [] }, /field 'rules': must list at least one rule/],
  ['a rule that is not an object', { rules: ['a'] }, /field 'rules\[0\]': expected an object, got string/],
  ['a rule without an action', { rules: [{ match: { prefix: '/' } }] }, /field 'rules\[0\].cluster': a rule needs exactly one of 'cluster', 'weightedClusters' or 'route'/],
  ['a rule with two actions', { rules: [{ cluster: 'a', route: 'b' }] }, /field 'rules\[0\].weightedClusters': a rule needs exactly one of .* got 2/],
  ['an invalid cluster name', { rules: [{ cluster: 'has space' }] }, /field 'rules\[0\].cluster': 'has space' is not a valid name/],
  ['an empty cluster name', { rules: [{ cluster: '' }] }, /field 'rules\[0\].cluster': '' is not a valid name/],
  ['a cluster name that is not a string', { rules: [{ cluster: 7 }] }, /field 'rules\[0\].cluster': expected a string, got number/],
  ['an invalid route name', { rules: [{ route: '-x' }] }, /field 'rules\[0\].route': '-x' is not a valid name/],
  ['an unknown rule field', { rules: [{ cluster: 'a', clustr: 'b' }] }, /unknown field 'rules\[0\].clustr'/],
  ['an unknown top-level field', { rules: [{ cluster: 'a' }], decisionHeadr: 'x' }, /unknown field 'decisionHeadr'/],
  ['an unknown match field', { rules: [{ match: { pth: '/' }, cluster: 'a' }] }, /unknown field 'rules\[0\].match.pth'/],
  ['two path matches', { rules: [{ match: { path: '/a', prefix: '/b' }, cluster: 'a' }] }, /field 'rules\[0\].match.path': give at most one of 'path', 'prefix' and 'regex'/],
  ['a path without a leading slash', { rules: [{ match: { path: 'a' }, cluster: 'a' }] }, /field 'rules\[0\].match.path': must start with '\/'/],
  ['a prefix with a query', { rules: [{ match: { prefix: '/a?b' }, cluster: 'a' }] }, /field 'rules\[0\].match.prefix': matches the path without its query/],
  ['an unclosed group', { rules: [{ match: { regex: '^/(a' }, cluster: 'a' }] }, /field 'rules\[0\].match.regex': not a supported regular expression: at 2: unclosed group/],
  ['a look-ahead', { rules: [{ match: { regex: '^/(?=a)' }, cluster: 'a' }] }, /at 2: look-around and flags/],
  ['a back-reference', { rules: [{ match: { regex: '(a)\\1' }, cluster: 'a' }] }, /at 3: \\1 is not supported/],
  ['a word boundary', { rules: [{ match: { regex: '\\bx' }, cluster: 'a' }] }, /at 0: \\b is not supported/],
  ['nothing to repeat', { rules: [{ match: { regex: '*a' }, cluster: 'a' }] }, /at 0: nothing to repeat before '\*'/],
  ['a repeated repetition', { rules: [{ match: { regex: 'a**' }, cluster: 'a' }] }, /at 2: a repetition of a repetition/],
  ['a bad brace', { rules: [{ match: { regex: 'a{x}' }, cluster: 'a' }] }, /at 1: a repetition is \{n\}, \{n,\} or \{n,m\}/],
  ['a reversed count', { rules: [{ match: { regex: 'a{3,1}' }, cluster: 'a' }] }, /at 1: bad repetition count/],
  ['a huge count', { rules: [{ match: { regex: 'a{1001}' }, cluster: 'a' }] }, /at 1: repetition count above 1000/],
  ['a program too large', { rules: [{ match: { regex: '(a{1000}){10}' }, cluster: 'a' }] }, /too large once its repetitions are expanded/],
  ['an unclosed class', { rules: [{ match: { regex: '[a-' }, cluster: 'a' }] }, /at 0: unclosed class/],
  ['a reversed range', { rules: [{ match: { regex: '[z-a]' }, cluster: 'a' }] }, /at 1: range out of order: z-a/],
  ['an unmatched parenthesis', { rules: [{ match: { regex: 'a)' }, cluster: 'a' }] }, /at 1: unmatched '\)'/],
  ['a trailing backslash', { rules: [{ match: { regex: 'a\\' }, cluster: 'a' }] }, /at 1: trailing backslash/],
  ['an empty methods list', { rules: [{ match: { methods: [] }, cluster: 'a' }] }, /field 'rules\[0\].match.methods': must list at least one method/],
  ['a method that is not a token', { rules: [{ match: { methods: ['GET POST'] }, cluster: 'a' }] }, /field 'rules\[0\].match.methods\[0\]': not an HTTP method/],
  ['an empty header list', { rules: [{ match: { headers: [] }, cluster: 'a' }] }, /field 'rules\[0\].match.headers': must list at least one header match/],
  ['a header match without a name', { rules: [{ match: { headers: [{ exact: 'x' }] }, cluster: 'a' }] }, /field 'rules\[0\].match.headers\[0\].name': is required/],
  ['an upper-case header name', { rules: [{ match: { headers: [{ name: 'X-Canary' }] }, cluster: 'a' }] }, /field 'rules\[0\].match.headers\[0\].name': must be a lower-case header name/],
  ['two header conditions', { rules: [{ match: { headers: [{ name: 'x', exact: '1', prefix: '1' }] }, cluster: 'a' }] }, /field 'rules\[0\].match.headers\[0\].exact': give at most one of 'exact', 'prefix' and 'present'/],
  ['an empty header prefix', { rules: [{ match: { headers: [{ name: 'x', prefix: '' }] }, cluster: 'a' }] }, /headers\[0\].prefix': must not be empty/],
  ['present that is not a boolean', { rules: [{ match: { headers: [{ name: 'x', present: 'yes' }] }, cluster: 'a' }] }, /headers\[0\].present': expected true or false, got string/],
  ['an unknown header match field', { rules: [{ match: { headers: [{ name: 'x', regex: '.' }] }, cluster: 'a' }] }, /unknown field 'rules\[0\].match.headers\[0\].regex'/],
  ['an empty weighted list', { rules: [{ weightedClusters: [] }] }, /field 'rules\[0\].weightedClusters': must list at least one/],
  ['a weighted entry without a weight', { rules: [{ weightedClusters: [{ cluster: 'a' }] }] }, /field 'rules\[0\].weightedClusters\[0\].weight': is required/],
  ['a negative weight', { rules: [{ weightedClusters: [{ cluster: 'a', weight: -1 }] }] }, /weightedClusters\[0\].weight': must be between 0 and 1000000, got -1/],
  ['a fractional weight', { rules: [{ weightedClusters: [{ cluster: 'a', weight: 1.5 }] }] }, /weightedClusters\[0\].weight': expected an integer, got number/],
  ['weights adding up to 0', { rules: [{ weightedClusters: [{ cluster: 'a', weight: 0 }] }] }, /field 'rules\[0\].weightedClusters': the weights add up to 0/],
  ['a cluster listed twice', { rules: [{ weightedClusters: [{ cluster: 'a', weight: 1 }, { cluster: 'a', weight: 2 }] }] }, /weightedClusters\[1\].cluster': 'a' is listed twice/],
  ['a weighted entry without a cluster', { rules: [{ weightedClusters: [{ weight: 1 }] }] }, /weightedClusters\[0\].cluster': is required/],
  ['an unknown weighted entry field', { rules: [{ weightedClusters: [{ cluster: 'a', weight: 1, w: 2 }] }] }, /unknown field 'rules\[0\].weightedClusters\[0\].w'/],
  ['stickyBy without weighted clusters', { rules: [{ cluster: 'a', stickyBy: { header: 'x-user' } }] }, /field 'rules\[0\].stickyBy': only applies to 'weightedClusters'/],
  ['stickyBy with both header and cookie', { rules: [{ weightedClusters: [{ cluster: 'a', weight: 1 }], stickyBy: { header: 'x', cookie: 'y' } }] }, /field 'rules\[0\].stickyBy.header': give exactly one of 'header' and 'cookie'/],
  ['stickyBy with neither', { rules: [{ weightedClusters: [{ cluster: 'a', weight: 1 }], stickyBy: {} }] }, /stickyBy.header': give exactly one/],
  ['a sticky header that is not lower-case', { rules: [{ weightedClusters: [{ cluster: 'a', weight: 1 }], stickyBy: { header: 'X-User' } }] }, /stickyBy.header': must be a lower-case header name/],
  ['a sticky cookie name with a space', { rules: [{ weightedClusters: [{ cluster: 'a', weight: 1 }], stickyBy: { cookie: 'my session' } }] }, /stickyBy.cookie': must be a cookie name/],
  ['a decision header with upper case', { rules: [{ cluster: 'a' }], decisionHeader: 'X-Cluster' }, /field 'decisionHeader': must be a lower-case header name/],
  ['a pseudo-header as decision header', { rules: [{ cluster: 'a' }], decisionHeader: ':status' }, /field 'decisionHeader': must be a lower-case header name/],
  ['a configuration that is not an object', [1], /must be a JSON object, got array/],
];

function errorText(error: unknown): string {
  const e = error as { message?: string; logs?: Array<{ message: string }> } | undefined;
  return [e?.message ?? '', ...(e?.logs ?? []).map((l) => l.message)].join('\n');
}

for (const [what, configuration, message] of invalid) {
  test(`rejects ${what}, naming the field`, async (t) => {
    const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'router', rootId: 'router', configuration: typeof configuration === 'string' ? configuration : JSON.stringify(configuration) }));
    t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
    t.regex(errorText(error), message);
  });
}

test('reports every problem at once', async (t) => {
  const error = await t.throwsAsync(load({ rules: [{ cluster: 'a b' }, { weightedClusters: [{ cluster: 'x', weight: -2 }] }], decisionHeader: 'Bad' }));
  const text = errorText(error);
  t.regex(text, /rules\[0\].cluster/);
  t.regex(text, /rules\[1\].weightedClusters\[0\].weight/);
  t.regex(text, /decisionHeader/);
});

test('config.schema.json accepts the bench and README configurations and refuses what the filter refuses', (t) => {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
  const validate = ajv.compile(schema);
  t.true(validate(bench.config), JSON.stringify(validate.errors));
  for (const example of schema.examples) t.true(validate(example), JSON.stringify(validate.errors));
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const json = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]));
  // The `config:` of each filter entry in the README's sluice.yaml examples.
  const yaml = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].flatMap((m) => ((parseYaml(m[1]) as { filters?: Array<{ module: string; config: unknown }> }).filters ?? []).filter((f) => f.module.includes('router.wasm')).map((f) => f.config));
  t.true(json.length > 0 && yaml.length > 0);
  for (const example of [...json, ...yaml]) t.true(validate(example), JSON.stringify(validate.errors));
  // Everything but what only the filter can check: regex syntax, duplicates, a zero total weight.
  const filterOnly = new Set(['a cluster listed twice', 'weights adding up to 0']);
  const schemaInvalid = invalid.filter(([what, c]) => !filterOnly.has(what) && !JSON.stringify(c).includes('"regex":'));
  for (const [what, configuration] of schemaInvalid) {
    if (typeof configuration === 'string') continue;
    t.false(validate(configuration), `the schema accepts ${what}`);
  }
});
