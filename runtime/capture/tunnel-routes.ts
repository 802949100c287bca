// Which captured connections go through the node-to-node tunnel, with which identity: those to
// an address of a remote workload (a pod on another node, from the snapshot's tunnel section),
// presenting the certificate of the source pod's ServiceAccount (from the snapshot's workloads).

import type { RemoteWorkloadConfig, Snapshot } from '../config/snapshot.ts';
import type { TunnelClient } from '../tunnel/index.ts';
import type { PodIdentity } from './pod-listeners.ts';

export interface CaptureTunnel {
  readonly client: TunnelClient;
  /** The remote workload that owns `address`, when it is a pod on another node. */
  remote(address: string): RemoteWorkloadConfig | undefined;
  /** The SPIFFE ID of a pod on this node, when the snapshot describes it. */
  identityOf(pod: PodIdentity): string | undefined;
}

interface Index {
  remote: Map<string, RemoteWorkloadConfig>;
  identity: Map<string, string>;
}

/** Routes read from the snapshot in force at each call (indexes are made once per snapshot). */
export function captureTunnel(client: TunnelClient, snapshot: () => Snapshot | undefined): CaptureTunnel {
  const indexes = new WeakMap<Snapshot, Index>();
  const index = (): Index | undefined => {
    const s = snapshot();
    if (!s) return undefined;
    let i = indexes.get(s);
    if (!i) {
      i = { remote: new Map(), identity: new Map() };
      for (const w of s.tunnel?.remoteWorkloads ?? []) for (const a of w.addresses) i.remote.set(a, w);
      for (const w of s.workloads ?? []) i.identity.set(`${w.namespace}/${w.name}`, w.identity);
      indexes.set(s, i);
    }
    return i;
  };
  return {
    client,
    remote: (address) => index()?.remote.get(address),
    identityOf: (pod) => index()?.identity.get(`${pod.namespace}/${pod.name}`),
  };
}
