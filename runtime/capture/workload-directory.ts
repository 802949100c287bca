// Who is behind a pod address (of this node or, from the tunnel's list, another), or a captured
// pod, as the node's snapshot describes them: the source_* / destination_* labels of captured
// traffic's istio_* metrics. One directory per snapshot, made when first asked.

import type { RemoteWorkloadConfig, Snapshot, WorkloadConfig } from '../config/snapshot.ts';
import { peerLabels, type Peer, type PeerLabels } from '../proxy/peer-labels.ts';

export class WorkloadDirectory {
  private readonly byAddress = new Map<string, Peer>();
  private readonly byPod = new Map<string, Peer>();

  constructor(workloads: readonly WorkloadConfig[], remote: readonly RemoteWorkloadConfig[]) {
    // Pods on other nodes (the tunnel's list) are known by address too.
    for (const w of remote) {
      const peer: Peer = { workload: w.workload ?? w.name, namespace: w.namespace, principal: w.identity, app: w.app ?? '' };
      for (const address of w.addresses) this.byAddress.set(address.toLowerCase(), peer);
    }
    for (const w of workloads) {
      const peer: Peer = { workload: w.workload ?? w.name, namespace: w.namespace, principal: w.identity, app: w.labels.app ?? w.labels['app.kubernetes.io/name'] ?? '' };
      this.byPod.set(`${w.namespace}/${w.name}`, peer);
      for (const address of w.addresses) this.byAddress.set(address.toLowerCase(), peer);
    }
  }

  /** The workload with pod address `ip`, if the snapshot has it. */
  address(ip: string): Peer | undefined {
    return this.byAddress.get(ip.toLowerCase());
  }

  /** Pod `namespace`/`name`, if the snapshot has it. */
  pod(namespace: string, name: string): Peer | undefined {
    return this.byPod.get(`${namespace}/${name}`);
  }
}

const directories = new WeakMap<Snapshot, WorkloadDirectory>();

/** The directory of `snapshot`'s workloads. */
export function directoryOf(snapshot: Snapshot): WorkloadDirectory {
  let d = directories.get(snapshot);
  if (!d) {
    d = new WorkloadDirectory(snapshot.workloads ?? [], snapshot.tunnel?.remoteWorkloads ?? []);
    directories.set(snapshot, d);
  }
  return d;
}

/**
 * The workload labels of captured traffic of pod `pod` in `direction` whose other side is at
 * address `other`: outbound the pod is the source, inbound the destination; `mtls`: it crossed
 * the node-to-node tunnel. Undefined outside node mode (no workloads in the snapshot).
 */
export function capturedPeers(snapshot: Snapshot | undefined, pod: { namespace: string; name: string }, direction: 'outbound' | 'inbound', other: string, mtls: boolean): PeerLabels | undefined {
  if (!snapshot?.workloads) return undefined;
  const directory = directoryOf(snapshot);
  const self = directory.pod(pod.namespace, pod.name);
  const peer = directory.address(other);
  return direction === 'outbound' ? peerLabels('source', self, peer, mtls) : peerLabels('destination', peer, self, mtls);
}
