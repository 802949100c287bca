// `sluice run --controller … --capture-socket … --tunnel-listen`: the flag's checks, and the real
// binary starting the tunnel beside capture (serving a last good config from disk, the controller
// away) with its metrics on the admin, draining it on SIGTERM, and stopping with SLUICE_ERR_TUNNEL_LISTEN when the port is taken.
import test from 'ava';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureUnavailable } from '../../runtime/capture/index.ts';
import { skipUnless } from '../helpers/skip-unless.ts';
import { spawnSluice, until } from '../helpers/sluice-run.ts';

test('--tunnel-listen is for node mode with capture, and must be HOST:PORT', async (t) => {
  const fileMode = spawnSluice(['run', '-c', 'sluice.yaml', '--tunnel-listen', '127.0.0.1:0']);
  t.is(await fileMode.exited, 2);
  const noCapture = spawnSluice(['run', '--controller', '127.0.0.1:1', '--tunnel-listen', '127.0.0.1:0']);
  t.is(await noCapture.exited, 2);
  const why = "sluice run: --tunnel-listen is for node mode with capture (the tunnel carries captured pods' connections with their identities from the controller); add --controller HOST:PORT and --capture-socket PATH\n";
  t.is(fileMode.stderr(), why);
  t.is(noCapture.stderr(), why);
  const bad = spawnSluice(['run', '--controller', '127.0.0.1:1', '--capture-socket', '/tmp/x.sock', '--tunnel-listen', '15008']);
  t.is(await bad.exited, 2);
  t.is(bad.stderr(), 'sluice run: --tunnel-listen must be HOST:PORT (e.g. 0.0.0.0:15008), got "15008"\n');
});

const root = skipUnless(captureUnavailable());

/** A state dir with a last good config, so the agent serves (and starts capture and the tunnel) with the controller away. */
async function nodeDir(): Promise<{ dir: string; args: (tunnel: string) => string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-tunnel-cli-'));
  await mkdir(join(dir, 'state'));
  const config = { admin: { address: '127.0.0.1:0' }, listeners: [{ name: 'capture-outbound', address: '127.0.0.1:0', protocol: 'http', routes: [{ name: 'own', directResponse: { status: 404 } }] }] };
  await writeFile(join(dir, 'state', 'last-good.json'), JSON.stringify({ version: 'v1', config: JSON.stringify(config) }));
  await writeFile(join(dir, 'token'), 'not-a-token');
  return {
    dir,
    args: (tunnel) => ['run', '--controller', '127.0.0.1:1', '--controller-plaintext', '--node-name', 'node-1', '--token-file', join(dir, 'token'), '--state-dir', join(dir, 'state'), '--admin-address', '127.0.0.1:0', '--capture-socket', join(dir, 'cni.sock'), '--tunnel-listen', tunnel, '--drain-ms', '500'],
  };
}

root('node mode with capture starts the tunnel, and drains it on SIGTERM', async (t) => {
  const { dir, args } = await nodeDir();
  const p = spawnSluice(args('127.0.0.1:0'));
  t.teardown(async () => {
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  const port = await until('the tunnel to listen', () => /tunnel listening on 127\.0\.0\.1:(\d+)/.exec(p.stderr())?.[1]);
  t.true(Number(port) > 0);
  await until('capture to serve', () => (p.stderr().includes('capture: CNI API listening') ? true : undefined));
  // The tunnel's counters are in the admin's metrics.
  const admin = /admin listening on 127\.0\.0\.1:(\d+)/.exec(p.stderr())![1];
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/stats/prometheus`)).text();
  t.regex(metrics, /^sluice_tunnel_sessions_active\{direction="inbound"\} 0$/m);
  t.regex(metrics, /^sluice_tunnel_refused_total\{stage="handshake"\} 0$/m);
  p.child.kill('SIGTERM');
  t.is(await p.exited, 0);
  t.true(p.stderr().includes('"msg":"stopped"'));
});

root('a tunnel port already taken stops the agent with SLUICE_ERR_TUNNEL_LISTEN', async (t) => {
  const { dir, args } = await nodeDir();
  const taken = createServer().listen(0, '127.0.0.1');
  await once(taken, 'listening');
  const port = (taken.address() as AddressInfo).port;
  const p = spawnSluice(args(`127.0.0.1:${port}`));
  t.teardown(async () => {
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
    taken.close();
    await rm(dir, { recursive: true, force: true });
  });
  t.is(await p.exited, 1);
  t.true(p.stderr().includes(`sluice run: SLUICE_ERR_TUNNEL_LISTEN: the tunnel cannot listen on 127.0.0.1:${port}: listen EADDRINUSE`), p.stderr());
});
