// Every replica serves node agents, but only the leader writes WasmFilter status; so each replica
// publishes what its agents said in a ConfigMap of its own in the controller's namespace
// (`sluice-nodes-<hash of identity>`, label sluice.dev/node-report=true, key report.json), at most
// once per interval after a change and at every heartbeat, and deletes it when it stops.

import { createHash } from 'node:crypto';
import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import type { NodeRecord } from '../distribution/server.ts';
import type { Logger } from '../log.ts';
import { reportOf } from './node-report.ts';

export const REPORT_LABEL = 'sluice.dev/node-report';
export const REPORT_KEY = 'report.json';

export const reportConfigMapName = (identity: string): string => `sluice-nodes-${createHash('sha256').update(identity).digest('hex').slice(0, 10)}`;

export interface ReportPublisherOptions {
  core: CoreV1Api;
  namespace: string;
  identity: string;
  records: () => ReadonlyMap<string, NodeRecord>;
  log: Logger;
  /** A change is written at most this often (default 1 s). */
  intervalMs?: number;
  /** Written at least this often, changed or not: the leader drops reports older than 3 heartbeats (default 10 s). */
  heartbeatMs?: number;
}

export class ReportPublisher {
  readonly name: string;
  private timer?: NodeJS.Timeout;
  private heartbeat?: NodeJS.Timeout;
  private lastWrite = 0;
  private writing?: Promise<void>;
  private pending = false;
  private stopped = true;
  /** The ConfigMap exists (created by this replica). */
  private created = false;

  constructor(private readonly o: ReportPublisherOptions) {
    this.name = reportConfigMapName(o.identity);
  }

  get intervalMs(): number {
    return this.o.intervalMs ?? 1000;
  }

  start(): void {
    this.stopped = false;
    this.heartbeat = setInterval(() => this.changed(), this.o.heartbeatMs ?? 10_000);
    this.heartbeat.unref();
    this.changed();
  }

  /** A node record changed: write within the interval. */
  changed(): void {
    if (this.stopped) return;
    this.pending = true;
    if (this.timer || this.writing) return;
    const wait = Math.max(0, this.lastWrite + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writing = this.write().finally(() => {
        this.writing = undefined;
        if (this.pending) this.changed();
      });
    }, wait);
  }

  private async write(): Promise<void> {
    if (this.stopped) return;
    this.pending = false;
    this.lastWrite = Date.now();
    const report = reportOf(this.o.identity, this.o.records(), Date.now());
    const body: V1ConfigMap = {
      metadata: { name: this.name, namespace: this.o.namespace, labels: { [REPORT_LABEL]: 'true', 'app.kubernetes.io/managed-by': 'sluice-controller' } },
      data: { [REPORT_KEY]: JSON.stringify(report) },
    };
    const { core, namespace } = this.o;
    try {
      // Only this replica writes its ConfigMap: an unconditional update, or a create the first time.
      if (this.created) {
        await core.replaceNamespacedConfigMap({ name: this.name, namespace, body }).catch(async (error: { code?: number }) => {
          if (error.code !== 404) throw error;
          await core.createNamespacedConfigMap({ namespace, body });
        });
      } else {
        await core.createNamespacedConfigMap({ namespace, body }).catch(async (error: { code?: number }) => {
          if (error.code !== 409) throw error;
          await core.replaceNamespacedConfigMap({ name: this.name, namespace, body });
        });
        this.created = true;
      }
    } catch (error) {
      this.pending = true;
      this.o.log.warn('cannot publish the node report; retrying', { configMap: `${namespace}/${this.name}`, error: String((error as Error).message).split('\n')[0] });
    }
  }

  /** Stops writing and deletes the ConfigMap (best effort: the leader ignores it once stale anyway). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    clearInterval(this.heartbeat);
    if (this.writing) {
      let wait: NodeJS.Timeout | undefined;
      await Promise.race([this.writing, new Promise((r) => (wait = setTimeout(r, 2000)))]);
      clearTimeout(wait);
    }
    if (!this.created) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      // Not waited for long: a replica stopping while the API server is away must still stop.
      await Promise.race([
        this.o.core.deleteNamespacedConfigMap({ name: this.name, namespace: this.o.namespace }),
        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no answer within 2 s')), 2000))),
      ]);
    } catch (error) {
      if ((error as { code?: number }).code !== 404) this.o.log.warn('cannot delete the node report', { configMap: `${this.o.namespace}/${this.name}`, error: String((error as Error).message).split('\n')[0] });
    } finally {
      clearTimeout(timer);
    }
  }
}
