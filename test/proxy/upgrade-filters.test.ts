// An Upgrade header must never take a connection past the filters. Against the real `sluice run`
// with the authz filter denying /admin: an upgrade the listener does not allow (`foo`, `h2c`) is
// proxied as a plain request, an allowed one (WebSocket) that the upstream answers with anything
// but 101 is relayed as a plain response; either way the client connection keeps speaking HTTP
// through the filters, so the next request on it (GET /admin/users) gets authz's 403.
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import test, { type ExecutionContext } from 'ava';
import { makePki, tlsTest, type TestPki } from '../helpers/certs.ts';
import { runSluice } from '../helpers/sluice-run.ts';

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
}

/**
 * An upstream that answers every request 200 "upstream saw <path>" (keep-alive), and answers an
 * upgrade to one of `switches` with 101 and then echoes bytes as `echo:<bytes>`.
 */
async function upstream(t: ExecutionContext, switches: string[] = []) {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method!, path: req.url!, headers: req.headers });
    req.resume();
    req.on('end', () => res.end(`upstream saw ${req.url}`));
  });
  // Node passes every Connection: Upgrade request here once an 'upgrade' listener exists.
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    seen.push({ method: req.method!, path: req.url!, headers: req.headers });
    if (switches.includes(String(req.headers.upgrade).toLowerCase())) {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${req.headers.upgrade}\r\n\r\n`);
      socket.on('data', (d) => socket.write(`echo:${d}`));
      return;
    }
    // Not switching: an ordinary answer on a connection that stays open for more requests.
    const body = `upstream saw ${req.url}`;
    socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    socket.on('data', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

async function sluice(t: ExecutionContext, upstreamPort: number, upgrades?: string, tls?: TestPki) {
  const run = await runSluice(`
admin: { address: 127.0.0.1:0 }
listeners:
  - name: web
    address: 127.0.0.1:0
    filters: [authz, hello]${upgrades === undefined ? '' : `\n    upgrades: ${upgrades}`}${tls ? `\n    tls: { certFile: ${tls.serverCert}, keyFile: ${tls.serverKey} }` : ''}
    routes: [{ cluster: up }]
clusters:
  - { name: up, endpoints: [127.0.0.1:${upstreamPort}] }
filters:
  - name: authz
    module: \${repo}/build/filters/authz.wasm
    config:
      defaultAction: ALLOW
      rules: [{ name: no-admin, action: DENY, to: { paths: [/admin, /admin/*] } }]
  - { name: hello, module: \${repo}/build/filters/hello.wasm }
`);
  t.teardown(() => run.stop());
  return run.port('web');
}

/** A client connection that sends raw bytes and reads one whole response (by Content-Length) at a time. */
function client(port: number, ca?: string) {
  const socket = ca ? tlsConnect({ port, host: '127.0.0.1', ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }) : connect(port, '127.0.0.1');
  let buffered = '';
  let closed = false;
  let wake = () => {};
  socket.on('data', (d) => {
    buffered += d;
    wake();
  });
  socket.on('close', () => {
    closed = true;
    wake();
  });
  socket.on('error', () => {});
  return {
    socket,
    /** Writes `bytes`, resolves with the next response ('' when the connection closes first). */
    async send(bytes: string): Promise<{ head: string; body: string }> {
      socket.write(bytes);
      const deadline = Date.now() + 5000;
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end >= 0) {
          const head = buffered.slice(0, end);
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          if (buffered.length >= end + 4 + length) {
            const body = buffered.slice(end + 4, end + 4 + length);
            buffered = buffered.slice(end + 4 + length);
            return { head, body };
          }
        }
        if (closed || Date.now() > deadline) return { head: buffered, body: '' };
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 100);
        });
      }
    },
  };
}

const status = (r: { head: string }) => r.head.split('\r\n')[0];
const DENIED = "authz: denied: rule 'no-admin' denies (no peer identity) GET /admin/users\n";

test('Upgrade: foo (not allowed) is proxied as a plain request; the next request on the socket passes the filters', async (t) => {
  const up = await upstream(t, ['foo']);
  const c = client(await sluice(t, up.port));
  const first = await c.send('GET /anything HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n');
  t.is(status(first), 'HTTP/1.1 200 OK');
  t.is(first.body, 'upstream saw /anything');
  t.is(up.seen[0]!.headers.upgrade, undefined);
  t.is(up.seen[0]!.headers.connection, 'keep-alive');
  const second = await c.send('GET /admin/users HTTP/1.1\r\nHost: a\r\n\r\n');
  t.is(status(second), 'HTTP/1.1 403 Forbidden');
  t.is(second.body, DENIED);
  t.is(up.seen.length, 1);
  c.socket.destroy();
});

test('Upgrade: h2c is never honoured over HTTP/1.1, even when the upstream would switch', async (t) => {
  const up = await upstream(t, ['h2c']);
  const c = client(await sluice(t, up.port));
  const first = await c.send('GET /anything HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n');
  t.is(status(first), 'HTTP/1.1 200 OK');
  t.is(first.body, 'upstream saw /anything');
  t.is(up.seen[0]!.headers.upgrade, undefined);
  t.is(up.seen[0]!.headers['http2-settings'], undefined);
  const second = await c.send('GET /admin/users HTTP/1.1\r\nHost: a\r\n\r\n');
  t.is(status(second), 'HTTP/1.1 403 Forbidden');
  t.is(second.body, DENIED);
  t.is(up.seen.length, 1);
  c.socket.destroy();
});

test('an allowed upgrade (WebSocket) answered 200 instead of 101 is relayed as a response, never spliced', async (t) => {
  const up = await upstream(t, []);
  const c = client(await sluice(t, up.port));
  const first = await c.send('GET /anything HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  t.is(status(first), 'HTTP/1.1 200 OK');
  t.is(first.body, 'upstream saw /anything');
  // A plain response: it passed the response filters (hello adds x-hello).
  t.true(first.head.split('\r\n').includes('x-hello: world'), first.head);
  t.is(up.seen[0]!.headers.upgrade, 'websocket');
  const second = await c.send('GET /admin/users HTTP/1.1\r\nHost: a\r\n\r\n');
  t.is(status(second), 'HTTP/1.1 403 Forbidden');
  t.is(second.body, DENIED);
  t.is(up.seen.length, 1);
  c.socket.destroy();
});

test('a request pipelined behind a refused upgrade passes the filters too', async (t) => {
  const up = await upstream(t, []);
  const c = client(await sluice(t, up.port));
  const first = await c.send('GET /anything HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /admin/users HTTP/1.1\r\nHost: a\r\n\r\n');
  t.is(status(first), 'HTTP/1.1 200 OK');
  const second = await c.send('');
  t.is(status(second), 'HTTP/1.1 403 Forbidden');
  t.is(second.body, DENIED);
  t.is(up.seen.length, 1);
  c.socket.destroy();
});

test('upgrades: [foo] on a listener lets foo switch (and WebSocket no longer)', async (t) => {
  const up = await upstream(t, ['foo', 'websocket']);
  const port = await sluice(t, up.port, '[foo]');
  const c = client(port);
  const switched = await c.send('GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n');
  t.is(status(switched), 'HTTP/1.1 101 Switching Protocols');
  t.is(await c.send('ping\r\n\r\n').then((r) => r.head), 'echo:ping');
  c.socket.destroy();

  const ws = client(port);
  const plain = await ws.send('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  t.is(status(plain), 'HTTP/1.1 200 OK');
  t.is(plain.body, 'upstream saw /ws');
  t.is(up.seen[1]!.headers.upgrade, undefined);
  ws.socket.destroy();
});

tlsTest('over TLS (http/1.1 by ALPN) too: a refused upgrade leaves the connection to the filters', async (t) => {
  const pki = makePki();
  const up = await upstream(t, ['foo']);
  const c = client(await sluice(t, up.port, undefined, pki), pki.ca);
  const first = await c.send('GET /anything HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n');
  t.is(status(first), 'HTTP/1.1 200 OK');
  t.is(up.seen[0]!.headers.upgrade, undefined);
  const second = await c.send('GET /admin/users HTTP/1.1\r\nHost: a\r\n\r\n');
  t.is(status(second), 'HTTP/1.1 403 Forbidden');
  t.is(second.body, DENIED);
  t.is(up.seen.length, 1);
  c.socket.destroy();
});

test('an upgrade request with a body is proxied as a plain request, its body framed as HTTP', async (t) => {
  const up = await upstream(t, ['websocket']);
  const c = client(await sluice(t, up.port));
  const first = await c.send('POST /submit HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello');
  t.is(status(first), 'HTTP/1.1 200 OK');
  t.is(first.body, 'upstream saw /submit');
  t.is(up.seen[0]!.headers.upgrade, undefined);
  t.is(up.seen[0]!.headers['content-length'], '5');
  const second = await c.send('GET /admin/users HTTP/1.1\r\nHost: a\r\n\r\n');
  t.is(status(second), 'HTTP/1.1 403 Forbidden');
  c.socket.destroy();
});
