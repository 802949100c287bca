// The node's workload identities as the rest of the runtime reads them (node-to-node mTLS): per
// SPIFFE ID the private key and certificate chain in force, the trust bundle, and change events.
// Only WorkloadIdentities writes it; an identity is replaced whole, never emptied while renewing.

/** One workload identity in force. */
export interface WorkloadIdentity {
  spiffeId: string;
  /** PKCS#8 PEM; made on this node, never sent anywhere. */
  keyPem: string;
  /** Leaf first, then any intermediates (PEM); the root is in trustBundle(). */
  certChainPem: string;
  notAfter: Date;
}

export type IdentityChange =
  /** A certificate for `spiffeId` is in force (a first one, or a renewal). */
  | { kind: 'identity'; spiffeId: string }
  /** `spiffeId` is gone (its last workload left the node, or its certificate expired unrenewed). */
  | { kind: 'removed'; spiffeId: string }
  /** The roots changed. */
  | { kind: 'trustBundle' };

export type IdentityListener = (change: IdentityChange) => void;

export class IdentityStore {
  private readonly identities = new Map<string, WorkloadIdentity>();
  private bundle?: string;
  private readonly listeners = new Set<IdentityListener>();

  /** The identity in force for `spiffeId`, or undefined (none yet, or gone). */
  get(spiffeId: string): WorkloadIdentity | undefined {
    return this.identities.get(spiffeId);
  }

  /** SPIFFE IDs with a certificate in force, sorted. */
  ids(): string[] {
    return [...this.identities.keys()].sort();
  }

  /** The roots to verify peers with (PEM), or undefined before the controller sent them. */
  trustBundle(): string | undefined {
    return this.bundle;
  }

  /** Calls `listener` after every change; returns an unsubscribe. A listener that throws does not stop the others. */
  onChange(listener: IdentityListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** @internal (WorkloadIdentities) */
  set(identity: WorkloadIdentity): void {
    this.identities.set(identity.spiffeId, Object.freeze({ ...identity }));
    this.emit({ kind: 'identity', spiffeId: identity.spiffeId });
  }

  /** @internal (WorkloadIdentities) */
  delete(spiffeId: string): void {
    if (this.identities.delete(spiffeId)) this.emit({ kind: 'removed', spiffeId });
  }

  /** @internal (WorkloadIdentities) */
  setTrustBundle(pem: string): void {
    if (pem === this.bundle) return;
    this.bundle = pem;
    this.emit({ kind: 'trustBundle' });
  }

  private emit(change: IdentityChange): void {
    for (const l of this.listeners) {
      try {
        l(change);
      } catch {
        // One consumer's bug must not keep the change from the others.
      }
    }
  }
}
