// nodeConfig(node, cluster state): the node proxy's configuration for one node, computed from
// Services, EndpointSlices, Pods and validated WasmFilters. Pure: no Kubernetes, no clock; the same
// state gives the same text and version, so an unchanged node is never pushed again.

import { createHash } from 'node:crypto';
import { digestHex, vmEnvironment, type WasmFilter, type WasmFilterSpec } from '../crd/index.ts';
import type { NodeConfig } from '../distribution/types.ts';

/** The fields of a Pod discovery reads (the informer drops the rest). */
export interface PodView {
  metadata: { name: string; namespace: string; labels?: Record<string, string>; annotations?: Record<string, string>; resourceVersion?: string; ownerReferences?: Array<{ kind: string; name: string; controller?: boolean }> };
  spec?: { nodeName?: string; hostNetwork?: boolean; serviceAccountName?: string };
  status?: { phase?: string; podIPs?: Array<{ ip: string }>; podIP?: string; hostIP?: string };
}

export interface ServicePortView {
  name?: string;
  port: number;
  protocol?: string;
  appProtocol?: string;
}

export interface ServiceView {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: { type?: string; ports?: ServicePortView[]; clusterIP?: string; clusterIPs?: string[] };
}

export interface EndpointSliceView {
  metadata: { name: string; namespace: string; labels?: Record<string, string>; resourceVersion?: string };
  addressType: string;
  endpoints?: Array<{ addresses: string[]; conditions?: { ready?: boolean | null } }>;
  ports?: Array<{ name?: string | null; port?: number | null; protocol?: string | null }> | null;
}

/** A WasmFilter whose spec validated, with its module's digest (sha256 hex); or one that never did, `unavailable`. */
export interface ValidatedFilter {
  namespace: string;
  name: string;
  spec: WasmFilterSpec;
  digest: string;
  /**
   * A FAIL_CLOSE or FAIL_RELOAD filter with no version in force (it never validated): why. Its
   * entry carries no module; the nodes answer what it selects with its fail strategy (503).
   */
  unavailable?: string;
  /** During a rollout: the nodes that run another version of the filter (the canary), and that version. */
  canary?: { nodes: ReadonlySet<string>; filter: ValidatedFilter };
}

/** The spec fields that make a filter's version (with its module); the rest (where it applies, its order) applies at once. */
export const VERSIONED_FIELDS = ['rootId', 'vmId', 'pluginConfig', 'vmConfig', 'failStrategy', 'limits', 'capabilities'] as const;
export type VersionedSpec = Pick<WasmFilterSpec, (typeof VERSIONED_FIELDS)[number]>;

export function versionedSpec(spec: WasmFilterSpec): VersionedSpec {
  const out: Record<string, unknown> = {};
  for (const k of VERSIONED_FIELDS) if (spec[k] !== undefined) out[k] = spec[k];
  return out as VersionedSpec;
}

/** JSON with object keys sorted, so equal values hash equal whatever order the API gave. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

/**
 * A filter's version: the first 12 hex digits of its module's sha256 and 8 of a hash of its
 * versioned spec fields, e.g. `3f2a9c01b7de.5e01aa42`. The same on every replica.
 */
export function filterVersion(digest: string, spec: WasmFilterSpec): string {
  const hex = digestHex(digest);
  return `${hex.slice(0, 12)}.${createHash('sha256').update(canonicalJson(versionedSpec(spec))).digest('hex').slice(0, 8)}`;
}

export interface ClusterState {
  services: readonly ServiceView[];
  endpointSlices: readonly EndpointSliceView[];
  pods: readonly PodView[];
  filters: readonly ValidatedFilter[];
  /** Module bytes by sha256 hex (the reconciler's validated modules). */
  module: (digest: string) => Uint8Array | undefined;
}

export interface NodeConfigOptions {
  /** Default cluster.local. */
  trustDomain?: string;
  /** Default cluster.local. */
  clusterDomain?: string;
  /** WasmFilters here apply to every namespace. */
  rootNamespace: string;
  /** Addresses the capture listeners bind for direct clients (captured traffic arrives in pods' netns). Default 127.0.0.1:0. */
  outboundAddress?: string;
  inboundAddress?: string;
  /** The node-to-node tunnel's port on every node (docs/capture.md#the-node-to-node-tunnel). Default 15008. */
  tunnelPort?: number;
}

export type NodeConfigResult =
  | { ok: true; config: NodeConfig }
  /** A selected filter's module is not in memory yet: publish nothing (keep the last version). */
  | { ok: false; missingModules: string[] };

/** Pod annotation: comma-separated namespaces whose Services the pod calls (absent: all). */
export const EGRESS_ANNOTATION = 'sluice.dev/egress-namespaces';

export const OUTBOUND_LISTENER = 'capture-outbound';
export const INBOUND_LISTENER = 'capture-inbound';

const PHASE_ORDER: Record<string, number> = { AUTHN: 0, AUTHZ: 1, STATS: 2, UNSPECIFIED: 3 };

/** Names in the config are at most 128 of [A-Za-z0-9._-]; longer ones keep a hash of the whole. */
export function configName(text: string): string {
  const clean = text.replace(/[^A-Za-z0-9._-]/g, '_');
  if (clean.length <= 128 && clean === text) return clean;
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 10);
  return `${clean.slice(0, 117)}-${hash}`;
}

export function clusterName(service: string, namespace: string, port: number, clusterDomain = 'cluster.local'): string {
  // ':' is not allowed in config names; '_' never appears in a DNS name, so the split is unambiguous.
  return configName(`${service}.${namespace}.svc.${clusterDomain}_${port}`);
}

export const filterName = (namespace: string, name: string): string => configName(`${namespace}.${name}`);

/** A workload pod: scheduled on a node, in a network namespace of its own, not finished. */
const isWorkload = (p: PodView): boolean => !!p.spec?.nodeName && !p.spec.hostNetwork && (p.status?.phase === 'Running' || p.status?.phase === 'Pending');

/** Pods that are workloads of `node`. */
export function workloadsOf(node: string, pods: readonly PodView[]): PodView[] {
  return pods
    .filter((p) => isWorkload(p) && p.spec!.nodeName === node)
    .sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
}

const podAddresses = (pod: PodView): string[] => [...new Set([...(pod.status?.podIPs ?? []).map((p) => p.ip), ...(pod.status?.podIP ? [pod.status.podIP] : [])])].sort();

/**
 * Pods on other nodes that `node`'s workloads may call (namespaces in scope), with their node's
 * tunnel address and identity: the node sends connections to them through the tunnel. Pods
 * without an address or a hostIP yet, and host-network pods (they are their node), are left out.
 */
function remoteWorkloads(node: string, pods: readonly PodView[], scope: Set<string> | 'all', trustDomain: string, tunnelPort: number): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const p of pods) {
    const { namespace, name } = p.metadata;
    if (!p.spec?.nodeName || p.spec.nodeName === node || p.spec.hostNetwork) continue;
    if (p.status?.phase !== 'Running' && p.status?.phase !== 'Pending') continue;
    if (scope !== 'all' && !scope.has(namespace)) continue;
    const addresses = podAddresses(p);
    const hostIP = p.status?.hostIP;
    if (addresses.length === 0 || !hostIP) continue;
    const sa = p.spec.serviceAccountName || 'default';
    const app = appOf(p);
    out.push({ namespace, name, identity: `spiffe://${trustDomain}/ns/${namespace}/sa/${sa}`, workload: workloadName(p), ...(app && { app }), addresses, tunnel: hostIP.includes(':') ? `[${hostIP}]:${tunnelPort}` : `${hostIP}:${tunnelPort}` });
  }
  return out.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

const keyOf = (o: { metadata: { namespace: string; name: string } }): string => `${o.metadata.namespace}/${o.metadata.name}`;

/** The nodes with a workload `filter` selects, sorted (the candidates of a rollout's canary). */
export function nodesSelecting(filter: { namespace: string; spec: WasmFilterSpec }, pods: readonly PodView[], rootNamespace: string): string[] {
  const nodes = new Set<string>();
  for (const p of pods) {
    if (isWorkload(p) && selects(filter, p, rootNamespace)) nodes.add(p.spec!.nodeName!);
  }
  return [...nodes].sort();
}

function selects(filter: { namespace: string; spec: WasmFilterSpec }, pod: PodView, rootNamespace: string): boolean {
  if (filter.namespace !== rootNamespace && filter.namespace !== pod.metadata.namespace) return false;
  const labels = pod.metadata.labels ?? {};
  return Object.entries(filter.spec.selector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
}

/** The `ports` of a workload's filters: only when some filter is limited to some ports. */
function ports(out: readonly ValidatedFilter[], inb: readonly ValidatedFilter[]): { ports?: { outbound?: Record<string, number[]>; inbound?: Record<string, number[]> } } {
  const outbound = portLimits(out, 'outbound');
  const inbound = portLimits(inb, 'inbound');
  return outbound || inbound ? { ports: { ...(outbound && { outbound }), ...(inbound && { inbound }) } } : {};
}

/** The directions a filter's `match` covers (absent or empty: both). */
function directions(spec: WasmFilterSpec): { outbound: boolean; inbound: boolean } {
  const match = spec.match ?? [];
  if (match.length === 0) return { outbound: true, inbound: true };
  const ds = match.map((m) => m.direction ?? 'BOTH');
  return { outbound: ds.some((d) => d !== 'INBOUND'), inbound: ds.some((d) => d !== 'OUTBOUND') };
}

/**
 * The destination ports a filter's `match` limits it to in `direction`, sorted; undefined when
 * it runs on every port (an item of that direction without ports, or no match at all).
 */
function portsOf(spec: WasmFilterSpec, direction: 'outbound' | 'inbound'): number[] | undefined {
  const items = (spec.match ?? []).filter((m) => (m.direction ?? 'BOTH') !== (direction === 'outbound' ? 'INBOUND' : 'OUTBOUND'));
  if (items.length === 0 || items.some((m) => !m.ports || m.ports.length === 0)) return undefined;
  return [...new Set(items.flatMap((m) => m.ports!))].sort((a, b) => a - b);
}

/** Per filter name, the ports of those `chain` filters limited to some in `direction` (absent: none is). */
function portLimits(chain: readonly ValidatedFilter[], direction: 'outbound' | 'inbound'): Record<string, number[]> | undefined {
  const limits = chain.flatMap((f) => {
    const ports = portsOf(f.spec, direction);
    return ports ? [[filterName(f.namespace, f.name), ports] as const] : [];
  });
  return limits.length > 0 ? Object.fromEntries(limits) : undefined;
}

function compareFilters(a: ValidatedFilter, b: ValidatedFilter): number {
  return (
    (PHASE_ORDER[a.spec.phase ?? 'UNSPECIFIED'] ?? 3) - (PHASE_ORDER[b.spec.phase ?? 'UNSPECIFIED'] ?? 3) ||
    (b.spec.priority ?? 0) - (a.spec.priority ?? 0) ||
    keyOf({ metadata: a }).localeCompare(keyOf({ metadata: b }))
  );
}

/** Services a workload may call: every namespace, or those its egress annotation names. */
function egressNamespaces(pod: PodView): Set<string> | 'all' {
  const text = pod.metadata.annotations?.[EGRESS_ANNOTATION];
  if (text === undefined) return 'all';
  return new Set(text.split(',').map((s) => s.trim()).filter((s) => s !== ''));
}

const isH2 = (port: ServicePortView): boolean =>
  port.appProtocol === 'kubernetes.io/h2c' || port.appProtocol === 'grpc' || /^(grpc|http2|h2c)(-|$)/.test(port.name ?? '');

function clusters(state: ClusterState, scope: Set<string> | 'all', clusterDomain: string): Array<Record<string, unknown>> {
  const slicesBy = new Map<string, EndpointSliceView[]>();
  for (const s of state.endpointSlices) {
    const svc = s.metadata.labels?.['kubernetes.io/service-name'];
    if (!svc || (s.addressType !== 'IPv4' && s.addressType !== 'IPv6')) continue;
    const key = `${s.metadata.namespace}/${svc}`;
    slicesBy.set(key, [...(slicesBy.get(key) ?? []), s]);
  }
  const out: Array<Record<string, unknown>> = [];
  for (const svc of state.services) {
    const { namespace, name } = svc.metadata;
    if (svc.spec?.type === 'ExternalName') continue;
    if (scope !== 'all' && !scope.has(namespace)) continue;
    for (const port of svc.spec?.ports ?? []) {
      if ((port.protocol ?? 'TCP') !== 'TCP') continue;
      const endpoints = new Set<string>();
      for (const slice of slicesBy.get(`${namespace}/${name}`) ?? []) {
        // EndpointSlice ports carry the Service port's name with the target port resolved.
        const target = (slice.ports ?? []).find((p) => (p.name ?? '') === (port.name ?? '') && (p.protocol ?? 'TCP') === 'TCP')?.port;
        if (!target) continue;
        for (const ep of slice.endpoints ?? []) {
          // ready: nil means unknown, which consumers treat as ready (discovery.k8s.io/v1).
          if (ep.conditions?.ready === false) continue;
          for (const a of ep.addresses) endpoints.add(slice.addressType === 'IPv6' ? `[${a}]:${target}` : `${a}:${target}`);
        }
      }
      // A cluster needs an endpoint; a port with none ready is left out until one is.
      if (endpoints.size === 0) continue;
      const vips = serviceIps(svc).map((ip) => (ip.includes(':') ? `[${ip}]:${port.port}` : `${ip}:${port.port}`));
      out.push({ name: clusterName(name, namespace, port.port, clusterDomain), endpoints: [...endpoints].sort(), ...(vips.length > 0 ? { vips } : {}), ...(isH2(port) ? { protocol: 'http2' } : {}) });
    }
  }
  return out.sort((a, b) => String(a.name).localeCompare(String(b.name)));
}

/** The pod's app label (Istio's source_app / destination_app), if it has one. */
const appOf = (pod: PodView): string | undefined => pod.metadata.labels?.app ?? pod.metadata.labels?.['app.kubernetes.io/name'];

/**
 * The workload a pod belongs to, as Istio names it: a ReplicaSet's Deployment (the ReplicaSet's
 * name without its pod-template hash), or the controlling owner (StatefulSet, DaemonSet, Job),
 * or the pod itself.
 */
export function workloadName(pod: PodView): string {
  const owner = pod.metadata.ownerReferences?.find((o) => o.controller) ?? pod.metadata.ownerReferences?.[0];
  if (!owner) return pod.metadata.name;
  if (owner.kind === 'ReplicaSet') {
    const hash = pod.metadata.labels?.['pod-template-hash'];
    if (hash && owner.name.endsWith(`-${hash}`)) return owner.name.slice(0, -hash.length - 1);
    const dash = owner.name.lastIndexOf('-');
    return dash > 0 ? owner.name.slice(0, dash) : owner.name;
  }
  return owner.name;
}

/** A Service's ClusterIPs (none for a headless Service): captured connections to them go to its endpoints. */
function serviceIps(svc: ServiceView): string[] {
  const ips = svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : []);
  return [...new Set(ips.filter((ip) => ip !== '' && ip !== 'None'))].sort();
}

function renderFilter(f: ValidatedFilter, clusterNames: Set<string>): Record<string, unknown> {
  const s = f.spec;
  const httpCalls = s.capabilities?.httpCalls;
  const capabilities = s.capabilities
    ? {
        ...s.capabilities,
        // Cluster names the node lacks are dropped (the loader refuses unknown names): fewer rights, never more.
        ...(Array.isArray(httpCalls) ? { httpCalls: httpCalls.filter((c) => clusterNames.has(c)) } : {}),
      }
    : undefined;
  if (f.unavailable !== undefined) {
    // No module: the node's chain applies the fail strategy to every stream (runtime Plugin.unavailable).
    return { name: filterName(f.namespace, f.name), unavailable: f.unavailable, failStrategy: s.failStrategy ?? 'FAIL_CLOSE' };
  }
  return {
    name: filterName(f.namespace, f.name),
    module: `${f.digest}.wasm`,
    ...(s.rootId ? { rootId: s.rootId } : {}),
    ...(s.vmId ? { vmId: s.vmId } : {}),
    ...(s.pluginConfig === undefined ? {} : { config: typeof s.pluginConfig === 'string' ? s.pluginConfig : JSON.stringify(s.pluginConfig) }),
    ...(s.vmConfig?.env?.length ? { environment: vmEnvironment(s) } : {}),
    ...(s.failStrategy ? { failStrategy: s.failStrategy } : {}),
    ...(s.limits && Object.keys(s.limits).length > 0 ? { limits: s.limits } : {}),
    ...(capabilities && Object.keys(capabilities).length > 0 ? { capabilities } : {}),
  };
}

/** The configuration of `node`, or the modules it waits for. */
export function nodeConfig(node: string, state: ClusterState, options: NodeConfigOptions): NodeConfigResult {
  const trustDomain = options.trustDomain ?? 'cluster.local';
  const clusterDomain = options.clusterDomain ?? 'cluster.local';
  const pods = workloadsOf(node, state.pods);

  // Services in scope: a node with no workloads needs none; otherwise the union of its pods' scopes.
  let scope: Set<string> | 'all' = new Set();
  for (const pod of pods) {
    const s = egressNamespaces(pod);
    if (s === 'all') {
      scope = 'all';
      break;
    }
    for (const ns of s) scope.add(ns);
  }
  const clusterList = clusters(state, scope, clusterDomain);
  const clusterNames = new Set(clusterList.map((c) => String(c.name)));

  // During a rollout, canary nodes run the canary version of a filter, the others the stable one.
  const filters = state.filters.map((f) => (f.canary?.nodes.has(node) ? { ...f.canary.filter, namespace: f.namespace, name: f.name } : f)).sort(compareFilters);
  const outbound = new Set<ValidatedFilter>();
  const inbound = new Set<ValidatedFilter>();
  const workloads = pods.map((pod) => {
    const mine = filters.filter((f) => selects(f, pod, options.rootNamespace));
    const out = mine.filter((f) => directions(f.spec).outbound);
    const inb = mine.filter((f) => directions(f.spec).inbound);
    out.forEach((f) => outbound.add(f));
    inb.forEach((f) => inbound.add(f));
    const { namespace, name } = pod.metadata;
    const sa = pod.spec?.serviceAccountName || 'default';
    const addresses = podAddresses(pod);
    return {
      namespace,
      name,
      workload: workloadName(pod),
      identity: `spiffe://${trustDomain}/ns/${namespace}/sa/${sa}`,
      serviceAccount: sa,
      labels: Object.fromEntries(Object.entries(pod.metadata.labels ?? {}).sort(([a], [b]) => a.localeCompare(b))),
      addresses,
      filters: { outbound: out.map((f) => filterName(f.namespace, f.name)), inbound: inb.map((f) => filterName(f.namespace, f.name)), ...ports(out, inb) },
    };
  });

  // The listeners carry the union of what any workload selected, in the global order (direct
  // clients, and pods the snapshot does not describe yet); captured traffic of a workload runs
  // its own selection (workloads[].filters).
  const used = filters.filter((f) => outbound.has(f) || inbound.has(f));
  const modules = new Map<string, Uint8Array>();
  const missing: string[] = [];
  for (const f of used) {
    if (f.unavailable !== undefined || modules.has(f.digest)) continue;
    const bytes = state.module(f.digest);
    if (bytes) modules.set(f.digest, bytes);
    else if (!missing.includes(f.digest)) missing.push(f.digest);
  }
  if (missing.length > 0) return { ok: false, missingModules: missing.sort() };

  const listener = (name: string, address: string, chain: ValidatedFilter[]) => ({
    name,
    address,
    protocol: 'http',
    filters: chain.map((f) => filterName(f.namespace, f.name)),
    // Captured requests go to their original destination; routes serve only direct clients.
    routes: [{ name: 'direct', directResponse: { status: 404, body: 'sluice: captured traffic only\n' } }],
  });
  const remote = remoteWorkloads(node, state.pods, scope, trustDomain, options.tunnelPort ?? 15008);
  const document = {
    listeners: [
      listener(OUTBOUND_LISTENER, options.outboundAddress ?? '127.0.0.1:0', used.filter((f) => outbound.has(f))),
      listener(INBOUND_LISTENER, options.inboundAddress ?? '127.0.0.1:0', used.filter((f) => inbound.has(f))),
    ],
    clusters: clusterList,
    filters: used.map((f) => renderFilter(f, clusterNames)),
    workloads,
    // Absent when empty: nodes of a cluster without cross-node pods see no change.
    ...(remote.length > 0 ? { tunnel: { remoteWorkloads: remote } } : {}),
  };
  const config = JSON.stringify(document);
  const version = createHash('sha256')
    .update(config)
    .update('\n')
    .update([...modules.keys()].sort().join(','))
    .digest('hex')
    .slice(0, 16);
  // A filter with no version in force runs nowhere: no node reports it ready.
  const versions = used.filter((f) => f.unavailable === undefined).map((f) => ({ name: filterName(f.namespace, f.name), key: `${f.namespace}/${f.name}`, version: filterVersion(f.digest, f.spec) }));
  return { ok: true, config: { version, config, modules, filters: versions } };
}

/** The validated WasmFilters among `filters`: Validated=True for their generation, with a digest. */
export function validatedFilter(f: WasmFilter): ValidatedFilter | undefined {
  const c = f.status?.conditions?.find((x) => x.type === 'Validated');
  const digest = f.status?.digest && digestHex(f.status.digest);
  if (c?.status !== 'True' || !digest || c.observedGeneration !== f.metadata.generation) return undefined;
  return { namespace: f.metadata.namespace, name: f.metadata.name, spec: f.spec, digest };
}

/**
 * A WasmFilter with no version in force whose validation failed (Validated=False, for this or an
 * earlier generation), as the nodes run it: for FAIL_CLOSE and FAIL_RELOAD (Istio closes on a
 * module that failed to load) an entry that refuses what it selects, saying why; undefined for
 * FAIL_OPEN, which is left out, and for a filter whose first validation has not concluded (as
 * Istio keeps the config it has while its agent fetches a new module: the filter is not applied yet).
 */
export function unavailableFilter(f: WasmFilter): ValidatedFilter | undefined {
  const strategy = f.spec.failStrategy ?? 'FAIL_CLOSE';
  if (strategy === 'FAIL_OPEN') return undefined;
  const c = f.status?.conditions?.find((x) => x.type === 'Validated');
  if (c?.status !== 'False') return undefined;
  const generation = f.metadata.generation;
  const reason =
    c.observedGeneration === generation || generation === undefined
      ? `the controller could not validate it: ${c.reason}${c.message ? `: ${c.message}` : ''}`
      : `the controller could not validate generation ${c.observedGeneration} (generation ${generation} is being validated): ${c.reason}${c.message ? `: ${c.message}` : ''}`;
  // One line, bounded: it goes into every refusal's body and the node's logs.
  const text = reason.replace(/\s+/g, ' ').trim();
  return { namespace: f.metadata.namespace, name: f.metadata.name, spec: f.spec, digest: '', unavailable: text.length > 300 ? `${text.slice(0, 299)}…` : text };
}
