// The controller's own TLS certificate for the distribution port (15012), issued by its CA to the
// Service's DNS names (and any extra names or IPs), handed to gRPC as a certificate provider so a
// renewal at half life reaches new connections without a restart.

import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { experimental } from '@grpc/grpc-js';
import type { Logger } from '../log.ts';
import { EC_P256, type CertificateAuthority, type Issued } from './authority.ts';

type Listener = Parameters<experimental.CertificateProvider['addIdentityCertificateListener']>[0];

export const SERVING_LIFETIME_MS = 24 * 3600_000;

export interface ServingCertificateOptions {
  ca: CertificateAuthority;
  dnsNames: string[];
  ips: string[];
  lifetimeMs: number;
  log: Logger;
}

export class ServingCertificate implements experimental.CertificateProvider {
  private current?: { certificate: Buffer; privateKey: Buffer; issued: Issued };
  private readonly listeners = new Set<Listener>();
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly o: ServingCertificateOptions) {}

  /** The certificate served now (tests). */
  get issued(): Issued | undefined {
    return this.current?.issued;
  }

  /** Issues the first certificate and keeps renewing it at half its life. */
  async start(): Promise<void> {
    await this.renew();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async renew(): Promise<void> {
    try {
      const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
      const issued = await this.o.ca.issue({ publicKey: keys.publicKey, dnsNames: this.o.dnsNames, ips: this.o.ips, lifetimeMs: this.o.lifetimeMs });
      const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey);
      // The chain (intermediates) goes with the certificate so agents holding only the root can verify it.
      this.current = { certificate: Buffer.from(issued.chainPem), privateKey: Buffer.from(`${x509.PemConverter.encode(pkcs8, 'PRIVATE KEY')}\n`), issued };
      for (const l of this.listeners) l({ certificate: this.current.certificate, privateKey: this.current.privateKey });
      this.o.log.info('serving certificate issued', { dnsNames: this.o.dnsNames, ips: this.o.ips.length ? this.o.ips : undefined, serial: issued.serial, notAfter: issued.notAfter.toISOString() });
      this.schedule((issued.notAfter.getTime() - Date.now()) / 2);
    } catch (error) {
      if (!this.current) throw error;
      // The current certificate still serves; try again soon.
      this.o.log.error('serving certificate renewal failed; retrying in 30 s', { error: (error as Error).message });
      this.schedule(30_000);
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.renew(), Math.max(1000, Math.min(ms, 2 ** 31 - 1)));
    this.timer.unref();
  }

  addIdentityCertificateListener(listener: Listener): void {
    this.listeners.add(listener);
    // Later, not now: grpc-js registers its own watcher only after this call returns, and would miss it.
    queueMicrotask(() => {
      if (this.current && this.listeners.has(listener)) listener({ certificate: this.current.certificate, privateKey: this.current.privateKey });
    });
  }
  removeIdentityCertificateListener(listener: Listener): void {
    this.listeners.delete(listener);
  }
  addCaCertificateListener(): void {}
  removeCaCertificateListener(): void {}
}
