// The request head, checked where node's parsers leave it to the proxy, with raw bytes on a socket
// (and raw HTTP/2 headers): the header count limit (maxRequestHeaders, 431 on HTTP/1.1 and
// HTTP/2), Host (RFC 9112 §3.2: one, and valid), absolute-form targets (routed on the URI's
// authority and path), and request lines of another major version (505).
import { createServer } from 'node:http';
import http2 from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import test from 'ava';
import type { ListenerConfig, Snapshot } from '../../runtime/config/snapshot.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { cluster } from '../helpers/snapshot.ts';

async function start(t: { teardown(fn: () => unknown): void }, listener: Partial<ListenerConfig> = {}) {
  const seen: Array<{ path: string; rawHeaders: string[] }> = [];
  const upstream = createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ path: req.url!, rawHeaders: req.rawHeaders });
      res.end('ok');
    });
  });
  // The upstream keeps every header, so that what it sees is what the proxy sent.
  upstream.maxHeadersCount = 0;
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
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
        routes: [
          { name: 'example', match: { prefix: '/', headers: [{ name: ':authority', exact: 'example.com' }] }, action: { kind: 'cluster', clusters: [{ cluster: 'up', weight: 1 }] }, timeoutMs: 5000 },
          { name: 'other', match: { prefix: '/' }, action: { kind: 'direct', status: 404, body: 'not example.com\n', headers: {} }, timeoutMs: 5000 },
        ],
        ...listener,
      },
    ],
    clusters: [cluster('up', [(upstream.address() as AddressInfo).port])],
    filters: [],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(async () => {
    await proxy.stop(100);
    upstream.closeAllConnections();
    upstream.close();
  });
  return { port: proxy.addresses().web.port, seen, proxy };
}

/** Sends raw bytes; resolves with everything answered until the proxy closes (or 2 s pass). */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    socket.on('data', (d) => (out += d));
    socket.on('close', () => resolve(out));
    socket.on('error', () => resolve(out));
    socket.write(bytes);
    setTimeout(() => socket.destroy(), 2000);
  });
}

const statusOf = (response: string) => response.split('\r\n')[0];
const bodyOf = (response: string) => response.slice(response.indexOf('\r\n\r\n') + 4);
/** `n` request header lines, Host first. */
const headerLines = (n: number) => ['Host: example.com', ...Array.from({ length: n - 1 }, (_, i) => `X-H-${i}: v${i}`)].join('\r\n');
const xHeaders = (rawHeaders: string[]) => rawHeaders.filter((_, i) => i % 2 === 0 && /^x-h-/i.test(rawHeaders[i]!)).length;

test('100 request headers pass whole; 101 get 431 (maxRequestHeaders, Envoy\'s default 100)', async (t) => {
  const { port, seen, proxy } = await start(t);
  const ok = await raw(port, `GET /a HTTP/1.1\r\n${headerLines(99)}\r\nConnection: close\r\n\r\n`);
  t.is(statusOf(ok), 'HTTP/1.1 200 OK');
  t.is(xHeaders(seen[0]!.rawHeaders), 98);
  const over = await raw(port, `GET /b HTTP/1.1\r\n${headerLines(100)}\r\nConnection: close\r\n\r\n`);
  t.is(statusOf(over), 'HTTP/1.1 431 Request Header Fields Too Large');
  t.is(bodyOf(over), 'sluice: the request has 101 headers, more than this listener allows (maxRequestHeaders 100)\n');
  t.is(seen.length, 1);
  // Refusals are counted like any answer.
  t.true(proxy.metrics().includes('istio_requests_total{reporter="source",request_protocol="http",response_code="431",destination_service="unknown",sluice_listener="web"} 1\n'));
});

test('a listener with maxRequestHeaders 2000 passes 1500 headers whole, none cut', async (t) => {
  const { port, seen } = await start(t, { maxRequestHeaders: 2000 });
  const r = await raw(port, `GET /a HTTP/1.1\r\n${headerLines(1499)}\r\nConnection: close\r\n\r\n`);
  t.is(statusOf(r), 'HTTP/1.1 200 OK');
  t.is(xHeaders(seen[0]!.rawHeaders), 1498);
});

test('over HTTP/2 too: 100 headers pass, 101 get 431; a listener allowing 300 passes 250', async (t) => {
  const h2 = async (port: number, n: number) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    t.teardown(() => session.destroy());
    const headers: http2.OutgoingHttpHeaders = { ':path': '/h2', ':authority': 'example.com' };
    for (let i = 0; i < n; i++) headers[`x-h-${i}`] = `v${i}`;
    const req = session.request(headers);
    const status = await new Promise<number>((resolve, reject) => {
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.on('close', () => reject(new Error(`stream closed without a response (RST_STREAM code ${req.rstCode})`)));
    });
    req.resume();
    return status;
  };
  const limited = await start(t);
  t.is(await h2(limited.port, 100), 200);
  t.is(await h2(limited.port, 101), 431);
  t.is(limited.seen.length, 1);
  const wide = await start(t, { maxRequestHeaders: 300 });
  t.is(await h2(wide.port, 250), 200);
  t.is(xHeaders(wide.seen[0]!.rawHeaders), 250);
});

test('two Host headers get 400 (RFC 9112 §3.2)', async (t) => {
  const { port, seen } = await start(t);
  const r = await raw(port, 'GET / HTTP/1.1\r\nHost: example.com\r\nHost: evil.example\r\nConnection: close\r\n\r\n');
  t.is(statusOf(r), 'HTTP/1.1 400 Bad Request');
  t.is(bodyOf(r), 'sluice: the request has 2 Host headers; HTTP/1.1 allows exactly one (RFC 9112 section 3.2)\n');
  t.is(seen.length, 0);
});

test('an invalid Host gets 400', async (t) => {
  const { port, seen } = await start(t);
  for (const host of ['exa mple.com', 'user@example.com', 'example.com/x', 'example.com:80x', '[::1', 'example.com:99999']) {
    const r = await raw(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    t.is(statusOf(r), 'HTTP/1.1 400 Bad Request', host);
    t.is(bodyOf(r), `sluice: the Host header ${JSON.stringify(host)} is not a valid host[:port] (RFC 9112 section 3.2)\n`);
  }
  t.is(seen.length, 0);
});

test('an absolute-form target is routed on its authority and path; the upstream gets origin form', async (t) => {
  const { port, seen } = await start(t);
  const r = await raw(port, 'GET http://example.com/path?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n');
  t.is(statusOf(r), 'HTTP/1.1 200 OK');
  t.is(seen[0]!.path, '/path?q=1');
  t.is(seen[0]!.rawHeaders[seen[0]!.rawHeaders.findIndex((h) => h.toLowerCase() === 'host') + 1], 'example.com');
  const other = await raw(port, 'GET http://other.example:8080/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n');
  t.is(statusOf(other), 'HTTP/1.1 404 Not Found');
  const bad = await raw(port, 'GET http:///nohost HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n');
  t.is(statusOf(bad), 'HTTP/1.1 400 Bad Request');
  t.is(bodyOf(bad), 'sluice: the request target "http:///nohost" is not an absolute http(s) URI with a host (RFC 9112 section 3.2.2)\n');
  t.is(seen.length, 1);
});

test('a request line with HTTP/2.0 over HTTP/1.1 gets 505', async (t) => {
  const { port, seen } = await start(t);
  const r = await raw(port, 'GET / HTTP/2.0\r\nHost: example.com\r\nConnection: close\r\n\r\n');
  t.is(statusOf(r), 'HTTP/1.1 505 HTTP Version Not Supported');
  t.is(bodyOf(r), 'sluice: HTTP/2.0 in an HTTP/1.x request line; HTTP/2 starts with its connection preface (prior knowledge) or h2 by ALPN\n');
  t.is(seen.length, 0);
});
