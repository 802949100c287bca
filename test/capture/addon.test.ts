// The capture addon on its own (root on Linux): sockets made in another netns stay there, the
// calling thread's netns is untouched, and bad input is a clear error, not a crash.

import { spawnSync } from 'node:child_process';
import { createServer, Socket, type AddressInfo } from 'node:net';
import test from 'ava';
import { captureUnavailable, loadAddon, PROXY_MARK } from '../../runtime/capture/index.ts';
import { skipUnless } from '../helpers/skip-unless.ts';

const why = captureUnavailable();
const run = skipUnless(why);

const netns = `sl-addon-${process.pid % 10000}${Math.random().toString(36).slice(2, 5)}`;
const path = `/var/run/netns/${netns}`;
if (!why) {
  test.before(() => {
    spawnSync('ip', ['netns', 'add', netns]);
    spawnSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  });
  test.after.always(() => void spawnSync('ip', ['netns', 'del', netns]));
}

run('a listener made in a pod netns serves there, not in the caller\'s netns; a direct connection has no original destination', async (t) => {
  const addon = loadAddon();
  // The same port on the caller's loopback: taken here, yet free in the pod's netns.
  const local = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => local.once('listening', r));
  t.teardown(() => local.close());
  const port = (local.address() as AddressInfo).port;
  const server = createServer((s) => {
    let error = '';
    try {
      addon.originalDst((s as unknown as { _handle: { fd: number } })._handle.fd);
    } catch (e) {
      error = `${(e as { code: string }).code}: ${(e as Error).message}`;
    }
    s.end(error);
  });
  server.listen({ fd: addon.listenInNetns(path, '127.0.0.1', port, PROXY_MARK) });
  t.teardown(() => server.close());
  const handle = addon.netnsOpen(path);
  const client = new Socket({ fd: addon.netnsSocket(handle, 4, PROXY_MARK), manualStart: true } as ConstructorParameters<typeof Socket>[0]);
  client.connect(port, '127.0.0.1');
  const answer = await new Promise<string>((resolve, reject) => {
    let b = '';
    client.on('data', (d) => (b += d)).on('end', () => resolve(b)).on('error', reject);
  });
  t.is(answer, 'ENOENT: SO_ORIGINAL_DST failed (the connection was not redirected by nat): No such file or directory');
  addon.netnsClose(handle);
  t.throws(() => addon.netnsSocket(handle, 4, 0), { code: 'EBADF', message: 'netnsSocket after netnsClose: Bad file descriptor' });
});

run('a missing netns, a bad address and bad arguments are errors with a code', (t) => {
  const addon = loadAddon();
  t.throws(() => addon.netnsOpen('/var/run/netns/does-not-exist'), { code: 'ENOENT', message: 'cannot open the network namespace /var/run/netns/does-not-exist: No such file or directory' });
  t.throws(() => addon.listenInNetns('/var/run/netns/does-not-exist', '127.0.0.1', 1, 0), { code: 'ENOENT', message: /^cannot open the network namespace \/var\/run\/netns\/does-not-exist/ });
  t.throws(() => addon.listenInNetns(path, 'localhost', 1, 0), { message: 'listenInNetns: host must be an IPv4 or IPv6 address literal' });
  t.throws(() => addon.originalDst(-1), { message: 'originalDst(fd: non-negative integer)' });
  t.throws(() => (addon.socketInNetns as (...a: unknown[]) => number)(path, 5, 0), { message: 'socketInNetns(netnsPath: string, family: 4 | 6, mark: uint32)' });
});

/** A connection from inside the pod netns to 127.0.0.1:port; resolves with what the server wrote, or the error's code. */
function exchange(handle: ReturnType<ReturnType<typeof loadAddon>['netnsOpen']>, port: number): Promise<string> {
  const addon = loadAddon();
  const client = new Socket({ fd: addon.netnsSocket(handle, 4, PROXY_MARK), manualStart: true } as ConstructorParameters<typeof Socket>[0]);
  client.connect(port, '127.0.0.1');
  return new Promise((resolve) => {
    let b = '';
    client.on('data', (d) => (b += d)).on('end', () => resolve(b)).on('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
    // Not accepted (queued on a listener nobody accepts from): said, rather than a hung test.
    client.setTimeout(3000, () => (client.destroy(), resolve('not accepted in 3 s')));
  });
}

run('a second listener on the same pod port shares it and gets every new connection; the first one\'s queue is reset when it closes', async (t) => {
  const addon = loadAddon();
  const port = 15001;
  // A: bound and listening, never accepting (a proxy that has not accepted yet what is queued).
  const first = addon.listenInNetns(path, '127.0.0.1', port, PROXY_MARK);
  const handle = addon.netnsOpen(path);
  t.teardown(() => addon.netnsClose(handle));
  // Queued on A: the kernel completes the handshake, nobody accepts.
  const queued = exchange(handle, port);
  await new Promise((r) => setTimeout(r, 100));
  // B joins the port's group (SO_REUSEPORT): no EADDRINUSE.
  const second = createServer((s) => s.end('B'));
  second.listen({ fd: addon.listenInNetns(path, '127.0.0.1', port, PROXY_MARK) });
  await new Promise((r) => second.once('listening', r));
  t.teardown(() => second.close());
  // Every new connection goes to B, the newer socket, none to A.
  const answers = await Promise.all(Array.from({ length: 20 }, () => exchange(handle, port)));
  t.deepEqual(answers, Array(20).fill('B'));
  // Closing A resets what was still queued on it (Linux): why the new proxy must get all new ones.
  addon.closeFd(first);
  t.is(await queued, 'ECONNRESET');
  t.is(await exchange(handle, port), 'B');
});
