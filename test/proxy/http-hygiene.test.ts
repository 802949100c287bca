// HTTP hygiene on the proxy's listener, with raw bytes on a socket: request smuggling vectors are
// rejected, oversized headers get 431, a client sending headers too slowly is cut off, and
// hop-by-hop headers never reach the upstream.
import { createServer } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import type { Snapshot } from '../../runtime/config/snapshot.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { cluster } from '../helpers/snapshot.ts';

async function start(t: { teardown(fn: () => unknown): void }, headersTimeoutMs?: number) {
  const seen: Array<Record<string, unknown>> = [];
  // Only requests that arrive whole count as seen.
  const upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ ...req.headers });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const snapshot: Snapshot = {
    source: 'test',
    admin: { host: '127.0.0.1', port: 0 },
    listeners: [{ name: 'web', host: '127.0.0.1', port: 0, protocol: 'http', filters: [], routes: [{ name: 'all', match: { prefix: '/' }, action: { kind: 'cluster', clusters: [{ cluster: 'up', weight: 1 }] }, timeoutMs: 5000 }] }],
    clusters: [cluster('up', [(upstream.address() as AddressInfo).port])],
    filters: [],
  };
  const proxy = await NodeProxy.start(snapshot, { log: () => {} }, headersTimeoutMs === undefined ? undefined : { headersTimeoutMs });
  t.teardown(async () => {
    await proxy.stop(100);
    upstream.closeAllConnections();
    upstream.close();
  });
  return { port: proxy.addresses().web.port, seen };
}

/** Sends raw bytes and returns everything the proxy answers until it closes (or 3 s pass). */
function raw(port: number, bytes: string, { waitMs = 3000 } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    socket.on('data', (d) => (out += d));
    socket.on('close', () => resolve(out));
    socket.on('error', () => resolve(out));
    socket.write(bytes);
    setTimeout(() => socket.destroy(), waitMs);
  });
}

const statusOf = (response: string) => response.split('\r\n')[0];

test('Content-Length together with Transfer-Encoding is rejected with 400', async (t) => {
  const { port, seen } = await start(t);
  const r = await raw(port, 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
  t.is(statusOf(r), 'HTTP/1.1 400 Bad Request');
  t.is(seen.length, 0);
});

test('two different Content-Length values are rejected with 400', async (t) => {
  const { port, seen } = await start(t);
  const r = await raw(port, 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde');
  t.is(statusOf(r), 'HTTP/1.1 400 Bad Request');
  t.is(seen.length, 0);
});

test('malformed chunked encoding ends the exchange: the connection closes and the upstream never gets a whole request', async (t) => {
  const { port, seen } = await start(t);
  // The headers are valid, so the request is already on its way when the bad chunk arrives.
  const r = await raw(port, 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n');
  t.false(r.includes(' 200 '));
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(seen.length, 0);
});

test('oversized request headers get 431', async (t) => {
  const { port, seen } = await start(t);
  const r = await raw(port, `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(70 * 1024)}\r\n\r\n`);
  t.is(statusOf(r), 'HTTP/1.1 431 Request Header Fields Too Large');
  t.is(seen.length, 0);
});

test('a client that sends its headers too slowly is cut off with 408', async (t) => {
  const { port, seen } = await start(t, 500);
  const r = await raw(port, 'GET / HTTP/1.1\r\nHost: a\r\n', { waitMs: 5000 });
  t.is(statusOf(r), 'HTTP/1.1 408 Request Timeout');
  t.is(seen.length, 0);
});

test('a client that connects and sends nothing is disconnected after the header timeout', async (t) => {
  const { port, seen } = await start(t, 500);
  const closed = await new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('close', () => resolve(true));
    socket.on('error', () => {});
    setTimeout(() => {
      resolve(false);
      socket.destroy();
    }, 5000);
  });
  t.true(closed);
  t.is(seen.length, 0);
});

test('hop-by-hop headers are removed; x-forwarded-* and x-request-id are set', async (t) => {
  const { port, seen } = await start(t);
  const r = await raw(port, 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x-secret\r\nKeep-Alive: timeout=5\r\nTE: trailers, deflate\r\nUpgrade: foo\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n');
  t.is(statusOf(r), 'HTTP/1.1 200 OK');
  const h = seen[0];
  for (const name of ['keep-alive', 'upgrade', 'x-secret']) t.is(h[name], undefined, name);
  // TE is hop-by-hop, except that "trailers" passes (gRPC needs it): the rest of it is dropped.
  t.is(h.te, 'trailers');
  t.is(h['x-forwarded-for'], '10.1.2.3, 127.0.0.1');
  t.is(h['x-forwarded-proto'], 'http');
  t.regex(String(h['x-request-id']), /^[0-9a-f-]{36}$/);
});
