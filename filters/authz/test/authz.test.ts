// The authz filter in the real host through the SDK harness: peer identity (mTLS SPIFFE IDs, set
// through the harness's StreamInfo), namespaces, paths, methods, headers, deny-over-allow, the
// default action, dry run, ambiguous paths, the counters, and every configuration it must refuse.

import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { FilterHarness } from '../../../sdk/harness/index.ts';
import { buildFilters } from '../../../scripts/build-filters.js';

const wasm = fileURLToPath(new URL('../../../build/filters/authz.wasm', import.meta.url));
const schema = JSON.parse(readFileSync(new URL('../config.schema.json', import.meta.url), 'utf8'));
const validate = new Ajv2020({ allErrors: true, strict: true }).compile(schema);

const SHOP_WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const SHOP_ADMIN = 'spiffe://cluster.local/ns/shop/sa/admin';
const BILLING = 'spiffe://cluster.local/ns/billing/sa/invoicer';

type Headers = Record<string, string>;
const req = (method: string, path: string, extra: Headers = {}): Headers => ({ ':method': method, ':path': path, ':authority': 'shop.svc', ':scheme': 'http', ...extra });

/** Stream info of a connection whose peer presented this SPIFFE ID over mTLS (none: plain text). */
const peer = (identity?: string) => (identity === undefined ? {} : { connection: { id: 1, mtls: true, peerUriSans: [identity] } });

test.before(async () => {
  await buildFilters({ only: ['authz'] });
});

async function load(configuration: unknown): Promise<FilterHarness> {
  // Every configuration a test loads must also satisfy the published schema.
  if (typeof configuration === 'object' && !validate(configuration)) throw new Error(`schema refuses ${JSON.stringify(configuration)}: ${JSON.stringify(validate.errors)}`);
  return FilterHarness.load(wasm, { name: 'authz', rootId: 'authz', configuration: JSON.stringify(configuration) });
}

/** Sends one request's headers; 'allow' or the 403 body. */
async function decide(h: FilterHarness, identity: string | undefined, method: string, path: string, extra: Headers = {}): Promise<string> {
  const s = h.stream(peer(identity));
  const r = await s.requestHeaders(req(method, path, extra), { endOfStream: true });
  await s.end();
  if (r.kind === 'continue') return 'allow';
  if (r.kind !== 'local-reply' || r.status !== 403 || r.details !== 'authz_denied') throw new Error(`unexpected outcome ${JSON.stringify(r)}`);
  return r.body!;
}

const metric = (h: FilterHarness, name: string) => Number(h.metric(name) ?? 0);

test('allows a peer a principal glob names, and denies others by default, naming who asked for what', async (t) => {
  const h = await load({ rules: [{ name: 'shop', from: { principals: ['spiffe://cluster.local/ns/shop/sa/*'] } }] });
  t.is(await decide(h, SHOP_WEB, 'GET', '/api/items'), 'allow');
  t.is(await decide(h, BILLING, 'GET', '/admin'), `authz: denied: no rule allows ${BILLING} GET /admin\n`);

  const s = h.stream(peer(BILLING));
  const r = await s.requestHeaders(req('GET', '/x'), { endOfStream: true });
  t.is(r.kind, 'local-reply');
  t.is(r.status, 403);
  t.is(r.details, 'authz_denied');
  t.is(r.headers?.['content-type'], 'text/plain; charset=utf-8');
  await s.end();

  t.is(metric(h, 'authz_allowed_total'), 1);
  t.is(metric(h, 'authz_denied_total'), 2);
  t.is(h.metric('authz_dry_run_denied_total'), undefined);
});

test('reads the identity of the connection per stream: the same filter sees different peers', async (t) => {
  const h = await load({ rules: [{ name: 'admin-only', from: { principals: [SHOP_ADMIN] } }] });
  t.is(await decide(h, SHOP_ADMIN, 'DELETE', '/api/items/1'), 'allow');
  t.is(await decide(h, SHOP_WEB, 'DELETE', '/api/items/1'), `authz: denied: no rule allows ${SHOP_WEB} DELETE /api/items/1\n`);
  t.is(await decide(h, SHOP_ADMIN, 'DELETE', '/api/items/2'), 'allow');
});

test('a request without a peer identity has principal "": only rules without `from` can match it', async (t) => {
  const h = await load({
    rules: [
      { name: 'any-peer', from: { principals: ['*'] }, to: { paths: ['/peers/*'] } },
      { name: 'any-namespace', from: { namespaces: ['*'] }, to: { paths: ['/ns/*'] } },
      { name: 'health', to: { paths: ['/healthz'] } },
    ],
  });
  t.is(await decide(h, undefined, 'GET', '/healthz'), 'allow');
  t.is(await decide(h, undefined, 'GET', '/peers/x'), 'authz: denied: no rule allows (no peer identity) GET /peers/x\n');
  t.is(await decide(h, undefined, 'GET', '/ns/x'), 'authz: denied: no rule allows (no peer identity) GET /ns/x\n');
  // A plain-text connection (mtls false, no SANs) is the same as no connection info.
  const s = h.stream({ connection: { id: 2, mtls: false } });
  t.is((await s.requestHeaders(req('GET', '/peers/x'), { endOfStream: true })).kind, 'local-reply');
  await s.end();
  t.is(await decide(h, SHOP_WEB, 'GET', '/peers/x'), 'allow');
  t.is(await decide(h, SHOP_WEB, 'GET', '/ns/x'), 'allow');
});

test('principal patterns: exact, prefix*, *suffix and *', async (t) => {
  const h = await load({
    rules: [
      { name: 'exact', from: { principals: [SHOP_WEB] }, to: { paths: ['/exact'] } },
      { name: 'prefix', from: { principals: ['spiffe://cluster.local/ns/shop/*'] }, to: { paths: ['/prefix'] } },
      { name: 'suffix', from: { principals: ['*/sa/admin'] }, to: { paths: ['/suffix'] } },
      { name: 'any', from: { principals: ['*'] }, to: { paths: ['/any'] } },
    ],
  });
  t.is(await decide(h, SHOP_WEB, 'GET', '/exact'), 'allow');
  t.not(await decide(h, SHOP_WEB + 'x', 'GET', '/exact'), 'allow');
  t.not(await decide(h, SHOP_ADMIN, 'GET', '/exact'), 'allow');
  t.is(await decide(h, SHOP_ADMIN, 'GET', '/prefix'), 'allow');
  t.not(await decide(h, BILLING, 'GET', '/prefix'), 'allow');
  t.is(await decide(h, SHOP_ADMIN, 'GET', '/suffix'), 'allow');
  t.not(await decide(h, SHOP_WEB, 'GET', '/suffix'), 'allow');
  t.is(await decide(h, BILLING, 'GET', '/any'), 'allow');
  t.is(await decide(h, 'spiffe://other.domain/anything', 'GET', '/any'), 'allow');
});

test('namespaces come from the /ns/<namespace>/ segment of the SPIFFE ID, with the same patterns', async (t) => {
  const h = await load({
    rules: [
      { name: 'shop', from: { namespaces: ['shop'] }, to: { paths: ['/shop'] } },
      { name: 'teams', from: { namespaces: ['team-*', '*-system'] }, to: { paths: ['/teams'] } },
    ],
  });
  t.is(await decide(h, SHOP_WEB, 'GET', '/shop'), 'allow');
  t.not(await decide(h, 'spiffe://cluster.local/ns/shopping/sa/web', 'GET', '/shop'), 'allow');
  t.not(await decide(h, 'spiffe://cluster.local/sa/web/ns/shop', 'GET', '/shop'), 'allow'); // /ns/ must follow the trust domain
  t.not(await decide(h, 'spiffe://cluster.local/workload', 'GET', '/shop'), 'allow'); // no namespace at all
  t.is(await decide(h, 'spiffe://cluster.local/ns/shop', 'GET', '/shop'), 'allow'); // no /sa/ part
  t.is(await decide(h, 'spiffe://td/ns/team-a/sa/x', 'GET', '/teams'), 'allow');
  t.is(await decide(h, 'spiffe://td/ns/kube-system/sa/x', 'GET', '/teams'), 'allow');
  t.not(await decide(h, 'spiffe://td/ns/teams/sa/x', 'GET', '/teams'), 'allow');
});

test('principals and namespaces in one `from` must both match', async (t) => {
  const h = await load({ rules: [{ name: 'both', from: { principals: ['*/sa/admin'], namespaces: ['shop'] } }] });
  t.is(await decide(h, SHOP_ADMIN, 'GET', '/'), 'allow');
  t.not(await decide(h, SHOP_WEB, 'GET', '/'), 'allow');
  t.not(await decide(h, 'spiffe://cluster.local/ns/billing/sa/admin', 'GET', '/'), 'allow');
});

test('paths: exact, prefix*, *suffix and *, matched without the query string', async (t) => {
  const h = await load({
    rules: [
      { name: 'exact', to: { paths: ['/healthz'] } },
      { name: 'prefix', to: { paths: ['/api/*'] } },
      { name: 'suffix', to: { paths: ['*/info'] } },
      { name: 'any', to: { paths: ['*'] }, when: [{ header: 'x-any', values: ['1'] }] },
    ],
  });
  t.is(await decide(h, undefined, 'GET', '/healthz'), 'allow');
  t.is(await decide(h, undefined, 'GET', '/healthz?verbose=1'), 'allow');
  t.is(await decide(h, undefined, 'GET', '/healthz/deep'), 'authz: denied: no rule allows (no peer identity) GET /healthz/deep\n');
  t.is(await decide(h, undefined, 'GET', '/api/items'), 'allow');
  t.is(await decide(h, undefined, 'GET', '/api/'), 'allow');
  t.not(await decide(h, undefined, 'GET', '/api'), 'allow'); // "/api/*" is the prefix "/api/"
  t.not(await decide(h, undefined, 'GET', '/apix'), 'allow');
  t.is(await decide(h, undefined, 'GET', '/v1/svc/info'), 'allow');
  t.not(await decide(h, undefined, 'GET', '/v1/info/x'), 'allow');
  t.not(await decide(h, undefined, 'GET', '/x?path=/healthz'), 'allow'); // the query is never matched
  t.is(await decide(h, undefined, 'GET', '/anything/at/all', { 'x-any': '1' }), 'allow');
  // The reason names the path without its query.
  t.is(await decide(h, undefined, 'GET', '/nope?secret=1'), 'authz: denied: no rule allows (no peer identity) GET /nope\n');
});

test('methods are matched exactly', async (t) => {
  const h = await load({ rules: [{ name: 'reads', to: { methods: ['GET', 'HEAD'] } }] });
  t.is(await decide(h, undefined, 'GET', '/x'), 'allow');
  t.is(await decide(h, undefined, 'HEAD', '/x'), 'allow');
  t.is(await decide(h, undefined, 'POST', '/x'), 'authz: denied: no rule allows (no peer identity) POST /x\n');
  t.not(await decide(h, undefined, 'get', '/x'), 'allow');
});

test('`when`: every condition must hold, any value of one may match, an absent header matches nothing', async (t) => {
  const h = await load({
    rules: [
      {
        name: 'tenant',
        when: [
          { header: 'x-tenant', values: ['acme', 'globex-*'] },
          { header: 'x-api-key', values: ['*'] },
        ],
      },
      { name: 'host', when: [{ header: ':authority', values: ['*.internal'] }] },
    ],
  });
  t.is(await decide(h, undefined, 'GET', '/x', { 'x-tenant': 'acme', 'x-api-key': 'k' }), 'allow');
  t.is(await decide(h, undefined, 'GET', '/x', { 'x-tenant': 'globex-eu', 'x-api-key': 'k' }), 'allow');
  t.not(await decide(h, undefined, 'GET', '/x', { 'x-tenant': 'acme' }), 'allow'); // x-api-key absent: "*" needs it present
  t.not(await decide(h, undefined, 'GET', '/x', { 'x-tenant': 'initech', 'x-api-key': 'k' }), 'allow');
  t.not(await decide(h, undefined, 'GET', '/x', { 'x-api-key': 'k' }), 'allow');
  t.is(await decide(h, undefined, 'GET', '/x', { ':authority': 'billing.internal' }), 'allow');
});

test('deny rules win over allow rules, and the 403 names the deny rule', async (t) => {
  const h = await load({
    rules: [
      { name: 'shop', from: { namespaces: ['shop'] } },
      { name: 'no-admin', action: 'DENY', to: { paths: ['/admin/*'] } },
      { name: 'no-web-deletes', action: 'DENY', from: { principals: [SHOP_WEB] }, to: { methods: ['DELETE'] } },
    ],
  });
  t.is(await decide(h, SHOP_WEB, 'GET', '/api'), 'allow');
  t.is(await decide(h, SHOP_WEB, 'GET', '/admin/users'), `authz: denied: rule 'no-admin' denies ${SHOP_WEB} GET /admin/users\n`);
  t.is(await decide(h, undefined, 'GET', '/admin/users'), "authz: denied: rule 'no-admin' denies (no peer identity) GET /admin/users\n");
  t.is(await decide(h, SHOP_WEB, 'DELETE', '/api/1'), `authz: denied: rule 'no-web-deletes' denies ${SHOP_WEB} DELETE /api/1\n`);
  t.is(await decide(h, SHOP_ADMIN, 'DELETE', '/api/1'), 'allow');
  t.is(metric(h, 'authz_allowed_total'), 2);
  t.is(metric(h, 'authz_denied_total'), 3);
});

test('rules get default names rule-<index>, which the 403 body uses', async (t) => {
  const h = await load({ rules: [{ to: { paths: ['/ok'] } }, { action: 'DENY', to: { paths: ['/no'] } }] });
  t.is(await decide(h, undefined, 'GET', '/no'), "authz: denied: rule 'rule-1' denies (no peer identity) GET /no\n");
  t.is(await decide(h, undefined, 'GET', '/ok'), 'allow');
});

test('defaultAction ALLOW lets unmatched requests through; deny rules still deny', async (t) => {
  const h = await load({ defaultAction: 'ALLOW', rules: [{ name: 'no-admin', action: 'DENY', to: { paths: ['/admin/*'] } }] });
  t.is(await decide(h, undefined, 'POST', '/anything'), 'allow');
  t.is(await decide(h, undefined, 'GET', '/admin/x'), "authz: denied: rule 'no-admin' denies (no peer identity) GET /admin/x\n");
});

test('defaultAction ALLOW with allow rules is accepted with a warning that they change nothing', async (t) => {
  const h = await load({ defaultAction: 'ALLOW', rules: [{ name: 'a', to: { paths: ['/a'] } }] });
  t.true(h.logLines().includes('warn: authz: defaultAction is ALLOW, so the allow rules change nothing; only deny rules decide'));
});

test('an empty configuration denies everything', async (t) => {
  const h = await FilterHarness.load(wasm, { name: 'authz', rootId: 'authz', configuration: '' });
  t.is(await decide(h, SHOP_WEB, 'GET', '/'), `authz: denied: no rule allows ${SHOP_WEB} GET /\n`);
  t.true(h.logLines().includes('info: authz: 0 allow rule(s), 0 deny rule(s), default DENY'));
});

test('dry run: would-be denials pass, each logged and counted in authz_dry_run_denied_total', async (t) => {
  const h = await load({
    dryRun: true,
    rules: [
      { name: 'shop', from: { namespaces: ['shop'] } },
      { name: 'no-admin', action: 'DENY', to: { paths: ['/admin/*'] } },
    ],
  });
  t.true(h.logLines().includes('info: authz: 1 allow rule(s), 1 deny rule(s), default DENY, dry run: nothing is denied, only logged and counted'));
  t.is(await decide(h, SHOP_WEB, 'GET', '/api'), 'allow');
  t.is(await decide(h, BILLING, 'GET', '/api'), 'allow');
  t.is(await decide(h, SHOP_WEB, 'GET', '/admin/x'), 'allow');
  t.is(await decide(h, undefined, 'GET', '/a/../admin/x'), 'allow');
  t.deepEqual(
    h.logLines().filter((l) => l.includes('dry run, would deny')),
    [
      `info: authz: dry run, would deny: no rule allows ${BILLING} GET /api`,
      `info: authz: dry run, would deny: rule 'no-admin' denies ${SHOP_WEB} GET /admin/x`,
      "info: authz: dry run, would deny: ambiguous path '/a/../admin/x' (dot segments, '//', '\\' and percent-encoded '/', '\\' or unreserved characters are refused)",
    ],
  );
  t.is(metric(h, 'authz_dry_run_denied_total'), 3);
  t.is(metric(h, 'authz_allowed_total'), 1);
  t.is(h.metric('authz_denied_total'), undefined);
});

test('an enforced denial is logged at debug level only', async (t) => {
  const h = await load({ rules: [] });
  await decide(h, undefined, 'GET', '/x');
  t.deepEqual(h.logLines().filter((l) => l.includes('denied')), ['debug: authz: denied: no rule allows (no peer identity) GET /x']);
});

// Paths an upstream could read as another path than the one the rules saw.
const ambiguous = [
  '/api/../admin',
  '/api/..',
  '/api/./admin',
  '/./api/x',
  '/api/.',
  '//admin',
  '/api//x',
  '/api\\..\\admin',
  '/%61dmin',
  '/api/%2e%2e/admin',
  '/api/%2E%2e/admin',
  '/api%2Fadmin',
  '/api%2fadmin',
  '/api%5cadmin',
  '/api/%7euser',
  '/bad%zz',
  '/bad%4',
  '/trailing%',
  '/a#b',
  'http://shop.svc/admin',
  'admin',
  '',
];

for (const path of ambiguous) {
  test(`strictPaths: ${JSON.stringify(path)} is denied even where a rule would allow it`, async (t) => {
    const h = await load({ rules: [{ name: 'everything', to: { paths: ['*'] } }] });
    const shown = path.split('?')[0];
    t.is(
      await decide(h, undefined, 'GET', path),
      `authz: denied: ambiguous path '${shown}' (dot segments, '//', '\\' and percent-encoded '/', '\\' or unreserved characters are refused)\n`,
    );
    t.is(metric(h, 'authz_denied_total'), 1);
  });
}

test('strictPaths lets normal paths through: trailing slashes, escapes of reserved characters, dots inside names, any query', async (t) => {
  const h = await load({ rules: [{ name: 'everything', to: { paths: ['*'] } }] });
  for (const path of ['/', '/api/', '/api/x', '/a%20b', '/a%3Fb', '/a%25b', '/file.tar.gz', '/.well-known/x', '/a..b/c', '/x?y=../..//%2f', '*']) {
    t.is(await decide(h, undefined, path === '*' ? 'OPTIONS' : 'GET', path), 'allow', path);
  }
});

test('strictPaths false matches paths as sent', async (t) => {
  const h = await load({ strictPaths: false, rules: [{ name: 'api', to: { paths: ['/api/*'] } }] });
  t.is(await decide(h, undefined, 'GET', '/api/../admin'), 'allow');
  t.true(h.logLines().includes('info: authz: 1 allow rule(s), 0 deny rule(s), default DENY, strictPaths off: paths are matched as sent'));
});

test('every stream is counted exactly once', async (t) => {
  const h = await load({ rules: [{ name: 'get', to: { methods: ['GET'] } }] });
  for (let i = 0; i < 5; i++) await decide(h, undefined, i % 2 ? 'POST' : 'GET', `/n/${i}`);
  t.is(metric(h, 'authz_allowed_total'), 3);
  t.is(metric(h, 'authz_denied_total'), 2);
});

// [what, configuration, message, whether config.schema.json also refuses it]
const invalid: Array<[string, unknown, RegExp, boolean]> = [
  ['a configuration that is not an object', [1], /the configuration must be a JSON object, got array/, true],
  ['an unknown top-level field', { rule: [] }, /unknown field 'rule'/, true],
  ['rules that are not an array', { rules: {} }, /field 'rules': expected an array, got object/, true],
  ['a rule that is not an object', { rules: ['x'] }, /field 'rules\[0\]': expected an object, got string/, true],
  ['a lower-case defaultAction', { defaultAction: 'deny' }, /field 'defaultAction': must be ALLOW or DENY, got 'deny'/, true],
  ['a dryRun that is not a boolean', { dryRun: 'yes' }, /field 'dryRun': expected true or false, got string/, true],
  ['a strictPaths that is not a boolean', { strictPaths: 1 }, /field 'strictPaths': expected true or false, got number/, true],
  ['an unknown action', { rules: [{ action: 'AUDIT' }] }, /field 'rules\[0\]\.action': must be ALLOW or DENY, got 'AUDIT'/, true],
  ['a rule name with a space', { rules: [{ name: 'no admin' }] }, /field 'rules\[0\]\.name': must be 1 to 128 letters/, true],
  ['two rules with one name', { rules: [{ name: 'a' }, { name: 'a', action: 'DENY' }] }, /field 'rules\[1\]\.name': 'a' is already the name of another rule/, false],
  ['an unknown rule field', { rules: [{ name: 'a', paths: ['/x'] }] }, /unknown field 'rules\[0\]\.paths'/, true],
  ['an empty from', { rules: [{ from: {} }] }, /field 'rules\[0\]\.from': must have principals or namespaces/, true],
  ['a from that is not an object', { rules: [{ from: 'shop' }] }, /field 'rules\[0\]\.from': expected an object, got string/, true],
  ['an unknown from field', { rules: [{ from: { principal: ['*'] } }] }, /unknown field 'rules\[0\]\.from\.principal'/, true],
  ['an empty principals list', { rules: [{ from: { principals: [] } }] }, /field 'rules\[0\]\.from\.principals': must not be empty/, true],
  ['a principal in Istio\'s form without spiffe://', { rules: [{ from: { principals: ['cluster.local/ns/shop/sa/web'] } }] }, /field 'rules\[0\]\.from\.principals\[0\]': must be a SPIFFE ID like 'spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web'/, true],
  ['a principal with a * in the middle', { rules: [{ from: { principals: ['spiffe://cluster.local/ns/*/sa/web'] } }] }, /field 'rules\[0\]\.from\.principals\[0\]': '\*' may only be the first or the last character/, true],
  ['a principal that is not a string', { rules: [{ from: { principals: [7] } }] }, /field 'rules\[0\]\.from\.principals\[0\]': expected a string, got number/, true],
  ['a namespace with a slash', { rules: [{ from: { namespaces: ['ns/shop'] } }] }, /field 'rules\[0\]\.from\.namespaces\[0\]': must be a namespace name, without '\/'/, true],
  ['an empty namespace', { rules: [{ from: { namespaces: [''] } }] }, /field 'rules\[0\]\.from\.namespaces\[0\]': must not be empty/, true],
  ['an empty to', { rules: [{ to: {} }] }, /field 'rules\[0\]\.to': must have paths or methods/, true],
  ['a path without a leading slash', { rules: [{ to: { paths: ['api/*'] } }] }, /field 'rules\[0\]\.to\.paths\[0\]': must start with '\/'/, true],
  ['a path with two stars', { rules: [{ to: { paths: ['*/api/*'] } }] }, /field 'rules\[0\]\.to\.paths\[0\]': '\*' may only be the first or the last character/, true],
  ['an empty paths list', { rules: [{ to: { paths: [] } }] }, /field 'rules\[0\]\.to\.paths': must not be empty/, true],
  ['a lower-case method', { rules: [{ to: { methods: ['get'] } }] }, /field 'rules\[0\]\.to\.methods\[0\]': must be an upper-case HTTP method like 'GET', got 'get'/, true],
  ['an empty methods list', { rules: [{ to: { methods: [] } }] }, /field 'rules\[0\]\.to\.methods': must not be empty/, true],
  ['an unknown to field', { rules: [{ to: { hosts: ['a'] } }] }, /unknown field 'rules\[0\]\.to\.hosts'/, true],
  ['an empty when', { rules: [{ when: [] }] }, /field 'rules\[0\]\.when': must not be empty/, true],
  ['a when entry that is not an object', { rules: [{ when: ['x-user'] }] }, /field 'rules\[0\]\.when\[0\]': expected an object, got string/, true],
  ['a when without header', { rules: [{ when: [{ values: ['a'] }] }] }, /field 'rules\[0\]\.when\[0\]\.header': is required/, true],
  ['a when without values', { rules: [{ when: [{ header: 'x-user' }] }] }, /field 'rules\[0\]\.when\[0\]\.values': is required \(use \["\*"\] to require only that the header is present\)/, true],
  ['an upper-case header name', { rules: [{ when: [{ header: 'X-User', values: ['a'] }] }] }, /field 'rules\[0\]\.when\[0\]\.header': must be a lower-case header name/, true],
  ['a header value with a line break', { rules: [{ when: [{ header: 'x-user', values: ['a\nb'] }] }] }, /field 'rules\[0\]\.when\[0\]\.values\[0\]': must not contain CR, LF or NUL/, true],
  ['an unknown when field', { rules: [{ when: [{ header: 'x-user', values: ['a'], notValues: ['b'] }] }] }, /unknown field 'rules\[0\]\.when\[0\]\.notValues'/, true],
];

/** The error's message plus any filter log lines the harness attached to it. */
function errorText(error: unknown): string {
  const e = error as { message?: string; logs?: Array<{ message: string }> } | undefined;
  return [e?.message ?? '', ...(e?.logs ?? []).map((l) => l.message)].join('\n');
}

for (const [what, configuration, message, schemaRefuses] of invalid) {
  test(`rejects ${what}, naming the field`, async (t) => {
    const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'authz', rootId: 'authz', configuration: JSON.stringify(configuration) }));
    t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
    t.regex(errorText(error), message);
    t.is(validate(configuration), !schemaRefuses, 'config.schema.json should agree');
  });
}

test('reports every problem of a configuration at once', async (t) => {
  const configuration = { defaultAction: 'nope', rules: [{ name: 'a', from: { principals: ['x'] } }, { to: { methods: ['get'] } }] };
  const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'authz', rootId: 'authz', configuration: JSON.stringify(configuration) }));
  const text = errorText(error);
  t.regex(text, /field 'defaultAction': must be ALLOW or DENY/);
  t.regex(text, /field 'rules\[0\]\.from\.principals\[0\]': must be a SPIFFE ID/);
  t.regex(text, /field 'rules\[1\]\.to\.methods\[0\]': must be an upper-case HTTP method/);
});

test('rejects configuration text that is not JSON, saying where', async (t) => {
  const error = await t.throwsAsync(FilterHarness.load(wasm, { name: 'authz', rootId: 'authz', configuration: '{"rules": [' }));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_PLUGIN_CONFIGURE');
  t.regex(errorText(error), /authz: invalid configuration: invalid JSON: line 1, column 12/);
});

test('the schema\'s example and the bench configuration load', async (t) => {
  for (const configuration of [...schema.examples, JSON.parse(readFileSync(new URL('../bench.json', import.meta.url), 'utf8')).config]) {
    await t.notThrowsAsync(load(configuration));
  }
});
