// Which captured connections go through the node-to-node tunnel, with which identity: those to
// an address of a remote workload (a pod on another node, from the snapshot's tunnel section),
// and, when the node's own tunnel address is known, those to a captured pod of this node (so that
// its inbound filters see the caller's identity too); each presents the certificate of the
// source pod's ServiceAccount (from the snapshot's workloads).

import type { RemoteWorkloadConfig, Snapshot } from '../config/snapshot.ts';
import type { TunnelClient } from '../tunnel/index.ts';
import type { PodIdentity } from './pod-listeners.ts';

export interface CaptureTunnel {
  readonly client: TunnelClient;
  /** Where `address` is reached through the tunnel: a pod on another node, or a captured pod of this node through the node's own tunnel. */
  remote(address: string): RemoteWorkloadConfig | undefined;
  /** The SPIFFE ID of a pod on this node, when the snapshot describes it. */
  identityOf(pod: PodIdentity): string | undefined;
}

interface Index {
  remote: Map<string, RemoteWorkloadConfig>;
  identity: Map<string, string>;
  /** This node's workloads by address, with the node's own tunnel as their tunnel. */
  local: Map<string, RemoteWorkloadConfig>;
}

export interface LocalTunnel {
  /** host:port of this node's own tunnel, as the proxy reaches it (loopback). */
  readonly address: { host: string; port: number };
  /** True when `address` belongs to a pod this node captures (an uncaptured one is reached directly). */
  captured(address: string): boolean;
}

/** Routes read from the snapshot in force at each call (indexes are made once per snapshot). */
export function captureTunnel(client: TunnelClient, snapshot: () => Snapshot | undefined, local?: LocalTunnel): CaptureTunnel {
  const indexes = new WeakMap<Snapshot, Index>();
  const index = (): Index | undefined => {
    const s = snapshot();
    if (!s) return undefined;
    let i = indexes.get(s);
    if (!i) {
      i = { remote: new Map(), identity: new Map(), local: new Map() };
      for (const w of s.tunnel?.remoteWorkloads ?? []) for (const a of w.addresses) i.remote.set(a, w);
      for (const w of s.workloads ?? []) {
        i.identity.set(`${w.namespace}/${w.name}`, w.identity);
        if (local) for (const a of w.addresses) i.local.set(a, { namespace: w.namespace, name: w.name, identity: w.identity, addresses: w.addresses, tunnel: local.address });
      }
      indexes.set(s, i);
    }
    return i;
  };
  return {
    client,
    remote: (address) => {
      const i = index();
      const there = i?.remote.get(address);
      if (there) return there;
      const here = i?.local.get(address);
      return here && local?.captured(address) ? here : undefined;
    },
    identityOf: (pod) => index()?.identity.get(`${pod.namespace}/${pod.name}`),
  };
}
