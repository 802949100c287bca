// WebSocket-style upgrades: the filters see the upgrade request (and may refuse it); an accepted
// one is spliced to the upstream, its 101 and the bytes after it passed through both ways.
import { createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import test from 'ava';
import { parseConfig } from '../../runtime/config/index.ts';
import { NodeProxy } from '../../runtime/proxy/node-proxy.ts';
import { makePki, tlsTest } from '../helpers/certs.ts';
import { filterWasm } from '../helpers/fixtures.ts';

async function start(t: { teardown(fn: () => unknown): void }, tls?: { cert: string; key: string }) {
  const upstream = createServer();
  upstream.on('upgrade', (req, socket: Socket) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-path: ${req.url}\r\n\r\n`);
    socket.on('data', (d) => socket.write(`echo:${d}`));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const snapshot = parseConfig(
    `
admin: { address: 127.0.0.1:0 }
listeners:
  - { name: web, address: 127.0.0.1:0, filters: [hello], routes: [{ cluster: up }]${tls ? `, tls: { certFile: ${tls.cert}, keyFile: ${tls.key} }` : ''} }
clusters:
  - { name: up, endpoints: [127.0.0.1:${(upstream.address() as AddressInfo).port}] }
filters:
  - { name: hello, module: ${filterWasm('hello')}, config: { denyPath: /forbidden } }
`,
    'test.yaml',
    '/',
  );
  const proxy = await NodeProxy.start(snapshot, { log: () => {} });
  t.teardown(async () => {
    await proxy.stop(100);
    upstream.close();
  });
  return proxy.addresses().web.port;
}

function upgrade(port: number, path: string, ca?: string): Promise<{ status: number; socket?: Socket; headers: Record<string, unknown>; body?: string }> {
  return new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port, path, headers: { connection: 'Upgrade', upgrade: 'websocket' } };
    const req = ca ? httpsRequest({ ...options, ca, servername: 'localhost' }) : httpRequest(options);
    req.on('upgrade', (res, socket) => resolve({ status: res.statusCode!, socket, headers: res.headers }));
    req.on('response', async (res) => {
      let body = '';
      for await (const c of res) body += c;
      resolve({ status: res.statusCode!, headers: res.headers, body });
    });
    req.on('error', reject);
    req.end();
  });
}

test('an upgrade is passed to the upstream and bytes flow both ways', async (t) => {
  const port = await start(t);
  const r = await upgrade(port, '/chat');
  t.is(r.status, 101);
  t.is(r.headers['x-path'], '/chat');
  const echoed = await new Promise<string>((resolve) => {
    r.socket!.once('data', (d) => resolve(d.toString()));
    r.socket!.write('ping');
  });
  t.is(echoed, 'echo:ping');
  r.socket!.destroy();
});

test('a filter can refuse an upgrade', async (t) => {
  const port = await start(t);
  const r = await upgrade(port, '/forbidden/chat');
  t.is(r.status, 403);
  t.is(r.body, "hello: access to '/forbidden/chat' is denied (path starts with '/forbidden')\n");
});

tlsTest('an upgrade over TLS (http/1.1 by ALPN) is passed through too', async (t) => {
  const pki = makePki();
  const port = await start(t, { cert: pki.serverCert, key: pki.serverKey });
  const r = await upgrade(port, '/secure-chat', pki.ca);
  t.is(r.status, 101);
  t.is(r.headers['x-path'], '/secure-chat');
  const echoed = await new Promise<string>((resolve) => {
    r.socket!.once('data', (d) => resolve(d.toString()));
    r.socket!.write('ping');
  });
  t.is(echoed, 'echo:ping');
  r.socket!.destroy();
});
