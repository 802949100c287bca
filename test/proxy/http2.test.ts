// HTTP/2 through the node proxy: h2c with prior knowledge and HTTP/1.1 on the same cleartext port,
// HTTPS with ALPN (h2 and http/1.1), mTLS with the client's SPIFFE ID as the peer identity filters
// read, HTTP/2 upstreams with trailers, ring-hash load balancing and the pending-requests breaker.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import test, { type ExecutionContext } from 'ava';
import { Agent, request } from 'undici';
import type { ClusterConfig, FilterConfig, ListenerConfig, Snapshot } from '../../runtime/config/snapshot.ts';
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, DEFAULT_QUARANTINE } from '../../runtime/host/plugin-spec.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { makePki, tlsTest, type TestPki } from '../helpers/certs.ts';
import { fixture } from '../helpers/fixtures.ts';
import { cluster } from '../helpers/snapshot.ts';

const PROPERTIES = ['request.protocol', 'request.scheme', 'sluice.peer_identity', 'connection.tls_version'];

function showProperties(): FilterConfig {
  return {
    name: 'show',
    module: fixture('show-properties'),
    rootId: 'show-properties',
    vmId: '',
    configuration: JSON.stringify({ properties: PROPERTIES }),
    failStrategy: 'FAIL_CLOSE',
    limits: DEFAULT_LIMITS,
    capabilities: DEFAULT_CAPABILITIES,
    quarantine: DEFAULT_QUARANTINE,
  };
}

async function listen(server: Server | http2.Http2Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** An HTTP/1.1 upstream that answers with what it saw. */
async function h1Upstream(t: ExecutionContext, name = 'h1', handler?: (req: IncomingMessage, res: ServerResponse) => void) {
  const server = createServer(
    handler ??
      (async (req, res) => {
        let body = '';
        for await (const c of req) body += c;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ name, method: req.method, url: req.url, body, authority: req.headers.host, xff: req.headers['x-forwarded-for'], proto: req.headers['x-forwarded-proto'] }));
      }),
  );
  const port = await listen(server);
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return port;
}

async function start(t: ExecutionContext, clusters: ClusterConfig[], extra: Partial<ListenerConfig> = {}, routes?: ListenerConfig['routes']) {
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [
      {
        name: 'main',
        host: '127.0.0.1',
        port: 0,
        protocol: 'http',
        filters: ['show'],
        routes: routes ?? [{ name: 'all', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: clusters[0]!.name, weight: 1 }] }, timeoutMs: 5000 }],
        ...extra,
      },
    ],
    clusters,
    filters: [showProperties()],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(() => proxy.stop(100));
  return { proxy, port: proxy.addresses().main.port };
}

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
  trailers: http2.IncomingHttpHeaders;
}

function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let answer: Omit<H2Answer, 'body' | 'trailers'> | undefined;
    let text = '';
    let trailers: http2.IncomingHttpHeaders = {};
    stream.on('response', (h) => (answer = { status: Number(h[':status']), headers: h }));
    stream.on('trailers', (tr) => (trailers = tr));
    stream.on('data', (c) => (text += c));
    stream.on('end', () => resolve({ ...answer!, body: text, trailers }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

test('h2c with prior knowledge and HTTP/1.1 share the cleartext port', async (t) => {
  const upstream = await h1Upstream(t);
  const { port } = await start(t, [cluster('h1', [upstream])]);

  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.close());
  const [a, b] = await Promise.all([
    h2Request(session, { ':method': 'GET', ':path': '/one?x=1', ':authority': 'shop.test' }),
    h2Request(session, { ':method': 'POST', ':path': '/two', ':authority': 'shop.test', 'content-type': 'text/plain' }, 'hello over h2'),
  ]);
  t.is(a.status, 200);
  t.is(a.headers['x-prop-request-protocol'], 'HTTP/2');
  t.is(a.headers['x-prop-request-scheme'], 'http');
  t.is(a.headers['x-prop-sluice-peer-identity'], '(none)');
  t.deepEqual(JSON.parse(a.body), { name: 'h1', method: 'GET', url: '/one?x=1', body: '', authority: 'shop.test', xff: '127.0.0.1', proto: 'http' });
  t.deepEqual(JSON.parse(b.body), { name: 'h1', method: 'POST', url: '/two', body: 'hello over h2', authority: 'shop.test', xff: '127.0.0.1', proto: 'http' });

  const h1 = await request(`http://127.0.0.1:${port}/three`);
  t.is(h1.statusCode, 200);
  t.is(h1.headers['x-prop-request-protocol'], 'HTTP/1.1');
  t.is(JSON.parse(await h1.body.text()).url, '/three');
});

test('an HTTP/2 upstream: bodies stream both ways and trailers come back through', async (t) => {
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    let body = '';
    stream.on('data', (c) => (body += c));
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-seen-te': String(headers.te), 'x-seen-authority': String(headers[':authority']) }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': String(body.length), 'grpc-status': '0' }));
      stream.end(`upstream got ${headers[':method']} ${headers[':path']} ${body}`);
    });
  });
  const upstream = await listen(server);
  t.teardown(() => server.close());
  const { port } = await start(t, [cluster('h2', [upstream], { protocol: 'http2' })]);

  // An HTTP/2 client: the trailers reach it.
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.close());
  const r = await h2Request(session, { ':method': 'POST', ':path': '/echo', ':authority': 'svc.test', te: 'trailers' }, 'twelve bytes');
  t.is(r.status, 200);
  t.is(r.body, 'upstream got POST /echo twelve bytes');
  t.is(r.headers['x-seen-te'], 'trailers');
  t.is(r.headers['x-seen-authority'], 'svc.test');
  t.is(r.trailers['x-checksum'], '12');
  t.is(r.trailers['grpc-status'], '0');

  // An HTTP/1.1 client of the same upstream: chunked, with the trailers after the body.
  const h1 = await request(`http://127.0.0.1:${port}/plain`, { method: 'POST', body: 'abc' });
  t.is(await h1.body.text(), 'upstream got POST /plain abc');
  t.is(h1.trailers['x-checksum'], '3');
});

test('a cleartext HTTP/2 upstream that is down answers 503 naming it', async (t) => {
  const { port } = await start(t, [cluster('gone', [1], { protocol: 'http2' })]);
  const r = await request(`http://127.0.0.1:${port}/x`);
  t.is(r.statusCode, 503);
  t.is(await r.body.text(), 'sluice: upstream connect error to 127.0.0.1:1 of cluster "gone" (ECONNREFUSED); is the service running and listening there?\n');
});


let pki: TestPki | undefined;
const certs = () => (pki ??= makePki());

tlsTest('TLS: h2 and http/1.1 by ALPN; a verified client certificate is the peer identity', async (t) => {
  const upstream = await h1Upstream(t);
  const p = certs();
  const { port } = await start(t, [cluster('h1', [upstream])], { tls: { certFile: p.serverCert, keyFile: p.serverKey, caFile: p.caFile, requireClientCert: false } });
  const client = p.client('spiffe://cluster.local/ns/shop/sa/checkout');

  const session = http2.connect(`https://localhost:${port}`, { ca: p.ca, cert: client.cert, key: client.key });
  t.teardown(() => session.close());
  const a = await h2Request(session, { ':method': 'GET', ':path': '/secure', ':authority': 'localhost' });
  t.is(a.status, 200);
  t.is(a.headers['x-prop-request-protocol'], 'HTTP/2');
  t.is(a.headers['x-prop-request-scheme'], 'https');
  t.is(a.headers['x-prop-sluice-peer-identity'], 'spiffe://cluster.local/ns/shop/sa/checkout');
  t.is(a.headers['x-prop-connection-tls-version'], 'TLSv1.3');
  t.is(JSON.parse(a.body).proto, 'https');

  // HTTP/1.1 by ALPN, without a client certificate: served, but with no identity.
  const agent = new Agent({ connect: { ca: p.ca } });
  t.teardown(() => agent.close());
  const b = await request(`https://localhost:${port}/plain`, { dispatcher: agent });
  t.is(b.statusCode, 200);
  t.is(b.headers['x-prop-request-protocol'], 'HTTP/1.1');
  t.is(b.headers['x-prop-sluice-peer-identity'], '(none)');
  t.is(JSON.parse(await b.body.text()).url, '/plain');
});

tlsTest('TLS: requireClientCert refuses a client without a certificate', async (t) => {
  const upstream = await h1Upstream(t);
  const p = certs();
  const { port } = await start(t, [cluster('h1', [upstream])], { tls: { certFile: p.serverCert, keyFile: p.serverKey, caFile: p.caFile, requireClientCert: true } });
  const agent = new Agent({ connect: { ca: p.ca } });
  t.teardown(() => agent.close());
  const error = await t.throwsAsync(request(`https://localhost:${port}/x`, { dispatcher: agent }).then((r) => r.body.text()));
  t.truthy(error);
  const client = p.client('spiffe://cluster.local/ns/shop/sa/web');
  const withCert = new Agent({ connect: { ca: p.ca, cert: client.cert, key: client.key } });
  t.teardown(() => withCert.close());
  const ok = await request(`https://localhost:${port}/x`, { dispatcher: withCert });
  t.is(ok.headers['x-prop-sluice-peer-identity'], 'spiffe://cluster.local/ns/shop/sa/web');
  await ok.body.dump();
});

test('ring-hash: the same header value reaches the same endpoint; values spread over the endpoints', async (t) => {
  const ports = await Promise.all(['a', 'b', 'c'].map((name) => h1Upstream(t, name)));
  const { port } = await start(t, [cluster('ring', ports, { loadBalancing: 'ring-hash', hashOn: { header: 'x-user' } })]);
  const nameFor = async (user: string) => JSON.parse(await (await request(`http://127.0.0.1:${port}/`, { headers: { 'x-user': user } })).body.text()).name as string;
  const owners = new Map<string, string>();
  for (let i = 0; i < 30; i++) owners.set(`user-${i}`, await nameFor(`user-${i}`));
  for (const [user, owner] of [...owners].slice(0, 10)) t.is(await nameFor(user), owner, user);
  t.deepEqual([...new Set(owners.values())].sort(), ['a', 'b', 'c']);
});

test('the pending-requests circuit breaker answers 503 naming it', async (t) => {
  const held: ServerResponse[] = [];
  const upstream = await h1Upstream(t, 'slow', (_req, res) => void held.push(res));
  const { port } = await start(t, [cluster('slow', [upstream], { maxConnections: 1, circuitBreakers: { maxRequests: 100, maxRetries: 3, maxPendingRequests: 1 } })]);
  const first = request(`http://127.0.0.1:${port}/1`);
  while (held.length < 1) await new Promise((r) => setTimeout(r, 10));
  const second = request(`http://127.0.0.1:${port}/2`); // waits for the one connection
  await new Promise((r) => setTimeout(r, 100));
  const third = await request(`http://127.0.0.1:${port}/3`);
  t.is(third.statusCode, 503);
  t.is(await third.body.text(), 'sluice: cluster "slow" circuit breaker open: 1 requests waiting for a connection (circuitBreakers.maxPendingRequests 1)\n');
  held[0]!.end('one');
  while (held.length < 2) await new Promise((r) => setTimeout(r, 10));
  held[1]!.end('two');
  t.is(await (await first).body.text(), 'one');
  t.is(await (await second).body.text(), 'two');
});

test('a drain lets an HTTP/2 stream in flight finish, and the session gets a GOAWAY', async (t) => {
  const held: ServerResponse[] = [];
  const upstream = await h1Upstream(t, 'slow', (_req, res) => void held.push(res));
  const { proxy, port } = await start(t, [cluster('slow', [upstream])]);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => session.destroy());
  const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
  const inFlight = h2Request(session, { ':method': 'GET', ':path': '/slow', ':authority': 'x' });
  while (held.length < 1) await new Promise((r) => setTimeout(r, 10));
  const stopped = proxy.stop(5000);
  await goaway;
  t.false(proxy.ready);
  held[0]!.end('finished during the drain');
  const answer = await inFlight;
  t.is(answer.status, 200);
  t.is(answer.body, 'finished during the drain');
  await stopped;
});

tlsTest('a reload with new certificate files serves them to new connections; open ones keep theirs', async (t) => {
  const upstream = await h1Upstream(t);
  const first = certs();
  const second = makePki();
  const { proxy, port } = await start(t, [cluster('h1', [upstream])], { tls: { certFile: first.serverCert, keyFile: first.serverKey, requireClientCert: false } });
  const fingerprint = (ca: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.end();
      });
      socket.on('error', reject);
    });
  const before = await fingerprint(first.ca);
  const open = http2.connect(`https://localhost:${port}`, { ca: first.ca });
  t.teardown(() => open.close());
  t.is((await h2Request(open, { ':method': 'GET', ':path': '/a', ':authority': 'localhost' })).status, 200);

  const snapshot = proxy.snapshot;
  const listener = { ...snapshot.listeners[0]!, tls: { certFile: second.serverCert, keyFile: second.serverKey, requireClientCert: false } };
  await proxy.apply({ ...snapshot, listeners: [listener] });
  const after = await fingerprint(second.ca);
  t.not(after, before);
  // The connection opened before the reload still works, on the old certificate.
  t.is((await h2Request(open, { ':method': 'GET', ':path': '/b', ':authority': 'localhost' })).status, 200);
});
