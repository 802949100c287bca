// HTTP/2 resets through the real `sluice run` process: a client's RST_STREAM cancels the upstream
// request (and frees its place in the circuit breaker; an HTTP/2 upstream gets RST_STREAM CANCEL);
// an upstream answer the proxy throws away is reset with CANCEL; a client that resets streams in
// a loop (CVE-2023-44487, "rapid reset") gets GOAWAY ENHANCE_YOUR_CALM while others are served.
import http2 from 'node:http2';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { request } from 'undici';
import { fixture } from '../helpers/fixtures.ts';
import { rawH2 } from '../helpers/h2-frames.ts';
import { echoUpstream, runSluice, until } from '../helpers/sluice-run.ts';

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

/** An upstream that never answers /hold (and records when the proxy gives up on one) and answers the rest. */
async function holdingUpstream(t: { teardown(fn: () => unknown): void }) {
  const held: ServerResponse[] = [];
  const abandoned: string[] = [];
  const upstream = await echoUpstream('up', (req, res) => {
    if (!req.url!.startsWith('/hold')) return void res.end(`ok ${req.url}`);
    held.push(res);
    res.on('close', () => {
      if (!res.writableFinished) abandoned.push(req.url!);
    });
  });
  t.teardown(() => upstream.close());
  return { ...upstream, held, abandoned };
}

const config = (port: number, maxRequests = 1024) => `
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    routes:
      - cluster: up
        timeoutMs: 60000
clusters:
  - name: up
    endpoints: [127.0.0.1:${port}]
    requestTimeoutMs: 60000
    circuitBreakers: { maxRequests: ${maxRequests} }
`;

/** Polls the active-requests gauge until it reads `want` (bounded); returns the last reading. */
async function activeIs(adminPort: number, want: string): Promise<string> {
  let active = '';
  for (let i = 0; i < 250 && active !== want; i++) {
    active = await activeRequests(adminPort);
    if (active !== want) await new Promise((r) => setTimeout(r, 20));
  }
  return active;
}

async function activeRequests(adminPort: number): Promise<string> {
  const text = await (await request(`http://127.0.0.1:${adminPort}/stats/prometheus`)).body.text();
  return /^sluice_cluster_upstream_rq_active\{cluster="up"\} (\d+)$/m.exec(text)?.[1] ?? `(not found in:\n${text})`;
}

test('an HTTP/2 RST_STREAM cancels the upstream request and frees its place in the circuit breaker', async (t) => {
  const upstream = await holdingUpstream(t);
  const run = await runSluice(config(upstream.port, 3));
  t.teardown(() => run.stop());
  const port = await run.port('web');
  const admin = await run.adminPort();
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});

  // Twice the breaker's size, one after the other: each reset frees its place.
  for (let i = 1; i <= 6; i++) {
    const stream = session.request({ ':path': `/hold/${i}` });
    stream.on('error', () => {});
    await until(`the upstream to receive /hold/${i}`, () => (upstream.held.length === i ? true : undefined), 10_000);
    stream.close(NGHTTP2_CANCEL);
    await until(`the upstream request /hold/${i} to be aborted; aborted so far: ${upstream.abandoned.join(' ')}`, () => (upstream.abandoned.length === i ? true : undefined), 10_000);
  }
  t.deepEqual(upstream.abandoned, ['/hold/1', '/hold/2', '/hold/3', '/hold/4', '/hold/5', '/hold/6']);
  t.is(await activeIs(admin, '0'), '0');
  const answer = await request(`http://127.0.0.1:${port}/after`);
  t.is(answer.statusCode, 200);
  t.is(await answer.body.text(), 'ok /after');
});

test('an HTTP/2 RST_STREAM of a request waiting for a connection frees its place in the pending-requests breaker', async (t) => {
  const upstream = await holdingUpstream(t);
  const run = await runSluice(config(upstream.port).replace('circuitBreakers: { maxRequests: 1024 }', 'maxConnections: 1\n    circuitBreakers: { maxPendingRequests: 1 }'));
  t.teardown(() => run.stop());
  const port = await run.port('web');
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const open = (path: string) => {
    const stream = session.request({ ':path': path });
    stream.on('error', () => {});
    return stream;
  };
  // A takes the one connection; B waits for it.
  const a = open('/hold/a');
  await until('the upstream to receive /hold/a', () => (upstream.held.length === 1 ? true : undefined), 10_000);
  const b = open('/hold/b');
  const admin = await run.adminPort();
  t.is(await activeIs(admin, '2'), '2');
  // With B waiting, the breaker is full: C is refused at once.
  const c = await request(`http://127.0.0.1:${port}/c`);
  t.is(c.statusCode, 503);
  t.regex(await c.body.text(), /circuit breaker open: 1 requests waiting for a connection/);
  b.close(NGHTTP2_CANCEL);
  await new Promise((r) => b.once('close', r));
  t.is(await activeIs(admin, '1'), '1');
  // B's place is free: D waits for the connection instead of being refused, and gets it once A is reset.
  const d = request(`http://127.0.0.1:${port}/d`).then(async (r) => ({ status: r.statusCode, text: await r.body.text() }));
  // Time for D to reach the proxy while A still holds the connection (were B still counted, D
  // would be refused then; later, it would be let through either way).
  await new Promise((r) => setTimeout(r, 300));
  a.close(NGHTTP2_CANCEL);
  t.deepEqual(await d, { status: 200, text: 'ok /d' });
  t.deepEqual(upstream.abandoned, ['/hold/a']);
});

test('an HTTP/2 RST_STREAM reaches an HTTP/2 upstream as RST_STREAM CANCEL', async (t) => {
  const held: string[] = [];
  const cancelled: Array<[string, number | undefined]> = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    held.push(String(headers[':path']));
    stream.on('error', () => {});
    stream.on('close', () => cancelled.push([String(headers[':path']), stream.rstCode]));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const run = await runSluice(config((server.address() as AddressInfo).port).replace('requestTimeoutMs: 60000', 'requestTimeoutMs: 60000\n    protocol: http2'));
  t.teardown(() => run.stop());
  const session = http2.connect(`http://127.0.0.1:${await run.port('web')}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const stream = session.request({ ':path': '/hold/h2' });
  stream.on('error', () => {});
  await until('the upstream to receive /hold/h2', () => (held.length === 1 ? true : undefined), 10_000);
  stream.close(NGHTTP2_CANCEL);
  await until('the upstream stream to be reset', () => (cancelled.length === 1 ? true : undefined), 10_000);
  t.deepEqual(cancelled, [['/hold/h2', NGHTTP2_CANCEL]]);
});

test('an HTTP/2 upstream answer the proxy throws away (a retried 503) is reset with CANCEL, not NO_ERROR', async (t) => {
  const closed: Array<number | undefined> = [];
  let n = 0;
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    if (++n === 1) {
      // A 503 whose body never ends: the proxy retries and throws the rest away.
      stream.on('close', () => closed.push(stream.rstCode));
      stream.respond({ ':status': 503 });
      stream.write('busy');
      return;
    }
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const yaml = config((server.address() as AddressInfo).port)
    .replace('requestTimeoutMs: 60000', 'requestTimeoutMs: 60000\n    protocol: http2')
    .replace('timeoutMs: 60000', 'timeoutMs: 60000\n        retryPolicy: { numRetries: 1, retryOn: [5xx], baseIntervalMs: 1, maxIntervalMs: 1 }');
  const run = await runSluice(yaml);
  t.teardown(() => run.stop());
  const answer = await request(`http://127.0.0.1:${await run.port('web')}/retried`);
  t.is(answer.statusCode, 200);
  t.is(await answer.body.text(), 'ok');
  await until('the first upstream stream to close', () => (closed.length === 1 ? true : undefined), 10_000);
  t.deepEqual(closed, [NGHTTP2_CANCEL]);
});

test('a filter resetting the stream mid-response: the client gets INTERNAL_ERROR, the HTTP/2 upstream CANCEL', async (t) => {
  const upstreamClosed: Array<number | undefined> = [];
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.on('close', () => upstreamClosed.push(stream.rstCode));
    stream.respond({ ':status': 200 });
    stream.write('first chunk');
    // The rest would follow later; the filter resets the stream at the first chunk.
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const run = await runSluice(
    config((server.address() as AddressInfo).port)
      .replace('requestTimeoutMs: 60000', 'requestTimeoutMs: 60000\n    protocol: http2')
      .replace('    routes:\n', '    filters: [hold]\n    routes:\n') + `filters:\n  - name: hold\n    module: ${fixture('stream/hold')}\n`,
  );
  t.teardown(() => run.stop());
  const session = http2.connect(`http://127.0.0.1:${await run.port('web')}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const result = await new Promise<{ status: number; ended: boolean; rstCode?: number }>((resolve) => {
    const stream = session.request({ ':path': '/reset-mid-body' });
    let status = 0;
    let ended = false;
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', () => {});
    stream.on('end', () => (ended = true));
    stream.on('error', () => {});
    stream.on('close', () => resolve({ status, ended, rstCode: stream.rstCode }));
  });
  t.deepEqual(result, { status: 200, ended: false, rstCode: http2.constants.NGHTTP2_INTERNAL_ERROR });
  await until('the upstream stream to close', () => (upstreamClosed.length === 1 ? true : undefined), 10_000);
  t.deepEqual(upstreamClosed, [NGHTTP2_CANCEL]);
});

test('a client resetting streams in a loop gets GOAWAY ENHANCE_YOUR_CALM; another client is served right after', async (t) => {
  const upstream = await holdingUpstream(t);
  const run = await runSluice(config(upstream.port));
  t.teardown(() => run.stop());
  const port = await run.port('web');
  const admin = await run.adminPort();

  const attacker = await rawH2(port);
  t.teardown(() => attacker.socket.destroy());
  let sent = 0;
  // Bounded: nghttp2's own flood limit would end the connection (INTERNAL_ERROR) near 1,000 resets.
  for (let i = 0; i < 900 && !attacker.socket.destroyed && !attacker.goaway(); i++) {
    const id = 2 * i + 1;
    attacker.socket.write(Buffer.concat([attacker.get(id, `/hold/${i}`, true), attacker.rst(id, NGHTTP2_CANCEL)]));
    sent++;
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 1));
  }
  const closed = await Promise.race([attacker.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
  t.true(closed, 'the connection was closed');
  const goaway = attacker.goaway();
  t.truthy(goaway, `no GOAWAY after ${sent} HEADERS + RST_STREAM; frames: ${attacker.frames.map((f) => f.type).join(',')}`);
  t.is(goaway?.code, NGHTTP2_ENHANCE_YOUR_CALM);
  const metrics = await (await request(`http://127.0.0.1:${admin}/stats/prometheus`)).body.text();
  t.true(metrics.includes('\nsluice_downstream_cx_rapid_reset_total{sluice_listener="web"} 1\n'), metrics);

  // A legitimate client on its own connection, right after.
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const status = await new Promise<number>((resolve, reject) => {
    const s = session.request({ ':path': '/legit' });
    s.on('response', (h) => resolve(Number(h[':status'])));
    s.on('error', reject);
    s.resume();
  });
  t.is(status, 200);
  t.is(await activeIs(admin, '0'), '0');
  t.is(run.child.exitCode, null);
});
