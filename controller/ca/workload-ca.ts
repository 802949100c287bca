// The controller as a CA (docs/platform.md#identities): loads its root (Secret sluice-ca, made
// once for every replica) or an operator's intermediate, publishes the trust bundle, signs the
// node agents' workload CSRs and keeps the distribution port's serving certificate fresh.

import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';
import type { Counter } from '../metrics.ts';
import type { CertificateAuthority } from './authority.ts';
import { loadOperatorCa, loadOrCreateRoot, publishTrustBundle } from './ca-secret.ts';
import { ServingCertificate, SERVING_LIFETIME_MS } from './serving-certificate.ts';
import { SVID_LIFETIME_MS, WorkloadCertificates } from './workload-certificates.ts';

export interface WorkloadCaOptions {
  core: CoreV1Api;
  /** The controller's namespace: Secret sluice-ca and ConfigMap sluice-ca-root live here. */
  namespace: string;
  /** `namespace/name` of an operator's intermediate CA; absent: the controller's own root. */
  caSecret?: string;
  trustDomain: string;
  svidLifetimeMs?: number;
  /** Serving certificate for the distribution port; absent: no TLS (plaintext). */
  serving?: { dnsNames: string[]; ips: string[]; lifetimeMs?: number };
  log: Logger;
  counter: Counter;
  /** First retry delay when the CA cannot be loaded (doubles up to 30 s). */
  minRetryMs?: number;
}

export class WorkloadCa {
  ca?: CertificateAuthority;
  readonly workloads: WorkloadCertificates;
  serving?: ServingCertificate;
  private stopped = false;
  private wake?: () => void;

  constructor(private readonly o: WorkloadCaOptions) {
    this.workloads = new WorkloadCertificates({ core: o.core, ca: () => this.ca, trustDomain: o.trustDomain, lifetimeMs: o.svidLifetimeMs ?? SVID_LIFETIME_MS, log: o.log, counter: o.counter });
  }

  /** One attempt to load the CA and publish the trust bundle; false (with the reason logged) when it cannot now. */
  async tryLoad(): Promise<boolean> {
    try {
      const ca = this.o.caSecret ? await loadOperatorCa(this.o.core, this.o.caSecret) : await loadOrCreateRoot(this.o.core, this.o.namespace, this.o.log);
      await publishTrustBundle(this.o.core, this.o.namespace, ca.trustBundle, this.o.log);
      if (this.o.serving) {
        const serving = new ServingCertificate({ ca, dnsNames: this.o.serving.dnsNames, ips: this.o.serving.ips, lifetimeMs: this.o.serving.lifetimeMs ?? SERVING_LIFETIME_MS, log: this.o.log });
        await serving.start();
        if (this.stopped) serving.stop();
        this.serving = serving;
      }
      this.ca = ca;
      this.o.log.info('workload CA ready', { mode: ca.intermediate ? `intermediate from ${this.o.caSecret}` : 'self-signed root', issuer: ca.cert.subject, trustDomain: this.o.trustDomain });
      return true;
    } catch (error) {
      const e = error as Error & { code?: unknown };
      this.o.log.error('workload CA not ready; retrying', { code: typeof e.code === 'string' ? e.code : undefined, status: typeof e.code === 'number' ? e.code : undefined, error: e.message.split('\n')[0] });
      return false;
    }
  }

  /** Tries until the CA loads (backoff doubling up to 30 s); false when stopped first. `waitFirst`: an attempt just failed. */
  async start(waitFirst = false): Promise<boolean> {
    let delay = this.o.minRetryMs ?? 500;
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) return false;
      if ((attempt > 0 || !waitFirst) && (await this.tryLoad())) return !this.stopped;
      if (this.stopped) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.wake = () => (clearTimeout(t), resolve());
      });
      delay = Math.min(delay * 2, 30_000);
    }
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
    this.serving?.stop();
  }
}
