// listenOn (runtime/proxy/shared-port.ts): with the capture addon's factory registered, two
// servers (two proxies, in an upgrade) share a node port and new connections go to the newer
// one; a port held by a server that does not share it is the usual EADDRINUSE error; without a
// factory, port 0 or a host name, a plain listen. The shared part needs root (the addon).

import { once } from 'node:events';
import { createServer, connect, type Server } from 'node:net';
import test from 'ava';
import { captureUnavailable, loadAddon } from '../../runtime/capture/index.ts';
import { listenOn, shareListeningPorts } from '../../runtime/proxy/shared-port.ts';
import { skipUnless } from '../helpers/skip-unless.ts';
import { freePort } from '../helpers/free-port.ts';

const why = captureUnavailable();
const root = skipUnless(why);


const answering = (name: string) => createServer((s) => s.end(name));
const ask = (port: number) =>
  new Promise<string>((resolve, reject) => {
    let b = '';
    connect(port, '127.0.0.1').on('data', (d) => (b += d)).on('end', () => resolve(b)).on('error', reject);
  });
const listening = (server: Server) => new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
const closed = (server: Server) => new Promise((r) => server.close(r));

test.serial('without a factory: a plain listen, and a taken port is EADDRINUSE', async (t) => {
  shareListeningPorts(undefined);
  const port = await freePort();
  const first = answering('first');
  listenOn(first, '127.0.0.1', port);
  await listening(first);
  t.teardown(() => closed(first));
  const second = answering('second');
  listenOn(second, '127.0.0.1', port);
  await t.throwsAsync(listening(second), { code: 'EADDRINUSE' });
});

root('with the addon\'s factory: a second server shares the port and gets the new connections; a non-sharing holder is EADDRINUSE, worded as Node words it', async (t) => {
  const addon = loadAddon();
  shareListeningPorts((host, port, v6only) => addon.listenShared(host, port, v6only));
  t.teardown(() => shareListeningPorts(undefined));
  const port = await freePort();
  const old = answering('old');
  listenOn(old, '127.0.0.1', port);
  await listening(old);
  t.is(await ask(port), 'old');
  const next = answering('new');
  listenOn(next, '127.0.0.1', port);
  await listening(next);
  t.deepEqual(await Promise.all(Array.from({ length: 10 }, () => ask(port))), Array(10).fill('new'));
  await closed(old);
  t.is(await ask(port), 'new');
  await closed(next);

  // A plain holder (an older proxy, another service) cannot be joined.
  const plain = createServer().listen(port, '127.0.0.1');
  await listening(plain);
  t.teardown(() => closed(plain));
  const refused = answering('refused');
  listenOn(refused, '127.0.0.1', port);
  const error = await t.throwsAsync(listening(refused));
  t.like(error, { code: 'EADDRINUSE', syscall: 'listen', port });
  t.is(error?.message, `listen EADDRINUSE: bind on 127.0.0.1:${port} failed: Address already in use`);
  // Port 0 and host names are never shared (a plain listen).
  const any = answering('any');
  listenOn(any, 'localhost', 0);
  await listening(any);
  await closed(any);
});
