// A node proxy upgrade with no dropped connection (docs/operations.md#upgrade), in network
// namespaces as capture.test.ts: proxy A captures two pods; a client in pod A opens a new
// connection for every request, without pause; proxy B starts on the same capture state while A
// still serves, then A gets SIGTERM. Every request must succeed, through the capture (the filters
// of both directions ran). The control: a proxy stopped with no successor refuses new connections.
// Both proxies hold the same fixed admin and metrics ports in the node's netns. Root on Linux only.

import { rename, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { repoRoot } from '../helpers/fixtures.ts';
import { until } from '../helpers/sluice-run.ts';
import { captureConfig, Lab, labUnavailable, sh, type Pod } from './netns-lab.ts';
import { skipUnless } from '../helpers/skip-unless.ts';

const why = labUnavailable();
const serial = skipUnless(why);

const lab = new Lab('10.248.7.0/24', 'fd00:5c:e7::/64');
let a: Pod, b: Pod;
const ADMIN = 15000;
const METRICS = 15020;

test.after.always(async () => {
  if (!why) await lab.destroy();
});

type Proxy = Awaited<ReturnType<Lab['spawnIn']>>;

async function startProxy(name: string): Promise<Proxy> {
  const config = join(lab.dir, `sluice-${name}.yaml`);
  await writeFile(config, captureConfig(ADMIN));
  const args = [process.execPath, join(repoRoot, 'bin/sluice.js'), 'run', '-c', config, '--capture-socket', lab.socket, '--metrics-listen', `127.0.0.1:${METRICS}`, '--drain-ms', '3000'];
  return lab.spawnIn(lab.node, args, 'CNI API listening');
}

/** GET from the node's netns; the admin and metrics ports answer from whichever proxy the kernel picks. */
const nodeGet = (port: number, path: string) =>
  sh('ip', ['netns', 'exec', lab.node, process.execPath, '-e', `fetch('http://127.0.0.1:${port}${path}').then(async (r) => console.log(r.status, await r.text())).catch((e) => console.log('error', e.cause?.code ?? e.message))`]).stdout.trim();

const exitOf = (p: Proxy) => new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (code) => r(code))));
const podStats = async (p: Pod) => (await lab.api('GET', '/v1/pods')).body.pods.find((x: { containerId: string }) => x.containerId === p.containerId);

serial('an upgrade drops no connection: B takes the pods over while A serves, A stops; every request succeeds, captured', async (t) => {
  await lab.create();
  const proxyA = await startProxy('a');
  a = lab.pod('a');
  b = lab.pod('b');
  for (const p of [a, b]) {
    const r = lab.cni('add', p);
    t.is(r.status, 0, r.stdout + r.stderr);
    p.ip = (JSON.parse(r.stdout).ips as Array<{ address: string }>).map((i) => i.address.split('/')[0]).find((x) => !x.includes(':'));
  }
  await lab.serve(b);
  t.like(lab.get(a.netns, `http://${b.ip}:8080/first`), { pod: 'b', filters: 'outbound, inbound' });

  const stopFile = join(lab.dir, 'stop-upgrade');
  const client = await lab.requestLoop(a.netns, `http://${b.ip}:8080/n`, stopFile);
  // Requests through A while it is alone.
  await new Promise((r) => setTimeout(r, 500));
  // B on the same capture state, the same admin and metrics ports; its log line comes after it took the pods over.
  const proxyB = await startProxy('b');
  t.regex(proxyB.output(), /capture: pod default\/a captured/);
  t.regex(proxyB.output(), /capture: pod default\/b captured/);
  t.teardown(() => void proxyB.kill('SIGKILL'));
  // The metrics port the DaemonSet probes answers from B (the newer socket gets new connections).
  t.is(nodeGet(METRICS, '/ready'), '200 ready');
  await new Promise((r) => setTimeout(r, 500));
  proxyA.kill('SIGTERM');
  t.is(await exitOf(proxyA), 0);
  await new Promise((r) => setTimeout(r, 500));
  const result = await lab.requestLoopResult(client, stopFile);
  t.log(`during the upgrade: ${result.ok} requests on new connections succeeded, ${result.failed} failed`, result.codes);
  // Not one failed, and every answer passed both directions' filters (captured, never around the proxy).
  t.deepEqual({ failed: result.failed, codes: result.codes, filters: Object.keys(result.filters) }, { failed: 0, codes: {}, filters: ['outbound, inbound'] });
  t.true(result.ok > 100, `only ${result.ok} requests were made`);

  // After A exited, B serves alone: the capture API, the pods' traffic, the admin and metrics ports.
  t.deepEqual((await lab.api('GET', '/v1/pods')).body.pods.map((p: { name: string }) => p.name).sort(), ['a', 'b']);
  const before = (await podStats(a)).outbound as number;
  t.like(lab.get(a.netns, `http://${b.ip}:8080/after`), { pod: 'b', filters: 'outbound, inbound' });
  t.is((await podStats(a)).outbound, before + 1);
  t.is(nodeGet(METRICS, '/ready'), '200 ready');
  t.regex(nodeGet(ADMIN, '/stats/prometheus'), /^200 /);

  // The control: stopped with no successor, the proxy's pods' new connections are refused.
  const control = join(lab.dir, 'stop-control');
  const client2 = await lab.requestLoop(a.netns, `http://${b.ip}:8080/n`, control);
  await new Promise((r) => setTimeout(r, 300));
  proxyB.kill('SIGTERM');
  t.is(await exitOf(proxyB), 0);
  await new Promise((r) => setTimeout(r, 300));
  const refused = await lab.requestLoopResult(client2, control);
  t.log(`with no successor: ${refused.ok} succeeded, ${refused.failed} failed`, refused.codes);
  t.true(refused.failed > 0);
  t.true((refused.codes.ECONNREFUSED ?? 0) > 0, JSON.stringify(refused.codes));
});

serial('after a proxy that does not share its ports (an older version): the capture socket is linked again when it unlinks it, and a pod whose ports it holds is taken over once it exits', async (t) => {
  // The older proxy's parts: a plain unix socket at the capture path, and pod A's 15001 held
  // without SO_REUSEPORT (its 15006 and the IPv6 ports are free, as they would not be; one is enough).
  const legacy = createServer((s) => s.destroy());
  await new Promise<void>((resolve) => legacy.listen(lab.socket, resolve));
  const holder = await lab.spawnIn(a.netns, [process.execPath, '-e', `require('net').createServer().listen(15001, '127.0.0.1', () => console.log('holding'))`], 'holding');
  const proxyC = await startProxy('c');
  t.teardown(() => void proxyC.kill('SIGKILL'));
  t.regex(proxyC.output(), /another proxy holds pod default\/a's capture ports without sharing them \(an older version\); taking the pod over once it exits/);
  t.regex(proxyC.output(), /capture: pod default\/b captured/);
  t.deepEqual((await lab.api('GET', '/v1/pods')).body.pods.map((p: { name: string }) => p.name), ['b']);
  // The older proxy exits: Node unlinks its socket's path, which is C's link by now; C links it again.
  await new Promise((r) => legacy.close(r));
  await until(`the capture socket linked again; C said: ${proxyC.output()}`, () => (proxyC.output().includes('had vanished (an older proxy exited); linked to this proxy again') ? true : undefined), 10_000);
  t.is((await lab.api('GET', '/v1/pods')).status, 200);
  // The older proxy's listener in pod A goes: C takes A over.
  holder.kill('SIGKILL');
  await until(`pod A captured by C; it said: ${proxyC.output()}`, () => (/capture: pod default\/a captured/.test(proxyC.output()) ? true : undefined), 10_000);
  t.like(lab.get(a.netns, `http://${b.ip}:8080/taken-over`), { pod: 'b', filters: 'outbound, inbound' });
  // A newer proxy that died (its socket left, nobody answering): C takes the path back.
  await symlink('cni.sock.deadbeef', `${lab.socket}.tmp`);
  await rename(`${lab.socket}.tmp`, lab.socket);
  await until(`the capture socket taken back; C said: ${proxyC.output()}`, () => (proxyC.output().includes('led to cni.sock.deadbeef, where no proxy answers; linked to this proxy again') ? true : undefined), 10_000);
  t.is((await lab.api('GET', '/v1/pods')).status, 200);
  proxyC.kill('SIGTERM');
  t.is(await exitOf(proxyC), 0);
});
