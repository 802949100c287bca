// Workload identities end to end against a real kube-apiserver: controllers (run as their own
// ServiceAccount) serve TLS on the distribution port with a certificate from their CA; node agents
// verify it with the trust bundle from ConfigMap sluice-ca-root, send CSRs for their workloads'
// ServiceAccounts and get SPIFFE X.509-SVIDs, checked with node:crypto and a real TLS handshake.
// Refusals for ServiceAccounts without a Pod on the node, renewal at half life, workloads that
// come and go, and an agent holding the wrong trust bundle.
import test from 'ava';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { CertificateAuthority, Controller, jsonLogger, StaticNodeConfigSource, type NodeConfig } from '../../controller/index.ts';
import { makeKeyAndCsr, NodeAgent, type IdentityChange, type NodeAgentOptions } from '../../runtime/index.ts';
import { hasK8sBinaries } from '../helpers/kube-apiserver.ts';
import { startControllerCluster, type ControllerCluster } from '../helpers/controller-env.ts';
import { openStream, recordingLogger } from '../helpers/distribution-client.ts';
import { spawnSluice, until } from '../helpers/sluice-run.ts';

const TD = 'cluster.local';
const id = (ns: string, sa: string) => `spiffe://${TD}/ns/${ns}/sa/${sa}`;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

interface Ctx {
  cluster: ControllerCluster;
  controller: Controller;
  /** A second replica with 10-second certificates (renewal). */
  shortLived?: Controller;
  source: StaticNodeConfigSource;
  dir: string;
  root: string;
  tokens: Record<string, string>;
  log: ReturnType<typeof recordingLogger>;
  agents: NodeAgent[];
  proc?: ReturnType<typeof spawnSluice>;
}
const ctx = { agents: [] } as unknown as Ctx;

function nodeConfig(version: string, workloads: Array<[ns: string, pod: string, sa: string]>): NodeConfig {
  const config = {
    admin: { address: '127.0.0.1:0' },
    listeners: [{ name: 'ingress', address: '127.0.0.1:0', protocol: 'http', routes: [{ name: 'all', cluster: 'nowhere' }] }],
    clusters: [{ name: 'nowhere', endpoints: ['127.0.0.1:9'] }],
    workloads: workloads.map(([namespace, name, sa]) => ({ namespace, name, serviceAccount: sa, identity: id(namespace, sa) })),
  };
  return { version, config: JSON.stringify(config), modules: new Map() };
}

const pod = (namespace: string, name: string, node: string, sa: string, hostNetwork = false) =>
  JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec: { nodeName: node, serviceAccountName: sa, hostNetwork, containers: [{ name: 'c', image: 'app:test' }] } });

test.before(async () => {
  if (!hasK8sBinaries()) throw new Error('Kubernetes test binaries missing: run scripts/build-k8s.sh');
  ctx.cluster = await startControllerCluster();
  const k = ctx.cluster.kube;
  for (const sa of ['a', 'b', 'c', 'h']) await k.kubectlOk(['create', 'serviceaccount', sa, '-n', 'team-a']);
  const pods: Array<[string, string, string, string, boolean?]> = [
    ['sluice-system', 'agent-a', 'node-a', 'sluice-node'],
    ['sluice-system', 'agent-b', 'node-b', 'sluice-node'],
    ['sluice-system', 'agent-c', 'node-c', 'sluice-node'],
    ['sluice-system', 'agent-d', 'node-d', 'sluice-node'],
    ['team-a', 'pod-d', 'node-d', 'c'],
    ['team-a', 'pod-a', 'node-a', 'a'],
    ['team-a', 'pod-b', 'node-b', 'b'],
    ['team-a', 'pod-h', 'node-a', 'h', true],
  ];
  for (const [ns, name, node, sa, hostNetwork] of pods) await k.kubectlOk(['apply', '-f', '-'], { input: pod(ns, name, node, sa, hostNetwork) });
  const token = async (p: string) => (await k.kubectlOk(['create', 'token', 'sluice-node', '-n', 'sluice-system', '--audience=sluice', '--bound-object-kind=Pod', `--bound-object-name=${p}`, '--duration=3600s'])).trim();
  ctx.tokens = { a: await token('agent-a'), b: await token('agent-b'), c: await token('agent-c'), d: await token('agent-d') };
  ctx.dir = await mkdtemp(join(tmpdir(), 'sluice-identity-'));
  for (const [n, t] of Object.entries(ctx.tokens)) await writeFile(join(ctx.dir, `token-${n}`), t);
  ctx.source = new StaticNodeConfigSource();
  ctx.log = recordingLogger();
  ctx.controller = new Controller({
    kubeconfig: ctx.cluster.controllerKubeconfig,
    listen: '127.0.0.1:0',
    grpcListen: '127.0.0.1:0',
    grpcTlsIps: ['127.0.0.1'],
    nodeConfigSource: ctx.source,
    log: jsonLogger({ write: ctx.log.write }),
  });
  await ctx.controller.start();
  // What the DaemonSet mounts: the trust bundle as the controller published it.
  ctx.root = await k.kubectlOk(['get', 'configmap', 'sluice-ca-root', '-n', 'sluice-system', '-o', 'jsonpath={.data.root-cert\\.pem}']);
  await writeFile(join(ctx.dir, 'root-cert.pem'), ctx.root);
});

test.after.always(async () => {
  for (const a of ctx.agents) await a.stop();
  if (ctx.proc && ctx.proc.child.exitCode === null) {
    ctx.proc.child.kill('SIGKILL');
    await ctx.proc.exited;
  }
  await ctx.shortLived?.stop();
  await ctx.controller?.stop();
  await ctx.cluster?.kube.close();
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true });
});

const address = (c = ctx.controller) => `127.0.0.1:${c.distributionPort}`;

function agent(node: string, token: string, controller = ctx.controller, caFile = join(ctx.dir, 'root-cert.pem'), log?: NodeAgentOptions['log']): NodeAgent {
  const a = new NodeAgent({ controller: address(controller), controllerCa: caFile, tokenFile: join(ctx.dir, `token-${token}`), nodeName: node, stateDir: join(ctx.dir, `state-${node}-${ctx.agents.length}`), minBackoffMs: 50, maxBackoffMs: 200, identityRetryMs: 100, log: log ?? (process.env.SLUICE_TEST_DEBUG ? (l, m, f) => console.error(node, l, m, JSON.stringify(f)) : () => {}) });
  ctx.agents.push(a);
  return a;
}

const certs = (pem: string) => [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));

test.serial('the trust bundle is the root in Secret sluice-ca, published in ConfigMap sluice-ca-root', async (t) => {
  const secret = JSON.parse(await ctx.cluster.kube.kubectlOk(['get', 'secret', 'sluice-ca', '-n', 'sluice-system', '-o', 'json']));
  t.is(secret.type, 'kubernetes.io/tls');
  t.is(Buffer.from(secret.data['tls.crt'], 'base64').toString(), ctx.root);
  const root = new X509Certificate(ctx.root);
  t.true(root.ca);
  t.true(root.checkIssued(root) && root.verify(root.publicKey));
  t.true(root.checkPrivateKey(createPrivateKey(Buffer.from(secret.data['tls.key'], 'base64'))));
  t.is(ctx.controller.ca.workloads.trustBundle(), ctx.root);
});

test.serial('an agent on node-a with a Pod of team-a/a gets an SVID: exact URI SAN, issuer, validity, usages; it serves TLS verified by the trust bundle', async (t) => {
  ctx.source.set('node-a', nodeConfig('v1', [['team-a', 'pod-a', 'a']]));
  const a = agent('node-a', 'a');
  await a.start();
  const svid = await until('the SVID of team-a/a', () => a.identities.get(id('team-a', 'a')), 30_000);
  t.is(a.identities.trustBundle(), ctx.root);
  const chain = certs(svid.certChainPem);
  t.is(chain.length, 1); // self-signed root mode: the leaf; the root is in the trust bundle
  const leaf = chain[0]!;
  const root = new X509Certificate(ctx.root);
  t.is(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/team-a/sa/a');
  t.is(leaf.issuer, root.subject);
  t.true(leaf.checkIssued(root));
  t.true(leaf.verify(root.publicKey));
  t.false(leaf.ca);
  t.deepEqual(leaf.keyUsage, [SERVER_AUTH, CLIENT_AUTH]);
  t.true(leaf.checkPrivateKey(createPrivateKey(svid.keyPem)));
  t.is(new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime(), 24 * 3600_000 + 60_000); // 24 h, plus 60 s backdated
  t.is(svid.notAfter.getTime(), new Date(leaf.validTo).getTime());
  const parsed = new x509.X509Certificate(svid.certChainPem);
  t.is(parsed.subject, ''); // SPIFFE: the identity is in the SAN alone
  t.is(parsed.getExtension(x509.KeyUsagesExtension)!.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
  t.true(parsed.getExtension(x509.KeyUsagesExtension)!.critical);
  t.is(parsed.getExtension(x509.BasicConstraintsExtension)!.ca, false);
  t.true(parsed.getExtension(x509.SubjectAlternativeNameExtension)!.critical);
  t.is((leaf.publicKey.asymmetricKeyDetails as { namedCurve?: string }).namedCurve, 'prime256v1');

  // A real handshake: a server with the SVID, a client trusting only the bundle, and the reverse (client certificate).
  const server = createServer({ key: svid.keyPem, cert: svid.certChainPem, ca: ctx.root, requestCert: true, rejectUnauthorized: true }, (s) => s.end(`${(s as TLSSocket).getPeerCertificate().subjectaltname}\n`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const seen = await new Promise<{ authorized: boolean; san: string; body: string }>((resolve, reject) => {
      const c = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca: ctx.root, key: svid.keyPem, cert: svid.certChainPem, checkServerIdentity: () => undefined }, () => {
        let body = '';
        c.on('data', (d) => (body += d));
        c.on('end', () => resolve({ authorized: c.authorized, san: c.getPeerCertificate().subjectaltname, body }));
      });
      c.on('error', reject);
    });
    t.deepEqual(seen, { authorized: true, san: 'URI:spiffe://cluster.local/ns/team-a/sa/a', body: 'URI:spiffe://cluster.local/ns/team-a/sa/a\n' });
  } finally {
    server.close();
  }
  t.regex(ctx.controller.metrics.render(), /^sluice_controller_csr_total\{result="signed"\} 1$/m);
  const issued = ctx.log.lines.filter((l) => l.msg === 'certificate issued');
  t.is(issued.length, 1);
  t.like(issued[0], { level: 'info', node: 'node-a', identity: id('team-a', 'a'), component: 'ca' });
});

test.serial('CSRs for a ServiceAccount with no Pod on the node, a hostNetwork Pod, or another trust domain are refused, logged and counted', async (t) => {
  const s = openStream(address(), ctx.root, ctx.tokens.a!, 'node-a');
  try {
    t.is(await s.trustBundle, ctx.root);
    const noPod = await s.csr((await makeKeyAndCsr(id('team-a', 'b'))).csrPem);
    t.deepEqual(noPod, { requestId: 'r1', certChain: '', trustBundle: '', refused: 'node node-a runs no Pod of ServiceAccount team-a/b (Running or Pending, not hostNetwork); a node gets only the identities of its own workloads' });
    const hostNet = await s.csr((await makeKeyAndCsr(id('team-a', 'h'))).csrPem);
    t.is(hostNet.refused, 'node node-a runs no Pod of ServiceAccount team-a/h (Running or Pending, not hostNetwork); a node gets only the identities of its own workloads');
    const otherTd = await s.csr((await makeKeyAndCsr('spiffe://example.org/ns/team-a/sa/a')).csrPem);
    t.is(otherTd.refused, 'spiffe://example.org/ns/team-a/sa/a is not a workload identity of trust domain cluster.local (spiffe://cluster.local/ns/<namespace>/sa/<serviceaccount>)');
    const garbage = await s.csr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n');
    t.regex(garbage.refused, /^the CSR is not a PEM PKCS#10 request: /);
  } finally {
    s.close();
  }
  // node-b's agent may not have node-a's identities either.
  const b = openStream(address(), ctx.root, ctx.tokens.b!, 'node-b');
  try {
    await b.trustBundle;
    const r = await b.csr((await makeKeyAndCsr(id('team-a', 'a'))).csrPem);
    t.is(r.refused, 'node node-b runs no Pod of ServiceAccount team-a/a (Running or Pending, not hostNetwork); a node gets only the identities of its own workloads');
    t.is(r.certChain, '');
  } finally {
    b.close();
  }
  const refused = ctx.log.lines.filter((l) => l.msg === 'csr refused').map((l) => [l.level, l.node, l.identity, l.reason]);
  t.deepEqual(refused, [
    ['warn', 'node-a', id('team-a', 'b'), 'not_authorized'],
    ['warn', 'node-a', id('team-a', 'h'), 'not_authorized'],
    ['warn', 'node-a', undefined, 'invalid'],
    ['warn', 'node-a', undefined, 'invalid'],
    ['warn', 'node-b', id('team-a', 'a'), 'not_authorized'],
  ]);
  const metrics = ctx.controller.metrics.render();
  t.regex(metrics, /^sluice_controller_csr_total\{result="refused",reason="not_authorized"\} 3$/m);
  t.regex(metrics, /^sluice_controller_csr_total\{result="refused",reason="invalid"\} 2$/m);
});

test.serial('a new workload gets its identity; one whose workloads left the node is dropped', async (t) => {
  const a = ctx.agents[0]!;
  const changes: IdentityChange[] = [];
  const off = a.identities.onChange((c) => changes.push(c));
  await ctx.cluster.kube.kubectlOk(['apply', '-f', '-'], { input: pod('team-a', 'pod-c', 'node-a', 'c') });
  ctx.source.set('node-a', nodeConfig('v2', [['team-a', 'pod-a', 'a'], ['team-a', 'pod-c', 'c']]));
  const c = await until('the SVID of team-a/c', () => a.identities.get(id('team-a', 'c')), 30_000);
  t.is(certs(c.certChainPem)[0]!.subjectAltName, 'URI:spiffe://cluster.local/ns/team-a/sa/c');
  ctx.source.set('node-a', nodeConfig('v3', [['team-a', 'pod-c', 'c']]));
  await until('team-a/a dropped', () => (a.identities.get(id('team-a', 'a')) ? undefined : true), 30_000);
  off();
  t.deepEqual(changes, [{ kind: 'identity', spiffeId: id('team-a', 'c') }, { kind: 'removed', spiffeId: id('team-a', 'a') }]);
  t.deepEqual(a.identities.ids(), [id('team-a', 'c')]);
});

test.serial('a second replica uses the same root; with 10-second certificates the agent renews at half life with a new key, never without an identity', async (t) => {
  ctx.shortLived = new Controller({
    kubeconfig: ctx.cluster.controllerKubeconfig,
    listen: '127.0.0.1:0',
    grpcListen: '127.0.0.1:0',
    grpcTlsIps: ['127.0.0.1'],
    identity: 'replica-2',
    nodeConfigSource: ctx.source,
    svidLifetimeMs: 10_000,
    log: jsonLogger({ write: () => {} }),
  });
  await ctx.shortLived.start();
  t.is(ctx.shortLived.ca.workloads.trustBundle(), ctx.root);
  ctx.source.set('node-b', nodeConfig('v1', [['team-a', 'pod-b', 'b']]));
  const b = agent('node-b', 'b', ctx.shortLived);
  const changes: IdentityChange[] = [];
  b.identities.onChange((c) => changes.push(c));
  await b.start();
  const first = await until('the SVID of team-a/b', () => b.identities.get(id('team-a', 'b')), 30_000);
  const serial = (pem: string) => certs(pem)[0]!.serialNumber;
  const seen = [serial(first.certChainPem)];
  // Two renewals: each a new serial and a new key, issued by the shared root.
  while (seen.length < 3) {
    const now = await until('a renewed certificate', () => {
      const cur = b.identities.get(id('team-a', 'b'));
      return cur && !seen.includes(serial(cur.certChainPem)) ? cur : undefined;
    }, 30_000);
    const leaf = certs(now.certChainPem)[0]!;
    t.true(leaf.checkIssued(new X509Certificate(ctx.root)) && leaf.verify(new X509Certificate(ctx.root).publicKey));
    t.is(new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime(), 20_000); // 10 s, backdated by at most its lifetime
    t.not(now.keyPem, first.keyPem);
    seen.push(serial(now.certChainPem));
  }
  // The store was never without the identity: no 'removed' between renewals.
  t.deepEqual(changes.filter((c) => c.kind === 'removed'), []);
  t.true(changes.filter((c) => c.kind === 'identity').length >= 3);
});

test.serial('an agent holding another trust bundle cannot connect, and says what to check', async (t) => {
  const other = await CertificateAuthority.createRoot();
  await writeFile(join(ctx.dir, 'other-root.pem'), other.certPem);
  const lines: string[] = [];
  ctx.source.set('node-c', nodeConfig('v1', []));
  const c = agent('node-c', 'c', ctx.controller, join(ctx.dir, 'other-root.pem'), (level, msg) => void lines.push(`${level} ${msg}`));
  await c.start();
  await until('two refused connection attempts', () => (lines.filter((l) => l.startsWith('error controller stream ended')).length >= 2 ? true : undefined), 30_000);
  const line = lines.find((l) => l.startsWith('error controller stream ended'))!;
  t.regex(line, /certificate/);
  t.true(line.endsWith(`the controller's certificate does not verify with --controller-ca ${join(ctx.dir, 'other-root.pem')} (it must be ConfigMap sluice-ca-root of the controller's namespace, and --controller must be a name the certificate holds: sluice-controller.<namespace>.svc or one of --grpc-tls-dns)`), line);
  t.is(c.version, '');
  t.is(c.identities.trustBundle(), undefined);
  t.is(ctx.controller.distribution.nodes().get('node-c'), undefined);
  // The same agent with the right bundle connects (the file is read again at each attempt).
  await writeFile(join(ctx.dir, 'other-root.pem'), ctx.root);
  await until('node-c connected', () => (ctx.controller.distribution.nodes().get('node-c')?.acked ? true : undefined), 30_000);
  t.is(c.identities.trustBundle(), ctx.root);
});

test.serial('a real sluice run --controller --controller-ca connects over TLS and gets its workload\'s identity', async (t) => {
  ctx.source.set('node-d', nodeConfig('v1', [['team-a', 'pod-d', 'c']]));
  ctx.proc = spawnSluice(['run', '--controller', address(), '--controller-ca', join(ctx.dir, 'root-cert.pem'), '--node-name', 'node-d', '--token-file', join(ctx.dir, 'token-d'), '--state-dir', join(ctx.dir, 'state-d'), '--admin-address', '127.0.0.1:0', '--drain-ms', '0']);
  await until(`node-d ACKs v1; it said:\n${ctx.proc.stderr()}`, () => (ctx.controller.distribution.nodes().get('node-d')?.acked ? true : undefined), 30_000);
  const issued = await until('a certificate for node-d', () => ctx.log.lines.find((l) => l.msg === 'certificate issued' && l.node === 'node-d'), 30_000);
  t.is(issued.identity, id('team-a', 'c'));
  await until('the agent says it is in force', () => (/workload certificate in force/.test(ctx.proc!.stderr()) ? true : undefined), 30_000);
  t.regex(ctx.proc.stderr(), /node mode: controller 127\.0\.0\.1:\d+ \(TLS, trust bundle [^)]+root-cert\.pem\), node node-d/);
  t.notRegex(ctx.proc.stderr(), /WITHOUT TLS/);
});

test('sluice run refuses --controller-ca with --controller-plaintext, and either without --controller', async (t) => {
  const both = spawnSluice(['run', '--controller', '127.0.0.1:1', '--controller-ca', 'root.pem', '--controller-plaintext']);
  t.is(await both.exited, 2);
  t.is(both.stderr(), 'sluice run: give either --controller-ca FILE (TLS, the default) or --controller-plaintext, not both\n');
  const fileMode = spawnSluice(['run', '-c', 'sluice.yaml', '--controller-plaintext']);
  t.is(await fileMode.exited, 2);
  t.is(fileMode.stderr(), 'sluice run: --node-name, --token-file, --state-dir, --controller-ca, --controller-plaintext and --admin-address are for node mode (with -c the config file sets admin.address); add --controller HOST:PORT\n');
});
