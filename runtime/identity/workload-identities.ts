// Keeps a certificate in force for every identity the node's workloads need: a key and CSR per
// SPIFFE ID sent over the controller stream, renewal at half the remaining life (the old
// certificate serves until the new one is in), retries with backoff on refusal or silence, and
// removal of identities whose workloads left. Writes the IdentityStore.

import { randomUUID } from 'node:crypto';
import type { CertificateRequestMessage, CertificateResponseMessage } from '../agent/protocol.ts';
import { checkChain, makeKeyAndCsr } from './csr.ts';
import type { IdentityStore } from './identity-store.ts';

export interface WorkloadIdentitiesOptions {
  store: IdentityStore;
  /** Sends a CSR on the stream; false when no accepted stream is open (it is sent again on ready()). */
  send: (request: CertificateRequestMessage) => boolean;
  log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** First retry after a refusal or a failure (doubles up to maxRetryMs). */
  minRetryMs?: number;
  maxRetryMs?: number;
  /** A sent CSR not answered within this is sent again. */
  requestTimeoutMs?: number;
}

interface State {
  /** The request in flight, with the key it is for. */
  pending?: { requestId: string; keyPem: string; csrPem: string; sent: boolean };
  /** Renewal, retry or request timeout. */
  timer?: NodeJS.Timeout;
  /** Drops the identity when its certificate expires unrenewed. */
  expiry?: NodeJS.Timeout;
  failures: number;
  /** Bumped whenever a request starts or the identity is dropped: late async work for an old one is ignored. */
  generation: number;
}

export const IDENTITY_DEFAULTS = { minRetryMs: 1000, maxRetryMs: 60_000, requestTimeoutMs: 30_000 };

/** setTimeout's limit (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class WorkloadIdentities {
  private readonly states = new Map<string, State>();
  private stopped = false;

  constructor(private readonly o: WorkloadIdentitiesOptions) {}

  /** SPIFFE IDs wanted now (tests, logs). */
  wanted(): string[] {
    return [...this.states.keys()].sort();
  }

  /** The node's workloads' identities now: new ones are requested, gone ones dropped. */
  setWanted(ids: Iterable<string>): void {
    if (this.stopped) return;
    const want = new Set(ids);
    for (const [id, s] of this.states) {
      if (want.has(id)) continue;
      this.clear(s);
      clearTimeout(s.expiry);
      s.generation++;
      this.states.delete(id);
      this.o.store.delete(id);
      this.o.log('info', 'workload identity dropped: no workload of it on this node', { identity: id });
    }
    for (const id of want) {
      if (this.states.has(id)) continue;
      const s: State = { failures: 0, generation: 0 };
      this.states.set(id, s);
      void this.request(id, s);
    }
  }

  /** The roots from the controller. */
  onTrustBundle(pem: string): void {
    this.o.store.setTrustBundle(pem);
  }

  /** A stream was accepted: CSRs in flight on an earlier stream are lost, send them again. */
  ready(): void {
    for (const [id, s] of this.states) {
      if (s.pending) this.sendPending(id, s);
    }
  }

  onResponse(r: CertificateResponseMessage): void {
    for (const [id, s] of this.states) {
      if (s.pending?.requestId !== r.requestId) continue;
      const { keyPem } = s.pending;
      s.pending = undefined;
      this.clear(s);
      if (r.refused || !r.certChain) return this.failed(id, s, `refused by the controller: ${r.refused || 'no certificate in the answer'}`);
      if (r.trustBundle) this.o.store.setTrustBundle(r.trustBundle);
      const roots = this.o.store.trustBundle();
      let notAfter: Date;
      try {
        if (!roots) throw new Error('no trust bundle from the controller yet');
        notAfter = checkChain(r.certChain, keyPem, id, roots);
      } catch (error) {
        return this.failed(id, s, `the certificate from the controller is unusable: ${(error as Error).message}`);
      }
      s.failures = 0;
      this.o.store.set({ spiffeId: id, keyPem, certChainPem: r.certChain, notAfter });
      const now = Date.now();
      // Half the remaining life, counted from now: robust to the backdated notBefore and to clock skew.
      const renewIn = (notAfter.getTime() - now) / 2;
      this.o.log('info', 'workload certificate in force', { identity: id, notAfter: notAfter.toISOString(), renewInMs: Math.round(renewIn) });
      s.timer = setTimeout(() => void this.request(id, s), Math.max(100, Math.min(renewIn, MAX_TIMER_MS)));
      s.timer.unref();
      clearTimeout(s.expiry);
      s.expiry = setTimeout(() => this.expired(id, s), Math.max(0, Math.min(notAfter.getTime() - now, MAX_TIMER_MS)));
      s.expiry.unref();
      return;
    }
    this.o.log('debug', 'certificate answer for no request in flight (a late answer to a retried CSR)', { requestId: r.requestId });
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.states.values()) {
      this.clear(s);
      clearTimeout(s.expiry);
    }
  }

  private async request(id: string, s: State): Promise<void> {
    this.clear(s);
    const generation = ++s.generation;
    let made;
    try {
      made = await makeKeyAndCsr(id);
    } catch (error) {
      return this.failed(id, s, `cannot make a key and CSR: ${(error as Error).message}`);
    }
    if (this.stopped || s.generation !== generation || this.states.get(id) !== s) return;
    s.pending = { requestId: randomUUID(), keyPem: made.keyPem, csrPem: made.csrPem, sent: false };
    this.sendPending(id, s);
  }

  private sendPending(id: string, s: State): void {
    const p = s.pending!;
    p.sent = this.o.send({ requestId: p.requestId, csr: p.csrPem });
    if (!p.sent) return; // ready() sends it once a stream is accepted
    this.o.log('debug', 'workload CSR sent', { identity: id, requestId: p.requestId });
    clearTimeout(s.timer);
    s.timer = setTimeout(() => {
      s.timer = undefined;
      if (s.pending?.requestId === p.requestId) this.failed(id, s, `no answer from the controller within ${this.o.requestTimeoutMs ?? IDENTITY_DEFAULTS.requestTimeoutMs} ms`);
    }, this.o.requestTimeoutMs ?? IDENTITY_DEFAULTS.requestTimeoutMs);
    s.timer.unref();
  }

  private failed(id: string, s: State, why: string): void {
    if (this.stopped || this.states.get(id) !== s) return;
    s.pending = undefined;
    this.clear(s);
    const min = this.o.minRetryMs ?? IDENTITY_DEFAULTS.minRetryMs;
    const max = this.o.maxRetryMs ?? IDENTITY_DEFAULTS.maxRetryMs;
    const delay = Math.min(max, min * 2 ** Math.min(s.failures++, 20));
    const current = this.o.store.get(id);
    this.o.log(current ? 'warn' : 'error', `workload certificate not renewed: ${why}`, { identity: id, retryInMs: delay, servingUntil: current?.notAfter.toISOString() });
    s.timer = setTimeout(() => void this.request(id, s), delay);
    s.timer.unref();
  }

  private expired(id: string, s: State): void {
    if (this.states.get(id) !== s) return;
    this.o.store.delete(id);
    this.o.log('error', 'workload certificate expired before a new one arrived; the identity is unavailable until one does', { identity: id });
  }

  private clear(s: State): void {
    clearTimeout(s.timer);
    s.timer = undefined;
  }
}
