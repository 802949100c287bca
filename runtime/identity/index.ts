// Workload identities on the node (docs/platform.md#identities): keys made here, certificates
// from the controller's CA over the distribution stream, kept renewed; read through IdentityStore.

export { IdentityStore, type WorkloadIdentity, type IdentityChange, type IdentityListener } from './identity-store.ts';
export { WorkloadIdentities, IDENTITY_DEFAULTS, type WorkloadIdentitiesOptions } from './workload-identities.ts';
export { makeKeyAndCsr, checkChain, splitCerts, type KeyAndCsr } from './csr.ts';
