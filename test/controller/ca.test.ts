// The controller's CA against a real kube-apiserver, run as the controller's ServiceAccount:
// two replicas starting together make Secret sluice-ca once and share its root; the serving
// certificate of the distribution port; an operator's intermediate (made with the openssl CLI)
// whose SVIDs chain to the operator's root; an incomplete --ca-secret.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import { Controller, jsonLogger, StaticNodeConfigSource } from '../../controller/index.ts';
import { makeKeyAndCsr } from '../../runtime/index.ts';
import { hasOpenssl } from '../helpers/certs.ts';
import { hasK8sBinaries } from '../helpers/kube-apiserver.ts';
import { startControllerCluster, type ControllerCluster } from '../helpers/controller-env.ts';
import { openStream, recordingLogger } from '../helpers/distribution-client.ts';
import { until } from '../helpers/sluice-run.ts';

interface Ctx {
  cluster: ControllerCluster;
  dir: string;
  token: string;
  controllers: Controller[];
}
const ctx = { controllers: [] } as unknown as Ctx;

const certs = (pem: string) => [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));

test.before(async () => {
  if (!hasK8sBinaries()) throw new Error('Kubernetes test binaries missing: run scripts/build-k8s.sh');
  if (!hasOpenssl()) throw new Error('the openssl CLI makes the operator\'s CA in these tests: apt-get install openssl');
  ctx.cluster = await startControllerCluster();
  const k = ctx.cluster.kube;
  await k.kubectlOk(['create', 'serviceaccount', 'a', '-n', 'team-a']);
  const pod = (namespace: string, name: string, node: string, sa: string) =>
    JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: 'c', image: 'app:test' }] } });
  await k.kubectlOk(['apply', '-f', '-'], { input: pod('sluice-system', 'agent-a', 'node-a', 'sluice-node') });
  await k.kubectlOk(['apply', '-f', '-'], { input: pod('team-a', 'pod-a', 'node-a', 'a') });
  ctx.token = (await k.kubectlOk(['create', 'token', 'sluice-node', '-n', 'sluice-system', '--audience=sluice', '--bound-object-kind=Pod', '--bound-object-name=agent-a', '--duration=3600s'])).trim();
  ctx.dir = await mkdtemp(join(tmpdir(), 'sluice-ca-'));
});

test.after.always(async () => {
  for (const c of ctx.controllers) await c.stop();
  await ctx.cluster?.kube.close();
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true });
});

function controller(log: (line: string) => void, extra: Partial<ConstructorParameters<typeof Controller>[0]> = {}): Controller {
  const c = new Controller({
    kubeconfig: ctx.cluster.controllerKubeconfig,
    listen: '127.0.0.1:0',
    grpcListen: '127.0.0.1:0',
    grpcTlsIps: ['127.0.0.1'],
    nodeConfigSource: new StaticNodeConfigSource(),
    minWatchBackoffMs: 100,
    log: jsonLogger({ write: log }),
    ...extra,
  });
  ctx.controllers.push(c);
  return c;
}

async function stopAll(): Promise<void> {
  for (const c of ctx.controllers.splice(0)) await c.stop();
}

const configMapRoot = () => ctx.cluster.kube.kubectlOk(['get', 'configmap', 'sluice-ca-root', '-n', 'sluice-system', '-o', 'jsonpath={.data.root-cert\\.pem}']);

/** The certificate the distribution port presents to a client that asks for `servername`. */
function servingCertificate(port: number, ca: string, servername?: string): Promise<{ authorized: boolean; error?: string; san: string; raw: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca, servername, ALPNProtocols: ['h2'] }, () => {
      const peer = s.getPeerCertificate();
      resolve({ authorized: s.authorized, error: s.authorizationError ? String(s.authorizationError) : undefined, san: peer.subjectaltname, raw: peer.raw });
      s.destroy();
    });
    s.on('error', reject);
  });
}

test.serial('two replicas starting together create Secret sluice-ca once and serve with the same root; 15012 presents a certificate for the Service names', async (t) => {
  const logs = [recordingLogger(), recordingLogger()];
  const [a, b] = [controller(logs[0]!.write, { grpcTlsDns: ['sluice.example.internal'] }), controller(logs[1]!.write)];
  await Promise.all([a!.start(), b!.start()]);
  const created = logs.flatMap((l) => l.lines).filter((l) => l.msg === 'created the workload CA root');
  t.is(created.length, 1);
  const root = a!.ca.workloads.trustBundle()!;
  t.is(b!.ca.workloads.trustBundle(), root);
  const secret = JSON.parse(await ctx.cluster.kube.kubectlOk(['get', 'secret', 'sluice-ca', '-n', 'sluice-system', '-o', 'json']));
  t.is(secret.type, 'kubernetes.io/tls');
  t.is(Buffer.from(secret.data['tls.crt'], 'base64').toString(), root);
  t.is(await configMapRoot(), root);
  const r = new X509Certificate(root);
  t.true(r.ca);
  t.true(r.checkIssued(r) && r.verify(r.publicKey));
  t.true(r.checkPrivateKey(createPrivateKey(Buffer.from(secret.data['tls.key'], 'base64'))));
  t.is((r.publicKey.asymmetricKeyDetails as { namedCurve?: string }).namedCurve, 'prime256v1');
  t.is(new Date(r.validTo).getTime() - new Date(r.validFrom).getTime(), 10 * 365 * 24 * 3600_000 + 60_000);

  // The serving certificate, verified by TLS itself against the root and the name asked for.
  const byName = await servingCertificate(a!.distributionPort!, root, 'sluice-controller.sluice-system.svc');
  t.true(byName.authorized, byName.error);
  t.is(byName.san, 'DNS:sluice-controller.sluice-system.svc, DNS:sluice-controller.sluice-system.svc.cluster.local, DNS:sluice.example.internal, IP Address:127.0.0.1');
  const served = new X509Certificate(byName.raw);
  t.true(served.checkIssued(r) && served.verify(r.publicKey));
  t.true(served.checkHost('sluice.example.internal') === 'sluice.example.internal');
  const other = await servingCertificate(b!.distributionPort!, root);
  t.true(other.authorized, other.error);
  t.is(other.san, 'DNS:sluice-controller.sluice-system.svc, DNS:sluice-controller.sluice-system.svc.cluster.local, IP Address:127.0.0.1');
  // A replica started later reads the same Secret.
  const late = controller(() => {});
  await late.start();
  t.is(late.ca.workloads.trustBundle(), root);
  const again = JSON.parse(await ctx.cluster.kube.kubectlOk(['get', 'secret', 'sluice-ca', '-n', 'sluice-system', '-o', 'json']));
  t.is(again.metadata.resourceVersion, secret.metadata.resourceVersion);
  await stopAll();
});

test.serial('the serving certificate is renewed at half life: new connections get the new one, signed by the same root', async (t) => {
  const c = controller(() => {}, { servingCertLifetimeMs: 4000 });
  await c.start();
  const root = c.ca.workloads.trustBundle()!;
  const first = c.ca.serving!.issued!.serial;
  const renewed = await until('a renewed serving certificate', () => (c.ca.serving!.issued!.serial !== first ? c.ca.serving!.issued! : undefined), 30_000);
  const served = await servingCertificate(c.distributionPort!, root, 'sluice-controller.sluice-system.svc');
  t.true(served.authorized, served.error);
  const cert = new X509Certificate(served.raw);
  const n = (hex: string) => BigInt(`0x${hex}`);
  t.not(n(cert.serialNumber), n(first));
  // The renewed one, or (renewed again meanwhile, under load) the one in force now.
  t.true([n(renewed.serial), n(c.ca.serving!.issued!.serial)].includes(n(cert.serialNumber)));
  t.true(cert.checkIssued(new X509Certificate(root)) && cert.verify(new X509Certificate(root).publicKey));
  await stopAll();
});

function operatorCa(): { root: string; intermediate: string; key: string } {
  const at = (f: string) => join(ctx.dir, f);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: ctx.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30', '-subj', '/O=corp/CN=corp root', '-keyout', at('root.key'), '-out', at('root.pem'));
  // SEC1 ("EC PRIVATE KEY"), as `openssl ecparam -genkey` writes it: the controller takes that too.
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', at('int.key'));
  openssl('req', '-new', '-key', at('int.key'), '-subj', '/O=corp/CN=sluice intermediate', '-out', at('int.csr'));
  return { root: at('root.pem'), intermediate: at('int.pem'), key: at('int.key') };
}

test.serial('with --ca-secret, the operator\'s intermediate issues SVIDs and the serving certificate, both chaining to the operator\'s root, which is published', async (t) => {
  const files = operatorCa();
  await writeFile(join(ctx.dir, 'int.ext'), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  execFileSync('openssl', ['x509', '-req', '-in', join(ctx.dir, 'int.csr'), '-CA', files.root, '-CAkey', join(ctx.dir, 'root.key'), '-CAcreateserial', '-days', '30', '-extfile', join(ctx.dir, 'int.ext'), '-out', files.intermediate], { stdio: ['ignore', 'ignore', 'pipe'] });
  await ctx.cluster.kube.kubectlOk(['create', 'secret', 'generic', 'corp-ca', '-n', 'team-a', `--from-file=tls.crt=${files.intermediate}`, `--from-file=tls.key=${files.key}`, `--from-file=ca.crt=${files.root}`]);
  const rootPem = await readFile(files.root, 'utf8');
  const root = new X509Certificate(rootPem);
  const intermediate = new X509Certificate(await readFile(files.intermediate));
  const c = controller(() => {}, { caSecret: 'team-a/corp-ca' });
  await c.start();
  t.is(c.ca.workloads.trustBundle(), rootPem);
  t.is(await configMapRoot(), c.ca.workloads.trustBundle());

  // An agent trusting only the operator's root connects (the server sends its intermediate) and gets an SVID.
  const s = openStream(`127.0.0.1:${c.distributionPort}`, rootPem, ctx.token, 'node-a');
  try {
    t.is(await s.trustBundle, c.ca.workloads.trustBundle());
    const made = await makeKeyAndCsr('spiffe://cluster.local/ns/team-a/sa/a');
    const r = await s.csr(made.csrPem);
    t.is(r.refused, '');
    const chain = certs(r.certChain);
    t.is(chain.length, 2);
    const [leaf, inter] = chain as [X509Certificate, X509Certificate];
    t.is(inter.fingerprint256, intermediate.fingerprint256);
    t.is(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/team-a/sa/a');
    t.is(leaf.issuer, intermediate.subject);
    t.true(leaf.checkIssued(intermediate) && leaf.verify(intermediate.publicKey));
    t.true(intermediate.checkIssued(root) && intermediate.verify(root.publicKey));
    t.false(leaf.verify(root.publicKey));

    // TLS verifies the chain the same way: a server with the SVID chain, a client trusting only the root.
    const server = createServer({ key: made.keyPem, cert: r.certChain }, (sock) => sock.end('ok'));
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    try {
      const seen = await new Promise<{ authorized: boolean; error?: string }>((resolve, reject) => {
        const sock = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca: rootPem, checkServerIdentity: () => undefined }, () => {
          resolve({ authorized: sock.authorized, error: sock.authorizationError ? String(sock.authorizationError) : undefined });
          sock.destroy();
        });
        sock.on('error', reject);
      });
      t.deepEqual(seen, { authorized: true, error: undefined });
    } finally {
      server.close();
    }
  } finally {
    s.close();
  }
  const serving = await servingCertificate(c.distributionPort!, rootPem, 'sluice-controller.sluice-system.svc');
  t.true(serving.authorized, serving.error);
  t.true(new X509Certificate(serving.raw).checkIssued(intermediate));
  await stopAll();
});

test.serial('a --ca-secret without ca.crt keeps the controller unready, saying what the Secret lacks; once fixed it serves', async (t) => {
  const files = operatorCa();
  const k = ctx.cluster.kube;
  await k.kubectlOk(['create', 'secret', 'generic', 'half-ca', '-n', 'team-a', `--from-file=tls.crt=${files.root}`, `--from-file=tls.key=${join(ctx.dir, 'root.key')}`]);
  const log = recordingLogger();
  const c = controller(log.write, { caSecret: 'team-a/half-ca' });
  await c.start(); // the rest of the controller runs; the distribution port waits for the CA
  const line = await until('the CA error', () => log.lines.find((l) => l.msg === 'workload CA not ready; retrying'), 30_000);
  t.is(line.code, 'SLUICE_ERR_CA_SECRET');
  t.is(line.error, '--ca-secret team-a/half-ca: the Secret lacks ca.crt; it needs tls.crt (the intermediate CA), tls.key (its key) and ca.crt (the chain up to the root)');
  t.false(c.ready);
  t.is(c.distributionPort, undefined);
  // The operator adds ca.crt (here the root itself: a root given directly is used as is).
  await k.kubectlOk(['delete', 'secret', 'half-ca', '-n', 'team-a']);
  await k.kubectlOk(['create', 'secret', 'generic', 'half-ca', '-n', 'team-a', `--from-file=tls.crt=${files.root}`, `--from-file=tls.key=${join(ctx.dir, 'root.key')}`, `--from-file=ca.crt=${files.root}`]);
  const port = await until('the distribution port', () => c.distributionPort, 30_000);
  const rootPem = await readFile(files.root, 'utf8');
  t.is(c.ca.workloads.trustBundle(), rootPem);
  const served = await servingCertificate(port, rootPem, 'sluice-controller.sluice-system.svc');
  t.true(served.authorized, served.error);
  await until('ready', () => (c.ready ? true : undefined), 30_000);
  await stopAll();
});
