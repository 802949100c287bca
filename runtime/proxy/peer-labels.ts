// Istio's labels for who is on each side of a request or connection (reporter, source_* and
// destination_* workload, namespace, principal and app, connection_security_policy), made once
// per distinct pair and shared by every series that has it. Telemetry appends them to the
// istio_* series of captured traffic.

import { escape } from './telemetry.ts';

/** One side, as the node's snapshot describes it. */
export interface Peer {
  readonly workload: string;
  readonly namespace: string;
  /** The SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>). */
  readonly principal: string;
  /** The pod's `app` (or `app.kubernetes.io/name`) label. */
  readonly app: string;
}

export interface PeerLabels {
  /** Tells series apart. */
  readonly key: string;
  /** `reporter="…",source_workload="…",…` */
  readonly text: string;
}

/** Distinct pairs kept; past this the labels are made each time (never an unbounded map). */
const MAX_INTERNED = 10_000;
const interned = new Map<string, PeerLabels>();

const UNKNOWN = 'unknown';

/**
 * The labels of a request or connection from `source` to `destination` (undefined: not a pod the
 * node knows), as seen by the `reporter` side: `source` for the client's proxy (outbound),
 * `destination` for the server's (inbound). `mtls`: it crossed the node-to-node tunnel.
 */
export function peerLabels(reporter: 'source' | 'destination', source: Peer | undefined, destination: Peer | undefined, mtls: boolean): PeerLabels {
  const key = `${reporter}\u0000${source?.principal ?? ''}\u0000${source?.workload ?? ''}\u0000${destination?.principal ?? ''}\u0000${destination?.workload ?? ''}\u0000${mtls}`;
  let labels = interned.get(key);
  if (labels) return labels;
  const side = (prefix: string, p: Peer | undefined) =>
    `${prefix}_workload="${escape(p?.workload ?? UNKNOWN)}",${prefix}_workload_namespace="${escape(p?.namespace ?? UNKNOWN)}",${prefix}_principal="${escape(p?.principal ?? UNKNOWN)}",${prefix}_app="${escape(p?.app || UNKNOWN)}"`;
  labels = { key, text: `reporter="${reporter}",${side('source', source)},${side('destination', destination)},connection_security_policy="${mtls ? 'mutual_tls' : 'none'}"` };
  if (interned.size < MAX_INTERNED) interned.set(key, labels);
  return labels;
}
