// The leader's view of every replica's node report: an informer on the report ConfigMaps in the
// controller's namespace, merged on demand (reports whose heartbeat is older than the stale limit
// are left out: their replica is gone). onChange fires when a report changed or went stale.

import { CoreV1Api, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { Informer } from '../kube/informer.ts';
import { listAll } from '../kube/list.ts';
import type { Logger } from '../log.ts';
import { filterNodes, mergeReports, parseReport, type FilterNodes, type ReplicaReport, type ReportedNode } from './node-report.ts';
import { REPORT_KEY, REPORT_LABEL } from './report-publisher.ts';

export interface ReportAggregatorOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  log: Logger;
  /** Reports older than this are ignored (default 30 s: three heartbeats). */
  staleMs?: number;
  onChange: () => void;
  minBackoffMs?: number;
}

type ReportMap = V1ConfigMap & { metadata: { name: string; namespace?: string } };

export class ReportAggregator {
  private readonly informer: Informer<ReportMap>;
  private timer?: NodeJS.Timeout;
  private fresh = '';
  /** The merged view, until a report changes or one goes stale (filter() is called once per filter). */
  private merged?: Map<string, ReportedNode>;
  /** Each report's nodes as last seen (JSON), by ConfigMap key. */
  private readonly seen = new Map<string, string>();
  /** Each report, parsed once when its ConfigMap changes, by ConfigMap key. */
  private readonly parsed = new Map<string, ReplicaReport>();

  constructor(private readonly o: ReportAggregatorOptions) {
    const core = o.kubeConfig.makeApiClient(CoreV1Api);
    const labelSelector = `${REPORT_LABEL}=true`;
    this.informer = new Informer<ReportMap>({
      kubeConfig: o.kubeConfig,
      path: `/api/v1/namespaces/${o.namespace}/configmaps`,
      watchParams: { labelSelector },
      list: () => listAll((c) => core.listNamespacedConfigMap({ namespace: o.namespace, labelSelector, limit: 500, _continue: c })) as never,
      onChange: (key) => {
        this.merged = undefined;
        // A heartbeat alone (the same nodes) is no news for the filters.
        const data = this.informer.get(key)?.data?.[REPORT_KEY];
        const report = parseReport(data);
        if (report) this.parsed.set(key, report);
        else this.parsed.delete(key);
        const text = data === undefined ? undefined : JSON.stringify(report?.nodes ?? null);
        if (text !== undefined && this.seen.get(key) === text) return;
        if (text === undefined) this.seen.delete(key);
        else this.seen.set(key, text);
        this.o.onChange();
      },
      log: o.log,
      minBackoffMs: o.minBackoffMs,
    });
  }

  get staleMs(): number {
    return this.o.staleMs ?? 30_000;
  }

  /** True once the reports were listed. */
  get synced(): boolean {
    return this.informer.synced;
  }

  start(): void {
    this.informer.start();
    // A replica that died stops writing: its report goes stale without any watch event.
    this.timer = setInterval(() => {
      const fresh = this.reports().map((r) => r.replica).join(',');
      if (fresh !== this.fresh) {
        this.fresh = fresh;
        this.merged = undefined;
        this.o.onChange();
      }
    }, Math.max(100, Math.round(this.staleMs / 3)));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.informer.stop();
  }

  /** The fresh reports. */
  reports(now = Date.now()): ReplicaReport[] {
    return this.informer
      .keys()
      .map((k) => this.parsed.get(k))
      .filter((r): r is ReplicaReport => r !== undefined && now - r.heartbeat <= this.staleMs);
  }

  /** Every node some live replica serves, with its latest record. */
  nodes(now = Date.now()): Map<string, ReportedNode> {
    return mergeReports(this.reports(now), now, this.staleMs);
  }

  /** Where WasmFilter `key` stands on the nodes; undefined before the reports are listed or when no replica reports a node. */
  filter(key: string): FilterNodes | undefined {
    if (!this.informer.synced) return undefined;
    const nodes = (this.merged ??= this.nodes());
    if (nodes.size === 0) return undefined;
    return filterNodes(nodes, key);
  }
}
