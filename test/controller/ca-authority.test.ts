// The CA's checks without a cluster: what it accepts as a CA (its own root; an operator's
// intermediate with an RSA PKCS#1 or EC SEC1 key, made with the openssl CLI) and what it refuses
// with a message naming the problem; and which CSRs are refused before any authorization.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { CertificateAuthority, CsrRefusal, parseWorkloadCsr, parseWorkloadId } from '../../controller/index.ts';
import { makeKeyAndCsr } from '../../runtime/index.ts';
import { hasOpenssl } from '../helpers/certs.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-ca-unit-'));
const at = (f: string) => join(dir, f);
const read = (f: string) => readFileSync(at(f), 'utf8');
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });

test.before(() => {
  if (!hasOpenssl()) throw new Error('the openssl CLI makes the operator CAs in these tests: apt-get install openssl');
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '5', '-subj', '/O=corp/CN=corp root', '-keyout', at('root.key'), '-out', at('root.pem'));
  writeFileSync(at('ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  writeFileSync(at('leaf.ext'), 'basicConstraints=critical,CA:FALSE\n');
  const sign = (name: string, key: string, subj: string, ext: string) => {
    openssl('req', '-new', '-key', at(key), '-subj', subj, '-out', at(`${name}.csr`));
    openssl('x509', '-req', '-in', at(`${name}.csr`), '-CA', at('root.pem'), '-CAkey', at('root.key'), '-CAcreateserial', '-days', '5', '-extfile', at(ext), '-out', at(`${name}.pem`));
  };
  openssl('genrsa', '-traditional', '-out', at('rsa-int.key'), '2048'); // PKCS#1 "RSA PRIVATE KEY"
  sign('rsa-int', 'rsa-int.key', '/O=corp/CN=rsa intermediate', 'ca.ext');
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', at('ec-int.key')); // SEC1 "EC PRIVATE KEY"
  sign('ec-int', 'ec-int.key', '/O=corp/CN=ec intermediate', 'ca.ext');
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', at('leaf.key'));
  sign('not-ca', 'leaf.key', '/CN=not a ca', 'leaf.ext');
});

test.after.always(() => rmSync(dir, { recursive: true, force: true }));

async function svidFrom(ca: CertificateAuthority): Promise<{ leaf: X509Certificate; chain: string }> {
  const csr = await parseWorkloadCsr((await makeKeyAndCsr('spiffe://cluster.local/ns/a/sa/b')).csrPem, 'cluster.local');
  const issued = await ca.issue({ publicKey: csr.publicKey, uris: [csr.spiffeId], lifetimeMs: 3600_000 });
  return { leaf: new X509Certificate(issued.certPem), chain: issued.chainPem };
}

for (const kind of ['rsa', 'ec']) {
  test(`an operator's ${kind} intermediate signs SVIDs that chain through it to the root`, async (t) => {
    const ca = await CertificateAuthority.load({ certPem: read(`${kind}-int.pem`), keyPem: read(`${kind}-int.key`), chainPem: read('root.pem') }, 'test');
    t.true(ca.intermediate);
    t.is(ca.trustBundle, read('root.pem'));
    const { leaf, chain } = await svidFrom(ca);
    const int = new X509Certificate(read(`${kind}-int.pem`));
    t.true(leaf.checkIssued(int) && leaf.verify(int.publicKey));
    t.deepEqual(chain.match(/-----BEGIN CERTIFICATE-----/g)!.length, 2);
    // The authority key identifier is the intermediate's subject key identifier.
    const aki = new x509.X509Certificate(leaf.raw).getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId;
    t.is(aki, new x509.X509Certificate(int.raw).getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
  });
}

test('what is not a usable CA is refused with the reason', async (t) => {
  const root = await CertificateAuthority.createRoot();
  const refused = async (m: { certPem: string; keyPem: string; chainPem: string }) => (await t.throwsAsync(CertificateAuthority.load(m, 'Secret x/y'), { code: 'SLUICE_ERR_CA_SECRET' } as never))!.message;
  t.is(await refused({ ...root, keyPem: read('ec-int.key') }), 'Secret x/y: tls.key is not the key of tls.crt');
  t.is(await refused({ certPem: read('not-ca.pem'), keyPem: read('leaf.key'), chainPem: read('root.pem') }), 'Secret x/y: tls.crt is not a CA certificate (basicConstraints CA:TRUE is missing)');
  t.is(await refused({ certPem: read('ec-int.pem'), keyPem: read('ec-int.key'), chainPem: root.certPem }), 'Secret x/y: certificate 0 of the chain (O=corp, CN=ec intermediate) is not signed by the next one (O=sluice, CN=sluice root CA); ca.crt must hold the chain from the issuer of tls.crt up to the root');
  t.is(await refused({ certPem: read('ec-int.pem'), keyPem: read('ec-int.key'), chainPem: '' }), 'Secret x/y: the chain does not end with a self-signed root (last: O=corp, CN=ec intermediate); put the root in ca.crt');
  t.is(await refused({ certPem: '', keyPem: root.keyPem, chainPem: '' }), 'Secret x/y: tls.crt holds no PEM certificate');
  t.regex(await refused({ ...root, keyPem: 'not a key' }), /^Secret x\/y: tls\.key is not a PEM private key: /);
});

test('the own root issues SVIDs with the leaf alone as chain', async (t) => {
  const ca = await CertificateAuthority.load(await CertificateAuthority.createRoot(), 'root');
  t.false(ca.intermediate);
  const { leaf, chain } = await svidFrom(ca);
  t.is(chain, leaf.toString());
  t.true(leaf.checkIssued(new X509Certificate(ca.trustBundle)));
});

test('CSRs that are malformed, name several or no identities, or were altered are refused as invalid', async (t) => {
  const reason = async (pem: string) => {
    const e = await t.throwsAsync(parseWorkloadCsr(pem, 'cluster.local'), { instanceOf: CsrRefusal });
    return `${e!.reason}: ${e!.message}`;
  };
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await crypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const two = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: alg, extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://cluster.local/ns/a/sa/b' }, { type: 'dns', value: 'b.a.svc' }])] });
  t.is(await reason(two.toString('pem')), 'invalid: the CSR must name exactly one identity, as its only SAN, a URI spiffe://cluster.local/ns/<namespace>/sa/<serviceaccount>; it has url:spiffe://cluster.local/ns/a/sa/b, dns:b.a.svc');
  const none = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: alg, name: 'CN=b' });
  t.is(await reason(none.toString('pem')), 'invalid: the CSR must name exactly one identity, as its only SAN, a URI spiffe://cluster.local/ns/<namespace>/sa/<serviceaccount>; it has none');
  // One byte of the signature flipped: proof of possession fails.
  const good = new x509.Pkcs10CertificateRequest((await makeKeyAndCsr('spiffe://cluster.local/ns/a/sa/b')).csrPem);
  const raw = new Uint8Array(good.rawData.slice(0));
  raw[raw.length - 3]! ^= 0x01;
  t.is(await reason(x509.PemConverter.encode(raw.buffer, 'CERTIFICATE REQUEST')), 'invalid: the CSR\'s signature does not verify with its own public key (ECDSA P-256 expected)');
  t.is(await reason((await makeKeyAndCsr('spiffe://cluster.local/ns/A/sa/b')).csrPem), 'invalid: spiffe://cluster.local/ns/A/sa/b is not a workload identity of trust domain cluster.local (spiffe://cluster.local/ns/<namespace>/sa/<serviceaccount>)');
});

test('workload identities parse only in their trust domain and with Kubernetes names', (t) => {
  t.deepEqual(parseWorkloadId('spiffe://cluster.local/ns/team-a/sa/web.v2', 'cluster.local'), { namespace: 'team-a', serviceAccount: 'web.v2' });
  t.is(parseWorkloadId('spiffe://example.org/ns/team-a/sa/web', 'cluster.local'), undefined);
  t.is(parseWorkloadId('spiffe://cluster.local/ns/team-a/sa/web/extra', 'cluster.local'), undefined);
  t.is(parseWorkloadId('spiffe://cluster.local/ns//sa/web', 'cluster.local'), undefined);
  t.is(parseWorkloadId('spiffe://cluster.local/ns/team_a/sa/web', 'cluster.local'), undefined);
});
