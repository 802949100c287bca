// The example config `npm start` runs (examples/local/sluice.yaml), through `sluice run` with the
// demo's echo upstreams: every filter of its chain does what the printed curl commands promise.
// Ports are moved to free ones so the test runs beside a running `npm start`.
import { readFile } from 'node:fs/promises';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { request } from 'undici';
import { UPSTREAMS, echoUpstream } from '../../runtime/cli/demo.ts';
import { repoRoot } from '../helpers/fixtures.ts';
import { runSluice } from '../helpers/sluice-run.ts';

test('the example chain: hello, authz, router, retry, ratelimit, fault, headers, telemetry', async (t) => {
  let yaml = await readFile(`${repoRoot}examples/local/sluice.yaml`, 'utf8');
  for (const { name, port } of UPSTREAMS) {
    const server = echoUpstream(name);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.teardown(() => {
      server.closeAllConnections();
      server.close();
    });
    yaml = yaml.replaceAll(`127.0.0.1:${port}`, `127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  yaml = yaml.replaceAll('127.0.0.1:15000', '127.0.0.1:0').replaceAll('127.0.0.1:15001', '127.0.0.1:0').replaceAll('../../build/', '${repo}/build/');
  const run = await runSluice(yaml);
  t.teardown(() => run.stop());
  const base = `http://127.0.0.1:${await run.port('outbound')}`;
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const r = await request(base + path, { headers });
    return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
  };

  const plain = await get('/anything', { 'x-debug': 'secret' });
  t.is(plain.status, 200);
  t.is(plain.headers['x-hello'], 'world');
  t.is(plain.headers['x-served-by'], 'echo (200)');
  t.regex(String(plain.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  const echoed = JSON.parse(plain.text);
  t.is(echoed.upstream, 'echo');
  t.is(echoed.headers['x-client'], '127.0.0.1 via HTTP/1.1');
  t.is(echoed.headers['x-debug'], undefined);
  t.is(echoed.headers['x-request-id'], plain.headers['x-request-id']);

  t.is((await get('/forbidden')).status, 403);
  const admin = await get('/admin/users');
  t.is(admin.status, 403);
  t.is(admin.text, "authz: denied: rule 'no-admin' denies (no peer identity) GET /admin/users\n");

  const canary = await get('/anything', { 'x-canary': '1' });
  t.is(canary.headers['x-sluice-cluster'], 'echo-canary');
  t.is(JSON.parse(canary.text).upstream, 'echo-canary');
  const split = [];
  for (let i = 0; i < 4; i++) split.push(JSON.parse((await get('/split')).text).upstream);
  t.deepEqual(split.sort(), ['echo', 'echo', 'echo', 'echo-canary']);

  const flaky = await get('/flaky');
  t.is(flaky.status, 200);
  t.is(JSON.parse(flaky.text).headers['x-sluice-attempt-count'], '2');

  const limited = [];
  for (let i = 0; i < 4; i++) limited.push((await get('/api/x', { 'x-user': 'ann' })).status);
  t.deepEqual(limited, [200, 200, 200, 429]);

  const abort = await get('/anything', { 'x-chaos': '1', 'x-envoy-fault-abort-request': '503' });
  t.is(abort.status, 503);
  t.is((await get('/anything', { 'x-chaos': '1', 'x-envoy-fault-delay-request': '50' })).status, 200);

  // The same port speaks HTTP/2 with prior knowledge.
  const session = http2.connect(base);
  t.teardown(() => session.close());
  const upstreamOverH2 = await new Promise<string>((resolve, reject) => {
    let body = '';
    const s = session.request({ ':path': '/anything' });
    s.on('data', (c) => (body += c));
    s.on('end', () => resolve(JSON.parse(body).upstream));
    s.on('error', reject);
    s.end();
  });
  t.is(upstreamOverH2, 'echo');
  t.is((await get('/healthz')).text, 'ok\n');

  const metrics = await (await request(`http://127.0.0.1:${await run.adminPort()}/stats/prometheus`)).body.text();
  t.true(metrics.includes('\nrouter_decisions_total{cluster="echo-canary"} 2\n'), metrics);
  t.true(metrics.includes('\nratelimit_limited_total 1\n'));
  t.true(metrics.includes('\nauthz_denied_total 1\n'));
  t.true(metrics.includes('telemetry_requests_total{method="GET",response_code="429",cluster="unknown",route="unknown"} 1\n'));
});
