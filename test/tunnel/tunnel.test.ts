// The node-to-node tunnel as a library: HTTP/2 CONNECT over TLS 1.3 between a TunnelClient and a
// TunnelServer on loopback, with X509-SVIDs from the controller's CA. Bytes both ways, the peer's
// identity, refusals (another CA, no certificate, not CONNECT, a target not allowed, two SPIFFE
// IDs, the wrong server identity), rotation without dropping connections, and teardown.
import test from 'ava';
import { once } from 'node:events';
import http2 from 'node:http2';
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { IdentityStore, TunnelClient, TunnelServer, TUNNEL_ERROR_HEADER, tunnelMetrics, type TunnelRequest } from '../../runtime/index.ts';
import { sid, testCa, type TestCa } from './tunnel-pki.ts';

const A = sid('team-a', 'a');
const B = sid('team-b', 'b');
const quiet = () => {};

/** An echo server: says `hello\n` first, then echoes each chunk prefixed; ends when the client ends. */
async function echoServer(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.write('hello\n');
    s.on('data', (d) => s.write(`echo:${d}`));
    s.on('end', () => s.end('bye\n'));
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

/** Delivers to 127.0.0.1 only (a stand-in for "pods on this node"), recording each request. */
function deliverTo(seen: TunnelRequest[], allowedPort: () => number) {
  return (r: TunnelRequest) => {
    seen.push(r);
    if (r.target.address !== '127.0.0.1' || r.target.port !== allowedPort()) return r.refuse(403, `${r.target.address}:${r.target.port} is not a pod on this node`);
    const upstream = netConnect({ host: r.target.address, port: r.target.port, allowHalfOpen: true });
    upstream.once('connect', () => {
      const s = r.accept();
      s.pipe(upstream);
      upstream.pipe(s);
    });
    upstream.on('error', () => r.refuse(502, 'upstream connect failed'));
  };
}

/** Reads `stream` until it holds `text` (or ends). */
function readUntil(stream: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString();
      if (got.includes(text)) done();
    };
    const done = () => {
      stream.off('data', onData).off('end', done);
      resolve(got);
    };
    stream.on('data', onData).once('end', done).once('error', reject);
  });
}

interface Ctx {
  pki: TestCa;
  echo: Awaited<ReturnType<typeof echoServer>>;
}
const ctx = {} as Ctx;

test.before(async () => {
  ctx.pki = await testCa();
  ctx.echo = await echoServer();
});
test.after.always(async () => {
  for (const s of ctx.echo?.sockets ?? []) s.destroy();
  await new Promise((r) => ctx.echo?.server.close(r));
});

async function pair(t: { teardown(fn: () => unknown): void }, o: { serverIds?: string[]; clientIds?: string[]; clientStore?: IdentityStore } = {}) {
  const seen: TunnelRequest[] = [];
  const serverStore = await ctx.pki.store(o.serverIds ?? [B]);
  const server = await TunnelServer.start({ identities: serverStore, host: '127.0.0.1', port: 0, deliver: deliverTo(seen, () => ctx.echo.port), log: quiet });
  const clientStore = o.clientStore ?? (await ctx.pki.store(o.clientIds ?? [A]));
  const client = new TunnelClient({ identities: clientStore, log: quiet, connectTimeoutMs: 5000 });
  t.teardown(async () => {
    client.close();
    await server.close(0);
  });
  const node = { host: '127.0.0.1', port: server.address().port };
  return { seen, server, serverStore, client, clientStore, node };
}

test('CONNECT carries bytes both ways, half-close included; the server sees the peer SPIFFE ID', async (t) => {
  const { seen, client, node } = await pair(t);
  const s = await client.open({ node, target: { address: '127.0.0.1', port: ctx.echo.port }, source: A, expectedIdentity: B });
  t.is(await readUntil(s, 'hello\n'), 'hello\n');
  s.write('ping');
  t.is(await readUntil(s, 'echo:ping'), 'echo:ping');
  s.end();
  t.is(await readUntil(s, 'bye\n'), 'bye\n');
  t.is(seen.length, 1);
  t.is(seen[0]!.peerIdentity, A);
  t.is(seen[0]!.localIdentity, B);
  t.is(seen[0]!.tlsVersion, 'TLSv1.3');
  t.deepEqual(seen[0]!.target, { address: '127.0.0.1', port: ctx.echo.port });
  t.is(seen[0]!.remote.address, '127.0.0.1');
});

test('streams share one session per (source, node, expected identity); another source gets its own', async (t) => {
  const pki = ctx.pki;
  const clientStore = await pki.store([A]);
  await pki.issue(clientStore, sid('team-a', 'a2'));
  const { server, client, node } = await pair(t, { clientStore });
  const target = { address: '127.0.0.1', port: ctx.echo.port };
  const one = await client.open({ node, target, source: A, expectedIdentity: B });
  const two = await client.open({ node, target, source: A, expectedIdentity: B });
  t.is(server.counters.sessions, 1);
  const three = await client.open({ node, target, source: sid('team-a', 'a2'), expectedIdentity: B });
  t.is(server.counters.sessions, 2);
  t.is(client.sessionCount(), 2);
  for (const s of [one, two, three]) s.destroy();
});

test('a session that went away is made again on the next open()', async (t) => {
  const { server, client, node } = await pair(t);
  const target = { address: '127.0.0.1', port: ctx.echo.port };
  const first = (await client.open({ node, target, source: A, expectedIdentity: B })) as http2.ClientHttp2Stream;
  const session = first.session!;
  session.destroy();
  if (!session.closed) await new Promise((resolve) => session.once('close', resolve));
  const again = await client.open({ node, target, source: A, expectedIdentity: B });
  t.is(await readUntil(again, 'hello\n'), 'hello\n');
  t.is(server.counters.sessions, 2);
  t.is(client.sessionCount(), 1);
  again.destroy();
});

test('a client certificate from another CA is refused at the handshake; deliver never runs', async (t) => {
  const other = await testCa();
  const clientStore = await other.store([A]);
  // The client trusts the server's CA, so only the server's check can refuse.
  clientStore.setTrustBundle(ctx.pki.ca.trustBundle);
  const { seen, server, client, node } = await pair(t, { clientStore });
  const error = await t.throwsAsync(client.open({ node, target: { address: '127.0.0.1', port: ctx.echo.port }, source: A }));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_TUNNEL_CONNECT');
  t.true(error!.message.startsWith(`node 127.0.0.1:${node.port} closed the connection right after the TLS handshake: it did not accept the certificate of ${A}`), error!.message);
  t.is(seen.length, 0);
  t.is(server.counters.refusedHandshakes, 1);
});

test('a client without a certificate is refused at the handshake', async (t) => {
  const { seen, server, node } = await pair(t);
  const session = http2.connect(`https://127.0.0.1:${node.port}`, {
    createConnection: () => tlsConnect({ host: '127.0.0.1', port: node.port, ca: ctx.pki.ca.trustBundle, servername: 'svid.sluice', ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }),
  });
  t.teardown(() => session.destroy());
  const errors: string[] = [];
  session.on('error', (e: Error & { code?: string }) => errors.push(e.code ?? e.message));
  const req = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${ctx.echo.port}` });
  req.on('error', (e: Error & { code?: string }) => errors.push(e.code ?? e.message));
  await new Promise((resolve) => req.once('close', resolve));
  if (!session.destroyed) await new Promise((resolve) => session.once('close', resolve));
  // The alert reaches the stream or the session, whichever node reports it on first.
  t.deepEqual([...new Set(errors)], ['ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED']);
  t.is(seen.length, 0);
  t.is(server.counters.refusedHandshakes, 1);
  t.is(server.counters.streams, 0);
});

/** A raw HTTP/2 session with A's certificate, for requests TunnelClient would not send. */
function rawSession(t: { teardown(fn: () => unknown): void }, store: IdentityStore, port: number) {
  const id = store.get(A)!;
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    createConnection: () => tlsConnect({ host: '127.0.0.1', port, key: id.keyPem, cert: id.certChainPem, ca: store.trustBundle(), servername: 'svid.sluice', ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }),
  });
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  return session;
}

async function answer(stream: http2.ClientHttp2Stream): Promise<{ status: number; reason: string }> {
  const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
  stream.resume();
  return { status: Number(headers[':status']), reason: String(headers[TUNNEL_ERROR_HEADER] ?? '') };
}

test('anything but CONNECT ip:port is refused with a reason', async (t) => {
  const { seen, server, clientStore, node } = await pair(t);
  const session = rawSession(t, clientStore, node.port);
  t.deepEqual(await answer(session.request({ ':method': 'GET', ':path': '/' }, { endStream: true })), { status: 405, reason: 'only CONNECT is served on the tunnel port, not GET' });
  t.deepEqual(await answer(session.request({ ':method': 'CONNECT', ':authority': 'example.com:80' })), { status: 400, reason: ':authority "example.com:80" does not name an IP address (the tunnel does not resolve names)' });
  t.deepEqual(await answer(session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:0' })), { status: 400, reason: ':authority "127.0.0.1:0" has port 0, outside 1-65535' });
  t.is(seen.length, 0);
  t.is(server.counters.refusedStreams, 3);
});

test('a target deliver does not allow is refused; open() says which node refused and why', async (t) => {
  const { seen, client, node } = await pair(t);
  const error = await t.throwsAsync(client.open({ node, target: { address: '10.9.9.9', port: 80 }, source: A, expectedIdentity: B }));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_TUNNEL_REFUSED');
  t.is(error!.message, `node 127.0.0.1:${node.port} refused CONNECT 10.9.9.9:80 from ${A} with 403: 10.9.9.9:80 is not a pod on this node`);
  t.is(seen.length, 1);
  t.is(seen[0]!.peerIdentity, A);
});

test('a client certificate with two SPIFFE IDs is refused with 403', async (t) => {
  const clientStore = await ctx.pki.store([]);
  await ctx.pki.issue(clientStore, A, [A, sid('team-c', 'c')]);
  const { seen, node } = await pair(t, { clientStore });
  const session = rawSession(t, clientStore, node.port);
  t.deepEqual(await answer(session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${ctx.echo.port}` })), { status: 403, reason: 'the client certificate has 2 spiffe:// URI SANs; an X509-SVID has exactly one' });
  t.is(seen.length, 0);
});

test('the server must present the identity discovery expects; without an SVID for the source, nothing is sent', async (t) => {
  const { seen, client, node } = await pair(t);
  const target = { address: '127.0.0.1', port: ctx.echo.port };
  const wrong = await t.throwsAsync(client.open({ node, target, source: A, expectedIdentity: sid('team-c', 'c') }));
  t.is((wrong as { code?: string }).code, 'SLUICE_ERR_TUNNEL_CONNECT');
  t.true(wrong!.message.includes(`presented ${B}, not ${sid('team-c', 'c')}`), wrong!.message);
  const none = await t.throwsAsync(client.open({ node, target, source: sid('team-a', 'nobody'), expectedIdentity: B }));
  t.is((none as { code?: string }).code, 'SLUICE_ERR_TUNNEL_IDENTITY');
  t.is(seen.length, 0);
});

test('the server picks the certificate the client asks for by SNI', async (t) => {
  const C = sid('team-c', 'c');
  const { seen, client, node } = await pair(t, { serverIds: [B, C] });
  const target = { address: '127.0.0.1', port: ctx.echo.port };
  (await client.open({ node, target, source: A, expectedIdentity: C })).destroy();
  (await client.open({ node, target, source: A, expectedIdentity: B })).destroy();
  t.deepEqual(seen.map((r) => r.localIdentity), [C, B]);
});

test('rotation: a renewed source certificate and a new trust bundle take effect for new sessions; open streams keep flowing', async (t) => {
  const { server, serverStore, client, clientStore, node } = await pair(t);
  const target = { address: '127.0.0.1', port: ctx.echo.port };
  const first = await client.open({ node, target, source: A, expectedIdentity: B });
  await readUntil(first, 'hello\n');
  // Renewal of the source's certificate: new streams go on a new session, the open one stays.
  await ctx.pki.issue(clientStore, A);
  const second = await client.open({ node, target, source: A, expectedIdentity: B });
  t.is(server.counters.sessions, 2);
  first.write('still');
  t.is(await readUntil(first, 'echo:still'), 'echo:still');
  second.destroy();
  // A new CA on the server (its roots and certificate): the client's old certificate no longer verifies for new sessions...
  const next = await testCa();
  serverStore.setTrustBundle(next.ca.trustBundle);
  await next.issue(serverStore, B);
  clientStore.setTrustBundle(`${ctx.pki.ca.trustBundle}${next.ca.trustBundle}`);
  const refused = await t.throwsAsync(client.open({ node, target, source: A, expectedIdentity: B }));
  t.is((refused as { code?: string }).code, 'SLUICE_ERR_TUNNEL_CONNECT');
  // ...while the stream opened before keeps working.
  first.write('after');
  t.is(await readUntil(first, 'echo:after'), 'echo:after');
  // With a certificate from the new CA the client gets through again.
  await next.issue(clientStore, A);
  const third = await client.open({ node, target, source: A, expectedIdentity: B });
  t.is(await readUntil(third, 'hello\n'), 'hello\n');
  third.destroy();
  first.destroy();
});

test('close() always resolves: ten servers in a row with open streams, idle sessions and a silent raw socket', async (t) => {
  for (let i = 0; i < 10; i++) {
    const serverStore = await ctx.pki.store([B]);
    const seen: TunnelRequest[] = [];
    const server = await TunnelServer.start({ identities: serverStore, host: '127.0.0.1', port: 0, deliver: deliverTo(seen, () => ctx.echo.port), log: quiet });
    const client = new TunnelClient({ identities: await ctx.pki.store([A]), log: quiet });
    const node = { host: '127.0.0.1', port: server.address().port };
    const open = await client.open({ node, target: { address: '127.0.0.1', port: ctx.echo.port }, source: A, expectedIdentity: B });
    open.on('error', () => {});
    await readUntil(open, 'hello\n');
    // A TCP connection that never says anything (no TLS handshake).
    const raw = netConnect(node.port, '127.0.0.1');
    raw.on('error', () => {});
    await once(raw, 'connect');
    await server.close(i % 2 === 0 ? 0 : 50);
    // The open stream was cut at the deadline (its peer never ended it).
    if (!open.destroyed) await once(open, 'close');
    if (!raw.destroyed) await once(raw, 'close');
    // Nothing of the server is left: no session, no socket (a hang above fails by the test's timeout).
    t.is(server.activeSessions, 0, `round ${i}`);
    client.close();
  }
});

test('bounds: streams past maxConcurrentStreams wait for a free one; a stream idle past idleTimeoutMs is reset', async (t) => {
  const serverStore = await ctx.pki.store([B]);
  let open = 0;
  let most = 0;
  const server = await TunnelServer.start({
    identities: serverStore,
    host: '127.0.0.1',
    port: 0,
    limits: { maxConcurrentStreams: 1, idleTimeoutMs: 1000 },
    log: quiet,
    deliver: (r) => {
      const s = r.accept();
      most = Math.max(most, ++open);
      s.once('close', () => open--);
      s.on('data', (d) => s.write(`echo:${d}`));
    },
  });
  const client = new TunnelClient({ identities: await ctx.pki.store([A]), log: quiet });
  t.teardown(async () => {
    client.close();
    await server.close(0);
  });
  const node = { host: '127.0.0.1', port: server.address().port };
  const target = { address: '127.0.0.1', port: ctx.echo.port };
  const first = await client.open({ node, target, source: A, expectedIdentity: B });
  const second = client.open({ node, target, source: A, expectedIdentity: B });
  first.write('one');
  t.is(await readUntil(first, 'echo:one'), 'echo:one');
  first.destroy();
  const s2 = await second;
  s2.write('two');
  t.is(await readUntil(s2, 'echo:two'), 'echo:two');
  t.is(most, 1);
  // Left silent, the stream is reset by the server's idle timeout.
  s2.on('error', () => {});
  if (!s2.destroyed) await new Promise((resolve) => s2.once('close', resolve));
  t.is((s2 as unknown as { rstCode?: number }).rstCode, http2.constants.NGHTTP2_CANCEL);
});

test('metrics: sessions, streams, refusals and open failures in Prometheus text', async (t) => {
  const { server, client, node } = await pair(t);
  const target = { address: '127.0.0.1', port: ctx.echo.port };
  (await client.open({ node, target, source: A, expectedIdentity: B })).destroy();
  await t.throwsAsync(client.open({ node, target: { address: '10.9.9.9', port: 80 }, source: A, expectedIdentity: B }));
  await t.throwsAsync(client.open({ node, target, source: sid('team-a', 'nobody') }));
  t.is(tunnelMetrics(server, client), [
    '# TYPE sluice_tunnel_sessions_total counter',
    'sluice_tunnel_sessions_total{direction="inbound"} 1',
    'sluice_tunnel_sessions_total{direction="outbound"} 1',
    '# TYPE sluice_tunnel_sessions_active gauge',
    'sluice_tunnel_sessions_active{direction="inbound"} 1',
    'sluice_tunnel_sessions_active{direction="outbound"} 1',
    '# TYPE sluice_tunnel_streams_total counter',
    'sluice_tunnel_streams_total{direction="inbound"} 2',
    'sluice_tunnel_streams_total{direction="outbound"} 1',
    '# TYPE sluice_tunnel_refused_total counter',
    'sluice_tunnel_refused_total{stage="handshake"} 0',
    'sluice_tunnel_refused_total{stage="stream"} 1',
    '# TYPE sluice_tunnel_open_failures_total counter',
    'sluice_tunnel_open_failures_total{code="SLUICE_ERR_TUNNEL_IDENTITY"} 1',
    'sluice_tunnel_open_failures_total{code="SLUICE_ERR_TUNNEL_REFUSED"} 1',
    '',
  ].join('\n'));
  t.is(tunnelMetrics(undefined, undefined), '');
});

/**
 * A peer that speaks the tunnel's HTTP/2 over TLS 1.3 with B's SVID, as a node proxy draining for
 * an upgrade may: it refuses CONNECTs unprocessed (REFUSED_STREAM) while `refuse(n)` says so for
 * the n-th, and with `goawayFirst` sends its first session a GOAWAY saying no stream was processed
 * before any arrives; the rest it answers 200 and says hello.
 */
async function drainingPeer(t: { teardown(fn: () => unknown): void }, o: { refuse?: (n: number) => boolean; goawayFirst?: boolean }) {
  const store = await ctx.pki.store([B]);
  const id = store.get(B)!;
  const sessions = new Set<http2.ServerHttp2Session>();
  let streams = 0;
  let connections = 0;
  const server = http2.createSecureServer({ key: id.keyPem, cert: id.certChainPem, ca: store.trustBundle()!, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] });
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
    if (++connections === 1 && o.goawayFirst) s.goaway(http2.constants.NGHTTP2_NO_ERROR, 0);
  });
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    streams++;
    if (o.refuse?.(streams)) return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    stream.respond({ ':status': 200 });
    stream.write('hello\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(async () => {
    for (const s of sessions) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return { node: { host: '127.0.0.1', port: (server.address() as AddressInfo).port }, streams: () => streams, connections: () => connections };
}

for (const goawayFirst of [false, true]) {
  test(`a CONNECT the peer did not process (${goawayFirst ? 'a GOAWAY before it' : 'REFUSED_STREAM'}) goes again on a fresh session and gets through`, async (t) => {
    const peer = await drainingPeer(t, goawayFirst ? { goawayFirst } : { refuse: (n) => n === 1 });
    const client = new TunnelClient({ identities: await ctx.pki.store([A]), log: quiet, connectTimeoutMs: 5000 });
    t.teardown(() => client.close());
    const s = await client.open({ node: peer.node, target: { address: '127.0.0.1', port: 9 }, source: A, expectedIdentity: B });
    t.is(await readUntil(s, 'hello\n'), 'hello\n');
    // (After a GOAWAY the first session's stream may or may not reach the peer's handler: node's
    // server still emits it. The client counts it unprocessed either way, as the GOAWAY says.)
    if (!goawayFirst) t.is(peer.streams(), 2, 'the first CONNECT, then the same one again');
    t.is(peer.connections(), 2, 'the second try on a new session');
    t.is(client.counters.streams, 1);
    t.deepEqual(client.counters.failures, {});
    s.destroy();
  });
}

test('a peer that never processes the CONNECT: three tries on fresh sessions, then SLUICE_ERR_TUNNEL_REFUSED', async (t) => {
  const peer = await drainingPeer(t, { refuse: () => true });
  const client = new TunnelClient({ identities: await ctx.pki.store([A]), log: quiet, connectTimeoutMs: 5000 });
  t.teardown(() => client.close());
  const error = await t.throwsAsync(client.open({ node: peer.node, target: { address: '127.0.0.1', port: 9 }, source: A, expectedIdentity: B }));
  t.is((error as { code?: string }).code, 'SLUICE_ERR_TUNNEL_REFUSED');
  t.regex(error!.message, /did not process the CONNECT to 127\.0\.0\.1:9 \(REFUSED_STREAM\): the peer was draining/);
  t.is(peer.streams(), 3);
  t.is(peer.connections(), 3);
  t.deepEqual(client.counters.failures, { SLUICE_ERR_TUNNEL_REFUSED: 1 });
});
