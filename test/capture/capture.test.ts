// Capture end to end in network namespaces: pods wired by Debian's bridge + host-local with
// sluice-cni chained, invoked through libcni; the node proxy (`sluice run --capture-socket`)
// in the node's netns owns listeners inside each captured pod. Root on Linux only.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { repoRoot } from '../helpers/fixtures.ts';
import { spawnSluice, until } from '../helpers/sluice-run.ts';
import { captureConfig, Lab, labUnavailable, sh, type Pod } from './netns-lab.ts';
import { skipUnless } from '../helpers/skip-unless.ts';

const why = labUnavailable();
const serial = skipUnless(why);

const lab = new Lab();
let proxy: Awaited<ReturnType<Lab['spawnIn']>> | undefined;
let a: Pod, b: Pod, c: Pod;

test.after.always(async () => {
  if (!why) await lab.destroy();
});

async function startProxy(): Promise<void> {
  const config = join(lab.dir, 'sluice.yaml');
  await writeFile(config, captureConfig());
  proxy = await lab.spawnIn(lab.node, [process.execPath, join(repoRoot, 'bin/sluice.js'), 'run', '-c', config, '--capture-socket', lab.socket], 'CNI API listening');
}

const cniError = (r: { status: number | null; stdout: string }) => ({ status: r.status, error: JSON.parse(r.stdout) as { code: number; msg: string } });
const ipOf = (addResult: string, v6 = false) => (JSON.parse(addResult).ips as Array<{ address: string }>).map((i) => i.address.split('/')[0]).find((a) => a.includes(':') === v6)!;
/** The node proxy's /stats/prometheus, fetched from inside the node's netns. */
function proxyMetrics(): string {
  const admin = Number(/admin listening on 127\.0\.0\.1:(\d+)/.exec(proxy!.output())![1]);
  return sh('ip', ['netns', 'exec', lab.node, process.execPath, '-e', `fetch('http://127.0.0.1:${admin}/stats/prometheus').then((r) => r.text()).then((t) => process.stdout.write(t))`]).stdout;
}
const podStats = async (p: Pod) => (await lab.api('GET', '/v1/pods')).body.pods.find((x: { containerId: string }) => x.containerId === p.containerId);

serial('ADD while the node proxy is down fails with a CNI error that says so, and DEL still succeeds', async (t) => {
  await lab.create();
  a = lab.pod('a');
  const add = lab.cni('add', a);
  const { status, error } = cniError(add);
  t.is(status, 1);
  t.is(error.code, 11);
  t.regex(error.msg, /cannot capture pod default\/a .*the Sluice node proxy is not running on this node .*the pod is not started uncaptured/);
  // The runtime cleans up a failed ADD with DEL: it must succeed with the proxy still down.
  const del = lab.cni('del', a);
  t.is(del.status, 0, del.stdout);
  t.is(lab.nft(a, 'list', 'ruleset').stdout, '');
});

serial('ADD captures pods: rules in the pod netns, prevResult passed on; an opted-out pod gets none', async (t) => {
  await startProxy();
  const status = lab.cni('status', a);
  t.is(status.status, 0, status.stdout);
  b = lab.pod('b');
  c = lab.pod('c');
  for (const p of [a, b]) {
    const r = lab.cni('add', p);
    t.is(r.status, 0, r.stdout);
    const result = JSON.parse(r.stdout);
    // The bridge plugin's result, passed on: the pod's address from host-local, its interfaces.
    t.regex(result.ips[0].address, /^10\.248\.0\.\d+\/24$/);
    t.is(result.ips[0].gateway, '10.248.0.1');
    t.true(result.interfaces.some((i: { name: string; sandbox?: string }) => i.name === 'eth0' && i.sandbox === p.netnsPath));
    p.ip = ipOf(r.stdout);
    p.ip6 = ipOf(r.stdout, true);
    t.regex(p.ip6, /^fd00:5c:e2e::/);
    for (const family of ['ip', 'ip6']) {
      const table = lab.nft(p, 'list', 'table', family, 'sluice');
      t.is(table.status, 0, JSON.stringify(table));
      t.regex(table.stdout, /redirect to :15001/);
      t.regex(table.stdout, /redirect to :15006/);
    }
  }
  const optedOut = lab.cni('add', c, { 'sluice.dev/capture': 'disabled' });
  t.is(optedOut.status, 0, optedOut.stdout);
  c.ip = ipOf(optedOut.stdout);
  t.is(lab.nft(c, 'list', 'table', 'ip', 'sluice').status, 1);
  t.is(lab.nft(c, 'list', 'ruleset').stdout, '');
  t.deepEqual((await lab.api('GET', '/v1/pods')).body.pods.map((p: { name: string }) => p.name).sort(), ['a', 'b']);
});

serial('pod A to pod B passes the node proxy both ways, to the original destination, without loops', async (t) => {
  await lab.serve(b);
  const answer = lab.get(a.netns, `http://${b.ip}:8080/hello`);
  // B's server was reached on the address A dialled (original destination preserved) from B's
  // own address: the proxy's inbound listener in B's netns connected it (without capture the
  // peer would be A). HTTP went through the proxy's HTTP stack on both sides: each added A's
  // address to x-forwarded-for (the peer it saw: A itself, outbound and inbound), and the Wasm
  // filters of the capture-outbound and capture-inbound listeners ran, in that order.
  t.deepEqual(answer, { pod: 'b', remote: b.ip!, local: `${b.ip}:8080`, xff: `${a.ip}, ${a.ip}`, requestId: true, filters: 'outbound, inbound' });
  t.like(await podStats(a), { outbound: 1, inbound: 0, refused: 0 });
  t.like(await podStats(b), { outbound: 0, inbound: 1, refused: 0 });
  const metrics = proxyMetrics();
  const dst = `${b.ip!.replaceAll('.', '\\.')}:8080`;
  t.regex(metrics, new RegExp(`istio_requests_total\\{[^}]*destination_service="${dst}"[^}]*sluice_listener="capture-outbound"[^}]*\\} 1\\n`));
  t.regex(metrics, new RegExp(`istio_requests_total\\{[^}]*destination_service="${dst}"[^}]*sluice_listener="capture-inbound"[^}]*\\} 1\\n`));
});

serial('HTTP/2 (h2c, as gRPC speaks it) goes through the HTTP stack both ways too', async (t) => {
  t.deepEqual(lab.h2get(a.netns, `http://${b.ip}:8082/h2`), { pod: 'b', remote: b.ip!, local: `${b.ip}:8082`, xff: `${a.ip}, ${a.ip}`, requestId: true, filters: 'outbound, inbound' });
  t.like(await podStats(a), { outbound: 2 });
  t.like(await podStats(b), { inbound: 2 });
  const dst = `${b.ip!.replaceAll('.', '\\.')}:8082`;
  const metrics = proxyMetrics();
  for (const listener of ['capture-outbound', 'capture-inbound']) {
    t.regex(metrics, new RegExp(`istio_requests_total\\{[^}]*request_protocol="http2",response_code="200",destination_service="${dst}"[^}]*sluice_listener="${listener}"[^}]*\\} 1\\n`));
  }
});

serial('TCP that is not HTTP passes through, client-first or server-first, counted in the TCP metrics', async (t) => {
  t.is(lab.tcp(a.netns, b.ip!, 9000, 'ping\n'), 'PING\n');
  // Server-first: A sends nothing; after the sniff the proxy passes the banner through.
  t.is(lab.tcp(a.netns, b.ip!, 9001, ''), '220 b ready\n');
  t.like(await podStats(a), { outbound: 4 });
  t.like(await podStats(b), { inbound: 4 });
  const metrics = proxyMetrics();
  for (const [port, count] of [[9000, 1], [9001, 1]]) {
    for (const listener of ['capture-outbound', 'capture-inbound']) {
      t.regex(metrics, new RegExp(`istio_tcp_connections_closed_total\\{[^}]*destination_service="${b.ip!.replaceAll('.', '\\.')}:${port}",sluice_listener="${listener}"\\} ${count}\\n`));
    }
  }
});

serial('IPv6: pod A to pod B is captured the same way, with the original IPv6 destination', async (t) => {
  t.deepEqual(lab.get(a.netns, `http://[${b.ip6}]:8080/v6`), { pod: 'b', remote: b.ip6!, local: `${b.ip6}:8080`, xff: `${a.ip6}, ${a.ip6}`, requestId: true, filters: 'outbound, inbound' });
  t.like(await podStats(a), { outbound: 5, inbound: 0, refused: 0 });
  t.like(await podStats(b), { outbound: 0, inbound: 5, refused: 0 });
});

serial('excluded traffic is not redirected: the node (kubelet probes), an opted-out pod, an excluded port', async (t) => {
  // From the node's netns: the source is the pod's gateway, which is excluded inbound.
  t.deepEqual(lab.get(lab.node, `http://${b.ip}:8080/healthz`), { pod: 'b', remote: '10.248.0.1', local: `${b.ip}:8080`, requestId: false });
  t.like(await podStats(b), { inbound: 5 });
  // A to the opted-out pod C: A's outbound is captured, C's inbound is not: C sees A itself, and
  // one x-forwarded-for entry (A's proxy's).
  await lab.serve(c);
  t.deepEqual(lab.get(a.netns, `http://${c.ip}:8080/`), { pod: 'c', remote: a.ip!, local: `${c.ip}:8080`, xff: a.ip!, requestId: true, filters: 'outbound' });
  t.like(await podStats(a), { outbound: 6 });
  // C to B: C's outbound bypasses the proxy; B's inbound still passes it (one entry: C).
  t.deepEqual(lab.get(c.netns, `http://${b.ip}:8080/`), { pod: 'b', remote: b.ip!, local: `${b.ip}:8080`, xff: c.ip!, requestId: true, filters: 'inbound' });
  t.like(await podStats(a), { outbound: 6 });
  t.like(await podStats(b), { inbound: 6 });
  // excludeOutboundPorts: [9999]: A's connection to C:9999 is not redirected, so C's kernel
  // refuses it (nothing listens there) instead of the proxy's 15001 listener accepting it.
  const r = sh('ip', ['netns', 'exec', a.netns, process.execPath, '-e', `require('net').connect(9999, '${c.ip}').on('error', (e) => { console.log(e.code); })`]);
  t.is(r.stdout.trim(), 'ECONNREFUSED');
  t.like(await podStats(a), { outbound: 6 });
});

serial('a restarted node proxy takes its pods over again: refused while it is down, captured after', async (t) => {
  const exited = new Promise((r) => proxy!.once('exit', r));
  proxy!.kill('SIGTERM');
  await exited;
  // The rules stay and nothing listens on 15001: A's connection is refused, never sent uncaptured.
  const down = sh('ip', ['netns', 'exec', a.netns, process.execPath, '-e', `require('net').connect(8080, '${b.ip}').on('error', (e) => { console.log(e.code); })`]);
  t.is(down.stdout.trim(), 'ECONNREFUSED');
  await startProxy();
  t.regex(proxy!.output(), /capture: pod default\/a captured/);
  t.deepEqual((await lab.api('GET', '/v1/pods')).body.pods.map((p: { name: string }) => p.name).sort(), ['a', 'b']);
  t.deepEqual(lab.get(a.netns, `http://${b.ip}:8080/again`), { pod: 'b', remote: b.ip!, local: `${b.ip}:8080`, xff: `${a.ip}, ${a.ip}`, requestId: true, filters: 'outbound, inbound' });
  t.like(await podStats(a), { outbound: 1, inbound: 0 });
  t.like(await podStats(b), { outbound: 0, inbound: 1 });
});

serial('SIGTERM drains: a captured request in flight finishes; new connections are refused meanwhile, never sent uncaptured', async (t) => {
  // B answers /slow 1.5 s after the request arrives.
  const slow = await lab.spawnIn(b.netns, [process.execPath, '-e', `require('http').createServer((q, s) => { console.log('got ' + q.url); setTimeout(() => s.end('slow done'), 1500); }).listen(8090, '0.0.0.0', () => console.log('ready'))`], 'ready');
  t.teardown(() => void slow.kill());
  const client = await lab.spawnIn(a.netns, [process.execPath, '-e', `require('http').get('http://${b.ip}:8090/slow', (r) => { let b = ''; r.on('data', (c) => (b += c)); r.on('end', () => console.log('answer ' + r.statusCode + ' ' + b)); }).on('error', (e) => console.log('error ' + e.message)); console.log('sent')`], 'sent');
  await until('the slow request to reach B', () => (slow.output().includes('got /slow') ? true : undefined));
  const exited = new Promise<number | null>((r) => proxy!.once('exit', (code) => r(code)));
  proxy!.kill('SIGTERM');
  await until('the drain to start', () => (proxy!.output().includes('SIGTERM: draining') ? true : undefined));
  const connect = () => sh('ip', ['netns', 'exec', a.netns, process.execPath, '-e', `require('net').connect(8080, '${b.ip}').on('connect', function () { console.log('connected'); this.destroy(); }).on('error', (e) => console.log(e.code))`]).stdout.trim();
  t.is(await until('new connections to be refused', () => (connect() === 'ECONNREFUSED' ? 'ECONNREFUSED' : undefined), 5000), 'ECONNREFUSED');
  await until(`the client's answer; it said: ${client.output()}`, () => (/^(answer|error)/m.test(client.output()) ? true : undefined), 10_000);
  t.is(client.output().trim().split('\n').at(-1), 'answer 200 slow done');
  t.is(await exited, 0);
  await startProxy();
  t.deepEqual((await lab.api('GET', '/v1/pods')).body.pods.map((p: { name: string }) => p.name).sort(), ['a', 'b']);
});

serial('CHECK passes on the installed rules and fails with an error after tampering', async (t) => {
  const ok = lab.cni('check', a);
  t.is(ok.status, 0, ok.stdout);
  t.is(lab.nft(a, 'delete', 'rule', 'ip', 'sluice', 'output', 'handle', ruleHandle(a, 'output', 'redirect to :15001')).status, 0);
  const { status, error } = cniError(lab.cni('check', a));
  t.is(status, 1);
  t.is(error.code, 101);
  t.regex(error.msg, /the capture rules of pod default\/a .* are not as installed: ip chain output has 4 rules, expected 5 as installed \(nft list ruleset in /);
});

serial('DEL removes the rules and the listeners; DEL again, and DEL of a pod whose netns is gone, succeed', async (t) => {
  const del = lab.cni('del', a);
  t.is(del.status, 0, del.stdout);
  t.is(lab.nft(a, 'list', 'ruleset').stdout, '');
  t.is(await podStats(a), undefined);
  t.is(lab.cni('del', a).status, 0);
  // The pod's netns vanished before DEL (the runtime already tore the sandbox down).
  sh('ip', ['netns', 'del', b.netns]);
  const gone = lab.cni('del', b);
  t.is(gone.status, 0, gone.stdout);
  t.is(await podStats(b), undefined);
  t.is(lab.cni('del', c, { 'sluice.dev/capture': 'disabled' }).status, 0);
});

serial('GC releases the pods the runtime no longer lists; the capture API refuses bad requests with a code', async (t) => {
  const d = lab.pod('d');
  const e = lab.pod('e');
  const addD = lab.cni('add', d);
  t.is(addD.status, 0);
  t.is(lab.cni('add', e).status, 0);
  t.deepEqual((await lab.api('GET', '/v1/pods')).body.pods.map((p: { name: string }) => p.name).sort(), ['d', 'e']);
  // Debian's plugins predate CNI 1.1 (libcni skips GC for them), so sluice-cni gets GC directly.
  const gc = sh(join(repoRoot, 'build/cni/sluice-cni'), [], {
    env: { CNI_COMMAND: 'GC', CNI_PATH: '/usr/lib/cni' },
    input: JSON.stringify({ cniVersion: '1.1.0', name: 'n', type: 'sluice-cni', proxySocket: lab.socket, 'cni.dev/valid-attachments': [{ containerID: e.containerId, ifname: 'eth0' }] }),
  });
  t.is(gc.status, 0, gc.stdout);
  t.deepEqual((await lab.api('GET', '/v1/pods')).body.pods.map((p: { name: string }) => p.name), ['e']);
  t.is(lab.nft(d, 'list', 'ruleset').stdout, '');
  t.regex(lab.nft(e, 'list', 'ruleset').stdout, /table ip sluice/);
  const bad = await lab.api('POST', '/v1/pods/add', '{"containerId": "../etc", "netns": "/x"}');
  t.deepEqual(bad, { status: 400, body: { code: 'SLUICE_ERR_CAPTURE_REQUEST', message: 'pod request: containerId "../etc" has characters a CNI container ID may not have' } });
  const notJson = await lab.api('POST', '/v1/pods/add', '{');
  t.deepEqual(notJson, { status: 400, body: { code: 'SLUICE_ERR_CAPTURE_REQUEST', message: 'the request body is not JSON' } });
  // A client that resets while the proxy waits for its first bytes costs that connection only
  // (e is still captured; d, released by GC, is a plain server now).
  await lab.serve(d);
  d.ip = ipOf(addD.stdout);
  sh('ip', ['netns', 'exec', e.netns, process.execPath, '-e', `const s = require('net').connect(9000, '${d.ip}', () => s.resetAndDestroy())`]);
  t.is(lab.tcp(e.netns, d.ip!, 9000, 'again\n'), 'AGAIN\n');
  t.is(proxy!.exitCode, null);
  t.is(lab.cni('del', d).status, 0);
});

serial('DEL with the node proxy down removes the pod\'s tables itself', async (t) => {
  const e = lab.pods.get('e')!;
  t.regex(lab.nft(e, 'list', 'ruleset').stdout, /table ip sluice[^]*table ip6 sluice/);
  const exited = new Promise((r) => proxy!.once('exit', r));
  proxy!.kill('SIGTERM');
  await exited;
  const del = lab.cni('del', e);
  t.is(del.status, 0, del.stdout);
  t.is(lab.nft(e, 'list', 'ruleset').stdout, '');
});

serial('uninstall: with the proxy stopped, `sluice cni uninstall --release-pods` leaves captured pods talking directly, new pods uncaptured, no rules behind', async (t) => {
  await startProxy();
  const g = lab.pod('g');
  const h = lab.pod('h');
  for (const p of [g, h]) {
    const r = lab.cni('add', p);
    t.is(r.status, 0, r.stdout);
    p.ip = ipOf(r.stdout);
  }
  await lab.serve(h);
  t.like(lab.get(g.netns, `http://${h.ip}:8080/captured`), { pod: 'h', filters: 'outbound, inbound' });
  // What the chart's rollout to node.capture.enabled=false does on a node: the proxy stops (its
  // pods' rules stay: refused), then the init container runs the uninstall.
  const exited = new Promise((r) => proxy!.once('exit', r));
  proxy!.kill('SIGTERM');
  await exited;
  const uninstall = spawnSluice(['cni', 'uninstall', '--cni-bin-dir', join(lab.dir, 'bin'), '--cni-conf-dir', lab.dir, '--release-pods', join(lab.dir, 'pods')]);
  t.is(await uninstall.exited, 0, uninstall.stderr());
  t.regex(uninstall.stderr(), /"msg":"pod default\/g released: its capture rules are removed"/);
  for (const p of [g, h]) t.is(lab.nft(p, 'list', 'ruleset').stdout, '', `no rules left in ${p.name}`);
  // Straight to h: no proxy on the way (no x-forwarded-for, no filter), g's own address.
  const direct = lab.get(g.netns, `http://${h.ip}:8080/direct`);
  t.deepEqual(direct, { pod: 'h', remote: g.ip!, local: `${h.ip}:8080`, requestId: false });
  t.deepEqual((JSON.parse(await readFile(lab.conflist, 'utf8')) as { plugins: Array<{ type: string }> }).plugins.map((p) => p.type), ['bridge']);
  // A pod created now starts (no sluice-cni to fail on the stopped proxy) and gets no rules.
  const i = lab.pod('i');
  const add = lab.cni('add', i);
  t.is(add.status, 0, add.stdout);
  t.is(lab.nft(i, 'list', 'ruleset').stdout, '');
});

/** The handle of the rule in `chain` whose text contains `text` (nft -a list). */
function ruleHandle(pod: Pod, chain: string, text: string): string {
  const listing = lab.nft(pod, '-a', 'list', 'chain', 'ip', 'sluice', chain).stdout;
  const line = listing.split('\n').find((l) => l.includes(text));
  return /# handle (\d+)/.exec(line ?? '')![1];
}
