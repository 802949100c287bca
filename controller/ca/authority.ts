// The workload certificate authority: a signing certificate and key (Sluice's self-signed root or
// an operator's intermediate) that issues SPIFFE X.509-SVIDs and the controller's serving
// certificate. @peculiar/x509 builds and signs; node:crypto checks what it is given.

import * as x509 from '@peculiar/x509';
import { createPrivateKey, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import { ControllerError } from '../errors.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** The key and signature algorithm of everything Sluice generates: ECDSA P-256 with SHA-256. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** The self-signed root's lifetime. */
export const ROOT_LIFETIME_MS = 10 * 365 * 24 * 3600_000;

/** Issued certificates start this much before the moment they are signed: nodes' clocks differ a little. */
export const BACKDATE_MS = 60_000;

/** PEM text of a CA: its certificate, its key (PKCS#8, SEC1 or PKCS#1) and the chain above it to the root. */
export interface CaMaterial {
  certPem: string;
  keyPem: string;
  /** The certificates above `certPem`, ending with the root; '' when `certPem` is the root. */
  chainPem: string;
}

export interface IssueOptions {
  publicKey: CryptoKey;
  uris?: string[];
  dnsNames?: string[];
  ips?: string[];
  lifetimeMs: number;
}

export interface Issued {
  certPem: string;
  /** The new certificate, then (intermediate mode) the CA's certificate and the chain above it, without the root. */
  chainPem: string;
  notBefore: Date;
  notAfter: Date;
  serial: string;
}

/** Splits PEM text into its certificates (each with its BEGIN/END lines). */
export function splitPem(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => `${m[0]}\n`);
}

/** A positive, non-zero 128-bit serial number in hex (RFC 5280 4.1.2.2: at most 20 octets). */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

function pemOf(raw: ArrayBuffer, label: string): string {
  return `${x509.PemConverter.encode(raw, label)}\n`;
}

async function importSigningKey(keyPem: string, where: string): Promise<{ key: CryptoKey; alg: Algorithm & { hash: string } }> {
  let ko;
  try {
    ko = createPrivateKey(keyPem);
  } catch (error) {
    throw new ControllerError('SLUICE_ERR_CA_SECRET', `${where}: tls.key is not a PEM private key: ${(error as Error).message}`, { cause: error });
  }
  const der = ko.export({ type: 'pkcs8', format: 'der' });
  const type = ko.asymmetricKeyType;
  let alg: Algorithm & { hash: string; namedCurve?: string };
  if (type === 'ec') {
    const curve = ko.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (!namedCurve) throw new ControllerError('SLUICE_ERR_CA_SECRET', `${where}: tls.key is an EC key on curve ${curve}; use P-256 or P-384`);
    alg = { name: 'ECDSA', namedCurve, hash: namedCurve === 'P-384' ? 'SHA-384' : 'SHA-256' };
  } else if (type === 'rsa') {
    alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  } else {
    throw new ControllerError('SLUICE_ERR_CA_SECRET', `${where}: tls.key is a ${type} key; use an EC (P-256, P-384) or RSA key`);
  }
  const key = await webcrypto.subtle.importKey('pkcs8', der, alg as EcKeyImportParams, false, ['sign']);
  return { key: key as unknown as CryptoKey, alg };
}

export class CertificateAuthority {
  private constructor(
    /** The signing certificate. */
    readonly cert: x509.X509Certificate,
    private readonly key: CryptoKey,
    private readonly alg: Algorithm & { hash: string },
    /** PEMs above `cert`, the root last (empty when `cert` is the root). */
    private readonly chain: string[],
    private readonly authorityKeyId: x509.AuthorityKeyIdentifierExtension,
  ) {}

  /** The root certificate every workload and agent trusts (PEM). */
  get trustBundle(): string {
    return this.chain.length ? this.chain[this.chain.length - 1]! : this.cert.toString('pem') + '\n';
  }

  /** True when this CA is an operator's intermediate rather than its own root. */
  get intermediate(): boolean {
    return this.chain.length > 0;
  }

  /** A new self-signed root: EC P-256, CA, 10 years. */
  static async createRoot(lifetimeMs = ROOT_LIFETIME_MS): Promise<CaMaterial> {
    const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name: 'O=sluice, CN=sluice root CA',
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + lifetimeMs),
      signingAlgorithm: EC_P256,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey);
    return { certPem: cert.toString('pem') + '\n', keyPem: pemOf(pkcs8, 'PRIVATE KEY'), chainPem: '' };
  }

  /**
   * Checks and loads a CA: the certificate is a CA that may sign certificates, the key is its key,
   * and the chain links it to a self-signed root. `where` names the source in errors.
   */
  static async load(m: CaMaterial, where: string): Promise<CertificateAuthority> {
    const fail = (what: string): never => {
      throw new ControllerError('SLUICE_ERR_CA_SECRET', `${where}: ${what}`);
    };
    const certs = splitPem(m.certPem);
    if (certs.length === 0) fail('tls.crt holds no PEM certificate');
    // tls.crt may carry the chain after the CA's own certificate (as cert-manager writes it).
    // An operator's root given as its own ca.crt is a root, not an intermediate: no chain.
    const chain = [...certs.slice(1), ...splitPem(m.chainPem)].filter((pem, i, all) => all.indexOf(pem) === i && pem !== certs[0]);
    let cert: x509.X509Certificate;
    let nodeCert: X509Certificate;
    try {
      cert = new x509.X509Certificate(certs[0]!);
      nodeCert = new X509Certificate(certs[0]!);
    } catch (error) {
      return fail(`tls.crt is not a valid certificate: ${(error as Error).message}`);
    }
    if (!nodeCert.ca) fail('tls.crt is not a CA certificate (basicConstraints CA:TRUE is missing)');
    const ku = cert.getExtension(x509.KeyUsagesExtension);
    if (ku && !(ku.usages & x509.KeyUsageFlags.keyCertSign)) fail('tls.crt may not sign certificates (keyUsage lacks keyCertSign)');
    if (new Date(nodeCert.validTo).getTime() <= Date.now()) fail(`tls.crt expired on ${nodeCert.validTo}`);
    const { key, alg } = await importSigningKey(m.keyPem, where);
    if (!nodeCert.checkPrivateKey(createPrivateKey(m.keyPem))) fail('tls.key is not the key of tls.crt');
    // Each certificate must be signed by the next; the last must be self-signed (the root).
    const all = [nodeCert, ...chain.map((pem) => new X509Certificate(pem))];
    const name = (c: X509Certificate) => c.subject.replace(/\n/g, ', ');
    for (let i = 0; i < all.length; i++) {
      const issuer = all[i + 1] ?? all[i]!;
      if (!all[i]!.checkIssued(issuer) || !all[i]!.verify(issuer.publicKey)) {
        fail(i + 1 < all.length
          ? `certificate ${i} of the chain (${name(all[i]!)}) is not signed by the next one (${name(issuer)}); ca.crt must hold the chain from the issuer of tls.crt up to the root`
          : `the chain does not end with a self-signed root (last: ${name(all[i]!)}); put the root in ca.crt`);
      }
    }
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
    const aki = ski ? new x509.AuthorityKeyIdentifierExtension(ski.keyId) : await x509.AuthorityKeyIdentifierExtension.create(await cert.publicKey.export());
    return new CertificateAuthority(cert, key, alg, chain, aki);
  }

  /** Issues an end-entity certificate (not a CA) for digital signatures, TLS server and client. */
  async issue(o: IssueOptions): Promise<Issued> {
    const now = Date.now();
    const caNotAfter = this.cert.notAfter.getTime();
    // Never past the CA's own expiry: a chain is only as valid as its shortest link.
    const notAfter = new Date(Math.min(now + o.lifetimeMs, caNotAfter));
    const notBefore = new Date(now - Math.min(BACKDATE_MS, o.lifetimeMs));
    const names: x509.JsonGeneralName[] = [
      ...(o.uris ?? []).map((value) => ({ type: 'url' as const, value })),
      ...(o.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
      ...(o.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    const serial = serialNumber();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      issuer: this.cert.subjectName,
      // SPIFFE X509-SVIDs carry their identity in the SAN alone; with an empty subject the SAN is critical (RFC 5280 4.2.1.6).
      subject: '',
      notBefore,
      notAfter,
      signingAlgorithm: this.alg,
      publicKey: o.publicKey,
      signingKey: this.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension(names, true),
        this.authorityKeyId,
        await x509.SubjectKeyIdentifierExtension.create(o.publicKey),
      ],
    });
    const certPem = cert.toString('pem') + '\n';
    // The root is left out: every peer has it in its trust bundle.
    const above = this.intermediate ? [this.cert.toString('pem') + '\n', ...this.chain.slice(0, -1)] : [];
    return { certPem, chainPem: [certPem, ...above].join(''), notBefore, notAfter, serial };
  }
}
