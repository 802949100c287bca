// The one classifier of upstream failures, on failures real sockets produce (undici and node:http2
// against loopback servers), and the one verdict retries, outlier detection and replies draw from it.
import { createServer as createHttpServer } from 'node:http';
import http2 from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import test from 'ava';
import { DEFAULT_RETRY_POLICY, retriable } from '../../runtime/proxy/retry.ts';
import { Http2Pool } from '../../runtime/proxy/h2-pool.ts';
import { Http1Pool } from '../../runtime/proxy/upstream-pool.ts';
import { classifyUpstreamFailure, RouteTimeout, TryTimeout } from '../../runtime/proxy/upstream-errors.ts';
import { upstreamFailureReply } from '../../runtime/proxy/layers/local-reply.ts';
import { Cluster } from '../../runtime/proxy/upstreams.ts';
import { cluster } from '../helpers/snapshot.ts';

const options = { maxConnections: 1, connectTimeoutMs: 1000, idleTimeoutMs: 1000, requestTimeoutMs: 10_000 };

async function listen(t: { teardown(fn: () => unknown): void }, server: Server | ReturnType<typeof createHttpServer> | http2.Http2Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return (server.address() as AddressInfo).port;
}

/** The error one GET through an HTTP/1.1 pool to `port` fails with. */
async function http1Failure(t: { teardown(fn: () => unknown): void }, port: number, requestTimeoutMs = 10_000): Promise<unknown> {
  const pool = new Http1Pool(`127.0.0.1:${port}`, { ...options, requestTimeoutMs });
  t.teardown(() => pool.destroy());
  return pool.request({ method: 'GET', path: '/', headers: ['host', 'x'] }).then(
    () => 'answered',
    (error: unknown) => error,
  );
}

test('a closed port is a connect failure', async (t) => {
  const probe = createNetServer();
  const port = await listen(t, probe);
  probe.close();
  const error = await http1Failure(t, port);
  t.is((error as { code?: string }).code, 'ECONNREFUSED');
  t.is(classifyUpstreamFailure(error), 'SLUICE_ERR_UPSTREAM_CONNECT');
});

test('a connection closed before the response is a reset', async (t) => {
  const port = await listen(t, createNetServer((socket) => socket.once('data', () => socket.destroy())));
  const error = await http1Failure(t, port);
  t.is((error as { code?: string }).code, 'UND_ERR_SOCKET');
  t.is(classifyUpstreamFailure(error), 'SLUICE_ERR_UPSTREAM_RESET');
});

test('an answer that is not HTTP is a protocol error', async (t) => {
  const port = await listen(t, createNetServer((socket) => socket.once('data', () => socket.end('SSH-2.0-OpenSSH_9.6\r\n\r\n'))));
  const error = await http1Failure(t, port);
  t.is((error as Error).message, 'Response does not match the HTTP/1.1 protocol (Expected HTTP/, RTSP/ or ICE/)');
  t.is(classifyUpstreamFailure(error), 'SLUICE_ERR_UPSTREAM_PROTOCOL');
});

test("the cluster's requestTimeoutMs passing before the response headers is a timeout, on HTTP/1.1 and HTTP/2", async (t) => {
  const port = await listen(t, createHttpServer(() => {}));
  const error = await http1Failure(t, port, 100);
  t.is((error as { code?: string }).code, 'UND_ERR_HEADERS_TIMEOUT');
  t.is(classifyUpstreamFailure(error), 'SLUICE_ERR_UPSTREAM_TIMEOUT');

  const h2port = await listen(t, http2.createServer(() => {}));
  const pool = new Http2Pool(`127.0.0.1:${h2port}`, { connectTimeoutMs: 1000, idleTimeoutMs: 1000, requestTimeoutMs: 100 });
  t.teardown(() => pool.destroy());
  const h2error = await pool.request({ method: 'GET', path: '/', headers: ['host', 'x'] }).catch((e: unknown) => e);
  t.is(classifyUpstreamFailure(h2error), 'SLUICE_ERR_UPSTREAM_TIMEOUT');
});

test('an HTTP/2 stream the upstream refuses (RST_STREAM REFUSED_STREAM) is a reset', async (t) => {
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  });
  const port = await listen(t, server);
  const pool = new Http2Pool(`127.0.0.1:${port}`, { connectTimeoutMs: 1000, idleTimeoutMs: 1000, requestTimeoutMs: 0 });
  t.teardown(() => pool.destroy());
  const error = await pool.request({ method: 'GET', path: '/', headers: ['host', 'x'] }).catch((e: unknown) => e);
  t.is(classifyUpstreamFailure(error), 'SLUICE_ERR_UPSTREAM_RESET');
});

test("Sluice's own timeouts keep their code; what nobody knows is a plain failure", (t) => {
  t.is(classifyUpstreamFailure(new RouteTimeout(300)), 'SLUICE_ERR_UPSTREAM_TIMEOUT');
  t.is(classifyUpstreamFailure(new TryTimeout(100)), 'SLUICE_ERR_UPSTREAM_TIMEOUT');
  t.is(classifyUpstreamFailure(Object.assign(new Error('x'), { name: 'HeadersTimeoutError' })), 'SLUICE_ERR_UPSTREAM_FAILED');
  t.is(classifyUpstreamFailure(new Error('no code')), 'SLUICE_ERR_UPSTREAM_FAILED');
  t.is(classifyUpstreamFailure(undefined), 'SLUICE_ERR_UPSTREAM_FAILED');
});

// Before the classifier, ENETUNREACH was retried and ejected as a connect failure but answered 502.
for (const code of ['ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT']) {
  test(`${code}: a connect failure to retries, outlier detection and the reply alike`, (t) => {
    const error = Object.assign(new Error(`connect ${code}`), { code });
    t.true(retriable({ ...DEFAULT_RETRY_POLICY, retryOn: ['connect-failure'] }, undefined, error));
    const c = new Cluster(cluster('c', [1, 2], { outlierDetection: { consecutive5xx: 0, consecutiveGatewayFailure: 2, baseEjectionTimeMs: 60_000, maxEjectionPercent: 50 } }));
    c.record(c.hosts[0]!, undefined, error);
    c.record(c.hosts[0]!, undefined, error);
    t.is(c.ejected, 1);
    t.is(c.failures.get('SLUICE_ERR_UPSTREAM_CONNECT'), 2);
    const reply = upstreamFailureReply(error, 'c', '127.0.0.1:1');
    t.is(reply.status, 503);
    t.is(Buffer.from(reply.body).toString(), `sluice: upstream connect error to 127.0.0.1:1 of cluster "c" (${code}); is the service running and listening there?\n`);
  });
}

for (const [code, status] of [['ECONNRESET', 502], ['UND_ERR_SOCKET', 502], ['UND_ERR_HEADERS_TIMEOUT', 504]] as const) {
  test(`${code}: retried on reset, never ejects, answered ${status}`, (t) => {
    const error = Object.assign(new Error(code), { code });
    t.true(retriable({ ...DEFAULT_RETRY_POLICY, retryOn: ['reset'] }, undefined, error));
    t.false(retriable({ ...DEFAULT_RETRY_POLICY, retryOn: ['connect-failure'] }, undefined, error));
    const c = new Cluster(cluster('c', [1, 2], { outlierDetection: { consecutive5xx: 1, consecutiveGatewayFailure: 1, baseEjectionTimeMs: 60_000, maxEjectionPercent: 50 } }));
    c.record(c.hosts[0]!, undefined, error);
    t.is(c.ejected, 0);
    t.is(upstreamFailureReply(error, 'c', '127.0.0.1:1').status, status);
  });
}
