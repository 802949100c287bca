// Signs node agents' workload CSRs: a node gets the identity of a ServiceAccount only while a Pod
// of that ServiceAccount (not hostNetwork, Running or Pending) is scheduled on it, as the API
// server says now. Refusals are logged (`csr refused`) and counted.

import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';
import type { Counter } from '../metrics.ts';
import type { CertificateAuthority } from './authority.ts';
import { CsrRefusal, parseWorkloadCsr } from './workload-csr.ts';

export const SVID_LIFETIME_MS = 24 * 3600_000;

export interface WorkloadCertificatesOptions {
  core: CoreV1Api;
  /** The CA, once loaded. */
  ca: () => CertificateAuthority | undefined;
  trustDomain: string;
  lifetimeMs: number;
  log: Logger;
  /** sluice_controller_csr_total */
  counter: Counter;
}

export interface SignedWorkload {
  spiffeId: string;
  chainPem: string;
  trustBundle: string;
}

export class WorkloadCertificates {
  constructor(private readonly o: WorkloadCertificatesOptions) {}

  /** The root PEM agents and workloads trust; undefined until the CA is loaded. */
  trustBundle(): string | undefined {
    return this.o.ca()?.trustBundle;
  }

  /** Signs `csrPem` for a workload of `nodeName`; throws CsrRefusal (logged and counted) when it may not. */
  async sign(nodeName: string, csrPem: string): Promise<SignedWorkload> {
    let spiffeId: string | undefined;
    try {
      const ca = this.o.ca();
      if (!ca) throw new CsrRefusal('unavailable', 'the controller\'s CA is not loaded yet; the agent retries');
      const csr = await parseWorkloadCsr(csrPem, this.o.trustDomain);
      spiffeId = csr.spiffeId;
      await this.authorize(nodeName, csr.namespace, csr.serviceAccount);
      const issued = await ca.issue({ publicKey: csr.publicKey, uris: [csr.spiffeId], lifetimeMs: this.o.lifetimeMs });
      this.o.counter.inc({ result: 'signed' });
      this.o.log.info('certificate issued', { node: nodeName, identity: spiffeId, serial: issued.serial, notAfter: issued.notAfter.toISOString() });
      return { spiffeId, chainPem: issued.chainPem, trustBundle: ca.trustBundle };
    } catch (error) {
      const refusal = error instanceof CsrRefusal ? error : new CsrRefusal('unavailable', `cannot sign now: ${(error as Error).message.split('\n')[0]}`);
      this.o.counter.inc({ result: 'refused', reason: refusal.reason });
      this.o.log.warn('csr refused', { node: nodeName, identity: spiffeId, reason: refusal.reason, error: refusal.message });
      throw refusal;
    }
  }

  private async authorize(nodeName: string, namespace: string, serviceAccount: string): Promise<void> {
    let pods;
    try {
      pods = await this.o.core.listNamespacedPod({ namespace, fieldSelector: `spec.nodeName=${nodeName}` });
    } catch (error) {
      throw new CsrRefusal('unavailable', `cannot list the Pods of node ${nodeName} in ${namespace}: ${(error as Error).message.split('\n')[0]}`);
    }
    const ok = pods.items.some(
      (p) =>
        (p.spec?.serviceAccountName || 'default') === serviceAccount &&
        !p.spec?.hostNetwork &&
        (p.status?.phase === 'Running' || p.status?.phase === 'Pending'),
    );
    if (!ok) {
      throw new CsrRefusal('not_authorized', `node ${nodeName} runs no Pod of ServiceAccount ${namespace}/${serviceAccount} (Running or Pending, not hostNetwork); a node gets only the identities of its own workloads`);
    }
  }
}
