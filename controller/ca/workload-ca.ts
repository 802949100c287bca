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

  /** Loads the CA and publishes the trust bundle, retrying (with a logged reason) until it can; false when stopped first. */
  async start(): Promise<boolean> {
    let delay = this.o.minRetryMs ?? 500;
    for (;;) {
      if (this.stopped) return false;
      try {
        const ca = this.o.caSecret ? await loadOperatorCa(this.o.core, this.o.caSecret) : await loadOrCreateRoot(this.o.core, this.o.namespace, this.o.log);
        await publishTrustBundle(this.o.core, this.o.namespace, ca.trustBundle, this.o.log);
        if (this.o.serving) {
          this.serving = new ServingCertificate({ ca, dnsNames: this.o.serving.dnsNames, ips: this.o.serving.ips, lifetimeMs: this.o.serving.lifetimeMs ?? SERVING_LIFETIME_MS, log: this.o.log });
          await this.serving.start();
        }
        this.ca = ca;
        this.o.log.info('workload CA ready', { mode: ca.intermediate ? `intermediate from ${this.o.caSecret}` : 'self-signed root', issuer: ca.cert.subject, trustDomain: this.o.trustDomain });
        return true;
      } catch (error) {
        const e = error as Error & { code?: unknown };
        this.o.log.error('workload CA not ready; retrying', { code: typeof e.code === 'string' ? e.code : undefined, status: typeof e.code === 'number' ? e.code : undefined, error: e.message.split('\n')[0], retryInMs: delay });
      }
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
