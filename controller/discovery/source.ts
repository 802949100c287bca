// DiscoveryNodeConfigSource: informers on Pods, Services, EndpointSlices and WasmFilters feed
// nodeConfig() for every watched node. Level-triggered: events only mark nodes dirty; a debounced
// flush recomputes them from the caches and calls watchers only when a node's version changed.

import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig } from '@kubernetes/client-node';
import { digestHex, GROUP, PLURAL, VERSION, type FilterVersionRef, type RolloutStatus, type WasmFilter, type WasmFilterSpec } from '../crd/index.ts';
import { listAll } from '../kube/list.ts';
import type { NodeConfig, NodeConfigSource } from '../distribution/types.ts';
import { Informer, type KubeObject } from '../kube/informer.ts';
import type { Logger } from '../log.ts';
import { EGRESS_ANNOTATION, nodeConfig, nodesSelecting, unavailableFilter, validatedFilter, VERSIONED_FIELDS, type EndpointSliceView, type PodView, type ServiceView, type ValidatedFilter } from './node-config.ts';

export interface DiscoveryOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  /** The controller's namespace: WasmFilters there apply to every namespace. */
  rootNamespace: string;
  /** Default cluster.local. */
  trustDomain?: string;
  clusterDomain?: string;
  /** Validated module bytes by sha256 hex, and news of new ones (the reconciler's, via Controller). */
  modules: { get: (digest: string) => Uint8Array | undefined; onModule: (listener: (digest: string) => void) => () => void };
  /** Events within this window are recomputed together. Default 50 ms. */
  debounceMs?: number;
  listPageSize?: number;
}

type Obj<T> = T & KubeObject;
type Listener = (config: NodeConfig) => void;

export class DiscoveryNodeConfigSource implements NodeConfigSource {
  private readonly pods: Informer<Obj<PodView>>;
  private readonly services: Informer<Obj<ServiceView>>;
  private readonly slices: Informer<Obj<EndpointSliceView>>;
  private readonly filters: Informer<Obj<WasmFilter>>;
  private readonly watchers = new Map<string, Set<Listener>>();
  private readonly published = new Map<string, NodeConfig>();
  /** The node each pod was last seen on, so a pod's deletion dirties its old node. */
  private readonly podNode = new Map<string, string>();
  /** The last validated spec of each filter: a new generation not validated yet keeps the old one in force. */
  private readonly lastGood = new Map<string, ValidatedFilter & { uid: string }>();
  private readonly dirty = new Set<string>();
  private timer?: NodeJS.Timeout;
  private unsubscribeModules?: () => void;
  private synced = false;

  constructor(private readonly opts: DiscoveryOptions) {
    const kc = opts.kubeConfig;
    const core = kc.makeApiClient(CoreV1Api);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const limit = opts.listPageSize ?? 500;
    const common = { kubeConfig: kc, log: opts.log };
    this.pods = new Informer<Obj<PodView>>({
      ...common,
      path: '/api/v1/pods',
      list: () => listAll((c) => core.listPodForAllNamespaces({ limit, _continue: c })) as never,
      transform: slimPod,
      onChange: (key) => this.podChanged(key),
    });
    this.services = new Informer<Obj<ServiceView>>({
      ...common,
      path: '/api/v1/services',
      list: () => listAll((c) => core.listServiceForAllNamespaces({ limit, _continue: c })) as never,
      transform: (s) => ({ metadata: meta(s.metadata), spec: { type: s.spec?.type, clusterIP: s.spec?.clusterIP, clusterIPs: s.spec?.clusterIPs, ports: (s.spec?.ports ?? []).map((p) => ({ name: p.name, port: p.port, protocol: p.protocol, appProtocol: p.appProtocol })) } }),
      onChange: () => this.markAll(),
    });
    this.slices = new Informer<Obj<EndpointSliceView>>({
      ...common,
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      list: () => listAll((c) => discovery.listEndpointSliceForAllNamespaces({ limit, _continue: c })) as never,
      transform: (s) => ({
        metadata: { ...meta(s.metadata), labels: s.metadata.labels },
        addressType: s.addressType,
        endpoints: (s.endpoints ?? []).map((e) => ({ addresses: e.addresses, conditions: { ready: e.conditions?.ready } })),
        ports: (s.ports ?? []).map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
      }),
      onChange: () => this.markAll(),
    });
    this.filters = new Informer<Obj<WasmFilter>>({
      ...common,
      path: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      list: () => listAll((c) => custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, limit, _continue: c })) as never,
      onChange: () => this.markAll(),
    });
  }

  async start(): Promise<void> {
    this.unsubscribeModules = this.opts.modules.onModule(() => this.markAll());
    const all = [this.pods, this.services, this.slices, this.filters];
    for (const i of all) i.start();
    await Promise.all(all.map((i) => i.waitForSync()));
    this.synced = true;
    this.markAll();
  }

  stop(): void {
    for (const i of [this.pods, this.services, this.slices, this.filters]) i.stop();
    this.unsubscribeModules?.();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  watch(nodeName: string, onChange: Listener): () => void {
    let set = this.watchers.get(nodeName);
    if (!set) this.watchers.set(nodeName, (set = new Set()));
    set.add(onChange);
    const known = this.published.get(nodeName);
    if (known) queueMicrotask(() => set.has(onChange) && onChange(known));
    else this.mark(nodeName);
    return () => {
      set.delete(onChange);
      if (set.size === 0 && this.watchers.get(nodeName) === set) {
        this.watchers.delete(nodeName);
        this.published.delete(nodeName);
      }
    };
  }

  /**
   * The nodes with a workload `filter` selects (the candidates of its rollout's canary), worked
   * out when the returned function is called (a scan of every Pod: most rollout decisions need
   * none); undefined until the Pods are listed.
   */
  nodesSelecting(filter: WasmFilter): (() => string[]) | undefined {
    if (!this.pods.synced) return undefined;
    return () => nodesSelecting({ namespace: filter.metadata.namespace, spec: filter.spec }, values(this.pods), this.opts.rootNamespace);
  }

  /** The node's current config, if computed (for tests and status). */
  current(nodeName: string): NodeConfig | undefined {
    return this.published.get(nodeName);
  }

  private podChanged(key: string): void {
    const before = this.podNode.get(key);
    const now = this.pods.get(key)?.spec?.nodeName;
    if (now) this.podNode.set(key, now);
    else this.podNode.delete(key);
    if (before) this.mark(before);
    if (now && now !== before) this.mark(now);
    // Every other node lists the pod among its remote workloads (the tunnel): an unchanged result is not pushed again.
    this.markAll();
  }

  private markAll(): void {
    for (const node of this.watchers.keys()) this.mark(node);
  }

  private mark(node: string): void {
    if (!this.watchers.has(node)) return;
    this.dirty.add(node);
    if (!this.synced || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.opts.debounceMs ?? 50);
  }

  private flush(): void {
    const nodes = [...this.dirty].filter((n) => this.watchers.has(n));
    this.dirty.clear();
    if (nodes.length === 0) return;
    const state = {
      services: values(this.services),
      endpointSlices: values(this.slices),
      pods: values(this.pods),
      filters: this.filtersInForce(),
      module: this.opts.modules.get,
    };
    for (const node of nodes) {
      let result;
      try {
        result = nodeConfig(node, state, { rootNamespace: this.opts.rootNamespace, trustDomain: this.opts.trustDomain, clusterDomain: this.opts.clusterDomain });
      } catch (error) {
        this.opts.log.error('node config failed', { node, error: (error as Error).message });
        continue;
      }
      if (!result.ok) {
        // Published again once onModule says the bytes are here; until then the node keeps its last version.
        this.opts.log.info('node config waits for modules', { node, missing: result.missingModules });
        continue;
      }
      if (this.published.get(node)?.version === result.config.version) continue;
      this.published.set(node, result.config);
      this.opts.log.debug('node config', { node, version: result.config.version });
      for (const l of [...(this.watchers.get(node) ?? [])]) {
        try {
          l(result.config);
        } catch (error) {
          this.opts.log.error('node config watcher threw', { node, error: (error as Error).message });
        }
      }
    }
  }

  private filtersInForce(): ValidatedFilter[] {
    const out: ValidatedFilter[] = [];
    const seen = new Set<string>();
    for (const key of this.filters.keys()) {
      const f = this.filters.get(key);
      if (!f) continue;
      seen.add(key);
      const uid = f.metadata.uid ?? '';
      let v = validatedFilter(f);
      if (v) {
        this.lastGood.set(key, { ...v, uid });
      } else {
        const old = this.lastGood.get(key);
        if (old && old.uid === uid) v = old;
      }
      // After a restart with a generation that did not validate, the rollout's stable version is still known.
      const stableDigest = f.status?.rollout?.stable?.digest;
      if (!v && stableDigest) v = { namespace: f.metadata.namespace, name: f.metadata.name, spec: f.spec, digest: digestHex(stableDigest) };
      if (!v) {
        // Fail open only when the filter says so (Istio: fail_open); otherwise its traffic is refused.
        const refusal = unavailableFilter(f);
        if (refusal) out.push(refusal);
        continue;
      }
      out.push(withRollout(v, f.status?.rollout));
    }
    for (const key of this.lastGood.keys()) if (!seen.has(key)) this.lastGood.delete(key);
    return out;
  }
}

/**
 * What nodes run of a filter during its rollout (status.rollout, written by the leader): the
 * stable version everywhere, and on the canary nodes the canary version. Where it applies
 * (selector, match, phase, priority) is the spec's; the versioned fields and module are each
 * version's own. A filter without rollout state (no discovery on the leader) runs as validated.
 */
export function withRollout(v: ValidatedFilter, rollout: RolloutStatus | undefined): ValidatedFilter {
  if (!rollout?.stable) return v;
  const as = (ref: FilterVersionRef): ValidatedFilter => {
    const spec: Record<string, unknown> = { ...v.spec };
    for (const k of VERSIONED_FIELDS) delete spec[k];
    return { namespace: v.namespace, name: v.name, spec: { ...spec, ...ref.config } as WasmFilterSpec, digest: digestHex(ref.digest) };
  };
  const stable = as(rollout.stable);
  if (rollout.phase === 'Canary' && rollout.canary) return { ...stable, canary: { nodes: new Set(rollout.canaryNodes ?? []), filter: as(rollout.canary) } };
  return stable;
}

const meta = (m: { name?: string; namespace?: string; resourceVersion?: string; uid?: string }) => ({ name: m.name ?? '', namespace: m.namespace ?? '', resourceVersion: m.resourceVersion, uid: m.uid });

/** A Pod as discovery keeps it: what nodeConfig reads, nothing else. */
function slimPod(p: Obj<PodView> & { metadata: { uid?: string } }): Obj<PodView> {
  return {
    metadata: { ...meta(p.metadata), labels: p.metadata.labels, ...(p.metadata.ownerReferences?.length ? { ownerReferences: p.metadata.ownerReferences.map((o) => ({ kind: o.kind, name: o.name, controller: o.controller })) } : {}), ...(p.metadata.annotations?.[EGRESS_ANNOTATION] === undefined ? {} : { annotations: { [EGRESS_ANNOTATION]: p.metadata.annotations[EGRESS_ANNOTATION] } }) },
    spec: { nodeName: p.spec?.nodeName, hostNetwork: p.spec?.hostNetwork, serviceAccountName: p.spec?.serviceAccountName },
    status: { phase: p.status?.phase, podIPs: p.status?.podIPs?.map((x) => ({ ip: x.ip })), podIP: p.status?.podIP, hostIP: p.status?.hostIP },
  };
}

/** An informer's objects. */
const values = <T extends KubeObject>(i: Informer<T>): T[] => i.keys().map((k) => i.get(k)!).filter(Boolean);
