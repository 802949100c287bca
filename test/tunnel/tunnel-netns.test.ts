// The node-to-node tunnel end to end, as root: two "nodes" (network namespaces joined by a veth
// link), each with its pods wired by the bridge CNI plugin and sluice-cni, and a node proxy with
// capture and the tunnel (node-driver.ts) holding identities from a real CA. Pod A (node 1) calls
// pod B (node 2): the connection crosses in the tunnel, B's inbound filters see A's SPIFFE ID
// (an authz filter allows A's ServiceAccount and denies C's), and counters on the link show no
// packet from a pod's address crossed, only the tunnel's (HTTP/1.1, h2c and plain TCP). Before the tunnel is configured the
// same call crosses in plaintext (the counters can see it) and carries no identity. A pod of A's
// ServiceAccount on node 2 reaches B through node 2's own tunnel, its identity seen the same way.
import { labUnavailable, must, sh } from '../capture/netns-lab.ts';
import { NFT } from '../../runtime/capture/nft-rules.ts';
import { skipUnless } from '../helpers/skip-unless.ts';
import { sid, testCa } from './tunnel-pki.ts';
import { addPod as add, LINK, nodeConfig, reload, startDriver, twoNodes, type NodeConfigOptions, type TwoNodes } from './two-nodes.ts';

const run = skipUnless(labUnavailable());

const A = sid('team-a', 'a');
const B = sid('team-b', 'b');
const C = sid('team-c', 'c');

const FILTERS = [
  { name: 'authz', module: 'build/filters/authz.wasm', config: JSON.stringify({ rules: [{ name: 'team-a', from: { principals: [A] } }] }) },
  { name: 'out', module: 'build/filters/headers.wasm', config: JSON.stringify({ request: { set: [{ name: 'x-outbound', value: 'ran on node 1' }] } }) },
  { name: 'peer', module: 'build/filters/headers.wasm', config: JSON.stringify({ request: { set: [
    { name: 'x-peer', value: '%PROPERTY(sluice.peer_identity)%' },
    { name: 'x-peer-san', value: '%PROPERTY(connection.uri_san_peer_certificate)%' },
    { name: 'x-mtls', value: '%PROPERTY(connection.mtls)%' },
  ] } }) },
];

/** The node's config: capture listeners (node 2's inbound with authz + a header stamping the peer), its workloads, the remote ones. */
const config = (outbound: string[], inbound: string[], workloads: NodeConfigOptions['workloads'], remote: NodeConfigOptions['remote']) =>
  nodeConfig({ outbound, inbound, filters: FILTERS, workloads, remote });

/** GET `url` from inside a netns: status and body. */
function fetchIn(netns: string, url: string): { status: number; body: string } {
  const script = `require('http').get(process.argv[1], (r) => { let b = ''; r.on('data', (c) => (b += c)); r.on('end', () => console.log(JSON.stringify({ status: r.statusCode, body: b }))); }).on('error', (e) => console.log(JSON.stringify({ status: 0, body: e.code || e.message })))`;
  const r = sh('ip', ['netns', 'exec', netns, process.execPath, '-e', script, url]);
  return JSON.parse(r.stdout);
}

/**
 * Packets counted on node 2's end of the link: from pod addresses of node 1 carrying data (over 80
 * bytes: not the bare ACKs and FINs with which the plaintext control's kept-alive connection may
 * close later), and to the tunnel port.
 */
function linkCounters(n2: TwoNodes['n2']): { fromPods: number; tunnel: number } {
  const text = must('ip', ['netns', 'exec', n2.lab.node, NFT, 'list', 'chain', 'inet', 'sltest', 'pre']);
  const count = (re: RegExp) => {
    const m = re.exec(text);
    if (!m) throw new Error(`no counter ${re} in ${text}`);
    return Number(m[1]);
  };
  return { fromPods: count(/ip saddr 10\.249\.1\.0\/24 ip length > 80 counter packets (\d+)/), tunnel: count(/tcp dport 15008 counter packets (\d+)/) };
}

run('pod A on node 1 → pod B on node 2 crosses only in the tunnel; B\'s authz allows A\'s identity and denies C\'s', async (t) => {
  let lab: TwoNodes | undefined;
  t.teardown(async () => lab?.destroy());
  lab = await twoNodes();
  const { n1, n2, veth } = lab;
  const rules = `table inet sltest {\n chain pre {\n type filter hook prerouting priority -400; policy accept;\n iifname "${veth}b" ip saddr 10.249.1.0/24 ip length > 80 counter\n iifname "${veth}b" tcp dport 15008 counter\n }\n}\n`;
  const nft = sh('ip', ['netns', 'exec', n2.lab.node, NFT, '-f', '-'], { input: rules });
  if (nft.status !== 0) throw new Error(`nft: ${nft.stderr}`);

  const ca = await testCa();
  await startDriver(n1, await ca.store([A, C]));
  await startDriver(n2, await ca.store([B, A]));

  const a = n1.lab.pod('a', 'team-a');
  const c = n1.lab.pod('c', 'team-c');
  const d = n1.lab.pod('d', 'team-d');
  const b = n2.lab.pod('b', 'team-b');
  const a2 = n2.lab.pod('a2', 'team-a');
  for (const p of [a, c, d]) add(n1.lab, p);
  for (const p of [b, a2]) add(n2.lab, p);
  // B's servers: HTTP answering with what it received, and a TCP one upper-casing a line.
  const script = `const http = require('http'); const net = require('net');
    net.createServer((s) => s.on('data', (x) => s.end(x.toString().toUpperCase()))).listen(9000, '0.0.0.0');
    const h = (q, s) => s.end(JSON.stringify({ pod: 'b', path: q.url, xff: q.headers['x-forwarded-for'], outbound: q.headers['x-outbound'], peer: q.headers['x-peer'], peerSan: q.headers['x-peer-san'], mtls: q.headers['x-mtls'] }));
    require('http2').createServer(h).listen(8082, '0.0.0.0');
    http.createServer(h).listen(8080, '0.0.0.0', () => console.log('ready'));`;
  await n2.lab.spawnIn(b.netns, [process.execPath, '-e', script], 'ready');

  // Before the tunnel is configured: plaintext crosses the link (the counters see it), with no identity for B's authz.
  await reload(n2, config([], ['authz', 'peer'], [[b, B]], []));
  const before = linkCounters(n2);
  const plain = fetchIn(a.netns, `http://${b.ip}:8080/plain`);
  t.is(plain.status, 403, plain.body + n1.driver!.output().slice(-2000) + n2.driver!.output().slice(-2000));
  t.is(plain.body, 'authz: denied: no rule allows (no peer identity) GET /plain\n');
  const afterPlain = linkCounters(n2);
  t.true(afterPlain.fromPods > before.fromPods, 'the plaintext call crossed the link from A\'s address');
  t.is(afterPlain.tunnel, before.tunnel);

  // The tunnel configured on both nodes (as discovery would: each knows the other's pods).
  await reload(n1, config(['out'], [], [[a, A], [c, C]], [[b, B, `${LINK.n2}:15008`]]));
  await reload(n2, config([], ['authz', 'peer'], [[b, B], [a2, A]], [[a, A, `${LINK.n1}:15008`], [c, C, `${LINK.n1}:15008`]]));
  const start = linkCounters(n2);

  const ok = fetchIn(a.netns, `http://${b.ip}:8080/secret-path-via-tunnel`);
  t.is(ok.status, 200, ok.body);
  // A's outbound filters ran on node 1 (x-outbound), B's inbound ones on node 2 with A's identity; x-forwarded-for has A's address from both sides.
  t.deepEqual(JSON.parse(ok.body), { pod: 'b', path: '/secret-path-via-tunnel', xff: `${a.ip}, ${a.ip}`, outbound: 'ran on node 1', peer: A, peerSan: A, mtls: 'true' });

  const denied = fetchIn(c.netns, `http://${b.ip}:8080/secret`);
  t.is(denied.status, 403);
  t.is(denied.body, `authz: denied: no rule allows ${C} GET /secret\n`);

  // h2c (prior knowledge, as gRPC speaks) too: the outbound side's HTTP/2 session runs over a tunnel stream.
  t.deepEqual(n1.lab.h2get(a.netns, `http://${b.ip}:8082/h2`), { pod: 'b', path: '/h2', xff: `${a.ip}, ${a.ip}`, outbound: 'ran on node 1', peer: A, peerSan: A, mtls: 'true' });

  // TCP that is not HTTP goes through the tunnel too, bytes untouched.
  t.is(n1.lab.tcp(a.netns, b.ip!, 9000, 'hello tunnel\n'), 'HELLO TUNNEL\n');

  // A pod the node has no identity for (not among its workloads) is refused, never sent in plaintext: HTTP gets a 503...
  const none = fetchIn(d.netns, `http://${b.ip}:8080/none`);
  t.is(none.status, 503);
  t.is(none.body, `sluice: ${b.ip}:8080 is a pod on another node and the tunnel to it failed (SLUICE_ERR_TUNNEL_IDENTITY): the controller has not described pod team-d/d (no identity for it yet); never sent in plaintext\n`);
  // ...and so is its TCP: reset, nothing crosses.
  t.is(n1.lab.tcp(d.netns, b.ip!, 9000, 'hello\n'), 'ECONNRESET\n');

  // Same node: pod a2 (A's ServiceAccount, on node 2) reaches B through node 2's own tunnel, so B's filters see its identity too.
  const local = fetchIn(a2.netns, `http://${b.ip}:8080/same-node`);
  t.is(local.status, 200, local.body);
  t.deepEqual(JSON.parse(local.body), { pod: 'b', path: '/same-node', xff: `${a2.ip}, ${a2.ip}`, peer: A, peerSan: A, mtls: 'true' });

  const end = linkCounters(n2);
  t.is(end.fromPods, start.fromPods, 'no packet from a pod address of node 1 crossed the link');
  t.true(end.tunnel > start.tunnel, 'the calls crossed as tunnel traffic');
});
