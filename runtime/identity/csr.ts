// A fresh workload key (ECDSA P-256, made in this process with node:crypto's WebCrypto) and the
// PKCS#10 request naming its SPIFFE ID as the only SAN; and the checks an issued chain must pass.

import * as x509 from '@peculiar/x509';
import { createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface KeyAndCsr {
  keyPem: string;
  csrPem: string;
}

export async function makeKeyAndCsr(spiffeId: string): Promise<KeyAndCsr> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC_P256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true)],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey);
  return { keyPem: `${x509.PemConverter.encode(pkcs8, 'PRIVATE KEY')}\n`, csrPem: `${csr.toString('pem')}\n` };
}

export function splitCerts(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => `${m[0]}\n`);
}

/**
 * Checks an issued chain before it is used: the leaf holds our key and exactly `spiffeId`, and
 * each certificate is signed by the next, the last by one of the roots. Returns the leaf's notAfter.
 */
export function checkChain(chainPem: string, keyPem: string, spiffeId: string, rootsPem: string): Date {
  const chain = splitCerts(chainPem).map((p) => new X509Certificate(p));
  const roots = splitCerts(rootsPem).map((p) => new X509Certificate(p));
  const leaf = chain[0];
  if (!leaf) throw new Error('the controller sent no certificate');
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('the certificate is not for the key this node made');
  if (leaf.subjectAltName !== `URI:${spiffeId}`) throw new Error(`the certificate names ${leaf.subjectAltName ?? 'nothing'}, not ${spiffeId}`);
  for (let i = 0; i < chain.length; i++) {
    const next = chain[i + 1];
    const ok = next ? chain[i]!.checkIssued(next) && chain[i]!.verify(next.publicKey) : roots.some((r) => chain[i]!.checkIssued(r) && chain[i]!.verify(r.publicKey));
    if (!ok) throw new Error(next ? `certificate ${i} of the chain is not signed by certificate ${i + 1}` : 'the chain does not lead to the trust bundle\'s root');
  }
  return new Date(leaf.validTo);
}
