// Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics: a candidate
// takes the Lease when its holder has not renewed it for leaseDuration as measured on the
// candidate's own clock (from when it last saw the record change, so clocks need not agree);
// the leader renews every retryPeriod and steps down when it could not renew for renewDeadline.
// Every write carries the resourceVersion read, so two candidates can never both win.

import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';

export interface LeaderElectionOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

const micro = (ms: number): string => new Date(ms).toISOString().replace(/Z$/, '000Z');

export class LeaderElector {
  private leader = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private observed?: string;
  private observedAt = 0;
  private lastRenew = 0;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;

  constructor(private readonly o: LeaderElectionOptions) {
    this.leaseDurationMs = o.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = o.renewDeadlineMs ?? Math.round(this.leaseDurationMs * (2 / 3));
    this.retryPeriodMs = o.retryPeriodMs ?? Math.max(200, Math.round(this.leaseDurationMs / 7.5));
  }

  /**
   * True while this replica holds the Lease and renewed it within renewDeadline: a process that
   * was paused (or whose renewals hang) stops acting as leader before anyone else may take over.
   */
  get isLeader(): boolean {
    return this.leader && Date.now() - this.lastRenew <= this.renewDeadlineMs;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    // One attempt may not outlast half the renew deadline: a hung request must not keep a
    // leader from noticing that it can no longer renew.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${Math.round(this.renewDeadlineMs / 2)} ms`)), this.renewDeadlineMs / 2);
    });
    const ok = await Promise.race([this.tryAcquireOrRenew(), timeout]).finally(() => clearTimeout(timer)).catch((error) => {
      this.o.log.warn('lease: could not read or write it', { lease: `${this.o.namespace}/${this.o.name}`, error: String((error as Error).message).split('\n')[0] });
      return false;
    });
    if (this.stopped) return;
    const now = Date.now();
    if (ok) {
      this.lastRenew = now;
      if (!this.leader) {
        this.leader = true;
        this.o.log.info('became the leader', { lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity });
        this.o.onStartedLeading();
      }
    } else if (this.leader && now - this.lastRenew > this.renewDeadlineMs) {
      this.leader = false;
      this.o.log.warn('lost the lease: could not renew it in time', { lease: `${this.o.namespace}/${this.o.name}`, renewDeadlineMs: this.renewDeadlineMs });
      this.o.onStoppedLeading();
    }
    this.timer = setTimeout(() => void this.tick(), this.retryPeriodMs);
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, identity } = this.o;
    const now = Date.now();
    const spec = (holder: string, acquire: string, transitions: number) => ({
      holderIdentity: holder,
      leaseDurationSeconds: Math.max(1, Math.round(this.leaseDurationMs / 1000)),
      acquireTime: acquire as unknown as Date,
      renewTime: micro(now) as unknown as Date,
      leaseTransitions: transitions,
    });
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (error) {
      if ((error as { code?: number }).code !== 404) throw error;
      await api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: spec(identity, micro(now), 0) } });
      return true;
    }
    const s = lease.spec ?? {};
    const record = JSON.stringify([s.holderIdentity, String(s.renewTime), s.leaseTransitions]);
    if (record !== this.observed) {
      this.observed = record;
      this.observedAt = now;
    }
    const holder = s.holderIdentity ?? '';
    const held = holder !== '' && holder !== identity;
    const duration = (s.leaseDurationSeconds ?? 0) * 1000;
    if (held && this.observedAt + duration > now) return false;
    const mine = holder === identity;
    const body: V1Lease = {
      ...lease,
      spec: spec(identity, mine && s.acquireTime ? String(s.acquireTime) : micro(now), (s.leaseTransitions ?? 0) + (mine ? 0 : 1)),
    };
    try {
      await api.replaceNamespacedLease({ name, namespace, body });
    } catch (error) {
      // 409: someone else wrote first; they win this round.
      if ((error as { code?: number }).code === 409) return false;
      throw error;
    }
    return true;
  }

  /** Stops, and gives the Lease up so another replica takes over without waiting it out. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leader) return;
    this.leader = false;
    try {
      const lease = await this.o.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
      if (lease.spec?.holderIdentity === this.o.identity) {
        await this.o.api.replaceNamespacedLease({
          name: this.o.name,
          namespace: this.o.namespace,
          body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: micro(Date.now()) as unknown as Date } },
        });
      }
    } catch (error) {
      this.o.log.warn('lease: could not release it', { error: String((error as Error).message).split('\n')[0] });
    }
  }
}
