// The controller's workload CA (docs/platform.md#identities): its root or intermediate, workload
// SVIDs for node agents' CSRs, the trust bundle, and the distribution port's serving certificate.

export { CertificateAuthority, EC_P256, ROOT_LIFETIME_MS, BACKDATE_MS, splitPem, type CaMaterial, type IssueOptions, type Issued } from './authority.ts';
export { CA_SECRET, TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY, loadOrCreateRoot, loadOperatorCa, publishTrustBundle } from './ca-secret.ts';
export { CsrRefusal, parseWorkloadCsr, parseWorkloadId, type WorkloadCsr } from './workload-csr.ts';
export { WorkloadCertificates, SVID_LIFETIME_MS, type SignedWorkload } from './workload-certificates.ts';
export { ServingCertificate, SERVING_LIFETIME_MS } from './serving-certificate.ts';
export { WorkloadCa, type WorkloadCaOptions } from './workload-ca.ts';
