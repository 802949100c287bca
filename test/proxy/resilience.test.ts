// Resilience as Envoy does it: retries (retryOn conditions, another endpoint preferred, the try
// number sent upstream, the body replayed, per-try timeouts, backoff with Retry-After, the retry
// budget, a filter's per-request override), outlier ejection and circuit breakers.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { request } from 'undici';
import type { ClusterConfig, RetryPolicy, Snapshot } from '../../runtime/config/snapshot.ts';
import { cluster } from '../helpers/snapshot.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { DEFAULT_RETRY_POLICY, RetryBudget, backoffMs, effectivePolicy, retriable } from '../../runtime/proxy/retry.ts';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string, n: number) => void;

async function upstream(t: { teardown(fn: () => unknown): void }, handler: Handler) {
  const seen: Array<{ attempt: string; body: string }> = [];
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const c of req) body += c;
    seen.push({ attempt: String(req.headers['x-sluice-attempt-count']), body });
    handler(req, res, body, seen.length);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

async function proxy(t: { teardown(fn: () => unknown): void }, ports: number[], retryPolicy?: Partial<RetryPolicy>, clusterOverrides: Partial<ClusterConfig> = {}) {
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [
      {
        name: 'web',
        host: '127.0.0.1',
        port: 0,
        protocol: 'http',
        filters: [],
        routes: [{ name: 'all', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'up', weight: 1 }] }, timeoutMs: 10_000, ...(retryPolicy ? { retryPolicy: { ...DEFAULT_RETRY_POLICY, baseIntervalMs: 1, maxIntervalMs: 5, ...retryPolicy } } : {}) }],
      },
    ],
    clusters: [cluster('up', ports, clusterOverrides)],
    filters: [],
  };
  const p = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => p.stop(100));
  admins.set(`http://127.0.0.1:${p.addresses().web.port}`, `http://127.0.0.1:${p.addresses().admin.port}`);
  return `http://127.0.0.1:${p.addresses().web.port}`;
}

/** The admin URL of the proxy serving `base`. */
const admins = new Map<string, string>();
const metrics = async (base: string) => (await request(`${admins.get(base)}/stats/prometheus`)).body.text();

const call = async (url: string, init: Parameters<typeof request>[1] = {}) => {
  const r = await request(url, init);
  return { status: r.statusCode, text: await r.body.text() };
};

test('a 503 is retried on 5xx and the upstream sees the try number', async (t) => {
  const up = await upstream(t, (_req, res, _b, n) => res.writeHead(n === 1 ? 503 : 200).end(n === 1 ? 'busy' : 'ok'));
  const base = await proxy(t, [up.port], { numRetries: 2, retryOn: ['5xx'] });
  t.deepEqual(await call(`${base}/x`), { status: 200, text: 'ok' });
  t.deepEqual(up.seen.map((s) => s.attempt), ['1', '2']);
  const text = await metrics(base);
  t.true(text.includes('\nsluice_cluster_upstream_rq_retry_total{cluster="up"} 1\n'), text);
  t.true(text.includes('\nsluice_cluster_upstream_rq_retry_overflow_total{cluster="up"} 0\n'));
});

test('without a retry policy a 503 goes straight to the client', async (t) => {
  const up = await upstream(t, (_req, res) => res.writeHead(503).end('busy'));
  const base = await proxy(t, [up.port]);
  t.deepEqual(await call(`${base}/x`), { status: 503, text: 'busy' });
  t.is(up.seen.length, 1);
});

test('retries stop after numRetries and the last answer is returned', async (t) => {
  const up = await upstream(t, (_req, res, _b, n) => res.writeHead(502).end(`try ${n}`));
  const base = await proxy(t, [up.port], { numRetries: 2, retryOn: ['gateway-error'] });
  t.deepEqual(await call(`${base}/x`), { status: 502, text: 'try 3' });
});

test('a connect failure is retried on another endpoint', async (t) => {
  const up = await upstream(t, (_req, res) => res.end('alive'));
  // Port 1 refuses connections; round robin tries it first.
  const base = await proxy(t, [1, up.port], { numRetries: 1, retryOn: ['connect-failure'] });
  t.deepEqual(await call(`${base}/x`), { status: 200, text: 'alive' });
  t.deepEqual(up.seen.map((s) => s.attempt), ['2']);
});

test('retriable-status-codes retries only the listed statuses', async (t) => {
  const up = await upstream(t, (req, res, _b, n) => res.writeHead(req.url === '/teapot' && n === 1 ? 418 : 500).end());
  const base = await proxy(t, [up.port], { numRetries: 1, retryOn: ['retriable-status-codes'], retriableStatusCodes: [418] });
  t.is((await call(`${base}/teapot`)).status, 500);
  t.is(up.seen.length, 2);
  t.is((await call(`${base}/other`)).status, 500);
  t.is(up.seen.length, 3);
});

test('a request body is sent again on a retry', async (t) => {
  const up = await upstream(t, (_req, res, body, n) => res.writeHead(n === 1 ? 503 : 200).end(`got ${body.length}`));
  const base = await proxy(t, [up.port], { numRetries: 1 });
  t.deepEqual(await call(`${base}/upload`, { method: 'POST', body: 'b'.repeat(1000) }), { status: 200, text: 'got 1000' });
  t.deepEqual(up.seen.map((s) => s.body.length), [1000, 1000]);
});

test('a try that passes its per-try timeout is retried', async (t) => {
  const up = await upstream(t, (_req, res, _b, n) => {
    if (n > 1) res.end('second');
    // the first try never answers
  });
  const base = await proxy(t, [up.port], { numRetries: 1, retryOn: ['reset'], perTryTimeoutMs: 1000 });
  t.deepEqual(await call(`${base}/x`), { status: 200, text: 'second' });
});

test('backoff: full jitter over base × 2^(n-1) up to the max, or Retry-After', (t) => {
  const p = { ...DEFAULT_RETRY_POLICY, baseIntervalMs: 25, maxIntervalMs: 250 };
  t.is(backoffMs(p, 1, undefined, 0.5), 12);
  t.is(backoffMs(p, 3, undefined, 0.5), 50);
  t.is(backoffMs(p, 6, undefined, 0.999), 249);
  t.is(backoffMs(p, 1, '2'), 2000);
  t.is(backoffMs(p, 1, '60'), 2500);
  t.is(backoffMs(p, 1, 'Wed, 21 Oct 2015 07:28:00 GMT', 0.5), 12);
});

test('retry conditions map outcomes as Envoy does', (t) => {
  const p = (retryOn: RetryPolicy['retryOn']) => ({ ...DEFAULT_RETRY_POLICY, retryOn });
  t.true(retriable(p(['5xx']), 500, undefined));
  t.false(retriable(p(['gateway-error']), 500, undefined));
  t.true(retriable(p(['gateway-error']), 504, undefined));
  t.true(retriable(p(['retriable-4xx']), 409, undefined));
  t.false(retriable(p(['5xx']), 404, undefined));
  t.true(retriable(p(['connect-failure']), undefined, { code: 'ECONNREFUSED' }));
  t.true(retriable(p(['reset']), undefined, { code: 'ECONNRESET' }));
  t.false(retriable(p(['connect-failure']), undefined, { code: 'ECONNRESET' }));
});

test('the retry budget allows 20% of active requests, at least 3', (t) => {
  const b = new RetryBudget();
  b.active = 10;
  t.deepEqual([b.tryAcquire(), b.tryAcquire(), b.tryAcquire(), b.tryAcquire()], [true, true, true, false]);
  t.is(b.overflows, 1);
  b.active = 30; // 20% of 30: 6 retries at once
  t.deepEqual([b.tryAcquire(), b.tryAcquire(), b.tryAcquire(), b.tryAcquire()], [true, true, true, false]);
  b.release();
  t.true(b.tryAcquire());
  t.is(b.retries, 7);
});

test('a filter overrides the route policy with JSON in sluice.retry_policy; a bad one is ignored with a warning', (t) => {
  const warnings: string[] = [];
  const route = { ...DEFAULT_RETRY_POLICY, numRetries: 1 };
  t.is(effectivePolicy(route, '{"numRetries":3,"retryOn":["gateway-error"]}', (w) => warnings.push(w)).numRetries, 3);
  t.is(effectivePolicy(undefined, '{"numRetries":2}', (w) => warnings.push(w)).numRetries, 2);
  t.is(effectivePolicy(route, '{"numRetries":-1}', (w) => warnings.push(w)), route);
  t.deepEqual(warnings, ['ignoring the retry policy a filter set in sluice.retry_policy (numRetries must be a whole number ≥ 0): {"numRetries":-1}']);
  t.is(effectivePolicy(undefined, undefined, () => {}).numRetries, 0);
});

test('outlier detection ejects an endpoint after consecutive 5xx and sends the rest elsewhere', async (t) => {
  const bad = await upstream(t, (_req, res) => res.writeHead(500).end('bad'));
  const good = await upstream(t, (_req, res) => res.end('good'));
  const od = { consecutive5xx: 2, consecutiveGatewayFailure: 0, baseEjectionTimeMs: 60_000, maxEjectionPercent: 50 };
  const base = await proxy(t, [bad.port, good.port], undefined, { outlierDetection: od });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await call(`${base}/x`)).status);
  t.deepEqual(statuses, [500, 200, 500, 200, 200, 200]);
  t.is(bad.seen.length, 2);
  const text = await metrics(base);
  t.true(text.includes('\nsluice_cluster_outlier_ejections_total{cluster="up"} 1\n'), text);
  t.true(text.includes('\nsluice_cluster_outlier_ejected{cluster="up"} 1\n'));
});

test('the maxRequests circuit breaker answers 503 at once while the cluster is full', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const up = await upstream(t, (_req, res, _b, n) => (n === 1 ? void held.then(() => res.end('first')) : res.end('later')));
  const base = await proxy(t, [up.port], undefined, { circuitBreakers: { maxRequests: 1, maxRetries: 3 } });
  const first = call(`${base}/slow`);
  while (up.seen.length === 0) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(await call(`${base}/x`), { status: 503, text: 'sluice: cluster "up" circuit breaker open: 1 requests in flight (circuitBreakers.maxRequests 1)\n' });
  release();
  t.deepEqual(await first, { status: 200, text: 'first' });
  t.deepEqual(await call(`${base}/x`), { status: 200, text: 'later' });
  t.true((await metrics(base)).includes('\nsluice_cluster_circuit_breaker_open_total{cluster="up"} 1\n'));
});

/**
 * A raw HTTP/1.1 upstream that answers the first request on each connection (keep-alive) and
 * closes the connection without an answer when a second request arrives on it: the keep-alive
 * race of an upstream closing an idle connection as a request is sent on it (with
 * `answersFirst` false it answers nothing at all). It counts connections and the requests it saw
 * (method and try number).
 */
async function closingUpstream(t: { teardown(fn: () => unknown): void }, answersFirst = true) {
  const { createServer: createNetServer } = await import('node:net');
  const seen: string[] = [];
  let connections = 0;
  const sockets = new Set<import('node:net').Socket>();
  const server = createNetServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    let served = 0;
    socket.on('data', (d) => {
      buffered += d.toString('latin1');
      let end: number;
      while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
        const head = buffered.slice(0, end);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.slice(end + 4 + length);
        seen.push(`${head.split(' ')[0]} try ${/\r\nx-sluice-attempt-count: *(\d+)/i.exec(head)?.[1]}`);
        if (served++ > 0 || !answersFirst) return void socket.destroy();
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port, seen, connections: () => connections };
}

test('the keep-alive race: an idempotent request whose pooled connection closes before any answer is sent once more on a new connection, with no retry policy', async (t) => {
  const up = await closingUpstream(t);
  const base = await proxy(t, [up.port], undefined, { maxConnections: 1 });
  t.deepEqual(await call(`${base}/one`), { status: 200, text: 'ok' });
  // The pooled connection is reused for the next GET, which the upstream answers by closing it.
  t.deepEqual(await call(`${base}/two`), { status: 200, text: 'ok' });
  t.deepEqual(up.seen, ['GET try 1', 'GET try 1', 'GET try 2']);
  t.is(up.connections(), 2);
  t.regex(await metrics(base), /sluice_cluster_upstream_rq_retry_total\{cluster="up"\} 1\b/);
});

test('the keep-alive race is not retried for a POST (not idempotent), nor twice', async (t) => {
  const up = await closingUpstream(t);
  const base = await proxy(t, [up.port], undefined, { maxConnections: 1 });
  t.is((await call(`${base}/one`, { method: 'POST', body: 'a' })).status, 200);
  const post = await call(`${base}/two`, { method: 'POST', body: 'b' });
  t.is(post.status, 502);
  t.regex(post.text, /UND_ERR_SOCKET/);
  t.deepEqual(up.seen, ['POST try 1', 'POST try 1']);
  // An upstream that closes every connection under its request: one more try only, then 502.
  const dead = await closingUpstream(t, false);
  const deadBase = await proxy(t, [dead.port], undefined, { maxConnections: 1 });
  const get = await call(`${deadBase}/x`);
  t.is(get.status, 502);
  t.deepEqual(dead.seen, ['GET try 1', 'GET try 2']);
});
