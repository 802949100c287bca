// Upstream clusters: a connection pool per endpoint (HTTP/1.1 or HTTP/2), and load balancing
// across them (round robin, least request by the power of two choices, or a consistent-hash ring
// on a request header).

import type { ClusterConfig, Endpoint } from '../config/snapshot.ts';
import { Http2Pool } from './h2-pool.ts';
import { RetryBudget } from './retry.ts';
import { classifyUpstreamFailure, type UpstreamErrorCode } from './upstream-errors.ts';
import { Http1Pool, type Connector, type UpstreamPool } from './upstream-pool.ts';

export interface UpstreamHost {
  readonly endpoint: Endpoint;
  readonly address: string;
  readonly pool: UpstreamPool;
  active: number;
  /** Outlier detection state. */
  consecutive5xx: number;
  consecutiveGatewayFailures: number;
  ejections: number;
  ejectedUntil: number;
}

/** Points each endpoint gets on the hash ring (Envoy's default minimum ring is 1024 in all). */
const RING_POINTS_PER_HOST = 128;

export class Cluster {
  readonly hosts: UpstreamHost[];
  readonly retryBudget = new RetryBudget();
  /** Endpoints ejected by outlier detection so far, and requests refused by a circuit breaker. */
  ejectionsTotal = 0;
  circuitBreakerTrips = 0;
  /** Tries that failed without a response, by their class (upstream-errors.ts). */
  readonly failures = new Map<UpstreamErrorCode, number>();
  private next = 0;
  /** ring-hash: sorted point hashes and the host at each. */
  private ring?: { points: Uint32Array; hosts: UpstreamHost[] };

  /** `connector`: makes the endpoints' connections (capture's, in a pod netns). */
  constructor(readonly config: ClusterConfig, connector?: Connector) {
    this.hosts = config.endpoints.map((endpoint) => {
      const authority = endpoint.host.includes(':') ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`;
      return {
        endpoint,
        address: authority,
        active: 0,
        consecutive5xx: 0,
        consecutiveGatewayFailures: 0,
        ejections: 0,
        ejectedUntil: 0,
        pool:
          config.protocol === 'http2'
            ? new Http2Pool(authority, config, connector)
            : new Http1Pool(authority, config, connector),
      };
    });
    if (config.loadBalancing === 'ring-hash') this.ring = hashRing(this.hosts);
  }

  get name(): string {
    return this.config.name;
  }

  /**
   * The host for the next request, or undefined when the cluster has no endpoints. A retry
   * prefers a host not `tried` yet. `hashKey`: ring-hash clusters, the value of the `hashOn`
   * header (without one, the pick is random).
   */
  pick(tried?: ReadonlySet<UpstreamHost>, hashKey?: string): UpstreamHost | undefined {
    if (tried && tried.size > 0 && tried.size < this.hosts.length) {
      for (let i = 0; i < this.hosts.length; i++) {
        const host = this.pick();
        if (host && !tried.has(host)) return host;
      }
    }
    if (this.hosts.length <= 1) return this.hosts[0];
    const now = Date.now();
    if (this.ring) return onRing(this.ring, hashKey === undefined ? (Math.random() * 2 ** 32) >>> 0 : fnv1a(hashKey), now);
    const healthy = this.hosts.filter((h) => h.ejectedUntil <= now);
    // With every endpoint ejected, sending somewhere beats refusing everything.
    const hosts = healthy.length > 0 ? healthy : this.hosts;
    if (this.config.loadBalancing === 'least-request') {
      const a = hosts[Math.floor(Math.random() * hosts.length)];
      const b = hosts[Math.floor(Math.random() * hosts.length)];
      return a.active <= b.active ? a : b;
    }
    const host = hosts[this.next % hosts.length];
    this.next = (this.next + 1) % this.hosts.length;
    return host;
  }

  /** Why a new request must be refused now (a circuit breaker is open), or undefined. */
  circuitOpen(): string | undefined {
    const { maxRequests, maxPendingRequests } = this.config.circuitBreakers;
    if (this.retryBudget.active >= maxRequests) {
      this.circuitBreakerTrips++;
      return `${this.retryBudget.active} requests in flight (circuitBreakers.maxRequests ${maxRequests})`;
    }
    let pending = 0;
    for (const h of this.hosts) pending += h.pool.pending;
    if (pending >= maxPendingRequests) {
      this.circuitBreakerTrips++;
      return `${pending} requests waiting for a connection (circuitBreakers.maxPendingRequests ${maxPendingRequests})`;
    }
    return undefined;
  }

  /** Outlier detection: the outcome of one try on `host` (a status, or an error). */
  record(host: UpstreamHost, status: number | undefined, error: unknown): void {
    const od = this.config.outlierDetection;
    // Of failures without a status, only connect failures count (as Envoy's origin-less detection).
    const kind = error === undefined ? undefined : classifyUpstreamFailure(error);
    if (kind) this.failures.set(kind, (this.failures.get(kind) ?? 0) + 1);
    const connectFailure = kind === 'SLUICE_ERR_UPSTREAM_CONNECT';
    const fiveXx = connectFailure || (status !== undefined && status >= 500);
    const gateway = connectFailure || status === 502 || status === 503 || status === 504;
    if (error !== undefined && !connectFailure) return;
    host.consecutive5xx = fiveXx ? host.consecutive5xx + 1 : 0;
    host.consecutiveGatewayFailures = gateway ? host.consecutiveGatewayFailures + 1 : 0;
    const tripped =
      (od.consecutive5xx > 0 && host.consecutive5xx >= od.consecutive5xx) ||
      (od.consecutiveGatewayFailure > 0 && host.consecutiveGatewayFailures >= od.consecutiveGatewayFailure);
    if (!tripped) return;
    const now = Date.now();
    const ejected = this.hosts.filter((h) => h.ejectedUntil > now).length;
    if (ejected >= Math.max(1, Math.floor((this.hosts.length * od.maxEjectionPercent) / 100))) return;
    host.ejections++;
    host.ejectedUntil = now + od.baseEjectionTimeMs * host.ejections;
    host.consecutive5xx = 0;
    host.consecutiveGatewayFailures = 0;
    this.ejectionsTotal++;
  }

  /** Endpoints ejected right now. */
  get ejected(): number {
    const now = Date.now();
    return this.hosts.filter((h) => h.ejectedUntil > now).length;
  }

  /** Closes the pools once their requests are done. */
  async close(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.pool.close()));
  }

  /** Closes the pools now, aborting what is still in flight (the end of a drain). */
  async destroy(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.pool.destroy()));
  }
}

/** 32-bit FNV-1a of a string's UTF-16 code units: stable across processes and restarts. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // Finalize (murmur3's fmix32) so that near-identical keys spread over the ring.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function hashRing(hosts: UpstreamHost[]): { points: Uint32Array; hosts: UpstreamHost[] } {
  const entries: Array<[number, UpstreamHost]> = [];
  for (const host of hosts) for (let i = 0; i < RING_POINTS_PER_HOST; i++) entries.push([fnv1a(`${host.address}_${i}`), host]);
  entries.sort((a, b) => a[0] - b[0]);
  return { points: Uint32Array.from(entries, (e) => e[0]), hosts: entries.map((e) => e[1]) };
}

/** The first host clockwise from `hash` that is not ejected (any host when all are). */
function onRing(ring: { points: Uint32Array; hosts: UpstreamHost[] }, hash: number, now: number): UpstreamHost {
  const { points, hosts } = ring;
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (points[mid] < hash) lo = mid + 1;
    else hi = mid;
  }
  for (let i = 0; i < hosts.length; i++) {
    const host = hosts[(lo + i) % hosts.length];
    if (host.ejectedUntil <= now) return host;
  }
  return hosts[lo % hosts.length];
}
