// What one controller replica knows of the node agents connected to it, as it publishes it for
// the leader (ConfigMap `sluice-nodes-<hash>`, report-publisher.ts), and the leader's view of all
// replicas' reports: per node the latest record, per WasmFilter the nodes that run their version,
// those that refused it and the failures they counted. Pure: no Kubernetes, no clock of its own.

import type { NodeRecord } from '../distribution/server.ts';

/** A node as a replica reports it. */
export interface ReportedNode {
  /** WasmFilters of the snapshot last sent to the node: `namespace/name` -> filter version. */
  sent: Record<string, string>;
  /** WasmFilters of the snapshot it last ACKed: what it runs. */
  applied: Record<string, string>;
  /** Its last NACK, until its next ACK: the snapshot's filters and the agent's reason. */
  rejected?: { reason: string; filters: Record<string, string> };
  /** Failures counted per WasmFilter, for the filter version it runs. */
  failures?: Record<string, { version: string; failures: number }>;
  /** When the record last changed (ms since the epoch). */
  at: number;
}

export interface ReplicaReport {
  /** The replica's identity (its Lease holder name). */
  replica: string;
  /** When the replica last wrote the report (ms since the epoch); reports older than the stale limit are ignored. */
  heartbeat: number;
  /** The nodes with a stream open on the replica. */
  nodes: Record<string, ReportedNode>;
}

/** The report of a replica from its distribution server's records: connected nodes only. */
export function reportOf(replica: string, records: ReadonlyMap<string, NodeRecord>, now: number): ReplicaReport {
  const nodes: Record<string, ReportedNode> = {};
  for (const [node, r] of [...records].sort(([a], [b]) => a.localeCompare(b))) {
    if (!r.connected) continue;
    nodes[node] = {
      sent: r.sent,
      applied: r.applied,
      ...(r.rejected ? { rejected: { reason: r.rejected.reason, filters: r.rejected.filters } } : {}),
      ...(Object.keys(r.failures).length > 0 ? { failures: r.failures } : {}),
      at: r.at,
    };
  }
  return { replica, heartbeat: now, nodes };
}

/** Parses a report's JSON; undefined when it is not one (a hand-edited or foreign ConfigMap). */
export function parseReport(text: string | undefined): ReplicaReport | undefined {
  if (!text) return undefined;
  try {
    const r = JSON.parse(text) as ReplicaReport;
    if (typeof r?.replica !== 'string' || typeof r.heartbeat !== 'number' || typeof r.nodes !== 'object' || r.nodes === null) return undefined;
    return r;
  } catch {
    return undefined;
  }
}

/**
 * Every node in the fresh reports (heartbeat within `staleMs` of `now`). A node on two replicas
 * (it reconnected elsewhere and the old stream is not noticed as closed yet) counts once, with
 * its most recent record.
 */
export function mergeReports(reports: readonly ReplicaReport[], now: number, staleMs: number): Map<string, ReportedNode> {
  const out = new Map<string, ReportedNode>();
  for (const r of reports) {
    if (now - r.heartbeat > staleMs) continue;
    for (const [node, n] of Object.entries(r.nodes)) {
      const seen = out.get(node);
      if (!seen || n.at > seen.at) out.set(node, n);
    }
  }
  return out;
}

/** Most NACKs a WasmFilter's status lists (the first, by node name). */
export const MAX_REJECTED = 5;

export interface FilterNodes {
  /** Nodes whose config holds the filter, sorted. */
  nodes: string[];
  /** Of those, the ones that run the version they were sent. */
  ready: string[];
  /** Nodes that refused a snapshot with a version of this filter they did not run before, sorted by node. */
  rejected: Array<{ node: string; version: string; message: string }>;
  /** Failures nodes counted, per node, with the version they run. */
  failures: Array<{ node: string; version: string; failures: number }>;
  /** The versions nodes were sent, and how many nodes each. */
  versions: Record<string, number>;
}

/** Where WasmFilter `key` (`namespace/name`) stands on the nodes. */
export function filterNodes(nodes: ReadonlyMap<string, ReportedNode>, key: string): FilterNodes {
  const out: FilterNodes = { nodes: [], ready: [], rejected: [], failures: [], versions: {} };
  for (const [node, n] of [...nodes].sort(([a], [b]) => a.localeCompare(b))) {
    const want = n.sent[key];
    const runs = n.applied[key];
    const refused = n.rejected?.filters[key];
    if (refused !== undefined && refused !== runs) out.rejected.push({ node, version: refused, message: n.rejected!.reason });
    const f = n.failures?.[key];
    if (f && f.failures > 0 && f.version === runs) out.failures.push({ node, version: f.version, failures: f.failures });
    if (want === undefined) continue;
    out.nodes.push(node);
    out.versions[want] = (out.versions[want] ?? 0) + 1;
    if (runs === want) out.ready.push(node);
  }
  return out;
}
