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
