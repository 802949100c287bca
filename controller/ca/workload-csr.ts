// A node agent's certificate signing request for a workload: PEM PKCS#10, signed by its own key
// (proof of possession), naming exactly one identity, its URI SAN
// `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>` in the controller's trust domain.

import * as x509 from '@peculiar/x509';
import './authority.ts'; // sets @peculiar/x509's crypto provider

export interface WorkloadCsr {
  spiffeId: string;
  namespace: string;
  serviceAccount: string;
  publicKey: CryptoKey;
}

/** Why a CSR is refused, in a word (the metric's label) and in a sentence (the reply and the log). */
export class CsrRefusal extends Error {
  constructor(readonly reason: 'invalid' | 'not_authorized' | 'unavailable', message: string) {
    super(message);
    this.name = 'CsrRefusal';
  }
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SA_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** Parses `spiffe://<td>/ns/<ns>/sa/<sa>`; undefined when it is not a workload identity of `trustDomain`. */
export function parseWorkloadId(id: string, trustDomain: string): { namespace: string; serviceAccount: string } | undefined {
  const prefix = `spiffe://${trustDomain}/ns/`;
  if (!id.startsWith(prefix)) return undefined;
  const m = /^([^/]+)\/sa\/([^/]+)$/.exec(id.slice(prefix.length));
  if (!m || !DNS_LABEL.test(m[1]!) || m[1]!.length > 63 || !SA_NAME.test(m[2]!) || m[2]!.length > 253) return undefined;
  return { namespace: m[1]!, serviceAccount: m[2]! };
}

export async function parseWorkloadCsr(pem: string, trustDomain: string): Promise<WorkloadCsr> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (error) {
    throw new CsrRefusal('invalid', `the CSR is not a PEM PKCS#10 request: ${(error as Error).message}`);
  }
  let signed = false;
  try {
    signed = await csr.verify();
  } catch {
    // An algorithm WebCrypto does not know: refused below like a bad signature.
  }
  if (!signed) throw new CsrRefusal('invalid', 'the CSR\'s signature does not verify with its own public key (ECDSA P-256 expected)');
  const san = csr.extensions.find((e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  const uris = names.filter((n) => n.type === 'url').map((n) => n.value);
  if (uris.length !== 1 || names.length !== 1) {
    throw new CsrRefusal('invalid', `the CSR must name exactly one identity, as its only SAN, a URI spiffe://${trustDomain}/ns/<namespace>/sa/<serviceaccount>; it has ${names.length ? names.map((n) => `${n.type}:${n.value}`).join(', ') : 'none'}`);
  }
  const spiffeId = uris[0]!;
  const who = parseWorkloadId(spiffeId, trustDomain);
  if (!who) throw new CsrRefusal('invalid', `${spiffeId} is not a workload identity of trust domain ${trustDomain} (spiffe://${trustDomain}/ns/<namespace>/sa/<serviceaccount>)`);
  const alg = csr.publicKey.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  const strong = alg.name === 'ECDSA' ? alg.namedCurve === 'P-256' || alg.namedCurve === 'P-384' : alg.name.startsWith('RSA') && (alg.modulusLength ?? 0) >= 2048;
  if (!strong) throw new CsrRefusal('invalid', `the CSR's key (${alg.name} ${alg.namedCurve ?? alg.modulusLength ?? ''}) is not accepted: use ECDSA P-256 (or P-384, or RSA of 2048 bits or more)`);
  return { spiffeId, ...who, publicKey: await csr.publicKey.export() };
}
