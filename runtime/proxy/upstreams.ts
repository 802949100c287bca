// Upstream clusters: a connection pool per endpoint (undici), and load balancing across them
// (round robin, or least request by the power of two choices).

import { Pool } from 'undici';
import type { ClusterConfig, Endpoint } from '../config/snapshot.ts';
import { RetryBudget } from './retry.ts';

export interface UpstreamHost {
  readonly endpoint: Endpoint;
  readonly address: string;
  readonly pool: Pool;
  active: number;
  /** Outlier detection state. */
  consecutive5xx: number;
  consecutiveGatewayFailures: number;
  ejections: number;
  ejectedUntil: number;
}

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

export class Cluster {
  readonly hosts: UpstreamHost[];
  readonly retryBudget = new RetryBudget();
  /** Endpoints ejected by outlier detection so far, and requests refused by a circuit breaker. */
  ejectionsTotal = 0;
  circuitBreakerTrips = 0;
  private next = 0;

  constructor(readonly config: ClusterConfig) {
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
        pool: new Pool(`http://${authority}`, {
          connections: config.maxConnections,
          connectTimeout: config.connectTimeoutMs,
          keepAliveTimeout: config.idleTimeoutMs,
          headersTimeout: config.requestTimeoutMs,
          bodyTimeout: config.requestTimeoutMs,
        }),
      };
    });
  }

  get name(): string {
    return this.config.name;
  }

  /** The host for the next request, or undefined when the cluster has no endpoints. A retry prefers a host not `tried` yet. */
  pick(tried?: ReadonlySet<UpstreamHost>): UpstreamHost | undefined {
    if (tried && tried.size > 0 && tried.size < this.hosts.length) {
      for (let i = 0; i < this.hosts.length; i++) {
        const host = this.pick();
        if (host && !tried.has(host)) return host;
      }
    }
    if (this.hosts.length <= 1) return this.hosts[0];
    const now = Date.now();
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
    const max = this.config.circuitBreakers.maxRequests;
    if (this.retryBudget.active < max) return undefined;
    this.circuitBreakerTrips++;
    return `${this.retryBudget.active} requests in flight (circuitBreakers.maxRequests ${max})`;
  }

  /** Outlier detection: the outcome of one try on `host` (a status, or an error). */
  record(host: UpstreamHost, status: number | undefined, error: unknown): void {
    const od = this.config.outlierDetection;
    const connectFailure = error !== undefined && CONNECT_FAILURES.has((error as { code?: string })?.code ?? '');
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
